"""`SpanF1` / `span_scores`: equal to seqeval (default mode), summable across processes."""

from __future__ import annotations

import os
import random
import warnings
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

from bga_mner.data.conll import ENTITY_TYPES, LABELS, read_conll
from bga_mner.metrics import SpanF1, span_scores

DATA = Path(os.environ.get("BGA_MNER_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def _seqeval(gold: list[list[str]], pred: list[list[str]]) -> dict[str, dict[str, float]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # seqeval warns on 0/0 and scores it 0, as we do
        report = classification_report(gold, pred, output_dict=True, zero_division=0)
        out = {"overall": {"precision": precision_score(gold, pred), "recall": recall_score(gold, pred),
                           "f1": f1_score(gold, pred)}}
    for etype in ENTITY_TYPES:
        r = report.get(etype, {"precision": 0.0, "recall": 0.0, "f1-score": 0.0})
        out[etype] = {"precision": r["precision"], "recall": r["recall"], "f1": r["f1-score"]}
    return {k: {m: 100.0 * v for m, v in d.items()} for k, d in out.items()}


def _assert_close(ours: dict, ref: dict) -> None:
    assert ours.keys() == ref.keys() == {"overall", *ENTITY_TYPES}
    for key in ours:
        for m in ("precision", "recall", "f1"):
            assert isinstance(ours[key][m], float)
            assert ours[key][m] == pytest.approx(ref[key][m], abs=1e-9), (key, m)


@st.composite
def gold_and_pred(draw) -> tuple[list[list[str]], list[list[str]]]:
    """Random tweets (ill-formed I-X after O and type switches included) and noisy predictions."""
    gold, pred = [], []
    for _ in range(draw(st.integers(1, 8))):
        tags = draw(st.lists(st.sampled_from(LABELS), min_size=1, max_size=12))
        noisy = [draw(st.sampled_from(LABELS)) if draw(st.booleans()) and draw(st.booleans()) else t
                 for t in tags]
        gold.append(tags)
        pred.append(noisy)
    return gold, pred


@settings(max_examples=200, deadline=None)
@given(gold_and_pred())
def test_equals_seqeval_on_random_tags(data) -> None:
    gold, pred = data
    _assert_close(span_scores(gold, pred), _seqeval(gold, pred))


def test_hand_example() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "I-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["O", "B-ORG", "O"]]  # B-ORG == the I-ORG chunk
    s = span_scores(gold, pred)
    assert s["overall"] == pytest.approx({"precision": 200 / 3, "recall": 200 / 3, "f1": 200 / 3})
    assert s["PER"] == {"precision": 100.0, "recall": 100.0, "f1": 100.0}
    assert s["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert s["ORG"] == {"precision": 50.0, "recall": 100.0, "f1": pytest.approx(200 / 3)}
    assert s["MISC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0}  # no gold, no predictions


def test_length_mismatch_names_the_tweet_and_keeps_state() -> None:
    metric = SpanF1()
    metric.update([["B-PER"]], [["B-PER"]])
    with pytest.raises(ValueError, match="tweet 1: 1 predicted tags but 2 gold tags"):
        metric.update([["O"], ["B-LOC"]], [["O"], ["B-LOC", "O"]])
    with pytest.raises(ValueError, match="1 predicted tweets but 2 gold tweets"):
        metric.update([["O"]], [["O"], ["O"]])
    with pytest.raises(ValueError, match="entity type 'OTHER'"):
        metric.update([["B-OTHER"]], [["O"]])
    assert metric.n_gold.sum().item() == 1 and metric.compute()["overall"]["f1"] == 100.0


def test_states_sum_across_processes() -> None:
    rng = random.Random(0)
    gold = [[rng.choice(LABELS) for _ in range(rng.randint(1, 10))] for _ in range(40)]
    pred = [[t if rng.random() < 0.7 else rng.choice(LABELS) for t in g] for g in gold]
    whole = SpanF1()
    whole.update(pred, gold)
    rank0, rank1 = SpanF1(), SpanF1()  # what two DDP processes would hold
    rank0.update(pred[:25], gold[:25])
    rank1.update(pred[25:], gold[25:])
    for name in ("tp", "n_pred", "n_gold"):
        assert whole._reductions[name].__name__ == "dim_zero_sum"
        assert (getattr(rank0, name) + getattr(rank1, name)).tolist() == getattr(whole, name).tolist()
    rank0.merge_state(rank1)
    assert rank0.compute() == whole.compute()
    whole.reset()
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert whole.compute()["overall"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


@pytest.mark.parametrize("name", ["twitter2015", "twitter2017"])
def test_equals_seqeval_on_real_files(name: str) -> None:
    path = DATA / name / "test.txt"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    gold = [t.tags for t in read_conll(path)]
    rng = random.Random(1)
    pred = [[rng.choice(LABELS) if rng.random() < 0.1 else t for t in tags] for tags in gold]
    _assert_close(span_scores(gold, pred), _seqeval(gold, pred))
    assert span_scores(gold, gold)["overall"]["f1"] == 100.0


def test_updates_accumulate() -> None:
    gold = [["B-PER", "O"], ["B-LOC", "I-LOC"], ["B-ORG", "B-MISC"]]
    pred = [["B-PER", "O"], ["B-LOC", "O"], ["B-ORG", "O"]]
    once, batched = SpanF1(), SpanF1()
    once.update(pred, gold)
    for i in range(3):  # one tweet per update, as validation steps do
        batched.update(pred[i:i + 1], gold[i:i + 1])
    for name in ("tp", "n_pred", "n_gold"):
        assert getattr(batched, name).tolist() == getattr(once, name).tolist()
    assert batched.compute() == once.compute() and once.compute()["overall"]["recall"] == 50.0


def test_an_unknown_type_names_the_tweet_and_the_side() -> None:
    with pytest.raises(ValueError, match=r"tweet 1 \(prediction\): entity type 'OTHER'"):
        SpanF1().update([["O"], ["B-OTHER"]], [["O"], ["O"]])
    with pytest.raises(ValueError, match=r"tweet 0 \(gold\): entity type 'OTHER'"):
        SpanF1().update([["O"]], [["B-OTHER"]])


def test_counts_are_exact_integers() -> None:
    metric = SpanF1()
    metric.tp[0] = metric.n_pred[0] = metric.n_gold[0] = 2 ** 24  # as after 16.8M entities
    metric.update([["B-PER", "B-PER"]], [["B-PER", "O"]])
    # float32 counts would stop at 2 ** 24 (its last exact integer)
    assert metric.tp[0].item() == 2 ** 24 + 1 and metric.n_pred[0].item() == 2 ** 24 + 2
    assert metric.n_gold[0].item() == 2 ** 24 + 1
