"""Object detection for the visual input: Faster R-CNN over an image folder -> ``objects.jsonl``.

The paper's visual input is "the global image and objects detected by Faster-RCNN" (Sec. 4.2).
We run torchvision's ``fasterrcnn_resnet50_fpn`` (COCO) once per data set and store the detections,
one JSON line per image, sorted by score (highest first)::

    {"image_id": "<file stem>", "boxes": [[x1, y1, x2, y2], ...], "scores": [...],
     "labels": [...], "names": [...]}

Boxes are in pixels of the original image. The data module (``data/images.py``) crops the top-K
boxes. The synthetic set writes the same format (its labels index ``synthetic.CATEGORIES``).
There is no download here: ``--weights default`` needs the checkpoint in the torch hub cache
(``torch.hub.get_dir()/checkpoints``) and says where to put it when it is missing.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import torch

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


@dataclass
class Detections:
    """The detected objects of one image, sorted by score (highest first)."""

    image_id: str
    boxes: list[list[float]] = field(default_factory=list)  # [x1, y1, x2, y2] in pixels
    scores: list[float] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    def sorted(self) -> "Detections":
        order = sorted(range(len(self.scores)), key=lambda i: -self.scores[i])
        return Detections(self.image_id, [self.boxes[i] for i in order],
                          [self.scores[i] for i in order], [self.labels[i] for i in order],
                          [self.names[i] for i in order])

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


class ObjectsFormatError(ValueError):
    """A malformed line of an objects file; the message starts with ``path:line:``."""


def _parse_line(line: str, path: Path, line_no: int) -> Detections:
    def fail(msg: str) -> ObjectsFormatError:
        return ObjectsFormatError(f"{path}:{line_no}: {msg}")

    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise fail(f"not valid JSON ({e.msg})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("image_id"), str) or not obj["image_id"]:
        raise fail("expected an object with a non-empty string 'image_id'")
    keys = ("boxes", "scores", "labels", "names")
    missing = [k for k in keys if not isinstance(obj.get(k), list)]
    if missing:
        raise fail(f"image {obj['image_id']!r}: missing or non-list field(s) {missing}")
    lengths = {k: len(obj[k]) for k in keys}
    if len(set(lengths.values())) != 1:
        raise fail(f"image {obj['image_id']!r}: fields of different lengths {lengths}")
    for box in obj["boxes"]:
        if (not isinstance(box, list) or len(box) != 4
                or not all(isinstance(v, (int, float)) for v in box)):
            raise fail(f"image {obj['image_id']!r}: a box must be 4 numbers [x1, y1, x2, y2], "
                       f"got {box!r}")
    return Detections(obj["image_id"], [[float(v) for v in b] for b in obj["boxes"]],
                      [float(s) for s in obj["scores"]], [int(v) for v in obj["labels"]],
                      [str(n) for n in obj["names"]]).sorted()


def read_objects(path: str | Path) -> dict[str, Detections]:
    """Read an objects file (JSONL) into ``{image_id: Detections}`` sorted by score.

    Raises :class:`ObjectsFormatError` naming the file and line of a malformed or duplicate entry.
    """
    path = Path(path)
    out: dict[str, Detections] = {}
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            det = _parse_line(line, path, line_no)
            if det.image_id in out:
                raise ObjectsFormatError(f"{path}:{line_no}: duplicate image_id {det.image_id!r}")
            out[det.image_id] = det
    return out


def write_objects(path: str | Path, detections: Sequence[Detections]) -> None:
    """Write detections as JSONL, atomically (a temporary file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for det in detections:
                f.write(det.sorted().to_json() + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def list_images(images_dir: str | Path) -> list[Path]:
    """The image files of a folder (by extension, case-insensitive), sorted by name."""
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise FileNotFoundError(f"{images_dir}: image folder not found")
    return sorted(p for p in images_dir.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def build_detector(weights: str = "default", score_threshold: float = 0.0, max_objects: int = 10,
                   min_size: int = 800, max_size: int = 1333, proposals: int = 1000
                   ) -> tuple[torch.nn.Module, list[str]]:
    """Faster R-CNN ResNet-50 FPN (COCO) in eval mode, and its category names.

    Args:
        weights: ``default`` = the COCO checkpoint from the local torch hub cache (never
            downloaded: a missing file is a FileNotFoundError saying where to put it);
            ``none`` = random init (tests).
        score_threshold: detections below this score are dropped.
        max_objects: at most this many detections per image.
        min_size, max_size: the detector's internal resize (torchvision defaults 800/1333).
        proposals: region proposals per image kept by the RPN at test time (torchvision default
            1000; fewer is faster, e.g. for tests).
    """
    from torchvision.models.detection import (FasterRCNN_ResNet50_FPN_Weights,
                                              fasterrcnn_resnet50_fpn)

    enum = FasterRCNN_ResNet50_FPN_Weights.DEFAULT
    names = list(enum.meta["categories"])
    kwargs = dict(box_score_thresh=score_threshold, box_detections_per_img=max_objects,
                  min_size=min_size, max_size=max_size,
                  rpn_pre_nms_top_n_test=proposals, rpn_post_nms_top_n_test=proposals)
    if weights == "none":
        model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None,
                                        num_classes=len(names), **kwargs)
    elif weights == "default":
        file = Path(torch.hub.get_dir()) / "checkpoints" / Path(enum.url).name
        if not file.is_file():
            raise FileNotFoundError(
                f"{file}: Faster R-CNN weights not found and nothing is downloaded here. "
                f"Fetch {enum.url} on a machine with internet and copy it to that path "
                f"(or set TORCH_HOME), or pass --weights none for random weights.")
        model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None,
                                        num_classes=len(names), **kwargs)
        model.load_state_dict(torch.load(file, map_location="cpu", weights_only=True))
    else:
        raise ValueError(f"unknown detector weights {weights!r}; expected 'default' or 'none'")
    return model.eval(), names


def _read_image(path: Path) -> torch.Tensor | None:
    """The image as a float (3, H, W) tensor in [0, 1], or None (with a warning) if unreadable."""
    from PIL import Image
    from torchvision.transforms.v2 import functional as TF

    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        log.warning("%s: unreadable image, skipped (%s)", path, e)
        return None
    return TF.to_dtype(TF.pil_to_tensor(img), torch.float32, scale=True)


@dataclass
class DetectStats:
    """What :func:`detect_folder` did."""

    images: int = 0       # image files found
    written: int = 0      # lines written
    unreadable: int = 0   # files skipped with a warning


@torch.inference_mode()
def iter_detections(model: torch.nn.Module, names: Sequence[str], paths: Sequence[Path],
                    device: str = "cpu", batch_size: int = 4,
                    stats: DetectStats | None = None) -> Iterator[Detections]:
    """Run the detector over image files in batches; unreadable files are warned about and skipped."""
    model = model.to(device)
    stats = stats if stats is not None else DetectStats()
    for start in range(0, len(paths), batch_size):
        chunk = [(p, _read_image(p)) for p in paths[start:start + batch_size]]
        stats.unreadable += sum(img is None for _, img in chunk)
        chunk = [(p, img) for p, img in chunk if img is not None]
        if not chunk:
            continue
        outputs = model([img.to(device) for _, img in chunk])
        for (path, _), out in zip(chunk, outputs):
            labels = out["labels"].tolist()
            stats.written += 1
            yield Detections(path.stem, [[round(v, 2) for v in b] for b in out["boxes"].tolist()],
                             [round(s, 5) for s in out["scores"].tolist()], labels,
                             [names[i] if 0 <= i < len(names) else str(i) for i in labels]).sorted()


def detect_folder(images_dir: str | Path, out: str | Path, weights: str = "default",
                  score_threshold: float = 0.0, max_objects: int = 10, device: str = "cpu",
                  batch_size: int = 4, min_size: int = 800, max_size: int = 1333,
                  proposals: int = 1000) -> DetectStats:
    """Detect objects in every image of a folder and write ``out`` (JSONL, one line per readable image).

    Args:
        images_dir: folder of ``<IMGID>.<ext>`` files.
        out: the objects file to write (atomically).
        weights, score_threshold, max_objects, min_size, max_size, proposals: see
            :func:`build_detector`.
        device: torch device for the detector.
        batch_size: images per forward pass.
    """
    paths = list_images(images_dir)
    stems = [p.stem for p in paths]
    if len(set(stems)) != len(stems):
        dup = sorted({s for s in stems if stems.count(s) > 1})
        raise ValueError(f"{images_dir}: several files share an image id (stem): {dup[:5]}")
    model, names = build_detector(weights, score_threshold, max_objects, min_size, max_size,
                                  proposals)
    stats = DetectStats(images=len(paths))
    dets = list(iter_detections(model, names, paths, device, batch_size, stats))
    write_objects(out, dets)
    if stats.unreadable:
        log.warning("%s: %d of %d images unreadable and skipped", images_dir, stats.unreadable,
                    stats.images)
    return stats
