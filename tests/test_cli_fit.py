"""``bga-mner fit`` writes the run folder of docs/ARCHITECTURE.md; ``bga-mner test`` re-scores it."""

from __future__ import annotations

import contextlib
import csv
import io
import json

import pytest
import torch
from omegaconf import OmegaConf

from bga_mner.cli import main
from bga_mner.build import decide_images, reads_images, wandb_tags
from bga_mner.config import load_config
from bga_mner.data.conll import read_conll
from bga_mner.run import make_run_dir
from conftest import synthetic_split

RESULT_KEYS = {"run", "experiment", "dataset", "test_dataset", "model", "seed", "profile",
               "best_epoch", "dev", "test", "seconds_per_epoch", "truncated_tweets",
               "missing_images", "image_counts", "object_source", "label_version", "config", "git_commit",
               "versions"}
GROUPS = {"overall", "PER", "LOC", "ORG", "MISC"}


def _scores_ok(scores: dict) -> None:
    assert set(scores) == GROUPS
    for prf in scores.values():
        assert set(prf) == {"precision", "recall", "f1"}
        assert all(isinstance(v, float) and 0.0 <= v <= 100.0 for v in prf.values())


def flat(scores: dict) -> dict:
    """{"PER/f1": ...}: pytest.approx compares flat dicts only."""
    return {f"{g}/{k}": v for g, prf in scores.items() for k, v in prf.items()}


def run_cli(*argv: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(list(argv)) == 0
    return out.getvalue()


def test_fit_writes_every_run_file(smoke_run, smoke_cache):
    run_dir, stdout = smoke_run
    results = json.loads((run_dir / "results.json").read_text())
    assert set(results) == RESULT_KEYS
    assert results["run"] == "smoke" and results["model"] == "bga-mner"
    assert results["dataset"] == results["test_dataset"] == "synthetic"
    assert results["profile"] == "smoke" and results["seed"] == 42
    assert results["best_epoch"] in (0, 1) and results["seconds_per_epoch"] > 0
    _scores_ok(results["dev"])
    _scores_ok(results["test"])
    assert set(results["truncated_tweets"]) == set(results["missing_images"]) == {"train", "valid", "test"}
    assert results["missing_images"]["train"] > 0  # the synthetic set leaves ~10% without image
    assert results["object_source"] == "detections"  # its objects.jsonl
    assert results["label_version"] == {"train": "unknown", "valid": "unknown", "test": "unknown"}
    counts = results["image_counts"]["train"]
    assert len(counts["crops_per_tweet"]) == 4 and sum(counts["crops_per_tweet"]) == counts["tweets"]
    commit = results["git_commit"]
    assert commit is None or len(commit.removesuffix("-dirty")) == 40
    assert results["config"]["run"]["git_commit"] == commit  # recorded when the run started
    assert {"python", "torch", "lightning", "transformers", "timm"} <= set(results["versions"])
    # the saved config is the merged, resolved one, and results.json carries the same
    saved = OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"))
    assert saved == results["config"] and saved["trainer"]["max_epochs"] == 2
    assert saved["model"]["text_encoder"] == "tiny-bert"

    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    predictions = read_conll(run_dir / "predictions" / "test.conll")
    gold = read_conll(synthetic_split(run_dir))
    assert [(t.image_id, t.words) for t in predictions] == [(t.image_id, t.words) for t in gold]
    # the per-tweet span counts behind the test scores (the report's CIs and tests resample them)
    counts = json.loads((run_dir / "predictions" / "test_counts.json").read_text())
    assert counts["ids"] == [t.image_id for t in gold] and len(counts["tp"]) == len(gold)
    tp, n_pred, n_gold = (sum(map(sum, counts[k])) for k in ("tp", "n_pred", "n_gold"))
    assert n_gold == sum(1 for t in gold for tag in t.tags if tag.startswith("B-"))
    assert 200.0 * tp / (n_pred + n_gold) == pytest.approx(results["test"]["overall"]["f1"])
    with open(run_dir / "csv" / "metrics.csv") as f:
        columns = next(csv.reader(f))
    assert {"train/loss", "train/mner", "train/recon", "train/cycle", "val/f1", "val/precision",
            "val/recall", "val/PER/f1", "test/f1"} <= set(columns)
    wandb_runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(wandb_runs) == 1
    assert f"results: {run_dir / 'results.json'}" in stdout
    assert f"W&B run: {wandb_runs[0]}" in stdout
    assert f"test F1: {results['test']['overall']['f1']:.2f}" in stdout


def test_inference_checkpoint_is_image_free(smoke_run):
    run_dir, _ = smoke_run
    blob = torch.load(run_dir / "checkpoints" / "inference.pt", weights_only=True)
    full = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]
    inference_keys = set(blob["state_dict"])
    assert inference_keys < {k.removeprefix("model.") for k in full}
    assert blob["config"]["model"]["visual_encoder"] == "bga_test_vit_d2"
    assert not any("visual_encoder" in k or "vit." in k for k in inference_keys)


