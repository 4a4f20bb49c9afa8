"""Where a data set's images and object crops come from: the suite's layout or the release's.

Two layouts are known (docs/data.md, "Images and object crops on disk"), for a data set whose text
is in ``<root>`` (``<paths.data_dir>/<name>`` by default):

- the suite's: ``<root>/images/<IMGID>.jpg`` and ``<root>/objects.jsonl`` (``bga-mner detect``);
- the HVPNeT/MKGformer release (``data/release.py``): ``<root>_images/<IMGID>.jpg`` beside the
  text folder, the visual-grounding crops and the Faster R-CNN crops.

``data.images_dir`` overrides where the images are. ``data.object_source`` chooses the K object
inputs: ``detections`` (boxes of ``data.objects_file`` or ``<root>/objects.jsonl``, cut from the
image), ``grounding`` (the release's ``*_dict.pth`` crops), ``rcnn`` (the release's
``*_img2crop.pth`` Faster R-CNN crops), ``none``, or ``auto``: the first present of detections
(the user made them), rcnn (the paper's objects are Faster R-CNN's), grounding; none when there
is none. A source that is asked for and absent is an error naming what is missing.

:func:`check_found` stops a multimodal run before training when a split has no readable image at
all (one line naming the folder and the layouts), and warns when a large share is missing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from bga_mner.config import DataConfig
from bga_mner.data.conll import SPLITS
from bga_mner.data.detect import read_objects
from bga_mner.data.image_counts import ImageCounts
from bga_mner.data.images import ImageStore
from bga_mner.data.release import ReleaseLayout, grounding_crops, rcnn_crops
from bga_mner.errors import UserError

log = logging.getLogger("bga_mner.data.datamodule")

WARN_MISSING_SHARE = 0.25  # warn at the start when more of a split's tweets have no readable image


class NoImagesError(UserError):
    """A multimodal run found no readable image in a split."""


@dataclass
class ImageSource:
    """The images and objects of one data set.

    Attributes:
        images_dir: the image folder used (it may not exist: then no tweet has an image).
        looked_in: the folders searched when ``images_dir`` was not set.
        source: ``detections`` | ``grounding`` | ``rcnn`` | ``none``.
        store: the :class:`ImageStore` of every split (the grounding crops of the three splits in
            one map: no image id is in two splits of the release).
    """

    images_dir: Path
    looked_in: list[Path]
    source: str
    store: ImageStore


def find_images_dir(root: Path, images_dir: str | None) -> tuple[Path, list[Path]]:
    """The image folder of a data set, and the folders looked in (``images_dir`` if set: it must
    exist; else ``<root>/images``, then the release's ``<root>_images``; the first that exists)."""
    if images_dir:
        path = Path(images_dir)
        if path.exists() and not path.is_dir():
            raise UserError(f"{path}: not a folder (the images of the data set)")
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: data.images_dir not found")
        return path, [path]
    looked = [root / "images", ReleaseLayout(root).images_dir]
    for path in looked:
        if path.exists() and not path.is_dir():
            raise UserError(f"{path}: not a folder (the images of the data set)")
    found = next((p for p in looked if p.is_dir()), None)
    if found is None:
        log.warning("%s: no image folder (looked in %s): every tweet of this data set has no image",
                    root, " and ".join(map(str, looked)))
        return looked[0], looked
    return found, looked


def choose_source(root: Path, requested: str, objects_file: str | None) -> str:
    """The object source of a data set: ``requested``, or for ``auto`` the first present of
    detections, rcnn, grounding (``none`` without any). ``requested`` is one of
    ``config.OBJECT_SOURCES`` (the config's Enum refuses any other word)."""
    if requested != "auto":
        return str(requested)
    layout = ReleaseLayout(root)
    if objects_file or (root / "objects.jsonl").exists():
        return "detections"
    if layout.rcnn_dict() is not None:
        return "rcnn"
    return "grounding" if layout.has_grounding() else "none"


def _objects(root: Path, objects_file: str | None, explicit: bool) -> dict | None:
    path = Path(objects_file) if objects_file else root / "objects.jsonl"
    if path.exists() and not path.is_file():
        raise UserError(f"{path}: not a file (the objects file of the data set)")
    if path.is_file():
        return read_objects(path)
    if objects_file:
        raise FileNotFoundError(f"{path}: data.objects_file not found")
    if explicit:
        raise FileNotFoundError(f"{path}: objects file not found (data.object_source=detections; "
                                "`bga-mner detect` writes it)")
    return None


def open_images(data_cfg: DataConfig, root: Path, cache_dir: Path, *, own_settings: bool = True,
                splits: tuple[str, ...] = SPLITS) -> ImageSource:
    """The images and object crops of the data set in ``root``.

    Args:
        data_cfg: the ``data:`` section (sizes, K, ``object_source``, ``images_dir``, ``objects_file``).
        root: the data set's text folder.
        cache_dir: the image tensor cache.
        own_settings: apply ``data.images_dir`` and ``data.objects_file`` (False for the test set of
            a cross-domain run, which is found by its own layout).
        splits: the splits whose grounding crops are read.
    """
    images_dir, looked = find_images_dir(root, data_cfg.images_dir if own_settings else None)
    objects_file = data_cfg.objects_file if own_settings else None
    source = choose_source(root, data_cfg.object_source, objects_file)
    sizes = dict(global_size=data_cfg.global_size, crop_size=data_cfg.crop_size,
                 num_objects=data_cfg.num_objects, cache_dir=cache_dir)
    if source in ("detections", "none"):
        objects = None
        if source == "detections":
            objects = _objects(root, objects_file, explicit=data_cfg.object_source == "detections")
            source = "detections" if objects is not None else "none"  # auto saw a file now gone
        if source == "none":
            log.info("%s: no object source: images get no object crops", root)
        return ImageSource(images_dir, looked, source, ImageStore(images_dir, objects, **sizes))
    layout = ReleaseLayout(root)
    crops = rcnn_crops(layout) if source == "rcnn" else grounding_crops(layout, splits)
    log.info("%s: object crops from %s", root, layout.rcnn_dict() if source == "rcnn"
             else ", ".join(str(layout.grounding_dict(s)) for s in splits))
    store = ImageStore(images_dir, None, crop_files=crops, crop_source=source, **sizes)
    return ImageSource(images_dir, looked, source, store)


def check_found(split: str, counts: ImageCounts, images: ImageSource) -> None:
    """Stop a multimodal run whose split has no readable image; warn when a large share has none.

    Raises:
        NoImagesError: one line naming the folder(s) looked in and the layouts known.
    """
    if not counts.tweets:
        return
    if counts.without_image == counts.tweets:
        where = " or ".join(str(p) for p in images.looked_in)
        found = (f"{counts.missing} missing, {counts.unreadable} unreadable" if counts.unreadable
                 else "no <IMGID>.jpg found")
        raise NoImagesError(
            f"{split}: none of the {counts.tweets} tweets has a readable image in {where} ({found}). "
            "Known layouts: <root>/images/<IMGID>.jpg (bga-mner's), <root>_images/<IMGID>.jpg beside "
            "the text folder (the HVPNeT/MKGformer release); set data.images_dir=DIR, or "
            "data.use_images=false to train text-only")
    share = counts.without_image / counts.tweets
    if share > WARN_MISSING_SHARE:
        log.warning("%s: %d of %d tweets (%.0f%%) have no readable image in %s (%d missing, %d "
                    "unreadable); they train text-only", split, counts.without_image, counts.tweets,
                    100 * share, images.images_dir, counts.missing, counts.unreadable)
