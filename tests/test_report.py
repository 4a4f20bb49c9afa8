"""`bga-mner report` on hand-made results.json files (and per-tweet counts), and the paper's numbers
checked by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bga_mner import cli, report
from bga_mner.report import (SINGLE_SEED_NOTE, load_results, paper_results, render_fig5_table,
                             render_table2, render_table3, render_table4, render_table7)
from bga_mner.report import significance as report_significance

TYPES = ("PER", "LOC", "ORG", "MISC")


@pytest.fixture(autouse=True)
def fast_aso(monkeypatch: pytest.MonkeyPatch) -> None:
    """deepsig's bootstrap at 100 iterations (the report's 1000 take seconds per comparison)."""
    monkeypatch.setattr(report_significance, "ASO_ITERATIONS", 100)


def _write_counts(run_dir: Path, correct: int, tweets: int = 20) -> float:
    """predictions/test_counts.json of ``tweets`` test tweets with one PER entity each, of which the
    first ``correct`` are found and the others tagged with the wrong type (one false positive
    LOC each); returns the run's F1 (= P = R = correct / tweets)."""
    path = run_dir / "predictions" / "test_counts.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    found = [i < correct for i in range(tweets)]
    path.write_text(json.dumps({"types": list(TYPES), "ids": [str(i) for i in range(tweets)],
                                "tp": [[int(f), 0, 0, 0] for f in found],
                                "n_pred": [[int(f), int(not f), 0, 0] for f in found],
                                "n_gold": [[1, 0, 0, 0] for _ in found]}))
    return 100.0 * correct / tweets


def _write_run(runs: Path, name: str, f1: float | None = None, *, experiment: str | None = None,
               dataset: str = "twitter2015", model: str = "bga-mner", seed: int = 42, profile: str = "full",
               test_dataset: str | None = None, correct: int | None = None, train_limit: int | None = None) -> Path:
    """A results.json as docs/ARCHITECTURE.md has it; every metric of the run equals ``f1``. With
    ``correct``, the run also has per-tweet counts (:func:`_write_counts`) and f1 follows from them.
    ``experiment`` (``run.experiment``, the registry's key) defaults to the model's: bga_mner or
    bert_crf."""
    if correct is not None:
        f1 = _write_counts(runs / name, correct)
    assert f1 is not None
    scores = {"precision": f1, "recall": f1, "f1": f1}
    results = {"run": name, "experiment": experiment or model.replace("-", "_"), "dataset": dataset,
               "test_dataset": test_dataset or dataset, "model": model, "seed": seed, "profile": profile,
               "best_epoch": 1, "dev": {"overall": scores}, "test": {"overall": scores, **{t: scores for t in TYPES}},
               "seconds_per_epoch": 1.0, "config": {"data": {"name": dataset, "train_limit": train_limit}}}
    path = runs / name / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results))
    return path


def test_paper_numbers_by_hand() -> None:
    p = paper_results()
    assert p["table2"]["BGA-MNER"]["twitter2015"] == {"PER": 86.80, "LOC": 83.62, "ORG": 63.60, "MISC": 42.65,
                                                      "precision": 78.60, "recall": 74.16, "f1": 76.31}
    assert p["table2"]["BERT-CRF"]["twitter2017"]["f1"] == 83.44
    assert p["table2"]["BERT-CRF"]["twitter2015"]["ORG"] == 60.27
    assert p["table2"]["BGA-MNER"]["twitter2017"]["MISC"] == 71.05
    assert p["table3"]["wo_cycle"] == {"twitter2015": 75.70, "twitter2017": 87.32}
    assert p["table4"]["real"] == {"twitter2015": 75.08, "twitter2017": 86.48}
    assert p["table5"]["rows"][-1]["params_m"] == 130.3 and p["table5"]["components_m"]["t2v_generator"] == 7.9
    assert p["table6"]["twitter2017->twitter2015"]["BGA-MNER"] == {"precision": 72.17, "recall": 67.98, "f1": 68.71}
    assert p["table7"]["ITA"]["twitter2017"]["f1"] == 85.49
    assert p["table1"]["twitter2017"]["test"]["tweets"] == 723 and p["table1"]["twitter2015"]["train"]["LOC"] == 2091


