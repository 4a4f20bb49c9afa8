"""make claims and the demo: the contrast statistics against hand-computed cases, the claims table's
verdicts on hand-made run folders, a run's evidence.json from a real smoke fit, and the demo end to end."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bga_mner import registry, registry_make
from bga_mner.registry import REFERENCE
from bga_mner.report.bootstrap import bootstrap_contrast, ci_verdict, ratio_terms
from bga_mner.report.claim_rules import (claim_fig3, claim_fig4, claim_fig5, claim_table2, claim_table3,
                                         claim_table4, fig5_settings, fig5_sizes, load_claims_runs)
from bga_mner.report.claims import build_claims, demo_summary
from bga_mner.report.statistics import CONTRADICTED, INCONCLUSIVE, SUPPORTED, TweetCounts

ROOT = Path(__file__).resolve().parents[1]
TYPES = ("PER", "LOC", "ORG", "MISC")


@pytest.fixture(autouse=True)
def quick_aso(monkeypatch):
    """ASO with 100 bootstrap iterations instead of 1,000: the hand-made differences are clear-cut,
    and each comparison takes seconds at the default."""
    from bga_mner.report import significance

    monkeypatch.setattr(significance, "ASO_ITERATIONS", 100)


# ----------------------------------------------------------------------------- statistics
def test_ratio_terms_give_micro_f1():
    c = TweetCounts.from_lists([[1, 0, 0, 0], [0, 2, 0, 0]], [[2, 0, 0, 0], [0, 2, 1, 0]],
                               [[1, 1, 0, 0], [0, 3, 0, 0]])
    num, den = ratio_terms(c)
    assert num.tolist() == [2, 4] and den.tolist() == [4, 6]
    # 3 true positives, 5 predicted, 5 gold: P = R = F1 = 60%
    assert 100 * num.sum() / den.sum() == pytest.approx(c.score()) == pytest.approx(60.0)


def test_bootstrap_contrast_value_by_hand():
    # A: 3 of 4 tweets right (ratio 3/4); B: 1 of 4 (1/4); A - B = 0.5
    a = (np.array([1, 1, 1, 0]), np.ones(4))
    b = (np.array([1, 0, 0, 0]), np.ones(4))
    value, low, high = bootstrap_contrast([a, b], [1, -1], scale=100)
    assert value == pytest.approx(50.0)
    assert low <= 50.0 <= high and low < high
    # the difference of two contrasts: four terms, the weights of a difference of gains
    value4, _, _ = bootstrap_contrast([a, b, b, b], [1, -1, -1, 1], scale=100)
    assert value4 == pytest.approx(50.0)


def test_bootstrap_contrast_of_identical_tweets_has_no_spread():
    # every tweet the same: every resample gives the same ratio, the interval is the point
    num, den = np.full(30, 1.0), np.full(30, 4.0)
    value, low, high = bootstrap_contrast([(num, den)], [1])
    assert value == low == high == pytest.approx(0.25)


def test_bootstrap_contrast_is_paired():
    # A beats B by exactly one hit on every tweet: the paired difference never varies, while the
    # tweets' own difficulty varies a lot
    rng = np.random.default_rng(0)
    den = rng.integers(2, 10, 50).astype(float)
    hits_b = np.floor(den / 2)
    value, low, high = bootstrap_contrast([(hits_b + 1, den), (hits_b, den)], [1, -1])
    assert low > 0 and value == pytest.approx(50 / den.sum())


def test_bootstrap_contrast_zero_denominators_and_errors():
    assert bootstrap_contrast([(np.zeros(3), np.zeros(3))], [1])[0] == 0.0
    with pytest.raises(ValueError, match="one weight per term"):
        bootstrap_contrast([(np.ones(2), np.ones(2))], [1, -1])
    with pytest.raises(ValueError, match="same tweets"):
        bootstrap_contrast([(np.ones(2), np.ones(3))], [1])


def test_ci_verdict():
    assert ci_verdict(0.1, 2.0) == SUPPORTED
    assert ci_verdict(-2.0, -0.1) == CONTRADICTED
    assert ci_verdict(-0.1, 2.0) == INCONCLUSIVE
    assert ci_verdict(1.0, 2.0, reference=1.5) == INCONCLUSIVE
    assert ci_verdict(1.6, 2.0, reference=1.5) == SUPPORTED
    assert ci_verdict(0.5, 1.4, reference=1.5) == CONTRADICTED


# ----------------------------------------------------------------------------- hand-made runs
N_TWEETS = 40


def _counts(correct: int, rng: np.random.Generator) -> dict:
    """Per-tweet counts of N_TWEETS tweets with one PER entity each, ``correct`` of them found."""
    hit = np.zeros(N_TWEETS, dtype=int)
    hit[rng.choice(N_TWEETS, correct, replace=False)] = 1
    tp = [[int(h), 0, 0, 0] for h in hit]
    return {"types": list(TYPES), "ids": [f"t{i}" for i in range(N_TWEETS)], "tp": tp,
            "n_pred": [[1, 0, 0, 0]] * N_TWEETS, "n_gold": [[1, 0, 0, 0]] * N_TWEETS}


def _write_run(root: Path, setting: str, seed: int, correct: int, evidence: dict | None = None,
               alpha: float = 0.001) -> None:
    run = root / f"{setting}-seed{seed}"
    (run / "predictions").mkdir(parents=True)
    counts = _counts(correct, np.random.default_rng(seed * 1000 + correct))
    f1 = 100 * correct / N_TWEETS  # P = R: one prediction and one gold entity per tweet
    scores = {"precision": f1, "recall": f1, "f1": f1}
    use_mcg = not setting.startswith(("bert_crf", "text_"))
    limit = int(setting.split("_n")[1]) if "_n" in setting else None
    (run / "results.json").write_text(json.dumps({
        "run": run.name, "experiment": "claims", "seed": seed, "dataset": "synthetic", "test_dataset": "synthetic",
        "profile": "full", "model": "bga-mner" if use_mcg else "bert-crf", "test": {"overall": scores},
        "config": {"model": {"use_mcg": use_mcg, "alpha": alpha},
                   "data": {"train_limit": limit, "synthetic": {"train": 400}}}}))
    (run / "predictions" / "test_counts.json").write_text(json.dumps(counts))
    ev = {"slices": {"image_told": counts, "unseen": counts}}
    (run / "evidence.json").write_text(json.dumps({**ev, **(evidence or {})}))


def _ablations() -> list[str]:
    """The claims settings of Table 3's ablations (the registry's rows but full BGA-MNER and BERT-CRF)."""
    return [exp.claims for exp, _ in registry.rows("3") if exp.claims and exp.name not in (REFERENCE, "bert_crf")]


def _claims_folder(root: Path, bga: int, text: int, seeds=(1, 2, 3, 4, 5)) -> Path:
    """Every setting of make claims (the registry's), BGA-MNER at ``bga`` of 40 entities found, BERT-CRF
    at ``text``, the ablations at ``text + 1``, and at 50 training tweets BGA 12 above, TEXT 12 below."""
    bga_n, text_n = fig5_settings()
    for i, s in enumerate(seeds):
        _write_run(root, "bga", s, bga + i % 2, evidence={
            "retrieval": {"ids": [f"t{k}" for k in range(20)], "n": 20, "hit_at_1": [1] * 10 + [0] * 10,
                          "hit_at_5": [1] * 20},
            "keep": {"ids": [f"t{k}" for k in range(20)], "entity": [[9, 10]] * 20,
                     "filler": [[5, 10]] * 20, "crops": [[3, 4]] * 20, "global": [[1, 4]] * 20}})
        _write_run(root, "bert_crf", s, text + i % 2)
        for key in _ablations():
            _write_run(root, key, s, text + 1 + i % 2)
        _write_run(root, registry.claims_setting("real_visual"), s, bga + i % 2)
        _write_run(root, f"{bga_n}50", s, text + 12 + i % 2)
        _write_run(root, f"{text_n}50", s, text - 12 + i % 2)
        _write_run(root, "bga_alpha1", s, bga - 2 + i % 2, alpha=1.0)
    return root


def test_the_claims_settings_are_the_registrys():
    """bga is full BGA-MNER, bert_crf BERT-CRF: the demo and the claims name them so; the make rules
    name every setting of the registry."""
    assert registry.claims_setting(REFERENCE) == "bga" and registry.claims_setting("bert_crf") == "bert_crf"
    assert _ablations()[:3] == ["wo_scs", "wo_cycle", "wo_scs_cycle"] and fig5_settings() == ("bga_n", "text_n")
    rules = registry_make.make_rules(registry.experiments())
    for exp in registry.experiments().values():
        for name in filter(None, [exp.claims, *(v.claims for v in exp.variants)]):
            assert f"claims_fit,{name}" in rules or f"claims_test,{name}," in rules, name


def test_claims_on_runs_where_bga_wins(tmp_path):
    runs = load_claims_runs(_claims_folder(tmp_path, bga=34, text=24))
    row, _ = claim_table2(runs)
    assert row[-1] == SUPPORTED
    assert row[1].startswith("Δ +25.00 ± 0.00")  # (34 - 24) / 40 tweets, every seed
    row, details = claim_table3(runs)
    assert row[-1] == SUPPORTED and [d[-1] for d in details] == [SUPPORTED] * len(_ablations())
    row, _ = claim_table4(runs)  # identical generated and real runs: no difference shown
    assert row[-1].startswith(INCONCLUSIVE) and "Δ +0.00" in row[1]
    row, _ = claim_fig3(runs)
    assert row[-1] == SUPPORTED and "recall@1 50.00 ± 0.00% vs chance 5.00%" in row[1]
    row, details = claim_fig4(runs)
    assert row[-1] == SUPPORTED
    assert "entity 90.0% vs filler 50.0%" in details[0][1] and "crops 75.0% vs global 25.0%" in details[1][1]
    assert fig5_sizes(runs) == [50]
    row, details = claim_fig5(runs, 400)
    # gain at 50: (36 - 12) / 40 = 60 points; at 400: 25 points -> +35 (every seed the same)
    assert "+35.00 ± 0.00" in row[1] and row[-1] == SUPPORTED and len(details) == 2
    text = build_claims(tmp_path)
    assert text.count("| supported |") >= 6 and "n = 400" in text
    # the alpha table: each setting's alpha from its runs' config (the default's too), ascending
    alpha_rows = [line.split(" | ")[0] for line in text.split("## The generation-loss weight α")[1].splitlines()
                  if line.startswith("| ") and not line.startswith("| α")]
    assert alpha_rows == ["| 0.001", "| 1"]


def test_claims_on_runs_where_bga_loses(tmp_path):
    runs = load_claims_runs(_claims_folder(tmp_path, bga=16, text=26))
    assert claim_table2(runs)[0][-1] == CONTRADICTED
    assert claim_table3(runs)[0][-1] == CONTRADICTED


def test_claims_with_one_seed_decide_nothing_by_aso(tmp_path):
    runs = load_claims_runs(_claims_folder(tmp_path, bga=34, text=24, seeds=(7,)))
    row, _ = claim_table2(runs)
    assert row[-1] == INCONCLUSIVE and "ε_min(BGA-MNER > BERT-CRF) = —" in row[4]
    assert "A single seed supports no comparison" in demo_summary(tmp_path)


def test_load_claims_runs_ignores_other_folders(tmp_path):
    _write_run(tmp_path, "bga", 1, 30)
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "results.json").write_text("{}")
    assert list(load_claims_runs(tmp_path)) == ["bga"]
    with pytest.raises(FileNotFoundError, match="make claims"):
        load_claims_runs(tmp_path / "absent")


# ----------------------------------------------------------------------------- real runs
SLICED = ("data.synthetic.test=48", "data.synthetic.unseen_names=3", "data.synthetic.unseen_rate=0.5",
          "data.synthetic.neutral_rate=0.6", "data.synthetic.image_told_cues=false", "logging.wandb=false")


def test_evidence_of_a_bga_and_a_bert_crf_run(tmp_path, smoke_fit, one_thread):
    from bga_mner.analysis import run_slice_f1
    from bga_mner.analysis.evidence import EVIDENCE_FILE, write_evidence

    own_cache = f"paths.cache_dir={tmp_path / 'cache'}"  # not the session's: other tests expect one set there
    smoke_fit(tmp_path, "run.name=bga-seed1", *SLICED, own_cache)
    smoke_fit(tmp_path, "run.name=bert_crf-seed1", "model.use_mcg=false", *SLICED, own_cache)
    for name in ("bga-seed1", "bert_crf-seed1"):
        assert write_evidence(tmp_path / name) == tmp_path / name / EVIDENCE_FILE
    runs = load_claims_runs(tmp_path)
    bga, text = runs["bga"][1], runs["bert_crf"][1]
    for run, name in ((bga, "bga-seed1"), (text, "bert_crf-seed1")):
        for slice_name in ("image_told", "unseen"):  # the slice counts score as the slice F1 does
            expect = run_slice_f1(tmp_path / name, slice_name)
            assert run.counts(slice_name).score() == pytest.approx(expect[slice_name]["overall"]["f1"])
            assert int(run.counts(slice_name).n_gold.sum()) == expect[f"{slice_name}_entities"] > 0
    assert "retrieval" not in text.evidence and "keep" not in text.evidence
    retrieval, keep = bga.evidence["retrieval"], bga.evidence["keep"]
    with_image = list(retrieval["ids"])
    assert retrieval["n"] == len(with_image) == len(retrieval["hit_at_1"]) and keep["ids"] == with_image
    assert all(h1 <= h5 for h1, h5 in zip(retrieval["hit_at_1"], retrieval["hit_at_5"], strict=True))
    for part in ("entity", "filler", "crops", "global"):
        assert len(keep[part]) == len(with_image)
        assert all(0 <= kept <= units for kept, units in keep[part])
    # the global image has 7 x 7 patches in each of the N = 1 BGA layers of the smoke model
    assert {units for _, units in keep["global"]} == {49}
    assert bga.evidence["dev_curve"]["val/f1"]
    # tools/alpha_gradients.py on the same run: the CRF head learns from Eq. 10 only, the visual
    # branch and the v2t generator from the generation terms only
    spec = importlib.util.spec_from_file_location("alpha_gradients", ROOT / "tools" / "alpha_gradients.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in
            tool.gradient_table(tmp_path / "bga-seed1", batches=1).splitlines() if line.startswith("| ")}
    assert rows["CRF head"][2] == "0" and float(rows["CRF head"][1]) > 0
    for comp in ("visual encoder", "visual samplers", "v2t generator"):
        assert rows[comp][3] == "only L_gen", rows[comp]
    assert float(rows["text encoder"][3]) > 0


def test_demo_end_to_end(tmp_path):
    """python -m bga_mner.demo with two seeds of smoke-sized runs: it trains, writes the evidence,
    reuses finished runs and prints the summary."""
    from tests.conftest import SMOKE_FIT

    cmd = [sys.executable, "-m", "bga_mner.demo", "--runs", str(tmp_path / "demo"), "--seeds", "1", "2",
           "--jobs", "2", *SMOKE_FIT, f"paths.cache_dir={tmp_path / 'cache'}", *SLICED]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    for name in ("bga-seed1", "bga-seed2", "bert_crf-seed1", "bert_crf-seed2"):
        assert (tmp_path / "demo" / name / "evidence.json").is_file()
    summary = out.stdout[out.stdout.index("## Demo"):]
    for what in ("test F1, all entities", "F1 on image-told names", "F1 on unseen names", "Fig. 3", "Fig. 4",
                 "entity − filler", "crop − global", "ASO ε_min(BGA-MNER > BERT-CRF)"):
        assert what in summary, what
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and again.stdout.count("reused") == 4
    assert again.stdout[again.stdout.index("## Demo"):] == summary


@pytest.mark.slow
def test_make_claims_end_to_end(tmp_path):
    """make claims with two seeds and a minute's budget per run: every setting, then claims.md."""
    if shutil.which("make") is None:
        pytest.skip("make not installed")
    out = subprocess.run(["make", "claims", f"RUNS={tmp_path}", "CLAIMS_SEEDS=1 2", "CLAIMS_SIZES=50",
                          "CLAIMS_ALPHAS=1", "CLAIMS_OVERRIDES=trainer.max_epochs=1 trainer.limit_train_batches=2 "
                          "data.synthetic.test=40 data.synthetic.valid=20"],
                         cwd=ROOT, capture_output=True, text=True, timeout=3600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = (tmp_path / "claims" / "claims.md").read_text()
    for claim in ("Table 2", "Table 3", "Table 4", "Fig. 3", "Fig. 4", "Fig. 5", "real-context control", "α"):
        assert claim in text, claim
