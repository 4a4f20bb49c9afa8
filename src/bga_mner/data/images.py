"""The visual input of a tweet: the global image and its top-K detected objects, CLIP-normalised.

For each tweet, :class:`ImageStore` returns a :class:`VisualSample`:

- ``image`` (3, G, G): the whole image resized (squashed, no crop, as HVPNet [3] whose visual input
  BGA-MNER follows) to ``data.global_size``;
- ``crops`` (K, 3, C, C): the K highest-scoring boxes of the objects file, cropped from the
  original image and resized to ``data.crop_size``; ``crop_mask`` (K,) marks the crops present;
- ``has_image``: the tweet's image file exists and decodes.

Normalisation uses CLIP's mean/std (timm's ``OPENAI_CLIP_MEAN/STD``). A missing or unreadable image
is never replaced by another tweet's: the sample is zeros with ``has_image=False`` and an empty
``crop_mask``. A box that reaches outside its image is clipped to it; one with less than one whole
pixel inside the image gives no crop. :meth:`ImageStore.prepare` counts all four per split
(:class:`ImageCounts`: missing files, unreadable files, clipped boxes, dropped boxes) and logs
them; the policy is docs/data.md's "Objects and images".

Decoded, resized images are cached on disk as uint8 tensors (normalised after loading), one file
per entry keyed by the SHA-256 of the image file's bytes, the sizes and the boxes cropped, so a
changed file, size or detection gives a new entry and an epoch never decodes a JPEG twice.
Entries are written atomically (temporary file + rename), so parallel workers and runs can share
the cache folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import torch
from PIL import Image
from timm.data import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from bga_mner.atomic import atomic_write
from bga_mner.data.detect import IMAGE_EXTENSIONS, Detections

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when the decode/resize pipeline changes: old entries are then ignored


@dataclass
class VisualSample:
    """The visual input of one tweet (float tensors, CLIP-normalised)."""

    image: torch.Tensor      # (3, G, G)
    crops: torch.Tensor      # (K, 3, C, C)
    crop_mask: torch.Tensor  # (K,) bool
    has_image: bool


@dataclass
class ImageCounts:
    """What the images of a split's tweets gave (counted per tweet, as the batches see them).

    Attributes:
        tweets: tweets of the split.
        missing: tweets whose image file does not exist.
        unreadable: tweets whose image file exists but does not decode.
        boxes_clipped: top-K boxes (of the tweets with an image) that reach outside the image and
            were clipped to it.
        boxes_dropped: top-K boxes with less than one whole pixel inside the image: no crop.
    """

    tweets: int = 0
    missing: int = 0
    unreadable: int = 0
    boxes_clipped: int = 0
    boxes_dropped: int = 0

    @property
    def without_image(self) -> int:
        """Tweets without a readable image (``missing_images`` in results.json)."""
        return self.missing + self.unreadable

    def as_dict(self) -> dict[str, int]:
        return {"tweets": self.tweets, "missing": self.missing, "unreadable": self.unreadable,
                "boxes_clipped": self.boxes_clipped, "boxes_dropped": self.boxes_dropped}


def _decode(path: Path) -> Image.Image:
    with Image.open(path) as img:
        return img.convert("RGB")  # forces a full decode; truncated/corrupt files raise here


def _crop_box(box: list[float], width: int, height: int) -> tuple[int, int, int, int] | None:
    """The box clipped to the image in whole pixels, or None if less than one pixel remains.

    Boxes are finite with ``x1 < x2``, ``y1 < y2`` (``detect.read_objects`` rejects the others).
    """
    x1, y1 = max(0, int(box[0])), max(0, int(box[1]))
    x2, y2 = min(width, int(round(box[2]))), min(height, int(round(box[3])))
    return (x1, y1, x2, y2) if x2 - x1 >= 1 and y2 - y1 >= 1 else None


def box_status(box: list[float], width: int, height: int) -> str:
    """``inside``, ``clipped`` (reaches outside the image; cropped clipped to it) or ``dropped``
    (less than one whole pixel inside the image: no crop)."""
    if _crop_box(box, width, height) is None:
        return "dropped"
    outside = box[0] < 0 or box[1] < 0 or box[2] > width or box[3] > height
    return "clipped" if outside else "inside"


class ImageStore:
    """Global images and object crops of one image folder, with an on-disk uint8 cache.

    Args:
        images_dir: folder of ``<IMGID>.jpg`` (other extensions accepted); None or a missing
            folder means no tweet has an image.
        objects: detections per image id (``detect.read_objects``); images without an entry get
            no crops.
        global_size: side G of the global image.
        crop_size: side C of each object crop.
        num_objects: K, the crops per image (top-K boxes by score).
        cache_dir: folder of the tensor cache; None disables it.
    """

    def __init__(self, images_dir: str | Path | None, objects: Mapping[str, Detections] | None,
                 global_size: int = 224, crop_size: int = 128, num_objects: int = 3,
                 cache_dir: str | Path | None = None) -> None:
        if min(global_size, crop_size) < 1 or num_objects < 0:
            raise ValueError(f"bad image sizes: global_size={global_size}, crop_size={crop_size}, "
                             f"num_objects={num_objects}")
        self.images_dir = Path(images_dir) if images_dir is not None else None
        self.objects = dict(objects or {})
        self.global_size, self.crop_size, self.num_objects = global_size, crop_size, num_objects
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._files = self._index_files()
        self._unreadable: set[str] = set()
        self._box_counts: dict[str, tuple[int, int]] = {}  # image id -> (clipped, dropped) boxes
        self._entry: dict[str, Path] = {}  # image id -> cache file, filled by prepare()/load()
        self._resize_global = v2.Resize((global_size, global_size),
                                        interpolation=v2.InterpolationMode.BICUBIC, antialias=True)
        self._resize_crop = v2.Resize((crop_size, crop_size),
                                      interpolation=v2.InterpolationMode.BICUBIC, antialias=True)
        # CLIP normalisation of uint8 pixels: (x / 255 - mean) / std, as (x - 255 mean) / (255 std)
        self._mean = torch.tensor(OPENAI_CLIP_MEAN).view(3, 1, 1) * 255
        self._std = torch.tensor(OPENAI_CLIP_STD).view(3, 1, 1) * 255

    def _index_files(self) -> dict[str, Path]:
        if self.images_dir is None or not self.images_dir.is_dir():
            return {}
        rank = {ext: i for i, ext in enumerate(IMAGE_EXTENSIONS)}
        files: dict[str, Path] = {}
        for p in self.images_dir.iterdir():
            ext = p.suffix.lower()
            if ext in rank and (p.stem not in files or rank[ext] < rank[files[p.stem].suffix.lower()]):
                files[p.stem] = p
        return files

    def _normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (..., 3, H, W) -> CLIP-normalised float32 of the same shape."""
        return (pixels.float() - self._mean) / self._std

    # ------------------------------------------------------------------ lookup
    def path(self, image_id: str) -> Path | None:
        """The image file of an id, or None if there is none."""
        return self._files.get(image_id)

    def boxes(self, image_id: str) -> list[list[float]]:
        """The top-K boxes (by score) of an image."""
        det = self.objects.get(image_id)
        return [] if det is None else det.boxes[: self.num_objects]

    def _cache_file(self, image_id: str, content: bytes) -> Path | None:
        if self.cache_dir is None:
            return None
        params = json.dumps({"v": CACHE_VERSION, "g": self.global_size, "c": self.crop_size,
                             "boxes": [[round(v, 2) for v in b] for b in self.boxes(image_id)]})
        key = hashlib.sha256(hashlib.sha256(content).digest() + params.encode()).hexdigest()
        return self.cache_dir / key[:2] / f"{key}.pt"

    # ------------------------------------------------------------------ decoding
    def _decode_resized(self, path: Path, image_id: str) -> dict[str, torch.Tensor]:
        """Decode, crop and resize: uint8 ``image`` (3, G, G) and ``crops`` (k, 3, C, C), k <= K."""
        img = _decode(path)
        image = self._resize_global(TF.pil_to_tensor(img))  # (3, G, G) uint8
        crops = []
        for box in self.boxes(image_id):
            xyxy = _crop_box(box, img.width, img.height)
            if xyxy is not None:
                crops.append(self._resize_crop(TF.pil_to_tensor(img.crop(xyxy))))  # (3, C, C)
        c = self.crop_size
        crops_t = torch.stack(crops) if crops else torch.zeros(0, 3, c, c, dtype=torch.uint8)
        return {"image": image.contiguous(), "crops": crops_t.contiguous()}

    def _write(self, file: Path, entry: dict[str, torch.Tensor]) -> None:
        # a cache entry: renamed into place, not fsynced (a lost one is rebuilt); a full disk
        # names the entry (atomic_write)
        atomic_write(file, lambda tmp: torch.save(entry, tmp), durable=False)

    def _read_cached(self, file: Path | None) -> dict[str, torch.Tensor] | None:
        if file is None or not file.is_file():
            return None
        try:
            return torch.load(file, map_location="cpu", weights_only=True)
        except Exception as e:  # a damaged entry is rebuilt, never trusted
            log.warning("%s: unreadable cache entry, rebuilding (%s)", file, e)
            return None

    def _entry_for(self, image_id: str, check_only: bool = False) -> dict[str, torch.Tensor] | None:
        """The uint8 entry of an image (from the cache when possible), or None without an image.

        Args:
            image_id: the tweet's image id.
            check_only: make sure the entry is cached, without reading one that already is
                (returns an empty dict then).
        """
        path = self.path(image_id)
        if path is None or image_id in self._unreadable:
            return None
        file = self._entry.get(image_id)  # known from an earlier call: no need to hash again
        if file is None:
            file = self._cache_file(image_id, path.read_bytes())
        if check_only and file is not None and file.is_file():
            self._entry[image_id] = file
            return {}
        entry = self._read_cached(file)
        if entry is None:
            try:
                entry = self._decode_resized(path, image_id)
            except (OSError, ValueError, Image.DecompressionBombError) as e:
                log.warning("%s: unreadable image, the tweet gets no image (%s)", path, e)
                self._unreadable.add(image_id)
                return None
            if file is not None:
                self._write(file, entry)
        if file is not None:
            self._entry[image_id] = file
        return entry

    def _count_boxes(self, image_id: str) -> None:
        """Record how many of the image's top-K boxes are clipped or dropped (needs its size only)."""
        path, boxes = self.path(image_id), self.boxes(image_id)
        if path is None or image_id in self._unreadable or not boxes or image_id in self._box_counts:
            return
        try:
            with Image.open(path) as img:  # reads the header only
                width, height = img.size
        except (OSError, ValueError, Image.DecompressionBombError):
            return  # decoded from the cache: the file decoded once; nothing to count
        status = [box_status(b, width, height) for b in boxes]
        self._box_counts[image_id] = (status.count("clipped"), status.count("dropped"))

    def _prepare_one(self, image_id: str) -> None:
        self._entry_for(image_id, check_only=True)
        self._count_boxes(image_id)

    # ------------------------------------------------------------------ public API
    def prepare(self, image_ids: Iterable[str], split: str = "", workers: int = 4) -> ImageCounts:
        """Decode every image not yet cached (in threads); count missing and unreadable images
        and clipped and dropped boxes (:class:`ImageCounts`).

        Args:
            image_ids: the tweets' image ids (one per tweet; duplicates are counted per tweet).
            split: name used in the log line.
            workers: decoding threads.
        """
        ids = list(image_ids)
        unique = sorted({i for i in ids if self.path(i) is not None})
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            list(pool.map(self._prepare_one, unique))
        counts = ImageCounts(tweets=len(ids))
        for i in ids:
            if self.path(i) is None:
                counts.missing += 1
            elif i in self._unreadable:
                counts.unreadable += 1
            else:
                clipped, dropped = self._box_counts.get(i, (0, 0))
                counts.boxes_clipped += clipped
                counts.boxes_dropped += dropped
        if counts.without_image:
            log.info("%s: %d of %d tweets without a readable image (%d missing files, %d unreadable)",
                     split or "images", counts.without_image, counts.tweets, counts.missing,
                     counts.unreadable)
        if counts.boxes_clipped or counts.boxes_dropped:
            log.info("%s: %d object boxes clipped to their image, %d dropped (less than a pixel "
                     "inside it)", split or "images", counts.boxes_clipped, counts.boxes_dropped)
        return counts

    def has_image(self, image_id: str) -> bool:
        """Whether the id has a file not known to be unreadable (exact after :meth:`prepare`)."""
        return self.path(image_id) is not None and image_id not in self._unreadable

    def load(self, image_id: str) -> VisualSample:
        """The normalised visual input of an image id (zeros and ``has_image=False`` without one)."""
        entry = self._entry_for(image_id)
        if entry is None:
            return self.empty()
        k, c = self.num_objects, self.crop_size
        crops = torch.zeros(k, 3, c, c)
        n = entry["crops"].shape[0]
        if n:
            crops[:n] = self._normalize(entry["crops"])  # (n, 3, C, C)
        mask = torch.arange(k) < n
        return VisualSample(self._normalize(entry["image"]), crops, mask, True)

    def empty(self) -> VisualSample:
        """No image: zero tensors, no crops, ``has_image=False``."""
        g, c, k = self.global_size, self.crop_size, self.num_objects
        return VisualSample(torch.zeros(3, g, g), torch.zeros(k, 3, c, c),
                            torch.zeros(k, dtype=torch.bool), False)

    def uniform(self, value: int = 128) -> VisualSample:
        """One uniform grey image (every pixel ``value`` in 0-255), no crops, ``has_image=True``.

        The modality-missing test setting (Table 7, after UMT [30]): the image is present but
        empty, so the model sees a valid but contentless image.
        """
        g = self.global_size
        grey = torch.full((3, g, g), value, dtype=torch.uint8)
        sample = self.empty()
        return VisualSample(self._normalize(grey), sample.crops, sample.crop_mask, True)
