"""Bad input never costs work or data: every case ends in ONE line ``bga-mner <cmd>: error: ...``
naming the file (and line), exit status 2, no traceback; and the tagging of long or oddly broken
raw text loses no word.

This file holds bad input FILES (data splits, objects, images, predictions, checkpoints, raw
text); its successors hold the other classes: ``test_bad_values.py`` (config values, switches, run
names, devices, a config file that is not a mapping: refused before anything is created),
``test_os_errors.py`` (a full disk, a read-only file system, a broken pipe, a signal outside a
fit), ``test_resume.py`` (a signal during a fit, a moved run folder, an unreadable ``last.ckpt``,
``weights_only``), ``test_writes.py`` (writes only where asked), ``test_sweep.py`` (requeue,
dry runs).

One test per bad input (the command line runs in-process), then unit tests of the objects/images
counts and of the windowed tagging of long tweets. Data problems are caught when the data module
is set up, before the first training step: the fit cases end in well under a second each.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import error_line
from omegaconf import OmegaConf

from bga_mner.cli import main
from bga_mner.data.conll import LABELS, Tweet
from bga_mner.data.raw_input import read_tweets
from bga_mner.inference import INFERENCE_FORMAT, TagStats, merge_windows, plan_windows, tag_tweets

FIXTURES = Path(__file__).parent / "fixtures"
TWEETS = FIXTURES / "tweets"
GOOD_OBJECTS = '{"image_id": "fx1", "boxes": [[2, 3, 30, 40]], "scores": [0.5], "labels": [1], "names": ["person"]}'


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    """A copy of the fixture tweets (train/valid/test) to spoil."""
    root = tmp_path / "data"
    shutil.copytree(TWEETS, root)
    return root


def fit_error(capsys, tmp_path: Path, root: Path, *overrides: str) -> str:
    """``bga-mner fit`` (smoke models, no W&B) on ``root``; asserts nothing was trained."""
    line = error_line(capsys, ["fit", "run.profile=smoke", f"data.root={root}",
                               f"paths.runs_dir={tmp_path / 'runs'}",
                               f"paths.cache_dir={tmp_path / 'cache'}", "logging.wandb=false",
                               "run.name=bad", *overrides])
    assert not list((tmp_path / "runs").rglob("*.ckpt"))  # failed at setup, before any step
    return line


def objects_file(tmp_path: Path, bad_line: str) -> Path:
    path = tmp_path / "objects.jsonl"
    path.write_text(f"{GOOD_OBJECTS}\n\n{bad_line}\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------- empty splits (fit)
@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_fit_empty_split_fails_at_setup(capsys, tmp_path, data_root, split) -> None:
    (data_root / f"{split}.txt").write_text("\n\n", encoding="utf-8")
    assert fit_error(capsys, tmp_path, data_root) == (
        f"bga-mner fit: error: {data_root / f'{split}.txt'}: no tweets (empty file)")


def test_fit_unknown_label_in_the_test_split_fails_at_setup(capsys, tmp_path, data_root) -> None:
    (data_root / "test.txt").write_text("IMGID:1\nParis\tB-CITY\n", encoding="utf-8")
    assert fit_error(capsys, tmp_path, data_root).startswith(
        f"bga-mner fit: error: {data_root / 'test.txt'}:2: unknown label 'B-CITY'")


def test_fit_train_limit_larger_than_the_split(capsys, tmp_path, data_root) -> None:
    assert fit_error(capsys, tmp_path, data_root, "data.train_limit=9") == (
        "bga-mner fit: error: data.train_limit=9: must be between 1 and the 5 train tweets")


# --------------------------------------------------------------------------- objects and images (fit)
@pytest.mark.parametrize("bad_line, message", [
    ("{not json", "not valid JSON (Expecting property name enclosed in double quotes, column 2)"),
    ('{"image_id": "fx2", "boxes": [[0, NaN, 5, 5]], "scores": [1], "labels": [1], "names": ["x"]}',
     "image 'fx2': box 1 [0, nan, 5, 5] has a NaN or infinite coordinate"),
    ('{"image_id": "fx2", "boxes": [[0, 0, Infinity, 5]], "scores": [1], "labels": [1], "names": ["x"]}',
     "image 'fx2': box 1 [0, 0, inf, 5] has a NaN or infinite coordinate"),
    ('{"image_id": "fx2", "boxes": [[9, 0, 5, 5]], "scores": [1], "labels": [1], "names": ["x"]}',
     "image 'fx2': box 1 [9, 0, 5, 5] is inverted (need x1 < x2 and y1 < y2)"),
    ('{"image_id": "fx2", "boxes": [[5, 0, 5, 5]], "scores": [1], "labels": [1], "names": ["x"]}',
     "image 'fx2': box 1 [5, 0, 5, 5] has no area (need x1 < x2 and y1 < y2)"),
], ids=["malformed-json", "nan-box", "infinite-box", "inverted-box", "zero-area-box"])
def test_fit_bad_objects_line_fails_at_setup(capsys, tmp_path, data_root, bad_line, message) -> None:
    path = objects_file(tmp_path, bad_line)
    assert fit_error(capsys, tmp_path, data_root, f"data.objects_file={path}") == (
        f"bga-mner fit: error: {path}:3: {message}")


def test_fit_objects_file_not_utf8(capsys, tmp_path, data_root) -> None:
    path = tmp_path / "objects.jsonl"
    path.write_bytes(GOOD_OBJECTS.encode() + b'\n{"image_id": "caf\xe9"}\n')
    assert fit_error(capsys, tmp_path, data_root, f"data.objects_file={path}") == (
        f"bga-mner fit: error: {path}:2: not UTF-8: byte 0xe9 at byte 17 of the line")


def test_fit_missing_objects_file(capsys, tmp_path, data_root) -> None:
    path = tmp_path / "nope.jsonl"
    assert fit_error(capsys, tmp_path, data_root, f"data.objects_file={path}") == (
        f"bga-mner fit: error: {path}: data.objects_file not found")


def test_fit_missing_images_dir(capsys, tmp_path, data_root) -> None:
    path = tmp_path / "no-images"
    assert fit_error(capsys, tmp_path, data_root, f"data.images_dir={path}") == (
        f"bga-mner fit: error: {path}: data.images_dir not found")


def test_fit_images_dir_is_a_file(capsys, tmp_path, data_root) -> None:
    path = data_root / "train.txt"
    assert fit_error(capsys, tmp_path, data_root, f"data.images_dir={path}") == (
        f"bga-mner fit: error: {path}: not a folder (the images of the data set)")


def test_image_counts_go_into_results_json() -> None:
    from bga_mner.config import load_config
    from bga_mner.data.images import ImageCounts
    from bga_mner.run import build_results

    counts = {"train": ImageCounts(tweets=10, missing=1, unreadable=2, boxes_clipped=3,
                                   boxes_dropped=4), "valid": None}
    results = build_results(load_config(overrides=["run.name=x"]), best_epoch=0, dev=None, test={},
                            seconds_per_epoch=None, truncated={"train": 0, "valid": 0},
                            missing_images={s: c and c.without_image for s, c in counts.items()},
                            image_counts=counts)
    assert results["missing_images"] == {"train": 3, "valid": None}  # missing + unreadable
    assert json.loads(json.dumps(results["image_counts"])) == {
        "train": {"tweets": 10, "missing": 1, "unreadable": 2, "boxes_clipped": 3,
                  "boxes_dropped": 4, "unlisted": 0, "beyond_k": 0, "crops_missing": 0,
                  "crops_unreadable": 0, "crops_per_tweet": []}, "valid": None}


# --------------------------------------------------------------------------- stats and score
def test_stats_empty_split(capsys, data_root) -> None:
    (data_root / "valid.txt").write_bytes(b"")
    assert error_line(capsys, ["stats", str(data_root)]) == (
        f"bga-mner stats: error: {data_root / 'valid.txt'}: no tweets (empty file)")


def test_stats_words_before_the_first_imgid(capsys, data_root) -> None:
    (data_root / "train.txt").write_text("Paris\tB-LOC\n\nIMGID:1\nBob\tB-PER\n", encoding="utf-8")
    assert error_line(capsys, ["stats", str(data_root)]) == (
        f"bga-mner stats: error: {data_root / 'train.txt'}:1: word line before the first 'IMGID:' "
        "line: every tweet starts with an 'IMGID:<id>' line (got 'Paris\\tB-LOC')")


def test_stats_accepts_a_byte_order_mark(capsys, data_root) -> None:
    path = data_root / "train.txt"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert main(["stats", str(data_root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["train"]["tweets"] == 5


def test_score_empty_prediction_file(capsys, tmp_path) -> None:
    pred = tmp_path / "pred.txt"
    pred.write_text("")
    assert error_line(capsys, ["score", str(TWEETS / "test.txt"), str(pred)]) == (
        f"bga-mner score: error: {pred}: no tweets (empty file)")


def test_score_empty_gold_file(capsys, tmp_path) -> None:
    gold = tmp_path / "gold.txt"
    gold.write_text("\n")
    assert error_line(capsys, ["score", str(gold), str(TWEETS / "test.txt")]) == (
        f"bga-mner score: error: {gold}: no tweets (empty file)")


def test_score_gold_is_a_folder(capsys, tmp_path) -> None:
    assert error_line(capsys, ["score", str(tmp_path), str(TWEETS / "test.txt")]) == (
        f"bga-mner score: error: {tmp_path}: Is a directory")


def test_score_unreadable_file(capsys, tmp_path, monkeypatch) -> None:
    # the tests may run as root, which chmod does not stop: the OS error is raised instead
    pred = tmp_path / "pred.txt"
    shutil.copy(TWEETS / "test.txt", pred)
    real = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self == pred:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    assert error_line(capsys, ["score", str(TWEETS / "test.txt"), str(pred)]) == (
        f"bga-mner score: error: {pred}: Permission denied")


def test_debug_env_shows_the_traceback(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("BGA_MNER_DEBUG", "1")
    pred = tmp_path / "pred.txt"
    pred.write_text("")
    assert main(["score", str(TWEETS / "test.txt"), str(pred)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().endswith(
        f"bga-mner score: error: {pred}: no tweets (empty file)")


# --------------------------------------------------------------------------- predict: input
def test_predict_input_not_utf8(capsys, tmp_path) -> None:
    path = tmp_path / "tweets.txt"
    path.write_bytes("Kawhi Leonard wins\nCaf\xe9 in Toronto\n".encode("latin-1"))
    assert error_line(capsys, ["predict", "--ckpt", str(tmp_path / "unused.pt"), "--input",
                               str(path)]) == (
        f"bga-mner predict: error: {path}:2: not UTF-8: byte 0xe9 at byte 3 of the line "
        "(byte 22 of the file)")


def test_predict_empty_input(capsys, tmp_path) -> None:
    path = tmp_path / "tweets.txt"
    path.write_text("\n   \n")
    assert error_line(capsys, ["predict", "--ckpt", str(tmp_path / "unused.pt"), "--input",
                               str(path)]) == f"bga-mner predict: error: {path}: no tweets (empty file)"


def test_predict_missing_input(capsys, tmp_path) -> None:
    path = tmp_path / "none.txt"
    assert error_line(capsys, ["predict", "--ckpt", str(tmp_path / "unused.pt"), "--input",
                               str(path)]) == (
        f"bga-mner predict: error: {path}: No such file or directory")


def test_predict_conll_input_with_words_before_the_first_imgid(capsys, tmp_path) -> None:
    path = tmp_path / "tweets.conll"
    path.write_text("Paris\tO\n", encoding="utf-8")
    assert error_line(capsys, ["predict", "--ckpt", str(tmp_path / "unused.pt"), "--input",
                               str(path)]).startswith(
        f"bga-mner predict: error: {path}:1: word line before the first 'IMGID:' line")


def test_predict_bad_batch_size(capsys, tmp_path) -> None:
    assert error_line(capsys, ["predict", "--ckpt", "x", "--batch-size", "0"]) == (
        "bga-mner predict: error: --batch-size 0: must be at least 1")


# --------------------------------------------------------------------------- predict: checkpoints
@pytest.fixture
def text_input(tmp_path: Path) -> Path:
    path = tmp_path / "tweets.txt"
    path.write_text("Kawhi Leonard wins the fan vote in Toronto\n", encoding="utf-8")
    return path


def ckpt_error(capsys, ckpt: Path, text_input: Path) -> str:
    return error_line(capsys, ["predict", "--ckpt", str(ckpt), "--input", str(text_input)])


def _inference_file(labels=LABELS) -> bytes:
    buf = io.BytesIO()
    torch.save({"format": INFERENCE_FORMAT, "config": {}, "labels": list(labels),
                "state_dict": {"w": torch.zeros(4096)}}, buf)
    return buf.getvalue()


def test_checkpoint_that_is_a_text_file(capsys, tmp_path, text_input) -> None:
    ckpt = tmp_path / "notes.pt"
    ckpt.write_text("hello\n")
    assert ckpt_error(capsys, ckpt, text_input).startswith(
        f"bga-mner predict: error: {ckpt}: not a readable checkpoint, or a truncated one (")


def test_checkpoint_truncated(capsys, tmp_path, text_input) -> None:
    data = _inference_file()
    ckpt = tmp_path / "inference.pt"
    ckpt.write_bytes(data[: len(data) // 2])
    assert ckpt_error(capsys, ckpt, text_input).startswith(
        f"bga-mner predict: error: {ckpt}: not a readable checkpoint, or a truncated one (")


def test_checkpoint_empty_file(capsys, tmp_path, text_input) -> None:
    ckpt = tmp_path / "inference.pt"
    ckpt.write_bytes(b"")
    assert ckpt_error(capsys, ckpt, text_input) == (
        f"bga-mner predict: error: {ckpt}: not a readable checkpoint, or a truncated one (EOFError)")


def test_checkpoint_of_something_else(capsys, tmp_path, text_input) -> None:
    ckpt = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(3)}, ckpt)
    assert ckpt_error(capsys, ckpt, text_input) == (
        f"bga-mner predict: error: {ckpt}: neither a bga-mner Lightning checkpoint nor a "
        f"{INFERENCE_FORMAT} file")


def test_checkpoint_with_another_label_set(capsys, tmp_path, text_input) -> None:
    ckpt = tmp_path / "inference.pt"
    ckpt.write_bytes(_inference_file(labels=["O", "B-X", "I-X"]))
    assert ckpt_error(capsys, ckpt, text_input).startswith(
        f"bga-mner predict: error: {ckpt}: label set ['O', 'B-X', 'I-X'] differs from")


def test_checkpoint_is_a_folder(capsys, tmp_path, text_input) -> None:
    assert ckpt_error(capsys, tmp_path, text_input) == (
        f"bga-mner predict: error: {tmp_path}: a folder, not a checkpoint file")


def test_checkpoint_missing(capsys, tmp_path, text_input) -> None:
    ckpt = tmp_path / "none.pt"
    assert ckpt_error(capsys, ckpt, text_input) == (
        f"bga-mner predict: error: {ckpt}: checkpoint not found")


# --------------------------------------------------------------------------- detect
def test_detect_bad_max_objects(capsys, tmp_path) -> None:
    assert error_line(capsys, ["detect", str(tmp_path), "--out", str(tmp_path / "o.jsonl"),
                               "--max-objects", "0"]) == (
        "bga-mner detect: error: --max-objects, --batch-size and --proposals must be at least 1")


# --------------------------------------------------------------------------- raw text: nothing lost
def test_raw_text_lines_end_at_newline_only() -> None:
    data = "Kawhi\u2028Leonard wins\r\nin To\ronto\n\nNASA\tlaunch today\n".encode()
    tweets = read_tweets(data, "tweets.txt")
    assert [(t.image_id, t.words) for t in tweets] == [
        ("line1", ["Kawhi", "Leonard", "wins"]),  # U+2028: whitespace, not a line break
        ("line2", ["in", "To", "onto"]),          # a lone CR: whitespace too; CRLF ends the line
        ("line4", ["NASA", "launch", "today"])]   # a tab does not make the line CoNLL


def test_raw_text_byte_order_mark_is_dropped() -> None:
    (tweet,) = read_tweets(b"\xef\xbb\xbfKawhi Leonard\n", "tweets.txt")
    assert tweet.words == ["Kawhi", "Leonard"]


@pytest.mark.parametrize("name, data, fmt, expected", [
    ("t.txt", "IMGID:7\nParis\tB-LOC\n", "auto", ("7", ["Paris"])),        # first line IMGID:
    ("t.txt", "\ufeff\nIMGID:7\nParis\tB-LOC\n", "auto", ("7", ["Paris"])),  # after a BOM, blank
    ("t.conll", "IMGID:7\nParis\tB-LOC\n", "auto", ("7", ["Paris"])),
    ("t.txt", "Paris\tB-LOC\n", "auto", ("line1", ["Paris", "B-LOC"])),    # a tab never decides
    ("t.txt", "IMGID:7\nParis\tB-LOC\n", "text", ("line1", ["IMGID:7"])),
])
def test_input_format(name: str, data: str, fmt: str, expected: tuple) -> None:
    first = read_tweets(data.encode(), name, fmt)[0]
    assert (first.image_id, first.words) == expected


# --------------------------------------------------------------------------- windowed tagging
class ContextFreeTagger:
    """A stand-in system whose tag for a word depends on the word alone (``tag_of``), or, with
    ``edges``, B-LOC on the first and last word of every window and O elsewhere."""

    TAGS = {"Kevin": "B-PER", "Durant": "I-PER", "Boston": "B-LOC", "NASA": "B-ORG"}

    def __init__(self, max_length: int, edges: bool = False) -> None:
        self.cfg = OmegaConf.create({"data": {"max_length": max_length}})
        self.edges, self.calls = edges, 0

    def to(self, device):
        return self

    def eval(self):
        return self

    def decode_batch(self, batch: dict) -> list[list[str]]:
        self.calls += 1
        out = []
        for i, words in enumerate(batch["words"]):
            assert int(batch["word_mask"][i].sum()) == len(words)  # a window is never truncated
            if self.edges:
                out.append(["B-LOC" if j in (0, len(words) - 1) else "O" for j in range(len(words))])
            else:
                out.append([self.TAGS.get(w, "O") for w in words])
        return out


@pytest.fixture(scope="module")
def tokenizer():
    from bga_mner.models.backbones import load_tokenizer

    return load_tokenizer("tiny-bert")


def long_tweet(n: int = 300) -> Tweet:
    words = ("Kevin Durant scored in Boston tonight , NASA says : unbelievable "
             "#Warriors".split() * n)[:n]
    return Tweet("long", words, ["O"] * n)


def test_windows_agree_with_a_single_pass_of_a_context_free_tagger(tokenizer) -> None:
    tweet, short = long_tweet(), Tweet("short", ["Kevin", "Durant", "in", "Boston"], ["O"] * 4)
    stats = TagStats()
    tags = tag_tweets(ContextFreeTagger(max_length=24), tokenizer, [tweet, short], stats=stats)
    assert tags == [[ContextFreeTagger.TAGS.get(w, "O") for w in t.words] for t in (tweet, short)]
    assert (stats.tweets, stats.windowed) == (2, 1) and stats.windows > 10
    single = TagStats()
    assert tag_tweets(ContextFreeTagger(max_length=2048), tokenizer, [tweet, short],
                      stats=single) == tags
    assert (single.windowed, single.windows) == (0, 0)


def test_each_word_is_taken_from_the_window_where_it_is_central(tokenizer) -> None:
    tweet = long_tweet()
    (tags,) = tag_tweets(ContextFreeTagger(max_length=24, edges=True), tokenizer, [tweet])
    # window edges inside the tweet never show: only the tweet's own first and last words
    assert tags == ["B-LOC"] + ["O"] * (len(tweet) - 2) + ["B-LOC"]


def test_every_word_of_a_300_word_tweet_gets_a_tag_from_the_model(tokenizer) -> None:
    from bga_mner.config import load_config
    from bga_mner.inference import text_batch
    from bga_mner.system import MNERSystem

    torch.manual_seed(0)
    system = MNERSystem(load_config(profile="smoke"), build_visual=False, pretrained=False).eval()
    tweet, short = long_tweet(), Tweet("s", "Kevin Durant scored in Boston".split(), ["O"] * 5)
    stats = TagStats()
    with torch.no_grad():
        (tags,) = tag_tweets(system, tokenizer, [tweet], stats=stats)
        assert len(tags) == 300 and all(t in LABELS for t in tags)
        assert stats.windowed == 1 and stats.windows >= 3
        # a tweet that fits is tagged in one pass, as before windows existed
        single = system.decode_batch(text_batch(tokenizer, [short], 128))
        assert tag_tweets(system, tokenizer, [short], batch_size=1) == single
        # and a tiny window changes nothing where both fit
        system.cfg.data.max_length = 12
        assert tag_tweets(system, tokenizer, [short], batch_size=1) == single
        tiny = TagStats()
        (tags,) = tag_tweets(system, tokenizer, [long_tweet(60)], stats=tiny)
    assert len(tags) == 60 and all(t in LABELS for t in tags) and tiny.windows > 10


def test_plan_windows_cover_every_word_within_the_budget() -> None:
    costs = [1, 3, 2, 1, 1, 9, 1, 2, 2, 1, 1, 1, 4, 1, 1, 30, 1, 1]
    windows = plan_windows(costs, budget=8)
    assert windows[0][0] == 0 and windows[-1][1] == len(costs)
    for (s, e), (s2, e2) in zip(windows, windows[1:]):
        assert s < s2 <= e <= e2  # no gap; starts and ends move forward
    for s, e in windows:
        assert e > s and (e - s == 1 or sum(min(c, 8) for c in costs[s:e]) <= 8)
    assert (15, 16) in windows  # a word longer than the budget is a window of its own
    assert plan_windows([1, 2, 3], budget=6) == [(0, 3)]


def test_merge_windows_cuts_where_windows_agree_and_repairs_bio_otherwise() -> None:
    # windows [0,6) and [3,9) agree on words 4 and 5 (the middle of the overlap): cut there
    merged = merge_windows([(0, 6), (3, 9)], [["O", "B-PER", "I-PER", "O", "B-LOC", "I-LOC"],
                                              ["B-ORG", "B-LOC", "I-LOC", "O", "O", "O"]])
    assert merged == ["O", "B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "O", "O"]
    # no agreement near the middle: cut in it; an I- that continues nothing becomes B-
    merged = merge_windows([(0, 4), (2, 6)], [["O", "O", "O", "O"],
                                              ["I-PER", "I-PER", "I-PER", "O"]])
    assert merged == ["O", "O", "O", "B-PER", "I-PER", "O"]
