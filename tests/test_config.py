"""The one config merge: base -> experiment -> profile -> dotlist."""

from __future__ import annotations

from pathlib import Path

import pytest

from bga_mner.config import load_config


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
    with pytest.raises(ValueError, match="unknown profile"):
        load_config(profile="huge")