def test_paper_numbers_agree_with_the_text() -> None:
    p = paper_results()
    t3 = p["table3"]
    # drops printed in Table 3 and Sec. 4.5: 0.43/0.18, 0.61/0.39, 1.41/0.75, 4.50/4.27
    drops = {k: [round(t3["full"][d] - t3[k][d], 2) for d in ("twitter2015", "twitter2017")] for k in t3}
    assert drops == {"full": [0, 0], "wo_scs": [0.43, 0.18], "wo_cycle": [0.61, 0.39],
                     "wo_scs_cycle": [1.41, 0.75], "wo_scs_mcg": [4.50, 4.27]}
    assert t3["wo_scs_mcg"] == {d: p["table2"]["BERT-CRF"][d]["f1"] for d in ("twitter2015", "twitter2017")}
    t6 = p["table6"]
    assert round(t6["twitter2017->twitter2015"]["BGA-MNER"]["f1"] - t6["twitter2017->twitter2015"]["UMT"]["f1"], 2) == 4.58
    assert round(t6["twitter2015->twitter2017"]["BGA-MNER"]["f1"] - t6["twitter2015->twitter2017"]["CAT-MNER"]["f1"], 2) == 0.33
    assert round(p["table7"]["BGA-MNER"]["twitter2017"]["f1"] - p["table7"]["ITA"]["twitter2017"]["f1"], 2) == 2.22
    known = {("R-GCN", "twitter2015")}  # printed F1 differs from its own P/R (see the YAML header)
    for method, by_ds in p["table2"].items():
        for ds, v in by_ds.items():
            f1 = 2 * v["precision"] * v["recall"] / (v["precision"] + v["recall"])
            assert (method, ds) in known or abs(f1 - v["f1"]) < 0.02, (method, ds, f1)
    for ds, splits in p["table1"].items():
        for split, c in splits.items():
            assert sum(c[t] for t in TYPES) == c["total"], (ds, split)


def test_two_seeds_mean_and_std(tmp_path: Path) -> None:
    _write_run(tmp_path, "t2-a", 70.0, seed=1)
    _write_run(tmp_path, "t2-b", 72.0, seed=2)
    _write_run(tmp_path, "t2-c", 60.0, model="bert-crf")
    results = load_results(tmp_path)
    assert len(results) == 3
    text = render_table2(results)
    assert "BGA-MNER (ours, 2 seeds) | 71.00 ± 1.41" in text  # sample std of 70, 72
    assert "BGA-MNER (paper) | 86.80 | 83.62 | 63.60 | 42.65 | 78.60 | 74.16 | 76.31" in text
    assert "| 71.00 ± 1.41 | 71.00 ± 1.41 |" in text
    assert "Δ ours − paper | -15.80" in text  # 71.00 - 86.80 (PER)
    assert "BERT-CRF (ours, 1 seed) | 60.00 |" in text


def test_table3_reuses_bert_crf_and_reports_drops(tmp_path: Path) -> None:
    _write_run(tmp_path, "full", 76.0)
    _write_run(tmp_path, "noscs", 75.0, experiment="wo_scs")
    _write_run(tmp_path, "bertcrf", 72.0, model="bert-crf")
    text = render_table3(load_results(tmp_path))
    assert "| w/o SCS | 1 seed | 75.00 | — | -1.00 | 75.88 | -0.43 | -0.88 |" in text  # no counts: no CI
    assert "| w/o SCS & w/o MCG (BERT-CRF) | 1 seed | 72.00 | — | -4.00 | 71.81 | -4.50 | +0.19 |" in text
    assert "w/o cycle" not in text  # no run, no row
    assert "| BGA-MNER vs w/o SCS | 1, 1 | +1.00 | — | — | — | n<2: no test |" in text
    assert SINGLE_SEED_NOTE in text


