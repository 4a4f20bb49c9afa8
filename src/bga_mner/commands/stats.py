"""``bga-mner stats DIR``: tweets and entities per type per split, shaped like the paper's Table 1.

Entities are counted as the metric scores them: conlleval chunks from
:func:`bga_mner.data.spans.bio_to_spans`, where an ``I-X`` after ``O`` (or after another type)
opens an entity. ``--count b-tags`` counts ``B-`` tags instead, which is how the published
Table 1 counts Twitter-2015 (see docs/data.md). The last line says which label version the folder
holds (``data.label_versions``: UMT's original files, HVPNeT's repaired Twitter-2015, or unknown)
and whether it is the one the paper used; ``--json`` gives it under ``"labels"``.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Iterable

from bga_mner.data.conll import ENTITY_TYPES, SPLITS, Tweet, read_split_dir
from bga_mner.data.label_versions import FolderVersion, detect_version
from bga_mner.data.spans import bio_to_spans

COUNT_MODES = ("spans", "b-tags")


def count_entities(tweets: Iterable[Tweet], mode: str = "spans") -> dict[str, int]:
    """Entities per type (every type of ``ENTITY_TYPES`` present, maybe 0).

    Args:
        tweets: the tweets of a split.
        mode: ``spans`` (conlleval chunks, what the metric scores) or ``b-tags`` (``B-`` tags only).
    """
    if mode not in COUNT_MODES:
        raise ValueError(f"unknown count mode {mode!r}; expected one of {COUNT_MODES}")
    counts: Counter[str] = Counter()
    for tweet in tweets:
        if mode == "spans":
            counts.update(span.type for span in bio_to_spans(tweet.tags))
        else:
            counts.update(tag[2:] for tag in tweet.tags if tag.startswith("B-"))
    return {etype: counts[etype] for etype in ENTITY_TYPES}


def dataset_stats(root: str | Path, mode: str = "spans") -> dict[str, dict]:
    """``{split: {"tweets": N, "entities": {type: N}}}`` for train, valid and test of a folder.

    Args:
        root: folder with ``train.txt``, ``valid.txt`` and ``test.txt``.
        mode: see :func:`count_entities`.
    """
    return _stats(read_split_dir(root), mode)


def _stats(splits: dict[str, list[Tweet]], mode: str) -> dict[str, dict]:
    return {split: {"tweets": len(tweets), "entities": count_entities(tweets, mode)}
            for split, tweets in splits.items()}


def format_table(stats: dict[str, dict], title: str = "", misc_name: str = "MISC") -> str:
    """Table 1 layout: rows PER/LOC/ORG/MISC/Total/Tweets, columns train/valid/test."""
    rows = [[etype if etype != "MISC" else misc_name] + [str(stats[s]["entities"][etype]) for s in SPLITS]
            for etype in ENTITY_TYPES]
    rows.append(["Total"] + [str(sum(stats[s]["entities"].values())) for s in SPLITS])
    rows.append(["Tweets"] + [str(stats[s]["tweets"]) for s in SPLITS])
    header = [title] + list(SPLITS)
    first = max(len(r[0]) for r in rows + [header])
    lines = [f"{header[0]:<{first}}" + "".join(f"{h:>8}" for h in header[1:])]
    lines += [f"{r[0]:<{first}}" + "".join(f"{c:>8}" for c in r[1:]) for r in rows]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", type=Path, help="folder with train.txt, valid.txt and test.txt")
    parser.add_argument("--json", action="store_true",
                        help='print {"train": {"tweets": N, "entities": {"PER": N, ...}}, ...}')
    parser.add_argument("--keep-other", action="store_true",
                        help="name the fourth type OTHER (Twitter-2015's name) instead of MISC")
    parser.add_argument("--count", choices=COUNT_MODES, default="spans",
                        help="spans: conlleval chunks, as scored (default); b-tags: B- tags only")


def main(args: argparse.Namespace) -> int:
    # a missing, empty or malformed split file is an error of the command line's one error path
    splits = read_split_dir(args.dir)
    stats = _stats(splits, args.count)
    version: FolderVersion = detect_version(args.dir, splits)
    misc_name = "OTHER" if args.keep_other else "MISC"
    if args.json:
        for split in stats.values():
            split["entities"] = {(misc_name if t == "MISC" else t): n for t, n in split["entities"].items()}
        print(json.dumps({**stats, "labels": version.as_dict()}))
    else:
        print(format_table(stats, title=args.dir.name, misc_name=misc_name))
        print(version.describe())
    return 0
