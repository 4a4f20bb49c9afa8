"""The per-run evidence behind ``make claims`` (docs/claims.md): what a run did on the synthetic
benchmark's slices, and, for a trained BGA-MNER run, its Fig. 3 retrieval and Fig. 4 keep decisions,
per test tweet, so that the claims report can pool seeds and resample tweets.

``run_evidence(run_dir)`` returns, and ``write_evidence`` writes to ``<run>/evidence.json``::

    {"slices": {"image_told": counts, "unseen": counts},      # every run (predictions + meta.json)
     "retrieval": {"ids": [...], "hit_at_1": [0/1 per tweet], "hit_at_5": [...], "n": n},
     "keep": {"ids": [...], "entity": [[kept, units], ...], "filler": ..., "crops": ..., "global": ...},
     "dev_curve": {"val/recon": [per epoch], "val/cycle": [...], "val/f1": [...]}}

``counts`` is the ``predictions/test_counts.json`` layout (``metrics.tweet_counts_record``) of the
predictions restricted to the slice's entities (``analysis.ambiguous.slice_tags``). Retrieval and
keep decisions need the run's network and test images (``load_run``); they are written only for a
BGA-MNER run that trained with generated context (not BERT-CRF, not an evaluation-only run).
Keep counts are summed over the BGA layers: ``[kept units, units]`` of the tweet's entity word
pieces, filler word pieces, object-crop patches and global-image patches (``TweetMasks``).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from bga_mner.analysis.ambiguous import read_run_test, slice_positions, slice_tags
from bga_mner.atomic import atomic_write_text
from bga_mner.data.conll import ENTITY_TYPES, Tweet
from bga_mner.metrics import tweet_counts

EVIDENCE_FILE = "evidence.json"
EVIDENCE_SLICES = ("image_told", "unseen")
KEEP_PARTS = ("entity", "filler", "crops", "global")
DEV_CURVES = ("val/recon", "val/cycle", "val/f1", "val/mner")


def slice_counts(gold: Sequence[Tweet], predicted: Sequence[Sequence[str]], meta: Mapping) -> dict[str, dict]:
    """Per-tweet span counts of the test predictions on each slice of :data:`EVIDENCE_SLICES`.

    Args:
        gold: the gold test tweets.
        predicted: the predicted tags of each gold tweet.
        meta: the synthetic set's ``meta.json`` ``tweets`` mapping.
    """
    out = {}
    for name in EVIDENCE_SLICES:
        positions = slice_positions(meta, name)
        pairs = [slice_tags(t.tags, p, positions.get(t.image_id, ())) for t, p in zip(gold, predicted, strict=True)]
        counts = tweet_counts([g for g, _ in pairs], [p for _, p in pairs])
        out[name] = {"types": list(ENTITY_TYPES), "ids": [t.image_id for t in gold], **counts}
    return out


def dev_curves(run_dir: Path) -> dict[str, list[float]]:
    """The per-epoch dev values of :data:`DEV_CURVES` from the run's ``csv/metrics.csv`` (absent: {})."""
    path = run_dir / "csv" / "metrics.csv"
    if not path.is_file():
        return {}
    curves: dict[str, list[float]] = {k: [] for k in DEV_CURVES}
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            for key in DEV_CURVES:
                if row.get(key):
                    curves[key].append(float(row[key]))
    return {k: v for k, v in curves.items() if v}


def model_evidence(run_dir: Path) -> dict[str, Any]:
    """Fig. 3 hits and Fig. 4 keep counts of a trained BGA-MNER run, per test tweet with an image.

    Args:
        run_dir: the run folder (its ``checkpoints/best.ckpt``).
    """
    import torch

    from bga_mner.analysis.alignment import alignment_retrieval
    from bga_mner.analysis.masks import collect_masks
    from bga_mner.analysis.runs import load_run

    torch.manual_seed(0)  # the samplers' Gumbel noise is off in eval mode; nothing else draws
    run = load_run(run_dir)
    retrieval = alignment_retrieval(run.model, run.datamodule.test_dataloader())
    sim = retrieval.similarity  # (n, n): row = generated features of a tweet, column = real image
    rank = (sim >= sim.diagonal().unsqueeze(1)).sum(1) - 1  # (n,) as analysis.recall_at_k
    out: dict[str, Any] = {"retrieval": {"ids": retrieval.ids, "n": retrieval.n,
                                         "hit_at_1": (rank < 1).int().tolist(),
                                         "hit_at_5": (rank < 5).int().tolist()}}
    masks = collect_masks(run.model, run.datamodule.test_dataloader(), pixels=0)
    keep: dict[str, Any] = {"ids": [m.image_id for m in masks]}
    for part in KEEP_PARTS:
        units = [m.text_units(part) if part in ("entity", "filler") else
                 m.visual_units({"crops": "crops", "global": "global"}[part]) for m in masks]
        keep[part] = [[int(u.sum()), int(u.numel())] for u in units]  # summed over BGA layers
    out["keep"] = keep
    return out


def run_evidence(run_dir: str | Path) -> dict[str, Any]:
    """Everything :func:`write_evidence` writes (module docstring).

    Args:
        run_dir: a finished run folder on the synthetic set.
    """
    run_dir = Path(run_dir)
    cfg, meta, gold, predicted = read_run_test(run_dir)
    out: dict[str, Any] = {"slices": slice_counts(gold, predicted, meta), "dev_curve": dev_curves(run_dir)}
    trained_bga = (cfg.model.use_mcg and cfg.model.text_context == "generated"
                   and cfg.model.inference_visual == "generated"
                   and (run_dir / "checkpoints" / "best.ckpt").is_file())
    if trained_bga:
        out.update(model_evidence(run_dir))
    return out


def write_evidence(run_dir: str | Path) -> Path:
    """Write :func:`run_evidence` to ``<run_dir>/evidence.json`` (atomically); returns its path."""
    path = Path(run_dir) / EVIDENCE_FILE
    atomic_write_text(path, json.dumps(run_evidence(run_dir)) + "\n")
    return path
