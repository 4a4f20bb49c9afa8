"""The visual input of a tweet: the global image and its top-K object crops, CLIP-normalised.

For each tweet, :class:`ImageStore` returns a :class:`VisualSample`:

- ``image`` (3, G, G): the whole image resized (squashed, no crop, as HVPNet [3] whose visual input
  BGA-MNER follows) to ``data.global_size``;
- ``crops`` (K, 3, C, C): the image's K object crops resized to ``data.crop_size``
  (``data/crops.py``: cut by the top-K boxes of an objects file, or the first K released crop
  files); ``crop_mask`` (K,) marks the crops present;
- ``has_image``: the tweet's image file exists, is a regular file and decodes (``data/pixels.py``).

Normalisation uses CLIP's mean/std (timm's ``OPENAI_CLIP_MEAN/STD``). A missing or unreadable image
is never replaced by another tweet's: the sample is zeros with ``has_image=False`` and an empty
``crop_mask``. :meth:`ImageStore.prepare` counts per split (:class:`ImageCounts`): missing and
unreadable images, clipped and dropped boxes, missing and unreadable crop files, entries past K,
images without an entry, and the tweets with 0, 1, ..., K crops; the policy is docs/data.md's
"Objects and images".

Decoded, resized images and crops are cached on disk as uint8 tensors (normalised after loading),
one file per image keyed by the SHA-256 of the image file's bytes, the sizes and what the crops
come from (the boxes, or the bytes of each crop file), so a changed file, size, detection or crop
gives a new entry and an epoch never decodes a JPEG twice. Entries are written atomically
(temporary file + rename), so parallel workers and runs can share the cache folder.
"""

from __future__ import annotations

import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import torch
from PIL import Image
from timm.data import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from bga_mner.atomic import atomic_write
from bga_mner.data.crops import box_status  # noqa: F401 (re-exported)
from bga_mner.data.crops import BoxCrops, FileCrops, cache_params
from bga_mner.data.detect import IMAGE_EXTENSIONS, Detections
from bga_mner.data.image_counts import ImageCounts, ImageInfo, log_counts, tally  # noqa: F401 (re-exported)
from bga_mner.data.pixels import decode_rgb, image_size, not_regular_reason, read_file_bytes

log = logging.getLogger(__name__)

CACHE_VERSION = 2  # bump when the decode/resize pipeline changes: old entries are then ignored
DECODE_ERRORS = (OSError, ValueError, Image.DecompressionBombError)


@dataclass
class VisualSample:
    """The visual input of one tweet (float tensors, CLIP-normalised)."""

    image: torch.Tensor      # (3, G, G)
    crops: torch.Tensor      # (K, 3, C, C)
    crop_mask: torch.Tensor  # (K,) bool
    has_image: bool


def _decode(data: bytes) -> Image.Image:
    return decode_rgb(data)  # forces a full decode; truncated/corrupt files raise here


