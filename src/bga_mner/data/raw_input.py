"""The input of ``bga-mner predict``: raw text (one tweet per line) or CoNLL, read whole or streamed.

* :func:`read_tweets`: all the tweets of a file's bytes (checked before any model is loaded).
* :func:`stream_tweets`: tweets from a binary stream (stdin) in lists, as the lines arrive: a list
  is handed on when it holds ``chunk_size`` tweets, or earlier when the stream has nothing more
  ready (an interactive pipe gets its tags without waiting for a full list). A bad line stops the
  stream with the error naming it, after the lists before it were handed on.

Raw text: one tweet per line, split on whitespace (``str.split``), ids ``line<N>``, blank lines
skipped. Lines end at ``\\n`` only (``\\r\\n`` accepted; a lone ``\\r`` or U+2028 is whitespace
inside the line), the input is UTF-8 (a byte-order mark is dropped; other bytes are an error naming
the line and the byte offset: :func:`data.conll.decode_line`). ``auto`` reads CoNLL from a
``.conll`` file or from input whose first non-blank line starts with ``IMGID:``, text otherwise; a
tab never decides (raw text may hold tabs: they separate words).
"""

from __future__ import annotations

import select
from pathlib import Path
from typing import BinaryIO, Iterator

from bga_mner.data.conll import BOM, CoNLLFormatError, Tweet, decode_line, parse_conll_lines, utf8_lines
from bga_mner.errors import UserError

INPUT_FORMATS = ("auto", "text", "conll")


def _check_format(fmt: str) -> None:
    if fmt not in INPUT_FORMATS:
        raise UserError(f"unknown input format {fmt!r}; expected one of {INPUT_FORMATS}")


def _format_of(first_line: str) -> str:
    """``conll`` when the first non-blank line starts with ``IMGID:``, else ``text``."""
    return "conll" if first_line.lstrip().startswith("IMGID:") else "text"


def input_format(data: bytes | str, name: str, fmt: str = "auto") -> str:
    """``text`` or ``conll``: ``fmt`` itself unless ``auto`` (module docstring)."""
    _check_format(fmt)
    if fmt != "auto":
        return fmt
    if Path(name).suffix.lower() == ".conll":
        return "conll"
    head = data[:65536].decode("utf-8", "replace") if isinstance(data, bytes) else data[:65536]
    return _format_of(next((line for line in head.removeprefix(BOM).split("\n") if line.strip()), ""))


def _text_tweet(line_no: int, line: str, name: str) -> Tweet:
    words = line.split()
    return Tweet(image_id=f"line{line_no}", words=words, tags=["O"] * len(words), source=f"{name}:{line_no}")


def _no_tweets(name: str) -> CoNLLFormatError:
    return CoNLLFormatError(name, None, "no tweets (empty file)")


def read_tweets(data: bytes | str, name: str = "<stdin>", fmt: str = "auto") -> list[Tweet]:
    """Tweets from a CoNLL file (``IMGID:`` blocks; its tags are checked, then ignored) or from
    raw text (module docstring).

    Args:
        data: the input's bytes (a ``str`` is taken as its UTF-8 encoding).
        name: the file name, for messages and the format (``.conll``).
        fmt: ``auto``, ``text`` or ``conll`` (:func:`input_format`).

    Raises:
        CoNLLFormatError: bytes that are not UTF-8 (``name:line``, with the byte offset), a
            malformed CoNLL line, or no tweet at all.
    """
    fmt = input_format(data, name, fmt)
    lines = utf8_lines(data.encode("utf-8") if isinstance(data, str) else data, name)
    if fmt == "conll":
        return parse_conll_lines(lines, path=name)
    tweets = [_text_tweet(n, line, name) for n, line in enumerate(lines, start=1) if line.strip()]
    if not tweets:
        raise _no_tweets(name)
    return tweets


def _ready(fd: int | None) -> bool:
    """Whether reading ``fd`` would return at once (True when it cannot be asked: no descriptor)."""
    if fd is None:
        return True
    try:
        return bool(select.select([fd], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def _lines(stream: BinaryIO, name: str) -> Iterator[tuple[int, str, bool]]:
    """``(line number, text, more ready)`` of each line of a binary stream as it arrives; ``more
    ready`` says whether the next line can be read without waiting."""
    try:
        fd: int | None = stream.fileno()
    except (AttributeError, OSError, ValueError):
        fd = None
    read = getattr(stream, "read1", stream.read)  # read1: what is there, at most one raw read
    buf, line_no, offset, eof = b"", 0, 0, False
    while True:
        cut = buf.find(b"\n")
        if cut < 0 and not eof:
            data = read(1 << 16)
            buf, eof = buf + data, not data
            continue
        if cut < 0:  # the end: a last line without its newline
            if buf:
                yield line_no + 1, decode_line(buf, name, line_no + 1, offset), False
            return
        raw, buf = buf[:cut], buf[cut + 1:]
        line_no += 1
        yield line_no, decode_line(raw, name, line_no, offset), b"\n" in buf or _ready(fd)
        offset += len(raw) + 1


def stream_tweets(stream: BinaryIO, name: str = "<stdin>", fmt: str = "auto",
                  chunk_size: int = 1024) -> Iterator[list[Tweet]]:
    """Tweets of a binary stream in lists of at most ``chunk_size``, in input order, as they arrive
    (module docstring).

    Args:
        stream: the input (``sys.stdin.buffer``); read with ``read1`` where it has it.
        name: for messages.
        fmt: ``auto``, ``text`` or ``conll`` (``auto`` decides on the first non-blank line).
        chunk_size: the most tweets in a list.

    Raises:
        CoNLLFormatError: as :func:`read_tweets`, when the bad line is reached.
    """
    _check_format(fmt)
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size}: must be at least 1")
    tweets: list[Tweet] = []
    block: list[str] = []  # CoNLL lines not parsed yet (whole blocks: parsed at a blank line)
    block_start = 1
    pending = 0  # tweets (IMGID lines) in ``block``
    total = 0
    for line_no, line, more in _lines(stream, name):
        if fmt == "auto" and line.strip():
            fmt = _format_of(line)
        if fmt == "text" or (fmt == "auto" and not line.strip()):
            if line.strip():
                tweets.append(_text_tweet(line_no, line, name))
        else:  # conll
            if not block:
                block_start = line_no
            block.append(line)
            pending += line.startswith("IMGID:")
            if line.strip():
                continue  # the tweet may go on: blocks are parsed whole, at a blank line
            if pending and (pending >= chunk_size or not more):
                tweets.extend(parse_conll_lines(block, path=name, first_line=block_start))
                block, pending = [], 0
        if tweets and (len(tweets) >= chunk_size or not more):
            total += len(tweets)
            yield tweets
            tweets = []
    if block and any(line.strip() for line in block):
        tweets.extend(parse_conll_lines(block, path=name, first_line=block_start))
    if tweets:
        total += len(tweets)
        yield tweets
    if not total:
        raise _no_tweets(name)
