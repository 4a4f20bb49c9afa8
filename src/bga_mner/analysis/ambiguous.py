"""F1 on the synthetic set's ambiguous names: the entities whose type only the image tells.

:func:`ambiguous_f1` scores only the entities that cover an ambiguous word position of the
synthetic ``meta.json`` (names such as "Jordan" whose type only the image tells): gold entities
covering such a position, and predicted entities overlapping one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from omegaconf import DictConfig, OmegaConf

from bga_mner.config import from_container, section
from bga_mner.data.conll import Tweet, read_conll
from bga_mner.data.spans import Span, bio_to_spans
from bga_mner.metrics import span_scores


def _spans_to_tags(spans: Iterable[Span], n: int) -> list[str]:
    tags = ["O"] * n
    for s in spans:
        tags[s.start:s.end] = [f"B-{s.type}"] + [f"I-{s.type}"] * (s.end - s.start - 1)
    return tags


def _restrict(tags: Sequence[str], positions: set[int]) -> list[str]:
    """The tags with only the entities that cover one of ``positions`` (the others become O)."""
    kept = [s for s in bio_to_spans(tags) if positions.intersection(range(s.start, s.end))]
    return _spans_to_tags(kept, len(tags))


def ambiguous_f1(gold: Sequence[Tweet], predicted: Sequence[Sequence[str]],
                 ambiguous_positions: Mapping[str, Sequence[int]]) -> dict[str, Any]:
    """Span P/R/F1 (percent) on the ambiguous names and overall.

    Args:
        gold: the gold tweets (their ``image_id`` keys ``ambiguous_positions``).
        predicted: predicted tags, one list per gold tweet.
        ambiguous_positions: word positions of the ambiguous names of each tweet id (missing: none).

    Returns:
        ``{"ambiguous": Scores, "overall": Scores, "ambiguous_entities": n gold entities scored}``.
    """
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold tweets but {len(predicted)} predictions")
    gold_amb, pred_amb = [], []
    for tweet, pred in zip(gold, predicted):
        if len(pred) != len(tweet.tags):
            raise ValueError(f"{tweet.image_id}: {len(pred)} predicted tags for {len(tweet.tags)} words")
        positions = set(ambiguous_positions.get(tweet.image_id, ()))
        gold_amb.append(_restrict(tweet.tags, positions))
        pred_amb.append(_restrict(pred, positions))
    return {"ambiguous": span_scores(gold_amb, pred_amb),
            "overall": span_scores([t.tags for t in gold], predicted),
            "ambiguous_entities": sum(len(bio_to_spans(t)) for t in gold_amb)}


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


def run_ambiguous_f1(run_dir: str | Path) -> dict[str, Any]:
    """:func:`ambiguous_f1` of a finished synthetic run (its ``predictions/test.conll``).

    Args:
        run_dir: the run folder (its ``config.yaml`` locates the synthetic set and ``meta.json``).
    """
    run_dir = Path(run_dir)
    cfg = from_container(OmegaConf.load(run_dir / "config.yaml"), str(run_dir / "config.yaml"))
    root = synthetic_root(cfg)
    meta = json.loads((root / "meta.json").read_text(encoding="utf-8"))["tweets"]
    gold = read_conll(root / "test.txt", type_map=cfg.data.type_map or {})
    predicted = {t.image_id: t.tags for t in read_conll(run_dir / "predictions" / "test.conll")}
    missing = [t.image_id for t in gold if t.image_id not in predicted]
    if missing:
        raise ValueError(f"{run_dir / 'predictions' / 'test.conll'}: no prediction for "
                         f"{len(missing)} test tweets, e.g. {missing[:3]}")
    positions = {i: m["ambiguous_positions"] for i, m in meta.items()}
    return ambiguous_f1(gold, [predicted[t.image_id] for t in gold], positions)


def format_scores(scores: Mapping[str, Any]) -> str:
    """One line: ``ambiguous F1 x (n entities), overall F1 y``.

    Args:
        scores: the output of :func:`ambiguous_f1`.
    """
    return (f"ambiguous-name F1 {scores['ambiguous']['overall']['f1']:6.2f} "
            f"({scores['ambiguous_entities']} entities), overall F1 {scores['overall']['overall']['f1']:6.2f}")
