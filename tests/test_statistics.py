"""The report's statistics (report/statistics.py, bootstrap.py, significance.py) against cases computed by hand.

Micro F1 from summed per-tweet counts, the bootstrap CI over tweets (degenerate and paired cases),
approximate randomisation (exact permutation distributions enumerated here), ASO over seeds and
the verdicts; and the per-tweet counts a run writes (metrics.tweet_counts).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from bga_mner.data.conll import Tweet
from bga_mner.metrics import TWEET_COUNTS_FILE, span_scores, tweet_counts, tweet_counts_record
from bga_mner.report import significance as st
from bga_mner.report.bootstrap import bootstrap_ci
from bga_mner.report.significance import NO_DIFFERENCE, NO_TEST, Arm, aso, compare, randomisation_test, verdict
from bga_mner.report.statistics import COUNTS_FILE, Stat, TweetCounts, pool_seeds, read_counts

FAST_ASO = 200  # bootstrap iterations of deepsig in these tests (the report uses 1000)


def _overall(rows: list[tuple[int, int, int]], ids: list[str] | None = None) -> TweetCounts:
    """Counts with every entity of type PER: rows of (tp, n_pred, n_gold) per tweet."""
    pad = [0, 0, 0]
    return TweetCounts.from_lists([[tp, *pad] for tp, _, _ in rows], [[p, *pad] for _, p, _ in rows],
                                  [[g, *pad] for _, _, g in rows], ids)


def _f1(tp: int, n_pred: int, n_gold: int) -> float:
    """Micro F1 in percent, written out: 2 tp / (n_pred + n_gold)."""
    return 200.0 * tp / (n_pred + n_gold) if n_pred + n_gold else 0.0


# --- mean ± std and micro F1 -------------------------------------------------------------------

def test_stat_mean_sample_std_and_n() -> None:
    s = Stat([70.0, 72.0, 77.0])
    assert s.n == 3 and s.mean == pytest.approx(73.0)
    assert s.std == pytest.approx(((3 ** 2 + 1 ** 2 + 4 ** 2) / 2) ** 0.5)  # ddof=1: sqrt(26/2)
    assert str(s) == "73.00 ± 3.61"
    assert Stat([70.0]).std is None and str(Stat([70.0])) == "70.00" and str(Stat()) == "—"


def test_f1_sums_counts_over_tweets_not_a_mean_of_tweet_f1s() -> None:
    # tweet 1: 1 of 2 gold found (P 100, R 50); tweet 2: one false positive; tweet 3: perfect
    c = _overall([(1, 1, 2), (0, 1, 0), (2, 2, 2)])
    # sums: tp 3, predicted 4, gold 4 -> P = R = F1 = 75 (the mean of tweet F1s would be 55.56)
    assert c.score("overall", "precision") == pytest.approx(75.0)
    assert c.score("overall", "recall") == pytest.approx(75.0)
    assert c.score() == pytest.approx(75.0)


def test_per_type_and_overall_groups() -> None:
    c = TweetCounts.from_lists(tp=[[1, 0, 0, 0], [0, 1, 0, 0]], n_pred=[[1, 1, 0, 0], [0, 1, 0, 0]],
                               n_gold=[[2, 0, 0, 0], [0, 1, 0, 1]])
    assert c.score("PER") == pytest.approx(200 / 3)  # tp 1, predicted 1, gold 2: P 100, R 50, F1 66.67
    assert c.score("LOC") == pytest.approx(_f1(1, 2, 1))  # tp 1, predicted 2, gold 1
    assert c.score("MISC") == 0.0 and c.score("ORG") == 0.0  # 0/0 counts as 0
    assert c.score("MISC", "precision") == 0.0 and c.score("MISC", "recall") == 0.0  # nothing predicted
    assert c.score() == pytest.approx(_f1(2, 3, 4))


def test_tweet_counts_of_bio_tags_by_hand() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["O", "O"]]
    counts = tweet_counts(gold, pred)
    #                      PER LOC ORG MISC
    assert counts["tp"] == [[1, 0, 0, 0], [0, 0, 0, 0]]
    assert counts["n_pred"] == [[1, 0, 1, 0], [0, 0, 0, 0]]
    assert counts["n_gold"] == [[1, 1, 0, 0], [0, 0, 1, 0]]
    record = tweet_counts_record([Tweet("a", ["w"] * 4, gold[0]), Tweet("b", ["w"] * 2, gold[1])],
                                [Tweet("a", ["w"] * 4, pred[0]), Tweet("b", ["w"] * 2, pred[1])])
    c = TweetCounts.from_lists(record["tp"], record["n_pred"], record["n_gold"], record["ids"], record["types"])
    assert c.score() == pytest.approx(span_scores(gold, pred)["overall"]["f1"]) == pytest.approx(_f1(1, 2, 3))
    with pytest.raises(ValueError, match="not the gold test tweets"):
        tweet_counts_record([Tweet("x", ["w"], ["O"])], [Tweet("a", ["w"], ["O"])])


def test_counts_file_round_trip(tmp_path: Path) -> None:
    assert COUNTS_FILE == TWEET_COUNTS_FILE  # the report reads what fit/test write
    assert read_counts(tmp_path) is None  # a run without the file
    path = tmp_path / COUNTS_FILE
    path.parent.mkdir()
    path.write_text(json.dumps({"types": ["PER", "LOC", "ORG", "MISC"], "ids": ["7", "8"],
                                "tp": [[1, 0, 0, 0], [0, 0, 0, 0]], "n_pred": [[1, 0, 0, 0], [1, 0, 0, 0]],
                                "n_gold": [[1, 0, 0, 0], [0, 0, 0, 1]]}))
    c = read_counts(tmp_path)
    assert c is not None and c.ids == ("7", "8") and c.score() == pytest.approx(_f1(1, 2, 2))
    path.write_text('{"ids": ["7"]}')
    with pytest.raises(ValueError, match=str(path)):
        read_counts(tmp_path)


def test_pool_seeds_sums_each_tweets_counts() -> None:
    s1 = _overall([(1, 1, 1), (0, 1, 1)], ["a", "b"])
    s2 = _overall([(0, 2, 1), (1, 1, 1)], ["a", "b"])
    pooled = pool_seeds([s1, s2])
    assert pooled.group()[0].tolist() == [1, 1] and pooled.group()[1].tolist() == [3, 2]
    assert pooled.group()[2].tolist() == [2, 2]
    assert pooled.score() == pytest.approx(_f1(2, 5, 4))  # micro over every (seed, tweet)
    with pytest.raises(ValueError, match="same test tweets"):
        pool_seeds([s1, _overall([(1, 1, 1), (0, 1, 1)], ["a", "c"])])
    with pytest.raises(ValueError, match="same test tweets"):
        pool_seeds([s1, _overall([(1, 1, 1), (0, 1, 2)], ["a", "b"])])  # other gold


# --- bootstrap CI over tweets --------------------------------------------------------------------

def test_bootstrap_ci_of_identical_tweets_has_zero_width() -> None:
    c = _overall([(1, 2, 1)] * 30)  # every resample: P 50, R 100, F1 66.67
    low, high = bootstrap_ci(c)
    assert low == pytest.approx(200 / 3) and high == pytest.approx(200 / 3)
    assert bootstrap_ci(c, measure="precision") == pytest.approx((50.0, 50.0))


def test_bootstrap_resamples_whole_tweets_and_pools_counts() -> None:
    # a perfect tagger (tp = predicted = gold on every tweet) has F1 100 on every resample of whole
    # tweets, whatever their sizes; resampling tp, predicted and gold apart would not
    perfect = _overall([(n, n, n) for n in (0, 1, 3, 5, 2, 0, 7)])
    assert bootstrap_ci(perfect) == pytest.approx((100.0, 100.0))
    # 2 empty tweets and 18 with one correct entity: micro F1 is 100 unless a resample draws only
    # empty tweets (chance 0.1^20); a mean of tweet F1s (the empty ones scoring 0) would vary
    sparse = _overall([(0, 0, 0)] * 2 + [(1, 1, 1)] * 18)
    assert bootstrap_ci(sparse) == pytest.approx((100.0, 100.0))


def test_bootstrap_ci_brackets_the_estimate_and_is_reproducible() -> None:
    rng = np.random.default_rng(3)
    gold = rng.integers(0, 3, 400)
    tp = np.minimum(gold, rng.integers(0, 3, 400))
    c = _overall(list(zip(tp.tolist(), gold.tolist(), gold.tolist())))
    low, high = bootstrap_ci(c)
    assert low < c.score() < high and 2.0 < high - low < 20.0
    assert bootstrap_ci(c) == (low, high)  # seeded
    assert bootstrap_ci(c, seed=1) != (low, high)


# --- approximate randomisation over tweets -----------------------------------------------------

def _exact_p(a: list[tuple[int, int, int]], b: list[tuple[int, int, int]]) -> float:
    """Two-sided p of the exact paired permutation test, every swap pattern enumerated."""
    def diff(x, y):
        return _f1(*map(sum, zip(*x))) - _f1(*map(sum, zip(*y)))
    observed, extreme, total = diff(a, b), 0, 0
    for swaps in itertools.product((False, True), repeat=len(a)):
        x = [bi if s else ai for ai, bi, s in zip(a, b, swaps)]
        y = [ai if s else bi for ai, bi, s in zip(a, b, swaps)]
        extreme += abs(diff(x, y)) >= abs(observed) - 1e-9
        total += 1
    return extreme / total


def test_randomisation_exact_case_by_hand() -> None:
    # A finds the one entity of each of 3 tweets; B misses it in tweets 1 and 2. Observed difference
    # 100 - 33.33. Of the 8 swap patterns, swapping neither or both of tweets 1-2 keeps |diff| at
    # 66.67 (4 patterns, tweet 3 either way); swapping one of them gives 0. p = 4/8.
    a, b = [(1, 1, 1)] * 3, [(0, 1, 1), (0, 1, 1), (1, 1, 1)]
    assert randomisation_test([_overall(a)], [_overall(b)]) == pytest.approx(0.5)
    assert _exact_p(a, b) == pytest.approx(0.5)


def test_randomisation_matches_the_enumerated_distribution() -> None:
    # counts where micro and macro F1 disagree; 5 tweets x 2 seeds = 10 units: 1024 patterns, exact
    a1 = [(2, 2, 3), (0, 1, 0), (1, 1, 1), (3, 4, 3), (0, 0, 1)]
    b1 = [(1, 2, 3), (0, 0, 0), (0, 1, 1), (3, 3, 3), (1, 1, 1)]
    a2 = [(3, 3, 3), (0, 0, 0), (1, 2, 1), (2, 3, 3), (1, 1, 1)]
    b2 = [(1, 1, 3), (0, 2, 0), (0, 0, 1), (2, 2, 3), (0, 0, 1)]
    expected = _exact_p(a1 + a2, b1 + b2)
    got = randomisation_test([_overall(a1), _overall(a2)], [_overall(b1), _overall(b2)], resamples=1024)
    assert got == pytest.approx(expected)
    assert 0.0 < expected < 1.0


def test_randomisation_of_identical_systems_shows_nothing() -> None:
    c = _overall([(1, 1, 1), (0, 1, 1), (2, 3, 2)] * 20)
    assert randomisation_test([c], [c]) == pytest.approx(1.0)


def test_randomisation_of_systems_that_differ_on_one_tweet_shows_nothing() -> None:
    # the two swap patterns of the one tweet give +d and -d: p = 2/2
    a, b = [(1, 1, 1), (0, 1, 1), (2, 3, 2)], [(1, 1, 1), (1, 1, 1), (2, 3, 2)]
    assert _exact_p(a, b) == pytest.approx(1.0)
    assert randomisation_test([_overall(a)], [_overall(b)]) == pytest.approx(1.0)


def test_randomisation_of_a_dominating_system_is_significant() -> None:
    a = _overall([(1, 1, 1)] * 60)                       # every entity found
    b = _overall([(1, 1, 1)] * 40 + [(0, 1, 1)] * 20)    # a third of them missed
    p = randomisation_test([a], [b])
    assert p < 0.001  # of 9999 random swaps, none beats the observed 33-point gap
    assert randomisation_test([a], [b]) == p  # seeded
    with pytest.raises(ValueError, match="same test tweets"):
        randomisation_test([a], [_overall([(1, 1, 1)] * 59)])


# --- ASO over seeds, verdicts, comparisons -----------------------------------------------------

def test_aso_on_separated_and_identical_scores() -> None:
    better, worse = [80.0, 81.0, 82.0, 80.5, 81.5], [70.0, 71.0, 72.0, 70.5, 71.5]
    eps_ab, eps_ba = aso(better, worse, iterations=FAST_ASO)
    assert eps_ab < 0.05 and eps_ba > 0.95  # total stochastic order
    assert verdict("A", "B", eps_ab, eps_ba) == "A better"
    eps_ba2, eps_ab2 = aso(worse, better, iterations=FAST_ASO)
    assert verdict("B", "A", eps_ba2, eps_ab2) == "A better"
    same = aso(better, better, iterations=FAST_ASO)
    assert min(same) >= 0.5 and verdict("A", "B", *same) == NO_DIFFERENCE
    assert aso(better, worse, iterations=FAST_ASO) == (eps_ab, eps_ba)  # seeded


def test_verdict_thresholds() -> None:
    assert verdict("A", "B", None, None) == NO_TEST
    assert verdict("A", "B", 0.19, 0.9) == "A better"
    assert verdict("A", "B", 0.21, 0.8) == NO_DIFFERENCE  # below 0.5 but above deepsig's 0.2
    assert verdict("A", "B", 0.9, 0.1) == "B better"


def test_compare_one_seed_runs_no_test(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(st, "ASO_ITERATIONS", FAST_ASO)
    a = _overall([(1, 1, 1)] * 60)
    b = _overall([(1, 1, 1)] * 40 + [(0, 1, 1)] * 20)
    one = compare(Arm("A", {42: 100.0}, {42: a}), Arm("B", {42: b.score()}, {42: b}))
    assert one.verdict == NO_TEST and one.eps_ab is None and one.p_value is not None and one.p_value < 0.001
    assert one.delta == pytest.approx(100.0 - b.score()) and one.paired_seeds == (42,)


def test_compare_pairs_seeds_and_tests_across_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(st, "ASO_ITERATIONS", FAST_ASO)
    a = Arm("BGA", {1: 90.0, 2: 91.0, 3: 92.0}, {1: _overall([(1, 1, 1)] * 30), 2: _overall([(1, 1, 1)] * 30)})
    b = Arm("TEXT", {1: 60.0, 2: 62.0, 3: 61.0, 4: 63.0}, {2: _overall([(0, 1, 1)] * 30),
                                                           4: _overall([(0, 1, 1)] * 30)})
    c = compare(a, b)
    assert (c.n_a, c.n_b) == (3, 4) and c.delta == pytest.approx(91.0 - 61.5)
    assert c.paired_seeds == (2,)  # the only seed both have counts for
    assert c.eps_ab < 0.2 and c.verdict == "BGA better"
    assert c.p_value is not None and c.p_value < 0.001
    # a comparison whose seeds are not of the same tweets: no randomisation test, still ASO
    odd = Arm("TEXT", dict(b.f1), {2: _overall([(0, 1, 1)] * 29)})
    c2 = compare(a, odd)
    assert c2.p_value is None and c2.paired_seeds == () and c2.verdict == "BGA better"