def test_smoke_runs_are_labelled_and_not_compared(tmp_path: Path) -> None:
    _write_run(tmp_path, "s1", 40.0, dataset="synthetic", profile="smoke")
    _write_run(tmp_path, "s2", 30.0, dataset="synthetic", profile="smoke", experiment="modality_missing")
    results = load_results(tmp_path)
    text = render_table2(results)
    assert report.SMOKE_NOTE in text and "(paper)" not in text
    t7 = render_table7(results)
    assert "| all test images empty | 1 seed | 30.00 | — | — |" in t7 and "synthetic:" not in t7
    assert "| change (empty − present) |  | -10.00 |" in t7
    assert "| images present vs images empty | 1, 1 | +10.00 | — | — | — | n<2: no test |" in t7
    assert SINGLE_SEED_NOTE in t7  # the smoke profile's single seed: said in what it prints


def test_duplicate_setting_and_seed_keeps_one(tmp_path: Path) -> None:
    _write_run(tmp_path, "a", 70.0)
    _write_run(tmp_path, "b", 71.0)
    assert len(load_results(tmp_path)) == 1


def test_bad_results_file_names_it(tmp_path: Path) -> None:
    bad = tmp_path / "broken" / "results.json"
    bad.parent.mkdir()
    bad.write_text('{"seed": 1}')
    with pytest.raises(ValueError, match=str(bad)):
        load_results(tmp_path)


