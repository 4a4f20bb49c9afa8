"""``bga-mner predict (--model FOLDER_OR_HUB_ID | --ckpt CKPT) [--input FILE|-]
[--format-in auto|text|conll] [--format jsonl|conll] [--out FILE] [--progress]``.

Tags raw text (one tweet per line, split on whitespace) or a CoNLL file (its tags are checked,
then ignored) with the text branch alone: no image is read and no visual encoder is built. The
model is a ``bga-mner export`` folder or a hub id (``--model``), or a run's checkpoint (``--ckpt``:
``inference.pt`` or ``best.ckpt``); both tag through ``tagger.Tagger``, so an exported model gives
the run's tags byte for byte. Input and output formats are ``data.raw_input``'s (UTF-8; ``auto``
reads CoNLL from a ``.conll`` file or from input whose first non-blank line starts with ``IMGID:``).

Fast on a CPU: tweets are tagged in batches of similar length under ``torch.inference_mode``,
results in input order; only what tagging needs is imported (no Lightning). Output streams: a
file given by ``--input`` is read and checked whole first (a bad line is reported before the model
is loaded), stdin is read as it arrives; either way tweets are tagged and written in chunks, so
``... | bga-mner predict --model M | ...`` gives its first lines before the input ends. ``--out``
writes the same stream into a temporary file renamed into place at the end (a failed run leaves no
partial file). A progress bar (tweets/s, time left) goes to stderr when it is a terminal, or with
``--progress``. A tweet longer than the model's window (``data.max_length`` word pieces) is tagged
in overlapping windows, and their number is reported on stderr. A checkpoint trained with
``model.text_context=real`` (the real-context control) is refused: it has no image-free mode.
JSONL gives one object per tweet with its entity spans (``spans.bio_to_spans``, word offsets,
``end`` exclusive); CoNLL output can be scored with ``bga-mner score``.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import Iterable, Iterator, Sequence, TextIO

from bga_mner.atomic import output
from bga_mner.data.conll import Tweet, write_conll
from bga_mner.data.raw_input import INPUT_FORMATS, read_tweets, stream_tweets
from bga_mner.data.spans import bio_to_spans
from bga_mner.errors import UserError
from bga_mner.inference import BATCH_SIZE

CHUNK_TWEETS = 1024  # tweets tagged (sorted by length) and written at a time
RUNTIMES = ("torch", "onnx", "onnx-int8")


def tweet_record(tweet: Tweet, tags: Sequence[str]) -> dict:
    """The JSONL object of one tagged tweet."""
    return {"id": tweet.image_id, "tokens": list(tweet.words), "tags": list(tags),
            "entities": [{"type": s.type, "start": s.start, "end": s.end,
                          "text": " ".join(tweet.words[s.start:s.end])} for s in bio_to_spans(tags)]}


def write_predictions(out: TextIO, tweets: Sequence[Tweet], tags: Sequence[Sequence[str]],
                      fmt: str) -> None:
    """Write tagged tweets as JSONL or CoNLL (the format ``bga-mner score`` reads)."""
    if fmt == "conll":
        write_conll(out, tweets, tags)
        return
    for tweet, tweet_tags in zip(tweets, tags, strict=True):
        out.write(json.dumps(tweet_record(tweet, tweet_tags), ensure_ascii=False) + "\n")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--model", help="a `bga-mner export` folder, or a hub id (org/name)")
    model.add_argument("--ckpt", help="a run's checkpoints/inference.pt or best.ckpt")
    parser.add_argument("--input", default="-", help="text or CoNLL file; '-' reads stdin (streamed)")
    parser.add_argument("--format-in", choices=INPUT_FORMATS, default="auto",
                        help="input format; auto (default): conll for a .conll file or input whose "
                             "first non-blank line starts with IMGID:, else text (one tweet a line)")
    parser.add_argument("--format", choices=("jsonl", "conll"), default="jsonl", help="output format")
    parser.add_argument("--out", help="output file (default: stdout)")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                        help="windows per forward pass (default %(default)s)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--runtime", choices=RUNTIMES, default="torch",
                        help="with --model: onnx runs the folder's model.onnx with ONNX Runtime, onnx-int8 "
                             "its int8 model.int8.onnx (`bga-mner export --onnx` writes both)")
    parser.add_argument("--progress", action="store_true",
                        help="show the progress bar on stderr even when it is not a terminal")


def _chunks(tweets: list[Tweet], size: int) -> Iterator[list[Tweet]]:
    for start in range(0, len(tweets), size):
        yield tweets[start:start + size]


def _input(args: argparse.Namespace) -> tuple[Iterable[list[Tweet]], int | None]:
    """The input in chunks and its number of tweets (None when streamed). A file is read and
    checked whole; stdin streams, and its first chunk is read here, before the model loads."""
    if args.input != "-":
        tweets = read_tweets(Path(args.input).read_bytes(), args.input, args.format_in)
        return _chunks(tweets, CHUNK_TWEETS), len(tweets)
    stdin = getattr(sys.stdin, "buffer", None)
    if stdin is None:  # a text stream without bytes underneath (tests)
        stdin = io.BytesIO(sys.stdin.read().encode("utf-8"))
    chunks = stream_tweets(stdin, "<stdin>", args.format_in, CHUNK_TWEETS)
    first = next(chunks)  # no tweet at all: the error, before the model is loaded
    return _prepend(first, chunks), None


def _prepend(first: list[Tweet], rest: Iterator[list[Tweet]]) -> Iterator[list[Tweet]]:
    yield first
    yield from rest


def main(args: argparse.Namespace) -> int:
    from bga_mner.devices import torch_device
    from bga_mner.inference import TagStats
    from bga_mner.tagger import Tagger

    if args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size}: must be at least 1")
    if args.runtime != "torch" and not args.model:
        raise UserError(f"--runtime {args.runtime} needs --model (an export folder with its ONNX files)")
    device = torch_device(args.device)  # a device this machine has, before anything is read
    chunks, total = _input(args)  # the input first: a bad line is reported before the model is loaded
    if args.model:
        tagger = Tagger.from_pretrained(args.model, batch_size=args.batch_size, device=device,
                                        runtime=args.runtime)
    else:
        tagger = Tagger.from_checkpoint(args.ckpt, batch_size=args.batch_size, device=device)
    stats = TagStats()

    def tag_and_write(out: TextIO) -> None:
        from tqdm import tqdm

        with tqdm(total=total, unit="tweet", file=sys.stderr, dynamic_ncols=True, mininterval=0.5,
                  disable=not (args.progress or sys.stderr.isatty())) as bar:
            for chunk in chunks:
                write_predictions(out, chunk, tagger.tag(chunk, stats, progress=bar.update), args.format)
                out.flush()

    with output(args.out) as out:  # --out: complete or absent, never cut mid-line
        tag_and_write(out)
    if stats.windowed:
        print(f"bga-mner predict: {stats.windowed} of {stats.tweets} tweets longer than the model's "
              f"window ({tagger.max_length} word pieces) tagged in {stats.windows} overlapping windows",
              file=sys.stderr)
    return 0
