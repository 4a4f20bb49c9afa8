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
and the line; nothing is silently skipped. Every word belongs to the tweet of an ``IMGID:`` line
(a word before the first one, or after a blank line, is an error), a file without a tweet is an
error, and a UTF-8 byte-order mark at the start is accepted. Lines end at ``\\n`` only (``\\r\\n``
accepted): a lone ``\\r`` or U+2028 is not a line break (:func:`utf8_lines`, which the raw-text
input of ``bga-mner predict`` shares).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence, TextIO

from bga_mner.errors import UserError

ENTITY_TYPES: tuple[str, ...] = ("PER", "LOC", "ORG", "MISC")
LABELS: tuple[str, ...] = ("O",) + tuple(f"{p}-{t}" for t in ENTITY_TYPES for p in ("B", "I"))
LABEL2ID: dict[str, int] = {label: i for i, label in enumerate(LABELS)}
DEFAULT_TYPE_MAP: dict[str, str] = {"OTHER": "MISC"}
SPLITS: tuple[str, ...] = ("train", "valid", "test")
BOM = "\ufeff"


class CoNLLFormatError(UserError, ValueError):
    """A malformed line of a CoNLL (or raw-text) input file; the message starts with ``path:line:``
    (``path:`` alone for a problem of the whole file, e.g. no tweets; ``line_no`` is then None)."""

    def __init__(self, path: str | Path, line_no: int | None, message: str) -> None:
        super().__init__(f"{path}:{line_no}: {message}" if line_no is not None else f"{path}: {message}")
        self.path, self.line_no = str(path), line_no


@dataclass
class Tweet:
    """One tweet: its image id, words and BIO tags (tags use the canonical types PER/LOC/ORG/MISC)."""

    image_id: str
    words: list[str]
    tags: list[str]
    source: str = ""  # "path:line" of the IMGID line, for error messages

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
                      with_tags: bool = True, first_line: int = 1) -> list[Tweet]:
    """Parse CoNLL lines with ``IMGID:`` headers into tweets.

    Args:
        lines: the file's lines (with or without newlines).
        path: name used in error messages.
        type_map: entity-type renames applied before validation (default: OTHER -> MISC).
        with_tags: if False, lines hold a word and an optional tag (tags default to ``O``).
        first_line: the line number of the first line (a later part of a file read in parts,
            starting after a blank line).

    Raises:
        CoNLLFormatError: a malformed line, a word outside an ``IMGID:`` block, or no tweet at all.
    """
    type_map = DEFAULT_TYPE_MAP if type_map is None else type_map
    tweets: list[Tweet] = []
    current: Tweet | None = None
    for line_no, raw in enumerate(lines, start=first_line):
        line = raw.rstrip("\r\n")
        if line_no == 1:
            line = line.removeprefix(BOM)
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
            where = "after a blank line" if tweets or first_line > 1 else "before the first 'IMGID:' line"
            raise CoNLLFormatError(path, line_no, f"word line {where}: every tweet starts with an "
                                   f"'IMGID:<id>' line (got {line!r})")
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
    if not tweets:
        raise CoNLLFormatError(path, None, "no tweets (empty file)")
    return tweets


def read_conll(path: str | Path, type_map: Mapping[str, str] | None = None) -> list[Tweet]:
    """Read a CoNLL file with ``IMGID:`` blocks. Raises :class:`CoNLLFormatError` on bad input.

    Args:
        path: the file.
        type_map: entity-type renames (default: ``{"OTHER": "MISC"}``; ``{}`` keeps types as-is).
    """
    return parse_conll_lines(utf8_lines(Path(path).read_bytes(), path), path=path, type_map=type_map)


def utf8_lines(data: bytes, name: str | Path) -> list[str]:
    """The lines of UTF-8 text, decoded one by one so that a non-UTF-8 byte names its line.

    Lines end at ``\\n`` only; the ``\\r`` of a ``\\r\\n`` is dropped, while a lone ``\\r``, U+2028
    and the other Unicode line separators stay inside their line (``str.splitlines`` would break
    there). A byte-order mark at the start is removed.

    Args:
        data: the file's bytes.
        name: the file, for error messages.

    Raises:
        CoNLLFormatError: ``name:line: not UTF-8: byte 0x.. at byte N of the line (byte M of the file)``.
    """
    lines, offset = [], 0
    chunks = data.split(b"\n")
    if chunks[-1] == b"":
        chunks.pop()  # the final newline ends the last line; it does not start another
    for line_no, raw in enumerate(chunks, start=1):
        lines.append(decode_line(raw, name, line_no, offset))
        offset += len(raw) + 1
    return lines


def decode_line(raw: bytes, name: str | Path, line_no: int, offset: int) -> str:
    """One line of :func:`utf8_lines` (without its ``\\n``; a final ``\\r`` dropped, and on line 1
    a byte-order mark).

    Args:
        raw: the line's bytes.
        name: the file, for error messages.
        line_no: the line's number (1 for the first).
        offset: the line's first byte in the file.

    Raises:
        CoNLLFormatError: the line is not UTF-8 (its number, the byte and where it is).
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CoNLLFormatError(name, line_no, f"not UTF-8: byte {raw[err.start]:#04x} at byte "
                               f"{err.start} of the line (byte {offset + err.start} of the "
                               f"file)") from None
    text = text.removesuffix("\r")
    return text.removeprefix(BOM) if line_no == 1 else text


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
