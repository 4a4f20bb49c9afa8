"""The report's statistics: seed summaries and the per-tweet counts that the intervals and tests
resample.

Why the report's intervals and tests are these, and what each can and cannot say, is in
docs/statistics.md. This module holds what they are computed from:

- :class:`Stat`: mean, sample std (ddof=1) and n of one metric over seeds.
- :class:`TweetCounts`: a run's per-tweet span counts (``predictions/test_counts.json``, read by
  :func:`read_counts`); micro P/R/F1 is not a mean of per-tweet F1s, so every resample sums these
  counts and computes F1 from the sums. Several seeds are pooled by summing each tweet's counts over
  seeds (:func:`pool_seeds`).

The intervals are in :mod:`bga_mner.report.bootstrap`, the significance tests in
:mod:`bga_mner.report.significance`; both draw from a ``numpy.random.Generator`` seeded with
:data:`SEED`, so a report is the same every time it is built from the same runs.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from bga_mner.data.spans import prf

COUNTS_FILE = "predictions/test_counts.json"  # = bga_mner.metrics.TWEET_COUNTS_FILE (written by fit/test)
CONFIDENCE = 0.95
SEED = 0
MEASURES = ("precision", "recall", "f1")
# verdicts of a claim (make claims, report/claims.py)
SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"


@dataclass
class Stat:
    """Mean, sample std (ddof=1) and n of one metric over seeds (std None for a single seed)."""

    values: list[float] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) > 1 else None

    def __str__(self) -> str:
        if not self.values:
            return "—"
        return f"{self.mean:.2f}" + (f" ± {self.std:.2f}" if self.std is not None else "")


@dataclass(frozen=True, eq=False)
class TweetCounts:
    """Per-tweet span counts of one run's test predictions (``predictions/test_counts.json``).

    ``tp``, ``n_pred`` and ``n_gold`` are (tweets, types) integer arrays: true positives, predicted
    and gold entities of each tweet and entity type.
    """

    ids: tuple[str, ...]
    types: tuple[str, ...]
    tp: np.ndarray
    n_pred: np.ndarray
    n_gold: np.ndarray

    def __post_init__(self) -> None:
        shape = (len(self.ids), len(self.types))
        for name in ("tp", "n_pred", "n_gold"):
            if getattr(self, name).shape != shape:
                raise ValueError(f"{name}: shape {getattr(self, name).shape}, expected {shape}")

    @classmethod
    def from_lists(cls, tp: Sequence[Sequence[int]], n_pred: Sequence[Sequence[int]],
                   n_gold: Sequence[Sequence[int]], ids: Sequence[str] | None = None,
                   types: Sequence[str] = ("PER", "LOC", "ORG", "MISC")) -> TweetCounts:
        """Counts from nested lists, one list of per-type counts per tweet.

        Args:
            tp: true positives per tweet and type.
            n_pred: predicted entities per tweet and type.
            n_gold: gold entities per tweet and type.
            ids: the tweets' image ids (default ``"0"``, ``"1"``, ...).
            types: the entity types of the columns.
        """
        arrays = [np.asarray(x, dtype=np.int64).reshape(-1, len(types)) for x in (tp, n_pred, n_gold)]
        ids = tuple(str(i) for i in (ids if ids is not None else range(len(arrays[0]))))
        return cls(ids, tuple(types), *arrays)

    def __len__(self) -> int:
        return len(self.ids)

    def group(self, group: str = "overall") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-tweet (tp, n_pred, n_gold) of one entity type, or summed over types (``overall``).

        Args:
            group: ``overall`` or one of ``types``.
        """
        if group == "overall":
            return self.tp.sum(1), self.n_pred.sum(1), self.n_gold.sum(1)
        j = self.types.index(group)
        return self.tp[:, j], self.n_pred[:, j], self.n_gold[:, j]

    def score(self, group: str = "overall", measure: str = "f1") -> float:
        """Micro P/R/F1 (percent) of all tweets: from the counts summed over tweets.

        Args:
            group: ``overall`` or an entity type.
            measure: precision, recall or f1.
        """
        return float(prf(*(x.sum() for x in self.group(group)))[measure])


def read_counts(run_dir: str | Path) -> TweetCounts | None:
    """The per-tweet counts of a run folder (:data:`COUNTS_FILE`), or None when it has none (a run
    written before the file existed). A malformed file is a ``ValueError`` naming it.

    Args:
        run_dir: the run folder.
    """
    path = Path(run_dir) / COUNTS_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return TweetCounts.from_lists(data["tp"], data["n_pred"], data["n_gold"], data["ids"], data["types"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: not a valid counts file ({type(err).__name__}: {err})") from err


def check_same_tweets(counts: Sequence[TweetCounts]) -> None:
    first = counts[0]
    for other in counts[1:]:
        if other.ids != first.ids or other.types != first.types or not np.array_equal(other.n_gold, first.n_gold):
            raise ValueError("the runs' counts are not of the same test tweets (ids or gold entities differ)")


def pool_seeds(counts: Sequence[TweetCounts]) -> TweetCounts:
    """Several seeds' counts of the same test tweets as one: each tweet's counts summed over seeds.

    Args:
        counts: one per seed, all of the same tweets (same ids and gold counts); else ``ValueError``.
    """
    if not counts:
        raise ValueError("no counts to pool")
    check_same_tweets(counts)
    return TweetCounts(counts[0].ids, counts[0].types, sum(c.tp for c in counts),
                       sum(c.n_pred for c in counts), sum(c.n_gold for c in counts))