@pytest.mark.parametrize("ckpt", ["best.ckpt", "inference.pt"])
def test_test_command_reproduces_the_fit_test_scores(smoke_run, ckpt):
    run_dir, _ = smoke_run
    results = json.loads((run_dir / "results.json").read_text())
    scores = json.loads(run_cli("test", "--ckpt", str(run_dir / "checkpoints" / ckpt), "--json"))
    assert flat(scores) == pytest.approx(flat(results["test"]))
    table = run_cli("test", "--ckpt", str(run_dir / "checkpoints" / ckpt))
    assert table.splitlines()[1].split()[0] == "overall" and "MISC" in table


def test_test_command_overrides_reach_the_data(smoke_run, tmp_path, capsys):
    """Image-free inference does not look at test images, so modality-missing changes nothing;
    the predictions file is the fit's."""
    run_dir, _ = smoke_run
    results = json.loads((run_dir / "results.json").read_text())
    preds = tmp_path / "pred.conll"
    scores = json.loads(run_cli("test", "--ckpt", str(run_dir / "checkpoints" / "best.ckpt"),
                                "--json", "--predictions", str(preds), "data.modality_missing=true"))
    assert flat(scores) == pytest.approx(flat(results["test"]))
    assert preds.read_text() == (run_dir / "predictions" / "test.conll").read_text()
    capsys.readouterr()
    assert main(["test", "--ckpt", str(run_dir / "checkpoints" / "inference.pt"),
                 "model.inference_visual=real"]) == 2  # a user error: one line, no traceback
    err = capsys.readouterr().err
    assert "inference.pt: an image-free inference checkpoint has no visual weights" in err
    assert "Traceback" not in err


def test_finished_run_folder_is_never_overwritten(smoke_run):
    run_dir, _ = smoke_run
    cfg = load_config(overrides=["run.profile=smoke", f"paths.runs_dir={run_dir.parent}", "run.name=smoke"])
    with pytest.raises(FileExistsError, match="already holds a finished run"):
        make_run_dir(cfg)


def test_wandb_tags_name_dataset_seed_profile_and_switches():
    cfg = load_config(overrides=["model.use_scs=false", "data.train_limit=50", "seed=7",
                                 "logging.tags=[extra]", "data.name=twitter2017"])
    assert wandb_tags(cfg) == sorted(["twitter2017", "seed7", "full", "bga-mner", "no-scs",
                                      "train-limit-50", "extra"])
    bert = load_config(overrides=["model.use_mcg=false", "model.use_scs=false"])
    assert "no-scs" not in wandb_tags(bert) and "bert-crf" in wandb_tags(bert)


def test_use_images_is_decided_by_model_and_stage():
    bert = load_config(overrides=["model.use_mcg=false", "data.use_images=true"])
    assert decide_images(bert, "fit").data.use_images is False  # BERT-CRF reads no images
    assert bert.data.use_images is True  # a copy: the caller's config is unchanged
    bga = load_config(overrides=["data.use_images=true"])
    assert decide_images(bga, "fit").data.use_images is True
    assert reads_images(bga, "test") is False  # evaluation is image-free ...
    real = load_config(overrides=["model.inference_visual=real"])
    assert reads_images(real, "test") is True  # ... unless Table 4's real visual features
    text_only = load_config(overrides=["data.use_images=false"])
    assert reads_images(text_only, "fit") is False and reads_images(text_only, "analysis") is True
    assert reads_images(bert, "analysis") is False
    with pytest.raises(ValueError, match="unknown stage"):
        reads_images(bga, "predict")
