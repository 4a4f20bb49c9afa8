"""`bga-mner stats` (Table 1) and `bga-mner score` (P/R/F1 of a CoNLL file against the gold one)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bga_mner.cli import main as cli
from bga_mner.commands.stats import dataset_stats

FIXTURES = Path(__file__).parent / "fixtures" / "tweets"
DATA = Path(os.environ.get("BGA_MNER_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def _split(tweets: int, per: int, loc: int, org: int, misc: int) -> dict:
    return {"tweets": tweets, "entities": {"PER": per, "LOC": loc, "ORG": org, "MISC": misc}}


def _json(capsys: pytest.CaptureFixture, argv: list[str]) -> dict:
    assert cli(argv) == 0
    return json.loads(capsys.readouterr().out)


def _data(name: str) -> Path:
    if not (DATA / name / "train.txt").is_file():
        pytest.skip(f"{DATA / name} not present")
    return DATA / name


def test_stats_fixture_json(capsys: pytest.CaptureFixture) -> None:
    out = _json(capsys, ["stats", str(FIXTURES), "--json"])
    assert out.pop("labels")["version"] == "unknown"  # no known data set (tests/test_label_versions.py)
    assert out == {"train": _split(5, 3, 4, 2, 1), "valid": _split(3, 2, 1, 2, 1), "test": _split(4, 2, 3, 3, 2)}
    # B- tags miss fx3's "the River/I-LOC Thames/I-LOC" and fx11's "Go Seahawks/I-ORG"
    b_tags = _json(capsys, ["stats", str(FIXTURES), "--json", "--count", "b-tags"])
    assert b_tags["train"]["entities"]["LOC"] == 3 and b_tags["test"]["entities"]["ORG"] == 2


def test_stats_table_and_keep_other(capsys: pytest.CaptureFixture) -> None:
    assert cli(["stats", str(FIXTURES), "--keep-other"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["tweets", "train", "valid", "test"]
    assert [line.split() for line in lines[1:]] == [
        ["PER", "3", "2", "2"], ["LOC", "4", "1", "3"], ["ORG", "2", "2", "3"], ["OTHER", "1", "1", "2"],
        ["Total", "10", "6", "10"], ["Tweets", "5", "3", "4"], lines[-1].split()]
    assert lines[-1].startswith("labels: unknown data set unknown (not the paper's version")
    out = _json(capsys, ["stats", str(FIXTURES), "--json", "--keep-other"])
    assert list(out["test"]["entities"]) == ["PER", "LOC", "ORG", "OTHER"]


def test_twitter2017_matches_table_1() -> None:
    paper = {"train": _split(3373, 2943, 731, 1674, 701), "valid": _split(723, 626, 173, 375, 150),
             "test": _split(723, 621, 178, 395, 157)}
    root = _data("twitter2017")
    assert dataset_stats(root) == paper
    assert dataset_stats(root, "b-tags") == paper  # no ill-formed I- tags in Twitter-2017


def test_twitter2015_counts_pinned() -> None:
    """Table 1 says 2217/2091/928/940, 552/522/247/225, 1816/1697/839/726: see docs/data.md."""
    root = _data("twitter2015")
    assert dataset_stats(root) == {"train": _split(4000, 2285, 2135, 957, 975),
                                   "valid": _split(1000, 567, 543, 251, 233),
                                   "test": _split(3257, 1873, 1720, 860, 754)}
    assert dataset_stats(root, "b-tags") == {"train": _split(4000, 2217, 2091, 927, 931),
                                             "valid": _split(1000, 552, 522, 247, 220),
                                             "test": _split(3257, 1816, 1697, 839, 720)}


def test_stats_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli(["stats", str(tmp_path)]) == 2
    assert "train.txt: missing split file" in capsys.readouterr().err
    for split in ("train", "valid", "test"):
        (tmp_path / f"{split}.txt").write_text("IMGID:1\nParis\tB-LOC\n", encoding="utf-8")
    (tmp_path / "valid.txt").write_text("IMGID:1\nParis\tB-LOC\nBob\n", encoding="utf-8")
    assert cli(["stats", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"bga-mner stats: error: {tmp_path / 'valid.txt'}:3: expected 'word<TAB>tag', got 'Bob'")


# --- score -----------------------------------------------------------------------------------

GOLD = FIXTURES / "test.txt"


def _edit(tmp_path: Path, old: str, new: str) -> Path:
    text = GOLD.read_text(encoding="utf-8")
    assert old in text
    out = tmp_path / "pred.txt"
    out.write_text(text.replace(old, new, 1), encoding="utf-8")
    return out


def test_score_identical_and_perturbed(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    perfect = _json(capsys, ["score", str(GOLD), str(GOLD), "--json"])
    assert perfect["overall"] == {"precision": 100.0, "recall": 100.0, "f1": 100.0}
    pred = _edit(tmp_path, "London\tB-LOC", "London\tB-ORG")  # 10 gold: 9 right, 1 wrong type
    scores = _json(capsys, ["score", str(GOLD), str(pred), "--json"])
    assert list(scores) == ["overall", "PER", "LOC", "ORG", "MISC"]
    assert scores["overall"] == pytest.approx({"precision": 90.0, "recall": 90.0, "f1": 90.0})
    assert scores["LOC"] == pytest.approx({"precision": 100.0, "recall": 200 / 3, "f1": 80.0})
    assert scores["ORG"] == pytest.approx({"precision": 75.0, "recall": 100.0, "f1": 600 / 7})
    assert cli(["score", str(GOLD), str(pred)]) == 0
    table = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert table[0] == ["P", "R", "F1"] and table[1] == ["overall", "90.00", "90.00", "90.00"]
    assert table[3] == ["LOC", "100.00", "66.67", "80.00"]


@pytest.mark.parametrize("old, new, where, what", [
    ("Google\tB-ORG", "Gogle\tB-ORG", 11, "word 'Gogle' where {gold}:11 has 'Google' (IMGID:fx10, word 1)"),
    ("IMGID:fx10\n", "IMGID:fx99\n", 10, "IMGID:fx99 where {gold}:10 has IMGID:fx10"),
    ("London\tB-LOC\n", "", 15, "IMGID:fx10 has 4 words where {gold}:10 has 5"),
    ("London\tB-LOC\n", "London\tB-LOC\nagain\tO\n", 16, "IMGID:fx10 has 6 words where {gold}:10 has 5"),
    ("California\tB-LOC\n", "California\tB-PLACE\n", 8, "unknown label 'B-PLACE'"),
])
def test_score_mismatch_names_first_difference(tmp_path: Path, capsys: pytest.CaptureFixture,
                                               old: str, new: str, where: int, what: str) -> None:
    pred = _edit(tmp_path, old, new)
    assert cli(["score", str(GOLD), str(pred)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().startswith(
        f"bga-mner score: error: {pred}:{where}: {what.format(gold=GOLD)}")


def test_score_tweet_count_mismatch(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    text = GOLD.read_text(encoding="utf-8")
    pred = tmp_path / "pred.txt"
    pred.write_text(text[: text.index("IMGID:fx11")], encoding="utf-8")
    assert cli(["score", str(GOLD), str(pred)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"bga-mner score: error: {GOLD}:17: first unmatched tweet (IMGID:fx11); {GOLD} has 4 tweets, "
        f"{pred} has 2")


def test_console_errors_have_no_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    argv = [sys.executable, "-m", "bga_mner.cli", "score", str(GOLD), str(tmp_path / "none.txt")]
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "none.txt" in result.stderr and result.stdout == ""
