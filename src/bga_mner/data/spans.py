"""BIO tags to entity spans: the one chunking function of the suite (metric, predict, stats).

Chunking follows conlleval (and seqeval's default mode): an ``I-X`` opens a new entity when it
follows ``O``, the start of the sequence, or a tag of another type; so ``O I-PER I-PER`` is one
PER entity and ``B-PER I-LOC`` is two entities. A ``B-X`` always opens a new entity.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence


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
