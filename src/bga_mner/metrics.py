"""Entity-level precision, recall and micro-F1 (the paper's metric, Sec. 4.1).

An entity counts as correct when its type and its exact word span match a gold entity. Spans
come from :func:`bga_mner.data.spans.bio_to_spans` (conlleval chunking, as UMT's evaluation code
and seqeval's default mode). Scores are percentages (0-100); a ratio with a zero denominator is 0.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torchmetrics import Metric

from bga_mner.data.conll import ENTITY_TYPES, Tweet
from bga_mner.data.spans import bio_to_spans, prf

Scores = dict[str, dict[str, float]]
_TYPE_INDEX = {t: i for i, t in enumerate(ENTITY_TYPES)}
# per-tweet counts of the test predictions, in a run folder (report/statistics.py reads it)
TWEET_COUNTS_FILE = "predictions/test_counts.json"


def _prf(tp: float, n_pred: float, n_gold: float) -> dict[str, float]:
    return {k: float(v) for k, v in prf(tp, n_pred, n_gold).items()}


def _count(counts: list[int], spans: set, where: str) -> None:
    for span in spans:
        if span.type not in _TYPE_INDEX:
            raise ValueError(f"{where}: entity type {span.type!r} not in {ENTITY_TYPES}")
        counts[_TYPE_INDEX[span.type]] += 1


def tweet_counts(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, list[list[int]]]:
    """Per tweet and entity type: true positives, predicted and gold entities (exact spans).

    The counts behind every score here: :class:`SpanF1` sums them over tweets, and the report's
    bootstrap and randomisation tests (``report/bootstrap.py``, ``report/significance.py``) resample them per tweet.

    Args:
        gold: gold tags, one list per tweet.
        pred: predicted tags, aligned with ``gold``, each as long as its gold list.

    Returns:
        ``{"tp": [...], "n_pred": [...], "n_gold": [...]}``: one list per tweet, one count per type
        of ``ENTITY_TYPES``.
    """
    if len(pred) != len(gold):
        raise ValueError(f"{len(pred)} predicted tweets but {len(gold)} gold tweets")
    out: dict[str, list[list[int]]] = {"tp": [], "n_pred": [], "n_gold": []}
    n_types = len(ENTITY_TYPES)
    for i, (p, g) in enumerate(zip(pred, gold)):
        if len(p) != len(g):
            raise ValueError(f"tweet {i}: {len(p)} predicted tags but {len(g)} gold tags")
        pred_spans, gold_spans = set(bio_to_spans(p)), set(bio_to_spans(g))
        tp, n_pred, n_gold = [0] * n_types, [0] * n_types, [0] * n_types
        _count(n_pred, pred_spans, f"tweet {i} (prediction)")
        _count(n_gold, gold_spans, f"tweet {i} (gold)")
        _count(tp, pred_spans & gold_spans, f"tweet {i}")
        out["tp"].append(tp)
        out["n_pred"].append(n_pred)
        out["n_gold"].append(n_gold)
    return out


def tweet_counts_record(gold: Sequence[Tweet], pred: Sequence[Tweet]) -> dict[str, Any]:
    """The run folder's ``predictions/test_counts.json`` (:data:`TWEET_COUNTS_FILE`): the image ids
    and :func:`tweet_counts` of the predicted test tweets, in test-file order.

    Args:
        gold: the test split's gold tweets; a prefix as long as ``pred`` is used (a test limited
            to its first batches predicts a prefix).
        pred: the predicted tweets, in test-file order.
    """
    gold = list(gold)[:len(pred)]
    ids = [t.image_id for t in pred]
    if len(gold) != len(pred) or [t.image_id for t in gold] != ids:
        raise ValueError("the predicted tweets are not the gold test tweets in file order")
    return {"types": list(ENTITY_TYPES), "ids": ids,
            **tweet_counts([t.tags for t in gold], [t.tags for t in pred])}


class SpanF1(Metric):
    """Exact-match entity P/R/F1, overall (micro) and per type, over word-level BIO tags.

    States are per-type counts (true positives, predicted, gold) summed across processes.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        n_types = len(ENTITY_TYPES)
        self.add_state("tp", default=torch.zeros(n_types, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("n_pred", default=torch.zeros(n_types, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("n_gold", default=torch.zeros(n_types, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Sequence[Sequence[str]], target: Sequence[Sequence[str]]) -> None:
        """Add tweets.

        Args:
            preds: predicted tags, one list per tweet.
            target: gold tags, one list per tweet, each as long as its prediction.
        """
        counts = tweet_counts(target, preds)
        for name in ("tp", "n_pred", "n_gold"):
            per_tweet = torch.tensor(counts[name], dtype=torch.long).reshape(-1, len(ENTITY_TYPES))
            getattr(self, name).add_(per_tweet.sum(0).to(self.tp.device))

    def compute(self) -> Scores:
        """``{"overall": {"precision", "recall", "f1"}, "PER": {...}, "LOC", "ORG", "MISC"}`` in %."""
        tp, n_pred, n_gold = (x.tolist() for x in (self.tp, self.n_pred, self.n_gold))
        scores = {"overall": _prf(sum(tp), sum(n_pred), sum(n_gold))}
        for i, etype in enumerate(ENTITY_TYPES):
            scores[etype] = _prf(tp[i], n_pred[i], n_gold[i])
        return scores


def span_scores(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> Scores:
    """Entity P/R/F1 of predicted against gold tag sequences (see :class:`SpanF1`).

    Args:
        gold: gold tags, one list per tweet.
        pred: predicted tags, aligned with ``gold``.
    """
    metric = SpanF1()
    metric.update(pred, gold)
    return metric.compute()
