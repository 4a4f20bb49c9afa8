"""``bga-mner predict --ckpt CKPT [--input FILE|-] [--format-in auto|text|conll]
[--format jsonl|conll] [--out FILE]``.

Tags raw text (one tweet per line, split on whitespace) or a CoNLL file (its tags are checked,
then ignored) with the text branch alone: no image is read and no visual encoder is built. The
input is UTF-8 (a byte-order mark is dropped; other bytes are an error naming the line and the
byte offset); lines end at ``\\n`` (``\\r\\n`` accepted; a lone ``\\r`` or U+2028 is whitespace,
not a line break). ``--format-in auto`` reads CoNLL from a ``.conll`` file or from input whose
first non-blank line starts with ``IMGID:``, raw text otherwise; a tab never decides.
A tweet longer than the model's window (``data.max_length`` word pieces) is tagged in overlapping
windows (``inference.tag_tweets``), and their number is reported on stderr.
A checkpoint trained with ``model.text_context=real`` (the real-context control) is refused: its
text layers read the real image, so it has no image-free mode (``bga-mner test`` evaluates it).
JSONL gives one object per tweet with its entity spans (``spans.bio_to_spans``, ``end``
exclusive); CoNLL output can be scored with ``bga-mner score``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence, TextIO

from omegaconf import OmegaConf

from bga_mner.atomic import output
from bga_mner.build import real_context
from bga_mner.data.conll import Tweet, write_conll
from bga_mner.data.spans import bio_to_spans
from bga_mner.errors import UserError
from bga_mner.inference import (BATCH_SIZE, INPUT_FORMATS, TagStats, build_system, read_checkpoint,
                                 read_tweets, tag_tweets)


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
    parser.add_argument("--ckpt", required=True, help="checkpoints/inference.pt or best.ckpt")
    parser.add_argument("--input", default="-", help="text or CoNLL file; '-' reads stdin")
    parser.add_argument("--format-in", choices=INPUT_FORMATS, default="auto",
                        help="input format; auto (default): conll for a .conll file or input whose "
                             "first non-blank line starts with IMGID:, else text (one tweet a line)")
    parser.add_argument("--format", choices=("jsonl", "conll"), default="jsonl", help="output format")
    parser.add_argument("--out", help="output file (default: stdout)")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                        help="windows per forward pass (default %(default)s)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")


def main(args: argparse.Namespace) -> int:
    from bga_mner.models.backbones import load_tokenizer

    from bga_mner.devices import torch_device

    if args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size}: must be at least 1")
    device = torch_device(args.device)
    # the input first: a bad line is reported before the model is loaded
    if args.input == "-":
        stdin = getattr(sys.stdin, "buffer", None)
        data = stdin.read() if stdin is not None else sys.stdin.read().encode("utf-8")
        tweets = read_tweets(data, "<stdin>", args.format_in)
    else:
        tweets = read_tweets(Path(args.input).read_bytes(), args.input, args.format_in)
    ckpt = read_checkpoint(args.ckpt)
    if real_context(ckpt.config):
        raise UserError(f"{ckpt.path}: trained with model.text_context=real, the model reads the real "
                        "image of each tweet (its text layers attend to the real visual tokens); "
                        "`bga-mner predict` is image-free: evaluate it with `bga-mner test` instead")
    if ckpt.config.model.inference_visual == "real":
        print("predict is image-free: tagging with generated visual tokens "
              "(model.inference_visual=generated)", file=sys.stderr)
    system = build_system(ckpt, OmegaConf.create({"model": {"inference_visual": "generated"}}),
                          build_visual=False)
    stats = TagStats()
    tags = tag_tweets(system, load_tokenizer(system.cfg.model.text_encoder), tweets,
                      batch_size=args.batch_size, device=device, stats=stats)
    if stats.windowed:
        print(f"bga-mner predict: {stats.windowed} of {stats.tweets} tweets longer than the model's "
              f"window ({system.cfg.data.max_length} word pieces) tagged in {stats.windows} "
              f"overlapping windows", file=sys.stderr)
    with output(args.out) as out:  # --out: complete or absent, never cut mid-line
        write_predictions(out, tweets, tags, args.format)
    return 0
