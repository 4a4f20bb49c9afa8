"""Images as they come (data/pixels.py): 16-bit PNGs keep their intensities, files that are not
regular files are counted unreadable and never hang, EXIF orientation is ignored alike by
detection and training."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bga_mner.data.detect import _read_image
from bga_mner.data.images import ImageStore
from bga_mner.data.pixels import NotARegularFile, decode_rgb, read_file_bytes


@pytest.fixture
def no_hang():
    """Fail (instead of hanging the suite) if the test takes more than 60 s."""
    def expire(*_):
        raise TimeoutError("blocked: a read that should never wait")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _ramp() -> np.ndarray:
    return np.tile(np.arange(0, 256, 4, dtype=np.uint8), (16, 1))  # (16, 64) grey ramp 0..252


def test_16_bit_png_keeps_its_intensities(tmp_path: Path) -> None:
    eight = _ramp()
    Image.fromarray(eight.astype(np.uint16) * 257).save(tmp_path / "a.jpg", "PNG")  # 16-bit, named .jpg
    Image.fromarray(eight).save(tmp_path / "b.png")
    assert Image.open(tmp_path / "a.jpg").mode == "I;16"
    rgb = np.asarray(decode_rgb(tmp_path / "a.jpg"))  # (16, 64, 3)
    assert (rgb == eight[..., None]).all()  # not saturated to white: Pillow's convert("RGB") clips
    store = ImageStore(tmp_path, None, global_size=16, crop_size=8, num_objects=1)
    torch.testing.assert_close(store.load("a").image, store.load("b").image)
    torch.testing.assert_close(_read_image(tmp_path / "a.jpg"), _read_image(tmp_path / "b.png"))


@pytest.mark.parametrize("kind", ["folder", "dangling symlink", "FIFO"])
def test_not_a_regular_file_is_unreadable_and_never_hangs(tmp_path: Path, no_hang, kind: str) -> None:
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (20, 20), (9, 99, 199)).save(images / "good.jpg")
    path = images / "odd.jpg"
    if kind == "folder":
        path.mkdir()
    elif kind == "dangling symlink":
        path.symlink_to(images / "nowhere.jpg")
    else:
        os.mkfifo(path)
    with pytest.raises(NotARegularFile, match=f"{path}: a {kind}"):
        read_file_bytes(path)
    store = ImageStore(images, None, global_size=16, crop_size=8, num_objects=1, cache_dir=tmp_path / "c")
    counts = store.prepare(["good", "odd", "odd", "absent"])
    assert (counts.missing, counts.unreadable, counts.crops_per_tweet) == (1, 2, [4, 0])
    assert not store.load("odd").has_image and store.load("good").has_image
    assert _read_image(path) is None  # the detector skips it the same way


def test_a_crop_file_that_is_a_fifo_is_unreadable(tmp_path: Path, no_hang) -> None:
    Image.new("RGB", (20, 20), (9, 99, 199)).save(tmp_path / "x.jpg")
    os.mkfifo(tmp_path / "crop.jpg")
    store = ImageStore(tmp_path, None, global_size=16, crop_size=8, num_objects=2,
                       crop_files={"x": [tmp_path / "crop.jpg", tmp_path / "gone.jpg"]}, crop_source="rcnn")
    counts = store.prepare(["x"])
    assert (counts.crops_unreadable, counts.crops_missing, counts.crops_per_tweet) == (1, 1, [1, 0, 0])


def test_exif_orientation_is_ignored_alike_in_detection_and_training(tmp_path: Path) -> None:
    """docs/data.md: pixels as stored (a 40x20 image tagged "rotate 90" stays 40 wide), so the boxes
    of objects.jsonl and the crops cut by them refer to the same frame."""
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(tmp_path / "r.jpg", quality=95, exif=exif)
    assert _read_image(tmp_path / "r.jpg").shape == (3, 20, 40)
    img = decode_rgb(tmp_path / "r.jpg")
    assert img.size == (40, 20) and np.asarray(img)[:, :15].mean() > 240
    store = ImageStore(tmp_path, None, global_size=8, crop_size=8, num_objects=1)
    image = store.load("r").image  # (3, 8, 8): white stays on the left
    assert image[:, :, :3].mean() > image[:, :, 5:].mean()
