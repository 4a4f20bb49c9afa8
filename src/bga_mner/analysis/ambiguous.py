"""F1 on a slice of the synthetic set: its ambiguous names, image-told names or unseen names.

A slice is a set of word positions per tweet, read from the synthetic ``meta.json``
(:func:`slice_positions`, docs/synthetic.md):

* ``ambiguous``: the ambiguous names ("Jordan", ...), ``ambiguous_positions``;
* ``image_told``: the ambiguous names of tweets with an image and no cue word, whose type only the
  image tells (computed from ``ambiguous_positions``, ``has_image`` and ``cue_words``, so older
  sets without ``image_told_positions`` work too);
* ``unseen``: the names held out of training (``unseen_positions``; none in older sets).

:func:`slice_f1` scores only the entities that cover a position of the slice: gold entities
covering such a position, and predicted entities overlapping one (:func:`slice_tags` restricts
one tweet's tags). :func:`ambiguous_f1` and :func:`run_ambiguous_f1` are the ``ambiguous`` slice.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from omegaconf import DictConfig, OmegaConf

from bga_mner.config import from_container, section
from bga_mner.data.conll import Tweet, read_conll
from bga_mner.data.spans import Span, bio_to_spans
from bga_mner.data.synthetic import image_told_positions
from bga_mner.metrics import span_scores

SLICES: tuple[str, ...] = ("ambiguous", "image_told", "unseen")


def _spans_to_tags(spans: Iterable[Span], n: int) -> list[str]:
    tags = ["O"] * n
    for s in spans:
        tags[s.start:s.end] = [f"B-{s.type}"] + [f"I-{s.type}"] * (s.end - s.start - 1)
    return tags


def _restrict(tags: Sequence[str], positions: set[int]) -> list[str]:
    """The tags with only the entities that cover one of ``positions`` (the others become O)."""
    kept = [s for s in bio_to_spans(tags) if positions.intersection(range(s.start, s.end))]
    return _spans_to_tags(kept, len(tags))


def slice_positions(meta_tweets: Mapping[str, Mapping[str, Any]], slice_name: str
                    ) -> dict[str, list[int]]:
    """The word positions of a slice in each tweet of a synthetic ``meta.json``.

    Args:
        meta_tweets: ``meta.json``'s ``tweets`` (tweet id -> its record).
        slice_name: one of :data:`SLICES`: ``ambiguous``, ``image_told`` or ``unseen``.

    Returns:
        tweet id -> positions (``[]`` where the tweet has none).
    """
    if slice_name == "ambiguous":
        return {i: list(m["ambiguous_positions"]) for i, m in meta_tweets.items()}
    if slice_name == "image_told":
        return {i: image_told_positions(m) for i, m in meta_tweets.items()}
    if slice_name == "unseen":
        return {i: list(m.get("unseen_positions", ())) for i, m in meta_tweets.items()}
    raise ValueError(f"unknown slice {slice_name!r}: choose one of {', '.join(SLICES)}")


def slice_tags(gold_tags: Sequence[str], pred_tags: Sequence[str], positions: Iterable[int]
               ) -> tuple[list[str], list[str]]:
    """One tweet's (gold, predicted) tags restricted to a slice: the gold entities covering one of
    ``positions`` and the predicted entities overlapping one; every other tag becomes O."""
    if len(pred_tags) != len(gold_tags):
        raise ValueError(f"{len(pred_tags)} predicted tags for {len(gold_tags)} words")
    keep = set(positions)
    return _restrict(gold_tags, keep), _restrict(pred_tags, keep)


def slice_f1(gold: Sequence[Tweet], predicted: Sequence[Sequence[str]],
             positions: Mapping[str, Sequence[int]], slice_name: str = "slice") -> dict[str, Any]:
    """Span P/R/F1 (percent) on a slice and overall.

    Args:
        gold: the gold tweets (their ``image_id`` keys ``positions``).
        predicted: predicted tags, one list per gold tweet.
        positions: word positions of the slice in each tweet id (missing: none).
        slice_name: the key of the slice's scores in the result.

    Returns:
        ``{slice_name: Scores, "overall": Scores, f"{slice_name}_entities": n gold entities scored}``.
    """
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold tweets but {len(predicted)} predictions")
    gold_slice, pred_slice = [], []
    for tweet, pred in zip(gold, predicted):
        if len(pred) != len(tweet.tags):
            raise ValueError(f"{tweet.image_id}: {len(pred)} predicted tags for {len(tweet.tags)} words")
        g, p = slice_tags(tweet.tags, pred, positions.get(tweet.image_id, ()))
        gold_slice.append(g)
        pred_slice.append(p)
    return {slice_name: span_scores(gold_slice, pred_slice),
            "overall": span_scores([t.tags for t in gold], predicted),
            f"{slice_name}_entities": sum(len(bio_to_spans(t)) for t in gold_slice)}


def ambiguous_f1(gold: Sequence[Tweet], predicted: Sequence[Sequence[str]],
                 ambiguous_positions: Mapping[str, Sequence[int]]) -> dict[str, Any]:
    """Span P/R/F1 (percent) on the ambiguous names and overall (:func:`slice_f1`).

    Args:
        gold: the gold tweets (their ``image_id`` keys ``ambiguous_positions``).
        predicted: predicted tags, one list per gold tweet.
        ambiguous_positions: word positions of the ambiguous names of each tweet id (missing: none).

    Returns:
        ``{"ambiguous": Scores, "overall": Scores, "ambiguous_entities": n gold entities scored}``.
    """
    return slice_f1(gold, predicted, ambiguous_positions, "ambiguous")


def synthetic_root(cfg: DictConfig) -> Path:
    """The synthetic data set folder of a run's config (generated if absent).

    Args:
        cfg: a run's config (``data.name`` must be ``synthetic``).
    """
    from bga_mner.data.synthetic import ensure_synthetic

    if cfg.data.name != "synthetic":
        raise ValueError(f"data.name={cfg.data.name}: the ambiguous-name analysis needs the synthetic set")
    if cfg.data.root:
        return Path(cfg.data.root)
    return ensure_synthetic(cfg.paths.cache_dir, section(cfg, "data").synthetic)


def read_run_test(run_dir: str | Path) -> tuple[DictConfig, dict, list[Tweet], list[list[str]]]:
    """A finished synthetic run's config, its set's ``meta.json`` tweets, the gold test tweets and
    the run's predicted tags for each of them (``predictions/test.conll``, in gold order).

    Args:
        run_dir: the run folder (its ``config.yaml`` locates the synthetic set and ``meta.json``).
    """
    run_dir = Path(run_dir)
    cfg = from_container(OmegaConf.load(run_dir / "config.yaml"), str(run_dir / "config.yaml"))
    root = synthetic_root(cfg)
    meta = json.loads((root / "meta.json").read_text(encoding="utf-8"))["tweets"]
    gold = read_conll(root / "test.txt", type_map=cfg.data.type_map or {})
    pred_path = run_dir / "predictions" / "test.conll"
    predicted = {t.image_id: t.tags for t in read_conll(pred_path)}
    missing = [t.image_id for t in gold if t.image_id not in predicted]
    if missing:
        raise ValueError(f"{pred_path}: no prediction for {len(missing)} test tweets, e.g. {missing[:3]}")
    return cfg, meta, gold, [predicted[t.image_id] for t in gold]


def run_slice_f1(run_dir: str | Path, slice_name: str) -> dict[str, Any]:
    """:func:`slice_f1` of a finished synthetic run (its ``predictions/test.conll``) on a slice.

    Args:
        run_dir: the run folder (its ``config.yaml`` locates the synthetic set and ``meta.json``).
        slice_name: one of :data:`SLICES` (:func:`slice_positions`).

    Returns:
        ``{slice_name: Scores, "overall": Scores, f"{slice_name}_entities": n}``.
    """
    if slice_name not in SLICES:
        raise ValueError(f"unknown slice {slice_name!r}: choose one of {', '.join(SLICES)}")
    _, meta, gold, predicted = read_run_test(run_dir)
    return slice_f1(gold, predicted, slice_positions(meta, slice_name), slice_name)


def run_ambiguous_f1(run_dir: str | Path) -> dict[str, Any]:
    """:func:`ambiguous_f1` of a finished synthetic run: :func:`run_slice_f1` on ``ambiguous``.

    Args:
        run_dir: the run folder (its ``config.yaml`` locates the synthetic set and ``meta.json``).
    """
    return run_slice_f1(run_dir, "ambiguous")


def format_scores(scores: Mapping[str, Any], slice_name: str = "ambiguous") -> str:
    """One line: ``ambiguous-name F1 x (n entities), overall F1 y`` (``<slice> F1`` for another slice).

    Args:
        scores: the output of :func:`ambiguous_f1`, or of :func:`slice_f1` for ``slice_name``.
        slice_name: the slice the scores are on.
    """
    label = "ambiguous-name" if slice_name == "ambiguous" else slice_name.replace("_", "-")
    return (f"{label} F1 {scores[slice_name]['overall']['f1']:6.2f} "
            f"({scores[f'{slice_name}_entities']} entities), overall F1 {scores['overall']['overall']['f1']:6.2f}")
