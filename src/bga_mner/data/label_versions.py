"""Which release of the labels a data set folder holds: UMT's original files or HVPNeT's repair.

Two versions of Twitter-2015 circulate (docs/data.md, "Two Twitter-2015 label versions";
``resources/label_versions.yaml``): the original files of UMT (``umt-original``: BGA-MNER's Table 1
counts them, and its baselines were published on them) and HVPNeT's release, whose maintainers
repaired orphan ``I-`` tags and wrong types, mostly in the test set (``hvpnet-repaired``). Each split
file is recognised

1. by its sha256 (``resources/datasets.yaml``, the UMT files), then
2. by the sha256 of its tweets in canonical form, which a re-encoded copy keeps (``content``), then
3. by counts, for edited files: the original's number of tweets with fewer orphan ``I-`` tags (an
   ``I-X`` that continues no X entity) is ``hvpnet-repaired``: the repair HVPNeT describes. Any
   other edit is ``unknown``.

A folder is ``umt-original`` when every split is, ``hvpnet-repaired`` when its splits are original
or repaired and one at least is repaired, ``unknown`` otherwise (or for a data set not listed).
``bga-mner stats`` prints it; ``results.json`` records it per split (``label_version``); the report
compares with the paper only where it is ``paper_version()``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

from omegaconf import OmegaConf

from bga_mner.data.conll import SPLITS, Tweet

ORIGINAL, REPAIRED, UNKNOWN = "umt-original", "hvpnet-repaired", "unknown"


def _yaml(name: str) -> dict[str, Any]:
    text = resources.files("bga_mner").joinpath(f"resources/{name}").read_text("utf-8")
    return OmegaConf.to_container(OmegaConf.create(text), resolve=True)  # type: ignore[return-value]


@lru_cache(maxsize=1)
def known_versions() -> dict[str, Any]:
    """``label_versions.yaml`` with each split's file sha256 (from ``datasets.yaml``) added."""
    known = _yaml("label_versions.yaml")
    downloads = _yaml("datasets.yaml")["datasets"]
    for name, splits in known["datasets"].items():
        for split, pins in splits.items():
            pins["sha256"] = downloads[name][f"{split}.txt"]["sha256"]
    return known


def paper_version() -> str:
    """The label version the BGA-MNER paper used (``umt-original``; docs/data.md says why)."""
    return str(known_versions()["paper_version"])


def orphan_i_tags(tags: Sequence[str]) -> int:
    """``I-X`` tags that continue no X entity (after ``O``, at the start, or after another type)."""
    prev, n = "O", 0
    for tag in tags:
        if tag.startswith("I-") and prev[2:] != tag[2:]:
            n += 1
        prev = tag
    return n


def content_sha256(tweets: Sequence[Tweet]) -> str:
    """sha256 of the tweets in canonical form: ``IMGID:<id>``, ``word<TAB>tag`` lines, a blank line."""
    digest = hashlib.sha256()
    for t in tweets:
        lines = "".join(f"{w}\t{g}\n" for w, g in zip(t.words, t.tags))
        digest.update(f"IMGID:{t.image_id}\n{lines}\n".encode("utf-8"))
    return digest.hexdigest()


@dataclass
class SplitVersion:
    """The version of one split file and how it was told (``sha256`` | ``content`` | ``counts``)."""

    split: str
    version: str
    how: str
    tweets: int
    orphan_i: int

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "how": self.how, "tweets": self.tweets, "orphan_i": self.orphan_i}


def split_version(dataset: str | None, split: str, path: str | Path, tweets: Sequence[Tweet]) -> SplitVersion:
    """The label version of one split file.

    Args:
        dataset: ``twitter2015`` / ``twitter2017`` (None or another name: ``unknown``).
        split: train, valid or test.
        path: the file (its bytes give the sha256).
        tweets: its parsed tweets (``conll.read_conll``).
    """
    orphans = sum(orphan_i_tags(t.tags) for t in tweets)
    pins = known_versions()["datasets"].get(dataset or "", {}).get(split)
    if pins is None:
        return SplitVersion(split, UNKNOWN, "counts", len(tweets), orphans)
    if hashlib.sha256(Path(path).read_bytes()).hexdigest() == pins["sha256"]:
        return SplitVersion(split, ORIGINAL, "sha256", len(tweets), orphans)
    if content_sha256(tweets) == pins["content_sha256"]:
        return SplitVersion(split, ORIGINAL, "content", len(tweets), orphans)
    repaired = len(tweets) == pins["tweets"] and orphans < pins["orphan_i"]
    return SplitVersion(split, REPAIRED if repaired else UNKNOWN, "counts", len(tweets), orphans)


def guess_dataset(name: str, tweets: Mapping[str, Sequence[Tweet]]) -> str | None:
    """The data set a folder holds: its name when listed, else the one whose tweet counts it has."""
    known = known_versions()["datasets"]
    if name in known:
        return name
    for dataset, splits in known.items():
        if all(len(tweets.get(s, ())) == pins["tweets"] for s, pins in splits.items()):
            return dataset
    return None


def folder_version(versions: Sequence[SplitVersion]) -> str:
    """One version for a folder's splits (see the module docstring)."""
    found = {v.version for v in versions}
    if found == {ORIGINAL}:
        return ORIGINAL
    return REPAIRED if found <= {ORIGINAL, REPAIRED} else UNKNOWN


@dataclass
class FolderVersion:
    """The label version of a data set folder."""

    dataset: str | None
    version: str
    splits: dict[str, SplitVersion]

    def describe(self) -> str:
        """One line: ``labels: twitter2015 umt-original (the paper's version; train: sha256, ...)``."""
        def how(v: SplitVersion) -> str:
            counts = f" ({v.tweets} tweets, {v.orphan_i} orphan I- tags)" if v.how == "counts" else ""
            return f"{v.split}: {v.version} by {v.how}{counts}"

        paper = ("the paper's version" if self.version == paper_version()
                 else f"not the paper's version, {paper_version()}")
        return (f"labels: {self.dataset or 'unknown data set'} {self.version} ({paper}; "
                f"{'; '.join(how(v) for v in self.splits.values())})")

    def as_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "version": self.version,
                "splits": {s: v.as_dict() for s, v in self.splits.items()}}


def detect_version(root: str | Path, tweets: Mapping[str, Sequence[Tweet]]) -> FolderVersion:
    """The label version of the folder ``root`` whose splits were read into ``tweets``."""
    root = Path(root)
    dataset = guess_dataset(root.name, tweets)
    splits = {s: split_version(dataset, s, root / f"{s}.txt", tweets[s]) for s in SPLITS if s in tweets}
    return FolderVersion(dataset, folder_version(list(splits.values())), splits)
