"""Read and write the Twitter MNER CoNLL files (``IMGID:`` blocks of ``word<TAB>tag`` lines).

The files of Twitter-2015 (Zhang et al., 2018) and Twitter-2017 (Lu et al., 2018) look like::

    IMGID:1015799
    RT	O
    George	B-PER
    Zimmerman	I-PER

    IMGID:1109405
    ...

Twitter-2015 writes ``OTHER`` where Twitter-2017 writes ``MISC``; :func:`read_conll` maps the
former to the latter by default (``type_map``). A malformed line is an error that names the file
and the line; nothing is silently skipped.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence, TextIO

ENTITY_TYPES: tuple[str, ...] = ("PER", "LOC", "ORG", "MISC")
LABELS: tuple[str, ...] = ("O",) + tuple(f"{p}-{t}" for t in ENTITY_TYPES for p in ("B", "I"))
LABEL2ID: dict[str, int] = {label: i for i, label in enumerate(LABELS)}
DEFAULT_TYPE_MAP: dict[str, str] = {"OTHER": "MISC"}
SPLITS: tuple[str, ...] = ("train", "valid", "test")


class CoNLLFormatError(ValueError):
    """A malformed line in a CoNLL file; the message starts with ``path:line:``."""

    def __init__(self, path: str | Path, line_no: int, message: str) -> None:
        super().__init__(f"{path}:{line_no}: {message}")
        self.path, self.line_no = str(path), line_no


@dataclass
class Tweet:
    """One tweet: its image id, words and BIO tags (tags use the canonical types PER/LOC/ORG/MISC)."""

    image_id: str
    words: list[str]
    tags: list[str]
    source: str = ""  # "path:line" of the IMGID line, for error messages
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.words)


def _map_tag(tag: str, type_map: Mapping[str, str], path: str | Path, line_no: int) -> str:
    if tag == "O":
        return tag
    prefix, sep, etype = tag.partition("-")
    etype = type_map.get(etype, etype)
    if not sep or prefix not in ("B", "I") or etype not in ENTITY_TYPES:
        raise CoNLLFormatError(path, line_no, f"unknown label {tag!r} (expected O or B-/I- with "
                               f"one of {', '.join(ENTITY_TYPES)}; mapped: {dict(type_map)})")
    return f"{prefix}-{etype}"


def parse_conll_lines(lines: Iterable[str], path: str | Path = "<string>",
                      type_map: Mapping[str, str] | None = None,
                      with_tags: bool = True) -> list[Tweet]:
    """Parse CoNLL lines with ``IMGID:`` headers into tweets.

    Args:
        lines: the file's lines (with or without newlines).
        path: name used in error messages.
        type_map: entity-type renames applied before validation (default: OTHER -> MISC).
        with_tags: if False, lines hold a word and an optional tag (tags default to ``O``).
    """
    type_map = DEFAULT_TYPE_MAP if type_map is None else type_map
    tweets: list[Tweet] = []
    current: Tweet | None = None
    for line_no, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            current = None
            continue
        if line.startswith("IMGID:"):
            current = Tweet(image_id=line[len("IMGID:"):].strip(), words=[], tags=[],
                            source=f"{path}:{line_no}")
            if not current.image_id:
                raise CoNLLFormatError(path, line_no, "empty IMGID")
            tweets.append(current)
            continue
        if current is None:
            current = Tweet(image_id="", words=[], tags=[], source=f"{path}:{line_no}")
            tweets.append(current)
        word, sep, tag = line.partition("\t")
        if not sep:
            if with_tags:
                raise CoNLLFormatError(path, line_no, f"expected 'word<TAB>tag', got {line!r}")
            tag = "O"
        if not word:
            raise CoNLLFormatError(path, line_no, "empty word")
        current.words.append(word)
        current.tags.append(_map_tag(tag.strip(), type_map, path, line_no))
    for t in tweets:
        if not t.words:
            line_no = int(t.source.rsplit(":", 1)[1])
            raise CoNLLFormatError(path, line_no, f"IMGID:{t.image_id} has no words")
    return tweets


def read_conll(path: str | Path, type_map: Mapping[str, str] | None = None) -> list[Tweet]:
    """Read a CoNLL file with ``IMGID:`` blocks. Raises :class:`CoNLLFormatError` on bad input.

    Args:
        path: the file.
        type_map: entity-type renames (default: ``{"OTHER": "MISC"}``; ``{}`` keeps types as-is).
    """
    return parse_conll_lines(_utf8_lines(path), path=path, type_map=type_map)


def _utf8_lines(path: str | Path) -> Iterator[str]:
    """The file's lines, decoded one by one so that a non-UTF-8 byte names its line."""
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise CoNLLFormatError(path, line_no, f"not UTF-8: byte {raw[err.start]:#04x} "
                                       f"at byte {err.start} of the line") from None


def write_conll(out: str | Path | TextIO, tweets: Iterable[Tweet],
                tags: Iterable[Sequence[str]] | None = None) -> None:
    """Write tweets (optionally with other tags, e.g. predictions) in the same format.

    Args:
        out: a file path (created or overwritten, UTF-8) or an open text stream (e.g. stdout).
        tweets: the tweets, in order.
        tags: one tag list per tweet instead of the tweets' own tags.
    """
    tweets = list(tweets)
    tag_lists = [t.tags for t in tweets] if tags is None else list(tags)
    if len(tag_lists) != len(tweets):
        raise ValueError(f"{len(tweets)} tweets but {len(tag_lists)} tag lists")
    for tweet, tweet_tags in zip(tweets, tag_lists):  # check everything before writing anything
        if len(tweet_tags) != len(tweet.words):
            raise ValueError(f"{tweet.source or tweet.image_id}: {len(tweet.words)} words but "
                             f"{len(tweet_tags)} tags")
    with contextlib.ExitStack() as stack:
        f = out if hasattr(out, "write") else stack.enter_context(open(out, "w", encoding="utf-8"))
        for tweet, tweet_tags in zip(tweets, tag_lists):
            f.write(f"IMGID:{tweet.image_id}\n")
            f.writelines(f"{word}\t{tag}\n" for word, tag in zip(tweet.words, tweet_tags))
            f.write("\n")


def read_split_dir(root: str | Path, type_map: Mapping[str, str] | None = None,
                   splits: Sequence[str] = SPLITS) -> dict[str, list[Tweet]]:
    """Read ``train.txt``, ``valid.txt`` and ``test.txt`` of a data set folder."""
    root = Path(root)
    out = {}
    for split in splits:
        path = root / f"{split}.txt"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing split file (expected {', '.join(splits)})")
        out[split] = read_conll(path, type_map=type_map)
    return out
