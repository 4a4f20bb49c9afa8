"""``bga-mner test --out``: an evaluation of a trained run becomes a run folder of its own that the
report files under the right table (Tables 4 and 7 re-test the trained BGA-MNER; no retraining)."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from bga_mner.cli import main
from bga_mner.report import load_results, render_table2, render_table4, render_table7
from conftest import as_experiment

ROOT = Path(__file__).resolve().parents[1]
RESULT_KEYS = {"run", "experiment", "dataset", "test_dataset", "model", "seed", "profile",
               "best_epoch", "dev", "test", "seconds_per_epoch", "truncated_tweets",
               "missing_images", "image_counts", "object_source", "label_version", "config", "git_commit",
               "versions", "evaluated_from"}


def run_cli(*argv: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(list(argv)) == 0
    return out.getvalue()


@pytest.fixture(scope="module")
def evaluations(smoke_run, tmp_path_factory) -> tuple[Path, dict, Path, Path]:
    """The trained smoke run copied into a runs folder with its two re-tests (Tables 7 and 4)."""
    source_dir, _ = smoke_run
    runs = tmp_path_factory.mktemp("eval-runs")
    trained = runs / "bga_mner-synthetic-seed42"
    shutil.copytree(source_dir, trained, ignore=shutil.ignore_patterns("wandb", "csv"))
    as_experiment(trained, "bga_mner")  # as make reproduce-table2 runs it: the report places it in Tables 2-7
    ckpt = str(trained / "checkpoints" / "best.ckpt")
    missing, real = runs / "modality_missing-synthetic-seed42", runs / "real_visual-synthetic-seed42"
    printed = run_cli("test", "--ckpt", ckpt, "--config",
                      str(ROOT / "experiments" / "modality_missing" / "config.yaml"), "--out", str(missing))
    assert f"results: {missing / 'results.json'}" in printed
    run_cli("test", "--ckpt", ckpt, "model.inference_visual=real", "run.experiment=real_visual",
            "--out", str(real))
    return runs, json.loads((trained / "results.json").read_text()), missing, real


def test_out_writes_a_run_folder_with_the_source_runs_training_facts(evaluations):
    runs, source, missing, _ = evaluations
    results = json.loads((missing / "results.json").read_text())
    assert set(results) == RESULT_KEYS
    # relative to the evaluation's folder: the runs folder can move as a whole
    assert results["evaluated_from"] == "../bga_mner-synthetic-seed42"
    assert (missing / results["evaluated_from"]).resolve() == (runs / "bga_mner-synthetic-seed42").resolve()
    assert results["run"] == missing.name and results["experiment"] == "modality_missing"
    for key in ("best_epoch", "dev", "seconds_per_epoch", "dataset", "model", "seed", "profile"):
        assert results[key] == source[key], key
    # image-free inference never looks at the test images: emptying them changes nothing
    assert results["test"] == source["test"]
    assert results["config"]["data"]["modality_missing"] is True
    assert results["config"]["run"]["name"] == missing.name
    assert OmegaConf.to_container(OmegaConf.load(missing / "config.yaml")) == results["config"]
    assert (missing / "predictions" / "test.conll").read_text() == \
        (runs / "bga_mner-synthetic-seed42" / "predictions" / "test.conll").read_text()
    assert (missing / "predictions" / "test_counts.json").read_text() == \
        (runs / "bga_mner-synthetic-seed42" / "predictions" / "test_counts.json").read_text()
    assert not (missing / "checkpoints").exists()  # an evaluation saves no weights


def test_real_visual_evaluation_uses_the_images(evaluations):
    _, source, _, real = evaluations
    results = json.loads((real / "results.json").read_text())
    assert results["experiment"] == "real_visual"
    assert results["config"]["model"]["inference_visual"] == "real"
    assert results["missing_images"]["test"] is not None  # the test images were read
    assert results["test"] != source["test"]  # another input to the hybrid layers: other numbers


def test_the_report_files_evaluations_under_tables_4_and_7_only(evaluations):
    runs, source, _, _ = evaluations
    results = load_results(runs)
    assert len(results) == 3
    f1 = f"{source['test']['overall']['f1']:.2f}"
    t7 = render_table7(results)
    assert f"| test images present (Table 2) | 1 seed | {f1} |" in t7
    assert f"| all test images empty | 1 seed | {f1} |" in t7 and "| change (empty − present) |  | +0.00 |" in t7
    t4 = render_table4(results)
    assert f"| real textual + generated visual | 1 seed | {f1} |" in t4
    assert "| real textual + real visual | 1 seed |" in t4
    assert "BGA-MNER (ours, 1 seed)" in render_table2(results)  # the trained run alone


def test_out_refuses_a_finished_run_and_a_loose_checkpoint_has_no_training_facts(
        evaluations, tmp_path, capsys):
    runs, _, missing, _ = evaluations
    ckpt = runs / "bga_mner-synthetic-seed42" / "checkpoints" / "inference.pt"
    assert main(["test", "--ckpt", str(ckpt), "--out", str(missing)]) == 2
    assert "already holds a finished run" in capsys.readouterr().err
    loose = tmp_path / "model.pt"
    shutil.copy(ckpt, loose)
    run_cli("test", "--ckpt", str(loose), "--out", str(tmp_path / "runs" / "loose"))
    results = json.loads((tmp_path / "runs" / "loose" / "results.json").read_text())
    assert results["best_epoch"] is results["dev"] is results["seconds_per_epoch"] is None
    assert results["evaluated_from"] == "../../model.pt"  # the loose file, from runs/loose
    assert results["experiment"] is None  # the smoke fit had none, and the test names none


def test_replace_redoes_an_evaluation_run_and_never_a_trained_one(evaluations, capsys):
    """What the Table 4/7 make targets run when the trained run was redone (its results.json is
    newer than the evaluation's)."""
    runs, _, missing, _ = evaluations
    trained = runs / "bga_mner-synthetic-seed42"
    before = json.loads((missing / "results.json").read_text())
    stale = (missing / "results.json").stat().st_mtime_ns
    printed = run_cli("test", "--ckpt", str(trained / "checkpoints" / "best.ckpt"), "--config",
                      str(ROOT / "experiments" / "modality_missing" / "config.yaml"),
                      "--out", str(missing), "--replace")
    assert f"results: {missing / 'results.json'}" in printed
    after = json.loads((missing / "results.json").read_text())
    assert (missing / "results.json").stat().st_mtime_ns > stale
    assert after["test"] == before["test"] and after["experiment"] == "modality_missing"
    assert sorted(p.name for p in missing.iterdir()) == ["config.yaml", "predictions", "results.json"]
    capsys.readouterr()
    assert main(["test", "--ckpt", str(trained / "checkpoints" / "best.ckpt"), "--out", str(trained),
                 "--replace"]) == 2
    assert "holds a trained run, not an evaluation" in capsys.readouterr().err
    assert (trained / "checkpoints" / "best.ckpt").is_file()
