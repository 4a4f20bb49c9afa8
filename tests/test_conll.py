"""CoNLL reading and writing: the fixture set, the real files, and errors that name file:line."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from bga_mner.data.conll import (LABELS, CoNLLFormatError, Tweet, parse_conll_lines, read_conll,
                                 read_split_dir, write_conll)

FIXTURES = Path(__file__).parent / "fixtures" / "tweets"
DATA = Path(os.environ.get("BGA_MNER_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def test_fixture_set_reads_with_other_mapped_to_misc() -> None:
    splits = read_split_dir(FIXTURES)
    assert {k: len(v) for k, v in splits.items()} == {"train": 5, "valid": 3, "test": 4}
    ids = [t.image_id for tweets in splits.values() for t in tweets]
    assert ids == [f"fx{i}" for i in range(1, 13)]
    fx2 = splits["train"][1]
    assert fx2.tags[2:5] == ["B-MISC", "I-MISC", "I-MISC"]  # written OTHER in the file
    assert all(tag in LABELS for tweets in splits.values() for t in tweets for tag in t.tags)
    assert "\ufe0f" in splits["train"][3].words  # a word the tokenizer turns into nothing
    assert fx2.source == f"{FIXTURES / 'train.txt'}:14"


def test_write_then_read_round_trips(tmp_path: Path) -> None:
    tweets = read_conll(FIXTURES / "train.txt")
    out = tmp_path / "copy.txt"
    write_conll(out, tweets)
    again = read_conll(out)
    assert [(t.image_id, t.words, t.tags) for t in again] == [(t.image_id, t.words, t.tags) for t in tweets]
    other = [["O"] * len(t) for t in tweets]
    write_conll(out, tweets, other)
    assert [t.tags for t in read_conll(out)] == other


def test_write_rejects_wrong_tag_count(tmp_path: Path) -> None:
    tweet = Tweet("1", ["a", "b"], ["O", "O"], source="x.txt:3")
    with pytest.raises(ValueError, match="x.txt:3: 2 words but 1 tags"):
        write_conll(tmp_path / "out.txt", [tweet], [["O"]])
    assert not (tmp_path / "out.txt").exists()  # checked before anything is written


def test_write_to_a_stream_equals_write_to_a_file(tmp_path: Path) -> None:
    tweets = read_conll(FIXTURES / "train.txt")
    stream = io.StringIO()
    write_conll(stream, tweets)
    write_conll(tmp_path / "copy.txt", tweets)
    assert stream.getvalue() == (tmp_path / "copy.txt").read_text(encoding="utf-8")
    assert not stream.closed  # the caller's stream stays open


@pytest.mark.parametrize("text, line, message", [
    ("IMGID:1\nParis\tB-LOC\nBob B-PER\n", 3, "expected 'word<TAB>tag'"),
    ("IMGID:1\nParis\tB-CITY\n", 2, "unknown label 'B-CITY'"),
    ("IMGID:1\nParis\tX-LOC\n", 2, "unknown label 'X-LOC'"),
    ("IMGID:1\nParis\tB-LOC\n\nIMGID:\nBob\tO\n", 4, "empty IMGID"),
    ("IMGID:1\nParis\tB-LOC\n\nIMGID:2\n\nIMGID:3\nBob\tO\n", 4, "IMGID:2 has no words"),
    ("IMGID:1\n\tO\n", 2, "empty word"),
])
def test_bad_lines_name_file_and_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CoNLLFormatError, match=f"bad.txt:{line}: {message}") as err:
        read_conll(path)
    assert err.value.line_no == line and err.value.path == str(path)


def test_non_utf8_byte_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("IMGID:1\nParis\tB-LOC\nCaf\xe9\tO\n".encode("latin-1"))
    with pytest.raises(CoNLLFormatError, match=r"latin1.txt:3: not UTF-8: byte 0xe9"):
        read_conll(path)


def test_keeping_other_unmapped_is_an_error_naming_the_line() -> None:
    with pytest.raises(CoNLLFormatError, match=r"train.txt:17: unknown label 'B-OTHER'"):
        read_conll(FIXTURES / "train.txt", type_map={})


def test_crlf_and_bom_accepted(tmp_path: Path) -> None:
    tweets = parse_conll_lines(["IMGID:6\r\n", "Paris\tB-LOC\r\n", "is\tO\r\n", "\r\n",
                                "IMGID:7\r\n", "Bob\tI-PER\r\n"])
    assert [(t.image_id, t.words, t.tags) for t in tweets] == [
        ("6", ["Paris", "is"], ["B-LOC", "O"]), ("7", ["Bob"], ["I-PER"])]
    path = tmp_path / "bom.txt"
    path.write_bytes("\ufeffIMGID:1\r\nCaf\u00e9\tB-LOC\r\n".encode("utf-8"))
    assert [(t.image_id, t.words) for t in read_conll(path)] == [("1", ["Caf\u00e9"])]


@pytest.mark.parametrize("text, line, message", [
    ("Paris\tB-LOC\n\nIMGID:7\nBob\tO\n", 1, "word line before the first 'IMGID:' line"),
    ("IMGID:7\nBob\tO\n\nParis\tB-LOC\n", 4, "word line after a blank line"),
])
def test_words_outside_an_imgid_block_are_rejected(tmp_path: Path, text: str, line: int,
                                                   message: str) -> None:
    path = tmp_path / "headerless.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CoNLLFormatError, match=f"headerless.txt:{line}: {message}"):
        read_conll(path)


@pytest.mark.parametrize("content", [b"", b"\n\n  \n", b"\xef\xbb\xbf\n"])
def test_a_file_without_tweets_is_an_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "empty.txt"
    path.write_bytes(content)
    with pytest.raises(CoNLLFormatError, match=rf"^{path}: no tweets \(empty file\)$") as err:
        read_conll(path)
    assert err.value.line_no is None


@pytest.mark.parametrize("name, sizes", [("twitter2015", (4000, 1000, 3257)),
                                         ("twitter2017", (3373, 723, 723))])
def test_real_files_read_cleanly(name: str, sizes: tuple[int, int, int]) -> None:
    if not (DATA / name / "train.txt").is_file():
        pytest.skip(f"{DATA / name} not present")
    splits = read_split_dir(DATA / name)
    assert tuple(len(v) for v in splits.values()) == sizes
    for tweets in splits.values():
        assert len({t.image_id for t in tweets}) == len(tweets)
        assert all(len(t.words) == len(t.tags) > 0 for t in tweets)
