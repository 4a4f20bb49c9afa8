"""Values of the right type but not allowed are refused before anything is created: one line
naming the key, the value and what is allowed, exit status 2, no run folder and no cache (so the
corrected command runs at once). Switches are ``str`` Enums that saved configs and results read
and write as plain words. A device that this machine lacks, and a config file whose top level is
not a mapping, are one line too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from conftest import SMOKE_FIT, error_line

from bga_mner.config import from_container, load_config, to_yaml

PRECISIONS = ("transformer-engine", "transformer-engine-float16", "16-true", "16-mixed", "bf16-true",
              "bf16-mixed", "32-true", "64-true", "64", "32", "16", "bf16")  # Lightning's (checked below)

# (override, the error line's message): each value has the right type, and is not allowed
BAD_VALUES = [
    ("trainer.max_epochs=-1", "trainer.max_epochs=-1: must be at least 1"),
    ("data.batch_size=0", "data.batch_size=0: must be at least 1"),
    ("data.eval_batch_size=-4", "data.eval_batch_size=-4: must be at least 1"),
    ("data.num_workers=-1", "data.num_workers=-1: must be at least 0"),
    ("model.alpha=-1", "model.alpha=-1.0: must be at least 0"),
    ("model.keep_ratio=0", "model.keep_ratio=0.0: must be in (0, 1]"),
    ("model.dropout=1", "model.dropout=1.0: must be in [0, 1)"),
    ("optim.lr=0", "optim.lr=0.0: must be above 0"),
    ("seed=-3", "seed=-3: must be in [0, 4294967295]"),
    ("trainer.precision=33", f"trainer.precision='33': must be one of {', '.join(PRECISIONS)}"),
    ("trainer.limit_train_batches=1.5", "trainer.limit_train_batches=1.5: must be a number of batches "
                                        "(an int, at least 0) or a share of them (a float in [0, 1])"),
    ("model.inference_visual=sometimes", "overrides: model.inference_visual: Invalid value 'sometimes', "
                                         "expected one of [generated, real]"),
    ("model.text_context=both", "overrides: model.text_context: Invalid value 'both', expected one of "
                                "[generated, real]"),
    ("logging.wandb_mode=loud", "overrides: logging.wandb_mode: Invalid value 'loud', expected one of "
                                "[online, offline, disabled]"),
    ("data.synthetic.unseen_rate=2", "data.synthetic.unseen_rate=2.0: must be in [0, 1]"),
    ("data.synthetic.unseen_names=20", "data.synthetic.unseen_names=20: need 0 <= unseen_names < 15 (the "
                                       "names a type can draw from, names_per_type or all), so that at "
                                       "least one name per type is seen in training"),
    ("data.length_buckets=[2,64]", "data.length_buckets=[2, 64]: need increasing lengths of at least 3 "
                                   "word pieces ([CLS], a word, [SEP]), e.g. [32, 64, 128]"),
    ("run.name=../escape", "run.name='../escape': must be a folder name under paths.runs_dir, not a "
                           "path (no '/', not '.' or '..'); the runs folder is paths.runs_dir"),
    ("run.name=/tmp/elsewhere", "run.name='/tmp/elsewhere': must be a folder name under paths.runs_dir, "
                                "not a path (no '/', not '.' or '..'); the runs folder is paths.runs_dir"),
]


def _fit(tmp_path: Path, *overrides: str) -> list[str]:
    """``bga-mner fit`` of a few steps (should a value be let through, it costs seconds)."""
    return ["fit", *SMOKE_FIT, "trainer.max_epochs=1", "trainer.limit_train_batches=1",
            "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", f"paths.runs_dir={tmp_path / 'runs'}",
            f"paths.cache_dir={tmp_path / 'cache'}", "logging.wandb=false", *overrides]


@pytest.mark.parametrize("override, message", BAD_VALUES, ids=[o for o, _ in BAD_VALUES])
def test_a_bad_value_is_one_line_and_leaves_nothing_behind(capsys, tmp_path, override, message):
    work = tmp_path / "work"
    work.mkdir()
    assert error_line(capsys, _fit(work, override)) == f"bga-mner fit: error: {message}"
    assert list(work.iterdir()) == []  # no run folder, no cache: the corrected rerun just runs
    assert not (tmp_path / "escape").exists()


def test_test_overrides_are_checked_before_the_evaluation_folder_exists(capsys, tmp_path):
    out = tmp_path / "evaluation"
    assert error_line(capsys, ["test", "--ckpt", str(tmp_path / "unused.ckpt"), "--out", str(out),
                               "data.eval_batch_size=0"]) == (
        "bga-mner test: error: data.eval_batch_size=0: must be at least 1")
    assert not out.exists()


# --------------------------------------------------------------------------- config files
@pytest.mark.parametrize("text, kind", [("- model\n- data\n", "list"), ("just words\n", "str"),
                                        ("42\n", "int")])
def test_a_config_file_that_is_not_a_mapping_is_one_line(capsys, tmp_path, text, kind):
    config = tmp_path / "config.yaml"
    config.write_text(text)
    expected = (f"{config}: a config file is a mapping of sections (e.g. 'model:' and its keys), "
                f"not a {kind} at the top level")
    assert error_line(capsys, ["fit", "--config", str(config), f"paths.runs_dir={tmp_path / 'runs'}"]) == (
        f"bga-mner fit: error: {expected}")
    out = tmp_path / "evaluation"
    assert error_line(capsys, ["test", "--ckpt", "unused.ckpt", "--config", str(config), "--out", str(out)]) == (
        f"bga-mner test: error: {expected}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]


# --------------------------------------------------------------------------- devices
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_a_fit_on_a_device_this_machine_lacks_is_one_line_before_the_run_folder(capsys, tmp_path):
    assert error_line(capsys, _fit(tmp_path, "trainer.accelerator=gpu")) == (
        "bga-mner fit: error: trainer.accelerator=gpu: this machine has no cuda device "
        "(trainer.accelerator=cpu or auto runs on what it has)")
    assert error_line(capsys, _fit(tmp_path, "trainer.accelerator=quantum")) == (
        "bga-mner fit: error: trainer.accelerator='quantum': must be one of auto, cpu, cuda, gpu, mps, tpu")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("device, message", [
    ("toaster", "--device toaster: not a torch device (e.g. cpu, cuda, cuda:1, mps)"),
    ("meta", "--device meta: not a device this suite runs on (cpu, cuda, mps)"),
    pytest.param("cuda", "--device cuda: this machine has no CUDA device (use --device cpu)",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is here")),
])
def test_predict_on_a_device_this_machine_lacks_is_one_line(capsys, tmp_path, device, message):
    tweets = tmp_path / "tweets.txt"
    tweets.write_text("Kawhi Leonard wins\n")
    assert error_line(capsys, ["predict", "--ckpt", str(tmp_path / "unused.pt"), "--input", str(tweets),
                               "--device", device]) == f"bga-mner predict: error: {message}"


# --------------------------------------------------------------------------- switches as Enums
def test_switches_are_enums_that_saved_files_keep_as_words(tmp_path):
    """A switch is a ``str`` Enum member in the typed config, and a plain word in config.yaml,
    results.json and checkpoints (read with weights_only=True); configs saved before it was an
    Enum ("real" as a string) load as before."""
    from bga_mner.config import Visual
    from bga_mner.run import build_results
    from bga_mner.system import MNERSystem

    cfg = load_config(overrides=["run.profile=smoke", "model.inference_visual=real", "run.name=x"])
    visual = cfg.model.inference_visual
    assert visual is Visual.real and visual == "real" and str(visual) == f"{visual}" == "real"
    assert "inference_visual: real\n" in to_yaml(cfg)
    saved = yaml.safe_load(to_yaml(cfg))  # a run's config.yaml, as any earlier release wrote it
    assert from_container(saved) == cfg and from_container(saved).model.inference_visual is Visual.real
    results = build_results(cfg, best_epoch=0, dev=None, test={}, seconds_per_epoch=None,
                            truncated={}, missing_images={}, image_counts={})
    words = [results["config"]["model"]["inference_visual"], results["config"]["run"]["profile"],
             results["profile"]]
    assert [type(w) for w in words] == [str, str, str] and words == ["real", "smoke", "smoke"]
    assert json.loads(json.dumps(results))["config"]["model"]["text_context"] == "generated"
    system = MNERSystem(cfg, pretrained=False)
    torch.save(dict(system.hparams), tmp_path / "hparams.pt")
    loaded = torch.load(tmp_path / "hparams.pt", weights_only=True)  # no Enum class to unpickle
    assert loaded["config"]["model"]["inference_visual"] == "real"


def test_the_allowed_precisions_are_lightnings():
    import typing

    from lightning.fabric.connector import _PRECISION_INPUT

    from bga_mner import config

    allowed = {str(v) for arg in typing.get_args(_PRECISION_INPUT) for v in typing.get_args(arg)}
    assert set(PRECISIONS) == set(config.PRECISIONS) == allowed
