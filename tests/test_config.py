"""The one config merge: typed defaults -> experiment -> profile -> dotlist, strict about keys and types."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from bga_mner.config import (CONF_DIR, Config, ConfigError, DataConfig, ModelConfig, SynthConfig, from_container,
                             load_config, section)


def test_base_holds_paper_hyperparameters() -> None:
    cfg = load_config()
    assert cfg.model.text_encoder == "bert-base-uncased"
    assert cfg.model.visual_encoder == "vit_base_patch32_clip_224.openai"
    assert (cfg.data.batch_size, cfg.optim.lr, cfg.trainer.max_epochs) == (16, 3e-5, 30)
    assert (cfg.model.alpha, cfg.optim.warmup_ratio, cfg.data.max_length) == (0.001, 0.01, 128)


def test_merge_order_and_profile(tmp_path: Path) -> None:
    exp = tmp_path / "my_exp" / "config.yaml"
    exp.parent.mkdir()
    exp.write_text("model:\n  use_scs: false\ndata:\n  name: twitter2017\n")
    cfg = load_config(exp, ["seed=7"], profile="smoke")
    assert cfg.run.experiment == "my_exp"
    assert cfg.model.use_scs is False  # experiment switch survives the profile
    assert cfg.data.name == "synthetic"  # the profile swaps the data set
    assert cfg.model.text_encoder == "tiny-bert"
    assert cfg.seed == 7
    # the dotlist wins over everything, and can pick the profile
    cfg = load_config(exp, ["run.profile=smoke", "data.name=twitter2015"])
    assert (cfg.run.profile, cfg.data.name) == ("smoke", "twitter2015")


def test_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="unknown profile"):
        load_config(profile="huge")


@pytest.mark.parametrize("override, key, suggestion", [
    ("model.alpah=1", "model.alpah", "model.alpha"),
    ("data.batchsize=4", "data.batchsize", "data.batch_size"),
    ("trainer.max_epoch=1", "trainer.max_epoch", "trainer.max_epochs"),
    ("seeed=3", "seeed", "seed"),
])
def test_an_unknown_key_names_the_key_and_the_closest_valid_one(override, key, suggestion) -> None:
    with pytest.raises(ConfigError, match=rf"overrides: unknown config key '{key}'; did you mean '{suggestion}'\?"):
        load_config(overrides=[override])


@pytest.mark.parametrize("override, key", [("data.batch_size=abc", "data.batch_size"),
                                           ("model.use_scs=maybe", "model.use_scs"),
                                           ("optim.lr=fast", "optim.lr")])
def test_a_wrong_type_names_the_key(override, key) -> None:
    value = override.split("=")[1]
    with pytest.raises(ConfigError, match=rf"^overrides: {key}: Value '{value}' (of type 'str' could not be "
                                          rf"converted|is not a valid bool)"):
        load_config(overrides=[override])


def test_an_experiment_file_is_checked_against_the_schema_and_named(tmp_path: Path) -> None:
    exp = tmp_path / "typo" / "config.yaml"
    exp.parent.mkdir()
    exp.write_text("model:\n  use_scss: false\n")
    with pytest.raises(ConfigError, match=rf"{exp}: unknown config key 'model.use_scss'; did you mean 'model.use_scs'"):
        load_config(exp)
    exp.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match=rf"{exp}: not a valid YAML config"):
        load_config(exp)


def test_defaults_are_written_once_in_the_dataclasses() -> None:
    """The merged defaults ARE the dataclasses' (no second copy in YAML or in the code that reads
    them), and sections come out as their dataclasses with interpolations resolved."""
    cfg = load_config()
    assert OmegaConf.to_container(cfg) == OmegaConf.to_container(OmegaConf.structured(Config))
    assert not list(CONF_DIR.glob("*.yaml"))  # only profiles remain as YAML
    model = section(load_config(overrides=["data.max_length=64", "data.crop_size=96"]), "model")
    assert isinstance(model, ModelConfig) and (model.max_length, model.crop_size) == (64, 96)
    data = section(cfg, "data")
    assert isinstance(data, DataConfig) and data.synthetic == SynthConfig()


def test_a_saved_config_is_typed_again(tmp_path: Path) -> None:
    saved = OmegaConf.to_container(load_config(overrides=["seed=5"]), resolve=True)
    assert from_container(saved).seed == 5
    with pytest.raises(ConfigError, match="checkpoint: unknown config key 'model.old_switch'"):
        from_container({**saved, "model": {**saved["model"], "old_switch": True}}, "checkpoint")


def test_the_cli_prints_a_config_error_without_traceback(capsys) -> None:
    from bga_mner.cli import main

    assert main(["fit", "trainer.max_epoch=1"]) == 2
    err = capsys.readouterr().err
    assert "bga-mner fit: error: overrides: unknown config key 'trainer.max_epoch'; did you mean " \
           "'trainer.max_epochs'?" in err and "Traceback" not in err
