"""The K object crops of an image: cut from it by detected boxes, or read from released crop files.

Two sources feed :class:`~bga_mner.data.images.ImageStore` (``data.object_source``, docs/data.md):

- :class:`BoxCrops`: the top-K boxes (by score) of an objects file (``bga-mner detect``), cut from
  the image. A box that reaches outside the image is clipped to it (``clipped``); one with less
  than one whole pixel inside gives no crop (``dropped``).
- :class:`FileCrops`: the first K crop files listed for the image (HVPNeT's visual-grounding crops
  or the release's Faster R-CNN crops, ``data/release.py``), in the list's order. A listed file
  that does not exist is ``missing``; one that is not a regular file or does not decode is
  ``unreadable``. Either leaves no crop; the crops present are packed first and masked as today.

Both count the entries listed past the first K (``beyond_k``) and give a cache key for what they
read (the boxes, or the bytes of each crop file), so a changed detection or crop file makes a new
cache entry.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from PIL import Image

from bga_mner.data.detect import Detections
from bga_mner.data.pixels import decode_rgb, read_file_bytes


def crop_box(box: Sequence[float], width: int, height: int) -> tuple[int, int, int, int] | None:
    """The box clipped to the image in whole pixels, or None if less than one pixel remains.

    Boxes are finite with ``x1 < x2``, ``y1 < y2`` (``detect.read_objects`` rejects the others).
    """
    x1, y1 = max(0, int(box[0])), max(0, int(box[1]))
    x2, y2 = min(width, int(round(box[2]))), min(height, int(round(box[3])))
    return (x1, y1, x2, y2) if x2 - x1 >= 1 and y2 - y1 >= 1 else None


def box_status(box: Sequence[float], width: int, height: int) -> str:
    """``inside``, ``clipped`` (reaches outside the image; cropped clipped to it) or ``dropped``
    (less than one whole pixel inside the image: no crop)."""
    if crop_box(box, width, height) is None:
        return "dropped"
    outside = box[0] < 0 or box[1] < 0 or box[2] > width or box[3] > height
    return "clipped" if outside else "inside"


@dataclass
class CropFile:
    """One listed crop file: its bytes, or why there are none (``missing`` | ``unreadable``)."""

    path: Path
    data: bytes | None = None
    problem: str | None = None


class BoxCrops:
    """Crops cut from the image by the top-K boxes of detections.

    Args:
        objects: detections per image id (``detect.read_objects``), sorted by score.
        k: crops per image (``data.num_objects``).
    """

    name = "detections"

    def __init__(self, objects: Mapping[str, Detections], k: int) -> None:
        self.objects, self.k = dict(objects), k

    def listed(self, image_id: str) -> int | None:
        """Boxes listed for the image, None without an entry."""
        det = self.objects.get(image_id)
        return None if det is None else len(det.boxes)

    def boxes(self, image_id: str) -> list[list[float]]:
        """The top-K boxes (by score) of an image."""
        det = self.objects.get(image_id)
        return [] if det is None else det.boxes[: self.k]

    def read(self, image_id: str) -> list[list[float]]:
        """What the cache key and the cropping need: the top-K boxes."""
        return self.boxes(image_id)

    @staticmethod
    def key(boxes: list[list[float]]) -> dict:
        return {"boxes": [[round(v, 2) for v in b] for b in boxes]}

    @staticmethod
    def cut(img: Image.Image, boxes: list[list[float]]) -> list[Image.Image]:
        """The crops of the boxes that keep at least one whole pixel inside the image."""
        out = []
        for box in boxes:
            xyxy = crop_box(box, img.width, img.height)
            if xyxy is not None:
                out.append(img.crop(xyxy))
        return out

    @staticmethod
    def statuses(boxes: list[list[float]], width: int, height: int) -> tuple[int, int]:
        """(clipped, dropped) boxes of an image of that size."""
        status = [box_status(b, width, height) for b in boxes]
        return status.count("clipped"), status.count("dropped")


class FileCrops:
    """Crops read from files listed per image (the first K of each list, in order).

    Args:
        files: crop file paths per image id (``release.read_crop_dict``, resolved).
        k: crops per image (``data.num_objects``).
        name: the source's name for messages and results.json (``grounding`` | ``rcnn``).
    """

    def __init__(self, files: Mapping[str, Sequence[Path]], k: int, name: str) -> None:
        self.files = {i: [Path(p) for p in paths] for i, paths in files.items()}
        self.k, self.name = k, name

    def listed(self, image_id: str) -> int | None:
        """Crop files listed for the image, None without an entry."""
        paths = self.files.get(image_id)
        return None if paths is None else len(paths)

    def read(self, image_id: str) -> list[CropFile]:
        """The first K listed files, read (never blocking on a FIFO)."""
        out = []
        for path in self.files.get(image_id, [])[: self.k]:
            try:
                out.append(CropFile(path, data=read_file_bytes(path)))
            except FileNotFoundError:
                out.append(CropFile(path, problem="missing"))
            except OSError:  # a folder, FIFO, dangling symlink, permissions
                out.append(CropFile(path, problem="unreadable"))
        return out

    @staticmethod
    def key(crops: list[CropFile]) -> dict:
        return {"crop_files": [c.problem or hashlib.sha256(c.data).hexdigest() for c in crops]}

    @staticmethod
    def decode(crops: list[CropFile]) -> list[Image.Image]:
        """The crops that decode, in order (the others are counted unreadable by the store)."""
        out = []
        for c in crops:
            if c.data is None:
                continue
            try:
                out.append(decode_rgb(c.data))
            except (OSError, ValueError, Image.DecompressionBombError):
                continue
        return out


def cache_params(source: BoxCrops | FileCrops | None, inputs: object, version: int,
                 global_size: int, crop_size: int) -> bytes:
    """The part of a cache key that is not the image's bytes: sizes and what the crops come from."""
    params = {"v": version, "g": global_size, "c": crop_size}
    if source is not None:
        params |= source.key(inputs)  # type: ignore[arg-type]
    return json.dumps(params, sort_keys=True).encode()
