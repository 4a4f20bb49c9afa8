"""``bga-mner detect`` over many images: a progress bar, and an interrupted run continues where it
stopped (finished images are kept in ``<out>.partial``). A tiny random-init detector, as in
tests/test_detect.py."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

import bga_mner.data.detect as detect
from bga_mner.cli import main as cli
from bga_mner.data.detect import DetectorSettings, detect_folder, partial_path, read_objects

FIXTURES = Path(__file__).parent / "fixtures"
READ_IMAGE = detect._read_image
TINY = DetectorSettings(weights="none", max_objects=3, min_size=32, max_size=64, proposals=10)


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for i, name in enumerate(("fx1.jpg", "fx2.jpg", "fx7.jpg", "fx1.jpg", "fx2.jpg")):  # fx7: corrupt
        shutil.copy(FIXTURES / "images" / name, folder / f"im{i}.jpg")
    return folder


def _reads(monkeypatch: pytest.MonkeyPatch, stop_after: int | None = None) -> list[str]:
    """Record the images the detector reads; interrupt (Ctrl-C) when reading image ``stop_after``."""
    read = []

    def spy(path: Path):
        if stop_after is not None and len(read) == stop_after:
            raise KeyboardInterrupt
        read.append(path.stem)
        return READ_IMAGE(path)

    monkeypatch.setattr(detect, "_read_image", spy)
    return read


def test_interrupted_run_continues_where_it_stopped(images: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    whole = detect_folder(images, tmp_path / "whole.jsonl", TINY, batch_size=1)
    assert (whole.images, whole.written, whole.unreadable, whole.resumed) == (5, 4, 1, 0)

    out = tmp_path / "objects.jsonl"
    read = _reads(monkeypatch, stop_after=2)
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        detect_folder(images, out, TINY, batch_size=1)
    assert read == ["im0", "im1"] and not out.exists()
    lines = partial_path(out).read_text().splitlines()
    assert len(lines) == 3 and "bga_mner_detect_partial" in lines[0]  # header + the finished images
    assert [json.loads(line)["image_id"] for line in lines[1:]] == ["im0", "im1"]

    with open(partial_path(out), "a") as f:  # a line cut short by the interruption
        f.write('{"image_id": "im2", "boxes": [[1')
    read = _reads(monkeypatch)
    torch.manual_seed(0)
    stats = detect_folder(images, out, TINY, batch_size=1)
    assert read == ["im2", "im3", "im4"]  # im0 and im1 are not detected again
    assert (stats.images, stats.written, stats.unreadable, stats.resumed) == (5, 4, 1, 2)
    assert not partial_path(out).exists()
    assert out.read_text() == (tmp_path / "whole.jsonl").read_text()  # as if never interrupted
    assert list(read_objects(out)) == ["im0", "im1", "im3", "im4"]


def test_partial_file_of_other_settings_is_not_reused(images: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "objects.jsonl"
    _reads(monkeypatch, stop_after=2)
    with pytest.raises(KeyboardInterrupt):
        detect_folder(images, out, TINY, batch_size=1)
    read = _reads(monkeypatch)
    stats = detect_folder(images, out, dataclasses.replace(TINY, max_objects=2), batch_size=1)
    assert read == ["im0", "im1", "im2", "im3", "im4"] and stats.resumed == 0
    assert all(len(d.boxes) <= 2 for d in read_objects(out).values())


def test_cli_shows_progress_and_says_what_it_resumed(images: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "objects.jsonl"
    args = ["detect", str(images), "--out", str(out), "--weights", "none", "--max-objects", "3",
            "--min-size", "32", "--max-size", "64", "--proposals", "10", "--batch-size", "1"]
    _reads(monkeypatch, stop_after=3)
    assert cli(args + ["--no-progress"]) == 130  # Ctrl-C: 128 + SIGINT, one line
    assert capsys.readouterr().err.strip().splitlines()[-1] == "bga-mner detect: interrupted by SIGINT"
    _reads(monkeypatch)
    assert cli(args + ["--progress"]) == 0
    captured = capsys.readouterr()
    assert "4 images with detections written; 1 unreadable skipped (of 5 files)" in captured.out
    assert "2 from the interrupted run before" in captured.out
    bar = captured.err.replace("\r", "\n").splitlines()
    assert any("detect: 100%" in line and "5/5" in line and ("img/s" in line or "s/img" in line)
               for line in bar), captured.err  # done/total, rate and time left
