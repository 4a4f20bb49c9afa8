"""``bga-mner score GOLD PRED``: entity-level P/R/F1 of a predicted CoNLL file against the gold one.

Both files must hold the same tweets, in the same order, with the same words (``bga-mner predict``
writes such a file). The first difference is an error naming ``file:line`` of both files; an
empty file, or a malformed line, is an error naming the file (and line).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

from bga_mner.data.conll import ENTITY_TYPES, Tweet, read_conll
from bga_mner.errors import UserError


class TweetMismatchError(UserError, ValueError):
    """The predicted file does not hold the gold file's tweets; the message names both lines."""


def _line_of(tweet: Tweet, position: int) -> str:
    """``path:line`` of word ``position`` of a tweet (its end when ``position == len(tweet)``)."""
    path, _, line = tweet.source.rpartition(":")
    first_word_line = int(line) + (1 if tweet.image_id else 0)  # the IMGID line comes first
    return f"{path}:{first_word_line + position}"


def check_aligned(gold: Sequence[Tweet], pred: Sequence[Tweet], gold_path: str | Path,
                  pred_path: str | Path) -> None:
    """Raise :class:`TweetMismatchError` at the first tweet, image id or word that differs.

    Args:
        gold, pred: the tweets of the two files.
        gold_path, pred_path: the file names, for the message of a mismatch of tweet counts.
    """
    for g, p in zip(gold, pred):
        if g.image_id != p.image_id:
            raise TweetMismatchError(f"{p.source}: IMGID:{p.image_id} where {g.source} has "
                                     f"IMGID:{g.image_id}")
        for i, (gw, pw) in enumerate(zip(g.words, p.words)):
            if gw != pw:
                raise TweetMismatchError(f"{_line_of(p, i)}: word {pw!r} where {_line_of(g, i)} "
                                         f"has {gw!r} (IMGID:{g.image_id}, word {i + 1})")
        if len(g) != len(p):
            n = min(len(g), len(p))
            raise TweetMismatchError(f"{_line_of(p, n)}: IMGID:{p.image_id} has {len(p)} words "
                                     f"where {g.source} has {len(g)}; first difference at "
                                     f"{_line_of(g, n)} of the gold file")
    if len(gold) != len(pred):
        n = min(len(gold), len(pred))
        extra = (gold if len(gold) > n else pred)[n]
        raise TweetMismatchError(f"{extra.source}: first unmatched tweet (IMGID:{extra.image_id}); "
                                 f"{gold_path} has {len(gold)} tweets, {pred_path} has {len(pred)}")


def format_scores(scores: dict[str, dict[str, float]]) -> str:
    """A table of P/R/F1 percentages (2 decimals), overall then per type."""
    lines = [f"{'':<8}{'P':>8}{'R':>8}{'F1':>8}"]
    for key in ("overall",) + ENTITY_TYPES:
        s = scores[key]
        lines.append(f"{key:<8}{s['precision']:>8.2f}{s['recall']:>8.2f}{s['f1']:>8.2f}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("gold", type=Path, help="gold CoNLL file (IMGID blocks, word<TAB>tag)")
    parser.add_argument("pred", type=Path, help="predicted CoNLL file of the same tweets")
    parser.add_argument("--json", action="store_true",
                        help='print {"overall": {"precision", "recall", "f1"}, "PER": {...}, ...} (%%)')


def main(args: argparse.Namespace) -> int:
    # errors (a missing, empty or malformed file, a mismatch) go to the command line's one error
    # path: "bga-mner score: error: <file>:<line>: ...", exit status 2
    gold, pred = read_conll(args.gold), read_conll(args.pred)
    check_aligned(gold, pred, args.gold, args.pred)
    from bga_mner.metrics import span_scores  # imports torch: only once the files are good

    scores = span_scores([t.tags for t in gold], [t.tags for t in pred])
    print(json.dumps(scores) if args.json else format_scores(scores))
    return 0
