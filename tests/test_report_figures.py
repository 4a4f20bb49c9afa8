"""The report's figures (bga_mner.report.figures) on hand-made results.json files: Fig. 5, per-type
F1 beside the paper's, the Table 3 drops; None where the runs hold nothing to draw."""

from __future__ import annotations

import io
import json
from pathlib import Path

import matplotlib
import pytest
from PIL import Image

from bga_mner.report import (fig5_figure, load_results, per_type_figure, plot_fig5, table3_drops,
                             table3_figure)

TYPES = ("PER", "LOC", "ORG", "MISC")


def _run(runs: Path, name: str, f1: float, *, model: str = "bga-mner", dataset: str = "twitter2015",
         profile: str = "full", seed: int = 42, experiment: str | None = None, train_limit: int | None = None) -> None:
    """A results.json of ``experiment`` (default: the model's, bga_mner or bert_crf)."""
    scores = {"precision": f1, "recall": f1, "f1": f1}
    results = {"run": name, "experiment": experiment or model.replace("-", "_"), "dataset": dataset,
               "test_dataset": dataset, "model": model, "seed": seed, "profile": profile,
               "test": {"overall": scores, **{t: scores for t in TYPES}},
               "config": {"data": {"train_limit": train_limit}}}
    (runs / name).mkdir(parents=True)
    (runs / name / "results.json").write_text(json.dumps(results))


def _size(fig) -> tuple[int, int]:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return Image.open(io.BytesIO(buf.getvalue())).size


def test_nothing_to_draw_is_none(tmp_path: Path) -> None:
    assert fig5_figure([]) is None and per_type_figure([]) is None and table3_figure([]) is None
    _run(tmp_path, "bga", 70.0)  # full BGA-MNER alone: Table 2 bars, but no ablation to compare
    results = load_results(tmp_path)
    assert per_type_figure(results) is not None
    assert table3_drops(results) == {} and table3_figure(results) is None and fig5_figure(results) is None


def test_table3_drops_ours_beside_the_papers(tmp_path: Path) -> None:
    _run(tmp_path, "full", 76.0)
    _run(tmp_path, "noscs", 75.0, experiment="wo_scs")
    _run(tmp_path, "bertcrf", 72.0, model="bert-crf")
    _run(tmp_path, "s-full", 50.0, dataset="synthetic", profile="smoke")
    _run(tmp_path, "s-bert", 52.0, dataset="synthetic", profile="smoke", model="bert-crf")
    drops = table3_drops(load_results(tmp_path))
    assert drops[("twitter2015", "full")] == [("w/o SCS", -1.0, pytest.approx(-0.43)),
                                              ("w/o SCS & w/o MCG (BERT-CRF)", -4.0, pytest.approx(-4.50))]
    assert drops[("synthetic", "smoke")] == [("w/o SCS & w/o MCG (BERT-CRF)", 2.0, None)]  # no paper
    fig = table3_figure(load_results(tmp_path))
    assert len(fig.axes) == 2 and _size(fig)[0] > 500


def test_per_type_bars_show_the_papers_numbers_on_its_data_sets(tmp_path: Path) -> None:
    _run(tmp_path, "a", 70.0, seed=1)
    _run(tmp_path, "b", 72.0, seed=2)
    _run(tmp_path, "c", 60.0, model="bert-crf")
    fig = per_type_figure(load_results(tmp_path))
    (ax,) = fig.axes
    labels = ax.get_legend_handles_labels()[1]
    assert labels == ["BERT-CRF (ours, 1 seed)", "BERT-CRF (paper)", "BGA-MNER (ours, 2 seeds)", "BGA-MNER (paper)"]
    heights = [round(p.get_height(), 2) for p in ax.patches]
    assert heights[5:10] == [84.74, 80.51, 60.27, 37.29, 71.81]  # the paper's BERT-CRF on Twitter-2015
    assert heights[10:15] == [71.0] * 5                          # ours: the mean of two seeds


def test_fig5_draws_and_writes_without_changing_the_backend(tmp_path: Path) -> None:
    backend = matplotlib.get_backend()
    for n in (50, 100):
        for seed in (1, 2):
            _run(tmp_path, f"bga-{n}-{seed}", 60.0 + n / 10 + seed, train_limit=n, seed=seed,
                 experiment="data_limited")
            _run(tmp_path, f"txt-{n}-{seed}", 55.0 + n / 10 + seed, model="bert-crf", train_limit=n, seed=seed,
                 experiment="data_limited")
    results = load_results(tmp_path)
    assert len(fig5_figure(results).axes) == 5  # 4 types + overall
    out = plot_fig5(results, tmp_path / "report" / "fig5.png")
    assert Image.open(out).format == "PNG"
    assert matplotlib.get_backend() == backend
