"""data/images.py: global image + top-K crops, CLIP normalisation, missing/unreadable images, cache."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from unittest import mock

import pytest
import torch
from PIL import Image
from timm.data import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from torchvision.transforms.v2 import functional as TF

from bga_mner.data.detect import read_objects
from bga_mner.data.images import ImageStore

FIXTURES = Path(__file__).parent / "fixtures"
IMAGES = FIXTURES / "images"
ALL_IDS = [f"fx{i}" for i in range(1, 13)]


def _store(cache_dir: Path | None, images: Path = IMAGES, **kw) -> ImageStore:
    kw = {"global_size": 32, "crop_size": 16, "num_objects": 3, **kw}
    return ImageStore(images, read_objects(FIXTURES / "objects.jsonl"), cache_dir=cache_dir, **kw)


def _expected(pil: Image.Image, size: int) -> torch.Tensor:
    """Independent reference: resize (bicubic, antialias) then CLIP-normalise."""
    x = TF.resize(TF.pil_to_tensor(pil), [size, size], interpolation=TF.InterpolationMode.BICUBIC,
                  antialias=True)
    return TF.normalize(TF.to_dtype(x, torch.float32, scale=True), OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)


def test_global_image_and_top_k_crops_by_score(tmp_path: Path) -> None:
    sample = _store(tmp_path).load("fx1")
    assert sample.has_image
    assert sample.image.shape == (3, 32, 32) and sample.image.dtype == torch.float32
    assert sample.crops.shape == (3, 3, 16, 16) and sample.crop_mask.tolist() == [True] * 3
    pil = Image.open(IMAGES / "fx1.jpg").convert("RGB")
    torch.testing.assert_close(sample.image, _expected(pil, 32))
    # fx1 has 4 boxes; the top 3 by score are 0.9, 0.7, 0.5 (the 0.1 box is dropped)
    for crop, box in zip(sample.crops, [(10, 10, 20, 20), (0, 0, 47, 40), (2, 3, 30, 40)]):
        torch.testing.assert_close(crop, _expected(pil.crop(box), 16))


def test_box_outside_dropped_and_box_clipped_and_counted(tmp_path: Path) -> None:
    # fx3 (56x56): the best box lies right of the image (dropped); the other exceeds it on every
    # side (clipped to the whole image)
    store = _store(tmp_path)
    sample = store.load("fx3")
    assert sample.crop_mask.tolist() == [True, False, False]
    pil = Image.open(IMAGES / "fx3.jpg").convert("RGB")
    torch.testing.assert_close(sample.crops[0], _expected(pil, 16))
    assert sample.crops[1:].abs().sum() == 0
    counts = store.prepare(["fx3", "fx3", "fx1", "fx4"])  # counted per tweet, as the batches see them
    assert counts.as_dict() == {"tweets": 4, "missing": 1, "unreadable": 0, "boxes_clipped": 2,
                                "boxes_dropped": 2, "unlisted": 0, "beyond_k": 1,  # fx1: 4 boxes
                                "crops_missing": 0, "crops_unreadable": 0,
                                "crops_per_tweet": [1, 2, 0, 1]}  # fx4 / fx3 twice / fx1
    assert _store(tmp_path).prepare(["fx3"]).boxes_clipped == 1  # the same from the cache


@pytest.mark.parametrize("box, status", [
    ([0, 0, 56, 56], "inside"), ([10.5, 3, 20, 9.2], "inside"), ([-1, 0, 20, 20], "clipped"),
    ([40, 40, 70, 50], "clipped"), ([60, 10, 90, 30], "dropped"), ([-9, -9, -1, -1], "dropped"),
    ([10.2, 10, 10.4, 30], "dropped"),  # less than one whole pixel once rounded
])
def test_box_status(box: list[float], status: str) -> None:
    from bga_mner.data.images import box_status

    assert box_status(box, 56, 56) == status


def test_image_without_detections_has_no_crops(tmp_path: Path) -> None:
    for image_id in ("fx5", "fx8"):  # empty detection list / no line in objects.jsonl
        sample = _store(tmp_path).load(image_id)
        assert sample.has_image and not sample.crop_mask.any() and sample.crops.abs().sum() == 0


def test_missing_and_unreadable_images_are_flagged_not_replaced(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = _store(tmp_path)
    with caplog.at_level(logging.INFO, logger="bga_mner.data.images"):
        counts = store.prepare(ALL_IDS, split="fixture")
    assert (counts.tweets, counts.missing, counts.unreadable) == (12, 1, 1)
    assert "fx7.jpg" in caplog.text and "fixture: 2 of 12 tweets without a readable image" in caplog.text
    for image_id in ("fx4", "fx7"):  # no file / corrupt file
        sample = store.load(image_id)
        assert not sample.has_image and not sample.crop_mask.any()
        assert sample.image.abs().sum() == 0 and sample.crops.abs().sum() == 0
    assert not store.has_image("fx7") and store.has_image("fx1")


def test_cache_hit_does_not_decode(tmp_path: Path) -> None:
    first = _store(tmp_path).load("fx1")
    entries = list(tmp_path.rglob("*.pt"))
    assert len(entries) == 1 and not list(tmp_path.rglob(".tmp-*"))  # atomic write left no temp file
    fresh = _store(tmp_path)  # a new store (new process): only the disk cache is shared
    # prepare() still reads the image's header (its size: boxes outside the image are counted),
    # but never decodes its pixels
    with mock.patch("bga_mner.data.images._decode", side_effect=AssertionError("decoded")):
        fresh.prepare(["fx1"])
        again = fresh.load("fx1")
    torch.testing.assert_close(again.image, first.image)
    torch.testing.assert_close(again.crops, first.crops)
    assert again.crop_mask.tolist() == first.crop_mask.tolist()


def test_cache_key_follows_file_content_and_sizes(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(IMAGES / "fx2.jpg", images / "fx2.jpg")
    cache = tmp_path / "cache"
    a = _store(cache, images).load("fx2")
    Image.new("RGB", (40, 40), (0, 200, 0)).save(images / "fx2.jpg")  # same name, new content
    b = _store(cache, images).load("fx2")
    assert not torch.equal(a.image, b.image)
    assert len(list(cache.rglob("*.pt"))) == 2
    c = _store(cache, images, global_size=24).load("fx2")  # new size: new entry, right shape
    assert c.image.shape == (3, 24, 24) and len(list(cache.rglob("*.pt"))) == 3


def test_damaged_cache_entry_is_rebuilt(tmp_path: Path) -> None:
    good = _store(tmp_path).load("fx2")
    (entry,) = list(tmp_path.rglob("*.pt"))
    entry.write_bytes(b"not a tensor file")
    torch.testing.assert_close(_store(tmp_path).load("fx2").image, good.image)


def test_without_cache_dir_and_without_image_folder(tmp_path: Path) -> None:
    assert _store(None).load("fx1").has_image and not list(tmp_path.iterdir())
    nowhere = _store(None, images=tmp_path / "absent")
    assert nowhere.prepare(["fx1", "fx2"]).missing == 2 and not nowhere.load("fx1").has_image


def test_uniform_image_is_present_and_contentless() -> None:
    sample = _store(None).uniform()
    assert sample.has_image and not sample.crop_mask.any()
    for channel, (mean, std) in enumerate(zip(OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)):
        torch.testing.assert_close(sample.image[channel],
                                   torch.full((32, 32), (128 / 255 - mean) / std))


def test_bad_sizes_rejected() -> None:
    with pytest.raises(ValueError, match="crop_size=0"):
        _store(None, crop_size=0)
