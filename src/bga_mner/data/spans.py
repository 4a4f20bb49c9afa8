"""BIO tags to entity spans: the one chunking function of the suite (metric, predict, stats).

Chunking follows conlleval (and seqeval's default mode): an ``I-X`` opens a new entity when it
follows ``O``, the start of the sequence, or a tag of another type; so ``O I-PER I-PER`` is one
PER entity and ``B-PER I-LOC`` is two entities. A ``B-X`` always opens a new entity.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np


class Span(NamedTuple):
    """An entity: its type and the half-open word range ``[start, end)``."""

    type: str
    start: int
    end: int


def bio_to_spans(tags: Sequence[str]) -> list[Span]:
    """Entity spans of a BIO tag sequence, by conlleval's chunking rule.

    Args:
        tags: tags such as ``["B-PER", "I-PER", "O"]``; anything not ``B-``/``I-`` counts as ``O``.
    """
    spans: list[Span] = []
    start, etype = -1, None
    for i, tag in enumerate(tags):
        prefix, _, t = tag.partition("-")
        inside = prefix == "I" and t == etype
        if etype is not None and not inside:  # close the open entity
            spans.append(Span(etype, start, i))
            start, etype = -1, None
        if prefix in ("B", "I") and t and not inside:  # open a new one
            start, etype = i, t
    if etype is not None:
        spans.append(Span(etype, start, len(tags)))
    return spans


def prf(tp: np.ndarray | float, n_pred: np.ndarray | float, n_gold: np.ndarray | float) -> dict[str, np.ndarray]:
    """Precision, recall and F1 in percent from summed counts (elementwise; a zero denominator is 0,
    as ``bga_mner.metrics`` and the report use it).

    Args:
        tp: true positives (any shape).
        n_pred: predicted entities, same shape.
        n_gold: gold entities, same shape.
    """
    tp, n_pred, n_gold = (np.asarray(x, dtype=float) for x in (tp, n_pred, n_gold))
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(n_pred > 0, 100.0 * tp / n_pred, 0.0)
        recall = np.where(n_gold > 0, 100.0 * tp / n_gold, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {"precision": precision, "recall": recall, "f1": f1}