def test_cli_writes_every_table_and_the_fig5_png(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    runs = tmp_path / "runs"
    for n, (bga, text) in {50: (40.0, 30.0), 100: (50.0, 45.0), 200: (60.0, 58.0)}.items():
        for seed in (1, 2):
            _write_run(runs, f"fig5-bga-{n}-{seed}", bga + seed, train_limit=n, seed=seed, experiment="data_limited")
            _write_run(runs, f"fig5-text-{n}-{seed}", text + seed, model="bert-crf", train_limit=n, seed=seed,
                       experiment="data_limited")
    _write_run(runs, "x-cross", 65.0, dataset="twitter2017", test_dataset="twitter2015", experiment="cross_domain")
    _write_run(runs, "x-real", 74.0, experiment="real_visual")
    (runs / "table5").mkdir()
    (runs / "table5" / "params.json").write_text(json.dumps({  # `bga-mner params --json`
        "text_encoder": "bert-base-uncased", "visual_encoder": "vit_base_patch32_clip_224.openai",
        "train": {"text encoder": 109_482_240, "text samplers": 11_500_000, "total": 220_000_000},
        "inference": {"text encoder": 109_482_240, "text samplers": 11_500_000, "total": 110_000_000}}))
    out = tmp_path / "report"
    assert cli.main(["report", str(runs), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "twitter2017 → twitter2015" in printed and "| BGA-MNER (paper) | 72.17 | 67.98 | 68.71 |" in printed
    assert "| real textual + real visual | 1 seed | 74.00 | — | 75.08 | -1.08 |" in printed
    assert "| 50 | BGA | 2 seeds | 41.50 ± 0.71 |" in printed
    # BGA 41, 42 against TEXT 31, 32 at n=50: separated seeds, ASO eps_min 0 (no counts: no AR test)
    assert "| BGA (n=50) vs TEXT (n=50) | 2, 2 | +10.00 | 0.00 | 1.00 | — | BGA (n=50) better |" in printed
    assert "| BGA-MNER (ours) | vit_base_patch32_clip_224.openai | 220.0M | 110.0M |" in printed
    assert "| BGA-MNER (paper) | ViT-B/32 | — | 130.3M |" in printed  # an inference-time count
    assert "| UMT (paper) | ResNet152 | 206.3M | 206.3M |" in printed  # reads images at inference
    assert "| text samplers | 11.50M | 11.50M | 11.5M |" in printed
    png = out / "fig5.png"
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    for name in ("table2.md", "table3.md", "table4.md", "table5.md", "table6.md", "table7.md", "fig5.md", "report.md"):
        assert (out / name).is_file(), name
    assert "_No runs for this table: `make table7`" in (out / "table7.md").read_text()
    assert cli.main(["report", str(tmp_path / "nowhere")]) == 1


def test_table2_ci_rows_and_significance_from_counts(tmp_path: Path) -> None:
    """Two seeds each, 20 test tweets: BGA-MNER finds 18 and 19 entities, BERT-CRF 10 and 11."""
    for seed, (bga, crf) in zip((42, 43), ((18, 10), (19, 11))):
        _write_run(tmp_path, f"bga-{seed}", correct=bga, seed=seed)
        _write_run(tmp_path, f"crf-{seed}", correct=crf, seed=seed, model="bert-crf")
    text = render_table2(load_results(tmp_path))
    assert "| BGA-MNER (ours, 2 seeds) | 92.50 ± 3.54 |" in text  # 90, 95
    # pooled: each tweet's counts summed over both seeds; the CI over the 20 tweets is non-trivial,
    # and the types without entities have F1 0 on every resample
    row = next(line for line in text.splitlines() if line.startswith("| BGA-MNER 95% CI (tweets, 2 seeds pooled)"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2:5] == ["[0.00, 0.00]"] * 3  # LOC (false positives only), ORG, MISC
    low, high = (float(x) for x in cells[7].strip("[]").split(","))
    assert 80.0 <= low < 92.5 < high <= 100.0
    sig = next(line for line in text.splitlines() if line.startswith("| BGA-MNER vs BERT-CRF"))
    cells = [c.strip() for c in sig.strip("|").split("|")]
    assert cells[1:5] == ["2, 2", "+40.00", "0.00", "1.00"]
    p = float(cells[5].split()[0])
    assert p < 0.001 and cells[5].endswith("(2 seeds)")  # 16 of 40 (seed, tweet) units differ
    assert cells[6] == "BGA-MNER better"
    assert SINGLE_SEED_NOTE not in text


def test_table4_pairs_generated_and_real_of_the_same_seeds(tmp_path: Path) -> None:
    for seed in (1, 2, 3):
        _write_run(tmp_path, f"gen-{seed}", correct=15, seed=seed)
        _write_run(tmp_path, f"real-{seed}", correct=15, seed=seed, experiment="real_visual")
    text = render_table4(load_results(tmp_path))
    # identical predictions: no difference on any swap (p = 1); ASO of two equal constant score
    # lists has violation ratio 1/2 either way
    assert ("| generated visual vs real visual | 3, 3 | +0.00 | 0.50 | 0.50 | 1.0000 (3 seeds) "
            "| no difference shown |") in text


def test_fig5_table_has_a_ci_column(tmp_path: Path) -> None:
    _write_run(tmp_path, "bga-50", correct=20, train_limit=50, experiment="data_limited")
    _write_run(tmp_path, "text-50", correct=10, train_limit=50, model="bert-crf", experiment="data_limited")
    text = render_fig5_table(load_results(tmp_path))
    assert "| 50 | BGA | 1 seed | 100.00 | 100.00 | 100.00 | 100.00 | 100.00 | [100.00, 100.00] |" in text
    assert "| BGA (n=50) vs TEXT (n=50) | 1, 1 | +50.00 | — | — |" in text and "n<2: no test" in text


def test_fig5_takes_the_data_limited_experiment_only(tmp_path: Path) -> None:
    """Fig. 5 is the runs of the experiment with a Fig. 5 row (data_limited), by the model and size
    they record: not the filled runs of make claims (another budget), not a limited run of another
    experiment."""
    from bga_mner.report.results import fig5_series

    _write_run(tmp_path, "bga-50", 60.0, train_limit=50, experiment="data_limited")
    _write_run(tmp_path, "text-50", 50.0, train_limit=50, model="bert-crf", experiment="data_limited")
    _write_run(tmp_path, "bga_n50-seed43", 70.0, train_limit=50, seed=43, experiment="claims")
    _write_run(tmp_path, "bga-50-by-hand", 40.0, train_limit=50, seed=44)  # bga_mner with data.train_limit
    results = load_results(tmp_path)
    (series,) = fig5_series(results).values()
    assert {m: [r.seed for r in by_n[50]] for m, by_n in series.items()} == {"bga-mner": [42], "bert-crf": [42]}
    assert "40.00" not in render_table2(results)  # nor in Table 2: not the full training set


def test_counts_that_disagree_with_results_are_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run = _write_run(tmp_path, "bga", 70.0)
    _write_counts(run.parent, 18)  # F1 90, not the 70 of results.json
    (result,) = load_results(tmp_path)
    assert result.counts is None and "counts ignored" in caplog.text


def test_a_run_is_placed_by_its_experiment(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The registry says where an experiment's runs go: the real-context control (experiments/
    real_context), make claims' and make demo's runs, and a run without an experiment are in no
    table (logged), whatever their switches; an ablation's run is in Table 3 only."""
    from bga_mner.report import setting_of

    _write_run(tmp_path, "bga", 70.0)
    _write_run(tmp_path, "control", 99.0, experiment="real_context")  # same seed, another experiment
    _write_run(tmp_path, "claims", 98.0, experiment="claims")
    _write_run(tmp_path, "loose", 97.0, experiment=None)
    (tmp_path / "loose" / "results.json").write_text(
        (tmp_path / "loose" / "results.json").read_text().replace('"bga_mner"', "null"))
    _write_run(tmp_path, "crf", 60.0, model="bert-crf")
    _write_run(tmp_path, "noscs", 65.0, experiment="wo_scs")
    for model, f1 in (("bga-mner", 55.0), ("bert-crf", 45.0)):  # make demo's: full BGA-MNER's and BERT-CRF's
        _write_run(tmp_path, f"demo-{model}", f1, model=model, experiment="demo", dataset="synthetic")
    caplog.set_level("INFO")
    results = load_results(tmp_path)
    assert sorted(r.experiment for r in results) == ["bert_crf", "bga_mner", "demo", "demo", "wo_scs"]
    assert "| BGA-MNER (ours, 1 seed) | 55.00 |" in render_table2(results).split("synthetic")[1]
    assert "| BERT-CRF (ours, 1 seed) | 45.00 |" in render_table2(results).split("synthetic")[1]
    assert "1 run of None, 1 run of claims, 1 run of real_context" in caplog.text
    for render in (render_table2, render_table3, render_table4, render_table7):
        assert not {"99.00", "98.00", "97.00"} & set(render(results).split()), render.__name__
    assert "| BGA-MNER (ours, 1 seed) | 70.00 |" in render_table2(results)
    assert "65.00" not in render_table2(results) and "| w/o SCS | 1 seed | 65.00 |" in render_table3(results)
    data = json.loads((tmp_path / "control" / "results.json").read_text())
    assert setting_of(data).tables == () and setting_of({**data, "experiment": "bga_mner"}).tables == \
        ("2", "3", "4", "5", "7")


def test_the_setting_is_what_results_json_records() -> None:
    """A results.json of the first release (no field added since) has every field of a setting; a
    missing one is an error naming it, not a default."""
    from bga_mner.report import setting_of

    data = {"experiment": "data_limited", "model": "bert-crf", "dataset": "twitter2017",
            "test_dataset": "twitter2017", "profile": "smoke", "config": {"data": {"train_limit": 50}}}
    s = setting_of(data)
    assert (s.experiment, s.model, s.dataset, s.profile, s.train_limit, s.tables) == \
        ("data_limited", "bert-crf", "twitter2017", "smoke", 50, ("fig5",))
    with pytest.raises(KeyError, match="test_dataset"):
        setting_of({k: v for k, v in data.items() if k != "test_dataset"})