class ImageStore:
    """Global images and object crops of one image folder, with an on-disk uint8 cache.

    Args:
        images_dir: folder of ``<IMGID>.jpg`` (other extensions accepted); None or a missing
            folder means no tweet has an image.
        objects: detections per image id (``detect.read_objects``): crops cut by the top-K boxes;
            images without an entry get no crops.
        global_size: side G of the global image.
        crop_size: side C of each object crop.
        num_objects: K, the crops per image.
        cache_dir: folder of the tensor cache; None disables it.
        crop_files: crop files per image id instead of ``objects`` (the release's crops,
            ``release.read_crop_dict``): the first K of each list.
        crop_source: the name of ``crop_files``' source (``grounding`` | ``rcnn``).
    """

    def __init__(self, images_dir: str | Path | None, objects: Mapping[str, Detections] | None,
                 global_size: int = 224, crop_size: int = 128, num_objects: int = 3,
                 cache_dir: str | Path | None = None,
                 crop_files: Mapping[str, Sequence[Path]] | None = None,
                 crop_source: str = "files") -> None:
        if min(global_size, crop_size) < 1 or num_objects < 0:
            raise ValueError(f"bad image sizes: global_size={global_size}, crop_size={crop_size}, "
                             f"num_objects={num_objects}")
        if objects is not None and crop_files is not None:
            raise ValueError("give objects (boxes) or crop_files, not both")
        self.images_dir = Path(images_dir) if images_dir is not None else None
        self.source: BoxCrops | FileCrops | None = (
            FileCrops(crop_files, num_objects, crop_source) if crop_files is not None
            else BoxCrops(objects, num_objects) if objects is not None else None)
        self.global_size, self.crop_size, self.num_objects = global_size, crop_size, num_objects
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._unreadable: set[str] = set()
        self._files = self._index_files()
        self._info: dict[str, ImageInfo] = {}  # image id -> its counts, filled by prepare()
        self._entry: dict[str, Path] = {}  # image id -> cache file, filled by prepare()/load()
        self._resize_global = v2.Resize((global_size, global_size),
                                        interpolation=v2.InterpolationMode.BICUBIC, antialias=True)
        self._resize_crop = v2.Resize((crop_size, crop_size),
                                      interpolation=v2.InterpolationMode.BICUBIC, antialias=True)
        # CLIP normalisation of uint8 pixels: (x / 255 - mean) / std, as (x - 255 mean) / (255 std)
        self._mean = torch.tensor(OPENAI_CLIP_MEAN).view(3, 1, 1) * 255
        self._std = torch.tensor(OPENAI_CLIP_STD).view(3, 1, 1) * 255

    def _index_files(self) -> dict[str, Path]:
        """``{stem: path}`` of the folder's image files (a regular file is preferred over a
        folder, FIFO or dangling symlink of the same stem, which is marked unreadable)."""
        if self.images_dir is None or not self.images_dir.is_dir():
            return {}
        rank = {ext: i for i, ext in enumerate(IMAGE_EXTENSIONS)}
        files: dict[str, tuple[int, Path]] = {}
        bad: dict[str, str] = {}
        with os.scandir(self.images_dir) as it:
            for entry in it:
                ext = os.path.splitext(entry.name)[1].lower()
                if ext not in rank:
                    continue
                stem, path = entry.name[: -len(ext)], Path(entry.path)
                reason = None if entry.is_file() else not_regular_reason(path)
                order = (1 if reason else 0) * len(rank) + rank[ext]
                if stem not in files or order < files[stem][0]:
                    files[stem] = (order, path)
                    bad.pop(stem, None)
                    if reason:
                        bad[stem] = reason
        for stem, reason in sorted(bad.items()):
            log.warning("%s: %s, not an image file: the tweet gets no image", files[stem][1], reason)
            self._unreadable.add(stem)
        return {stem: path for stem, (_, path) in files.items()}

    def _normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (..., 3, H, W) -> CLIP-normalised float32 of the same shape."""
        return (pixels.float() - self._mean) / self._std

    # ------------------------------------------------------------------ lookup
    def path(self, image_id: str) -> Path | None:
        """The image file of an id, or None if there is none."""
        return self._files.get(image_id)

    def boxes(self, image_id: str) -> list[list[float]]:
        """The top-K boxes (by score) of an image ([] unless the crops come from boxes)."""
        return self.source.boxes(image_id) if isinstance(self.source, BoxCrops) else []

    def _cache_file(self, content: bytes, inputs: object) -> Path | None:
        if self.cache_dir is None:
            return None
        params = cache_params(self.source, inputs, CACHE_VERSION, self.global_size, self.crop_size)
        key = hashlib.sha256(hashlib.sha256(content).digest() + params).hexdigest()
        return self.cache_dir / key[:2] / f"{key}.pt"

    # ------------------------------------------------------------------ decoding
    def _decode_resized(self, content: bytes, inputs: Any) -> dict[str, torch.Tensor]:
        """Decode, crop and resize: uint8 ``image`` (3, G, G) and ``crops`` (k, 3, C, C), k <= K."""
        img = _decode(content)
        image = self._resize_global(TF.pil_to_tensor(img))  # (3, G, G) uint8
        if isinstance(self.source, BoxCrops):
            pieces = self.source.cut(img, inputs)
        elif isinstance(self.source, FileCrops):
            pieces = self.source.decode(inputs)
        else:
            pieces = []
        crops = [self._resize_crop(TF.pil_to_tensor(p)) for p in pieces]  # each (3, C, C)
        c = self.crop_size
        crops_t = torch.stack(crops) if crops else torch.zeros(0, 3, c, c, dtype=torch.uint8)
        return {"image": image.contiguous(), "crops": crops_t.contiguous()}

    def _write(self, file: Path, entry: dict[str, torch.Tensor]) -> None:
        # a cache entry: renamed into place, not fsynced (a lost one is rebuilt); a full disk
        # names the entry (atomic_write)
        atomic_write(file, lambda tmp: torch.save(entry, tmp), durable=False)

    def _read_cached(self, file: Path | None, mmap: bool = False) -> dict[str, torch.Tensor] | None:
        if file is None or not file.is_file():
            return None
        try:
            return torch.load(file, map_location="cpu", weights_only=True, mmap=mmap)
        except Exception as e:  # a damaged entry is rebuilt, never trusted
            log.warning("%s: unreadable cache entry, rebuilding (%s)", file, e)
            return None

    def _read_inputs(self, image_id: str) -> tuple[bytes, Any] | None:
        """The image's bytes and what its crops come from (None, and the image marked unreadable,
        when it cannot be read)."""
        path = self.path(image_id)
        try:
            content = read_file_bytes(path)
        except OSError as e:
            log.warning("%s: unreadable image, the tweet gets no image (%s)", path, e)
            self._unreadable.add(image_id)
            return None
        return content, (self.source.read(image_id) if self.source is not None else None)

    def _build(self, image_id: str, content: bytes, inputs: Any,
               file: Path | None) -> dict[str, torch.Tensor] | None:
        """Decode an entry and cache it (None, and the image marked unreadable, if it does not
        decode)."""
        try:
            entry = self._decode_resized(content, inputs)
        except DECODE_ERRORS as e:
            log.warning("%s: unreadable image, the tweet gets no image (%s)", self.path(image_id), e)
            self._unreadable.add(image_id)
            return None
        if file is not None:
            self._write(file, entry)
            self._entry[image_id] = file
        return entry

    def _entry_for(self, image_id: str) -> dict[str, torch.Tensor] | None:
        """The uint8 entry of an image (from the cache when possible), or None without an image."""
        if self.path(image_id) is None or image_id in self._unreadable:
            return None
        entry = self._read_cached(self._entry.get(image_id))  # known: no need to read and hash again
        if entry is not None:
            return entry
        read = self._read_inputs(image_id)
        if read is None:
            return None
        file = self._cache_file(*read)
        entry = self._read_cached(file)
        if entry is None:
            return self._build(image_id, *read, file)
        self._entry[image_id] = file
        return entry

    def _prepare_one(self, image_id: str) -> None:
        """Cache the image's entry (decoding it only when it is not cached) and count its crops."""
        if image_id in self._info or image_id in self._unreadable:
            return
        read = self._read_inputs(image_id)
        if read is None:
            return
        file, entry = self._cache_file(*read), None
        if file is None or not file.is_file():
            entry = self._build(image_id, *read, file)
            if entry is None:
                return
        else:
            self._entry[image_id] = file
        self._info[image_id] = self._count(image_id, *read, entry, file)

    def _count(self, image_id: str, content: bytes, inputs: Any, entry: dict[str, torch.Tensor] | None,
               file: Path | None) -> ImageInfo:
        """What a readable image's crops gave (``inputs``: what they come from, as read;
        ``entry``: the one just built, else None)."""
        source, info = self.source, ImageInfo()
        listed = source.listed(image_id) if source is not None else 0
        if listed is None:
            info.unlisted = True
            return info
        info.beyond_k = max(0, listed - self.num_objects)
        used = min(listed, self.num_objects)
        if isinstance(source, BoxCrops) and used:
            try:  # the header: the boxes need the image's size only
                info.clipped, info.dropped = source.statuses(inputs, *image_size(content))
            except DECODE_ERRORS:
                pass
        elif isinstance(source, FileCrops) and used:
            if entry is None:  # cached: its crops' shape, without reading their pixels
                entry = self._read_cached(file, mmap=True)
            info.crops_missing = sum(f.problem == "missing" for f in inputs)
            decoded = 0 if entry is None else int(entry["crops"].shape[0])
            info.crops_unreadable = used - info.crops_missing - decoded
        info.crops = used - info.dropped - info.crops_missing - info.crops_unreadable
        return info

    # ------------------------------------------------------------------ public API
    def prepare(self, image_ids: Iterable[str], split: str = "", workers: int = 4) -> ImageCounts:
        """Decode every image not yet cached (in threads) and count what the split's images and
        crops gave (:class:`ImageCounts`).

        Args:
            image_ids: the tweets' image ids (one per tweet; duplicates are counted per tweet).
            split: name used in the log line.
            workers: decoding threads.
        """
        ids = list(image_ids)
        unique = sorted({i for i in ids if self.path(i) is not None})
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            list(pool.map(self._prepare_one, unique))
        counts = tally(ids, self._status, self._info, self.num_objects)
        log_counts(counts, split or "images", self.source.name if self.source is not None else None)
        return counts

    def _status(self, image_id: str) -> str:
        if self.path(image_id) is None:
            return "missing"
        return "unreadable" if image_id in self._unreadable else "ok"

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
