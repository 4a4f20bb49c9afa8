"""data/detect.py and ``bga-mner detect``: the objects file format and the Faster R-CNN run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from bga_mner.cli import main as cli
from bga_mner.data.detect import Detections, ObjectsFormatError, read_objects, write_objects

FIXTURES = Path(__file__).parent / "fixtures"


def test_read_fixture_objects_sorted_by_score() -> None:
    objects = read_objects(FIXTURES / "objects.jsonl")
    assert set(objects) == {"fx1", "fx2", "fx3", "fx5", "fx6", "fx7", "fx9", "fx10"}
    fx1 = objects["fx1"]
    assert fx1.scores == [0.9, 0.7, 0.5, 0.1]
    assert fx1.boxes[0] == [10.0, 10.0, 20.0, 20.0] and fx1.names[0] == "car" and fx1.labels[0] == 3


def test_write_then_read_round_trip(tmp_path: Path) -> None:
    dets = [Detections("a", [[0, 0, 1, 1], [1, 1, 3, 3]], [0.2, 0.8], [1, 2], ["x", "y"]),
            Detections("b")]
    write_objects(tmp_path / "o.jsonl", dets)
    back = read_objects(tmp_path / "o.jsonl")
    assert back["a"].scores == [0.8, 0.2] and back["a"].names == ["y", "x"]
    assert back["b"].boxes == [] and [p.name for p in tmp_path.iterdir()] == ["o.jsonl"]


@pytest.mark.parametrize("line, message", [
    ("{not json", "not valid JSON"),
    ('{"boxes": [], "scores": [], "labels": [], "names": []}', "image_id"),
    ('{"image_id": "a", "boxes": [[0, 0, 1, 1]], "scores": [], "labels": [1], "names": ["x"]}',
     "different lengths"),
    ('{"image_id": "a", "boxes": [[0, 0, 1]], "scores": [1], "labels": [1], "names": ["x"]}',
     "4 numbers"),
    ('{"image_id": "a", "boxes": [], "scores": [], "labels": []}', "names"),
    ('{"image_id": "a", "boxes": [[0, NaN, 5, 5]], "scores": [1], "labels": [1], "names": ["x"]}',
     r"box 1 \[0, nan, 5, 5\] has a NaN or infinite coordinate"),
    ('{"image_id": "a", "boxes": [[0, 0, Infinity, 5]], "scores": [1], "labels": [1], "names": ["x"]}',
     "NaN or infinite"),
    ('{"image_id": "a", "boxes": [[1, 1, 2, 2], [9, 0, 5, 5]], "scores": [1, 1], "labels": [1, 1], '
     '"names": ["x", "y"]}', r"box 2 \[9, 0, 5, 5\] is inverted \(need x1 < x2 and y1 < y2\)"),
    ('{"image_id": "a", "boxes": [[5, 0, 5, 5]], "scores": [1], "labels": [1], "names": ["x"]}',
     "has no area"),
    ('{"image_id": "a", "boxes": [[0, 0, 5, true]], "scores": [1], "labels": [1], "names": ["x"]}',
     "4 numbers"),
    ('{"image_id": "a", "boxes": [[0, 0, 5, 5]], "scores": [NaN], "labels": [1], "names": ["x"]}',
     "score 1 must be a finite number"),
    ('{"image_id": "a", "boxes": [[0, 0, 5, 5]], "scores": [1], "labels": [1.5], "names": ["x"]}',
     "label 1 must be an integer"),
])
def test_malformed_line_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "objects.jsonl"
    path.write_text('{"image_id": "ok", "boxes": [], "scores": [], "labels": [], "names": []}\n'
                    f"\n{line}\n")
    with pytest.raises(ObjectsFormatError, match=rf"^{path}:3: .*{message}"):
        read_objects(path)


def test_duplicate_image_id_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "objects.jsonl"
    line = '{"image_id": "a", "boxes": [], "scores": [], "labels": [], "names": []}\n'
    path.write_text(line * 2)
    with pytest.raises(ObjectsFormatError, match=rf"{path}:2: duplicate image_id 'a'"):
        read_objects(path)


def test_detect_cli_random_weights_writes_valid_jsonl(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for name in ("fx1.jpg", "fx2.jpg", "fx7.jpg"):  # fx7 is corrupt
        shutil.copy(FIXTURES / "images" / name, images / name)
    out = tmp_path / "objects.jsonl"
    torch.manual_seed(0)
    rc = cli(["detect", str(images), "--out", str(out), "--weights", "none", "--max-objects", "4",
              "--min-size", "32", "--max-size", "64", "--proposals", "20"])
    assert rc == 0
    assert "2 images with detections written; 1 unreadable" in capsys.readouterr().out
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [d["image_id"] for d in lines] == ["fx1", "fx2"]
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights
    categories = FasterRCNN_ResNet50_FPN_Weights.DEFAULT.meta["categories"]
    for det in lines:
        width, height = Image.open(images / f"{det['image_id']}.jpg").size
        assert 1 <= len(det["boxes"]) <= 4  # random weights, threshold 0: some boxes
        assert len(det["boxes"]) == len(det["scores"]) == len(det["labels"]) == len(det["names"])
        assert det["scores"] == sorted(det["scores"], reverse=True)
        assert det["names"] == [categories[i] for i in det["labels"]]
        for x1, y1, x2, y2 in det["boxes"]:
            assert 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height
    assert read_objects(out).keys() == {"fx1", "fx2"}


def test_detect_cli_missing_weights_is_a_clear_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    rc = cli(["detect", str(FIXTURES / "images"), "--out", str(tmp_path / "o.jsonl")])
    err = capsys.readouterr().err
    assert rc == 2 and "fasterrcnn_resnet50_fpn_coco" in err and "--weights none" in err
    assert not (tmp_path / "o.jsonl").exists()


def test_detect_cli_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc = cli(["detect", str(tmp_path / "nope"), "--out", str(tmp_path / "o.jsonl"), "--weights", "none"])
    assert rc == 2 and "image folder not found" in capsys.readouterr().err
