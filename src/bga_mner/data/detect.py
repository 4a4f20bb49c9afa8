"""Object detection for the visual input: Faster R-CNN over an image folder -> ``objects.jsonl``.

The paper's visual input is "the global image and objects detected by Faster-RCNN" (Sec. 4.2).
We run torchvision's ``fasterrcnn_resnet50_fpn`` (COCO) once per data set and store the detections,
one JSON line per image, sorted by score (highest first)::

    {"image_id": "<file stem>", "boxes": [[x1, y1, x2, y2], ...], "scores": [...],
     "labels": [...], "names": [...]}

Boxes are in pixels of the original image. :func:`read_objects` checks every line: a line that
is not such an object, a NaN or infinite number, or a box that is inverted or has no area
(``x2 <= x1`` or ``y2 <= y1``) is an error naming ``path:line`` (docs/data.md, "Objects and
images"). A box may reach outside its image: the data module (``data/images.py``) clips it when it
crops the top-K boxes, and counts it. The synthetic set writes the same format (its labels index
``synthetic.CATEGORIES``).
There is no download here: ``--weights default`` needs the checkpoint in the torch hub cache
(``torch.hub.get_dir()/checkpoints``) and says where to put it when it is missing.
:func:`detect_folder` is resumable: its partial file (``<out>.partial``) is data/detect_resume.py's.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch

from bga_mner.data.detect_resume import (PARTIAL_HEADER_KEY, PartialWriter,  # noqa: F401 (re-exported)
                                         partial_lines, partial_path)
from bga_mner.atomic import atomic_open
from bga_mner.errors import UserError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
BATCH_SIZE = 4  # images per forward pass (bga-mner detect --batch-size)
WEIGHTS = ("default", "none")  # DetectorSettings.weights


@dataclass(frozen=True)
class DetectorSettings:
    """What the detector finds in an image (``bga-mner detect``'s options; a resumed run must share them).

    Attributes:
        weights: ``default`` = the COCO checkpoint from the local torch hub cache (never
            downloaded: a missing file is a FileNotFoundError saying where to put it); ``none`` =
            random init (tests).
        score_threshold, max_objects: detections scoring below it are dropped; at most this many per image.
        min_size, max_size, proposals: the detector's internal resize, and the region proposals
            per image the RPN keeps at test time (torchvision's defaults; fewer is faster).
    """

    weights: str = "default"
    score_threshold: float = 0.0
    max_objects: int = 10
    min_size: int = 800
    max_size: int = 1333
    proposals: int = 1000


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


class ObjectsFormatError(UserError, ValueError):
    """A malformed line of an objects file; the message starts with ``path:line:``."""


def _parse_line(line: str, path: Path, line_no: int) -> Detections:
    def fail(msg: str) -> ObjectsFormatError:
        return ObjectsFormatError(f"{path}:{line_no}: {msg}")

    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise fail(f"not valid JSON ({e.msg}, column {e.colno})") from None
    except RecursionError:
        raise fail("not valid JSON (nested too deeply)") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("image_id"), str) or not obj["image_id"]:
        raise fail("expected an object with a non-empty string 'image_id'")
    keys = ("boxes", "scores", "labels", "names")
    missing = [k for k in keys if not isinstance(obj.get(k), list)]
    if missing:
        raise fail(f"image {obj['image_id']!r}: missing or non-list field(s) {missing}")
    lengths = {k: len(obj[k]) for k in keys}
    if len(set(lengths.values())) != 1:
        raise fail(f"image {obj['image_id']!r}: fields of different lengths {lengths}")
    image = obj["image_id"]
    for i, box in enumerate(obj["boxes"]):
        if (not isinstance(box, list) or len(box) != 4
                or not all(_is_number(v) for v in box)):
            raise fail(f"image {image!r}: a box must be 4 numbers [x1, y1, x2, y2], got {box!r}")
        if not all(math.isfinite(v) for v in box):
            raise fail(f"image {image!r}: box {i + 1} {box!r} has a NaN or infinite coordinate")
        x1, y1, x2, y2 = box
        if x2 <= x1 or y2 <= y1:
            what = "is inverted" if x2 < x1 or y2 < y1 else "has no area"
            raise fail(f"image {image!r}: box {i + 1} {box!r} {what} (need x1 < x2 and y1 < y2)")
    for i, score in enumerate(obj["scores"]):
        if not _is_number(score) or not math.isfinite(score):
            raise fail(f"image {image!r}: score {i + 1} must be a finite number, got {score!r}")
    for i, label in enumerate(obj["labels"]):
        if not isinstance(label, int) or isinstance(label, bool):
            raise fail(f"image {image!r}: label {i + 1} must be an integer, got {label!r}")
    return Detections(obj["image_id"], [[float(v) for v in b] for b in obj["boxes"]],
                      [float(s) for s in obj["scores"]], [int(v) for v in obj["labels"]],
                      [str(n) for n in obj["names"]]).sorted()


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def read_objects(path: str | Path) -> dict[str, Detections]:
    """Read an objects file (JSONL) into ``{image_id: Detections}`` sorted by score.

    Raises :class:`ObjectsFormatError` naming the file and line of a malformed or duplicate entry,
    of a NaN or infinite number, of an inverted or zero-area box, or of bytes that are not UTF-8.
    """
    path = Path(path)
    out: dict[str, Detections] = {}
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ObjectsFormatError(f"{path}:{line_no}: not UTF-8: byte "
                                         f"{raw[err.start]:#04x} at byte {err.start} of the line") from None
            if line_no == 1:
                line = line.removeprefix("\ufeff")
            if not line.strip():
                continue
            det = _parse_line(line, path, line_no)
            if det.image_id in out:
                raise ObjectsFormatError(f"{path}:{line_no}: duplicate image_id {det.image_id!r}")
            out[det.image_id] = det
    return out


def write_objects(path: str | Path, detections: Sequence[Detections]) -> None:
    """Write detections as JSONL, atomically (``atomic.atomic_open``)."""
    with atomic_open(path) as f:
        for det in detections:
            f.write(det.sorted().to_json() + "\n")


def list_images(images_dir: str | Path) -> list[Path]:
    """The image files of a folder (by extension, case-insensitive), sorted by name."""
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise FileNotFoundError(f"{images_dir}: image folder not found")
    return sorted(p for p in images_dir.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def build_detector(settings: DetectorSettings = DetectorSettings()) -> tuple[torch.nn.Module, list[str]]:
    """Faster R-CNN ResNet-50 FPN (COCO) in eval mode, and its category names.

    Args:
        settings: weights, score threshold, detections per image, resize, proposals.
    """
    from torchvision.models.detection import (FasterRCNN_ResNet50_FPN_Weights,
                                              fasterrcnn_resnet50_fpn)

    enum = FasterRCNN_ResNet50_FPN_Weights.DEFAULT
    names = list(enum.meta["categories"])
    if settings.weights not in WEIGHTS:
        raise ValueError(f"unknown detector weights {settings.weights!r}; expected one of {WEIGHTS}")
    file = Path(torch.hub.get_dir()) / "checkpoints" / Path(enum.url).name
    if settings.weights == "default" and not file.is_file():
        raise FileNotFoundError(
            f"{file}: Faster R-CNN weights not found and nothing is downloaded here. "
            f"Fetch {enum.url} on a machine with internet and copy it to that path "
            f"(or set TORCH_HOME), or pass --weights none for random weights.")
    model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=len(names),
                                    box_score_thresh=settings.score_threshold,
                                    box_detections_per_img=settings.max_objects,
                                    min_size=settings.min_size, max_size=settings.max_size,
                                    rpn_pre_nms_top_n_test=settings.proposals,
                                    rpn_post_nms_top_n_test=settings.proposals)
    if settings.weights == "default":
        model.load_state_dict(torch.load(file, map_location="cpu", weights_only=True))
    return model.eval(), names


def _read_image(path: Path) -> torch.Tensor | None:
    """The image as a float (3, H, W) tensor in [0, 1], or None (with a warning) if unreadable.
    Decoded as training decodes it (``pixels.decode_rgb``: 16-bit kept, EXIF orientation ignored)."""
    from PIL import Image
    from torchvision.transforms.v2 import functional as TF

    from bga_mner.data.pixels import decode_rgb

    try:
        img = decode_rgb(path)
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
    empty_boxes: int = 0  # detections dropped: no area left once rounded to 0.01 pixel
    resumed: int = 0      # images taken from an interrupted run's partial file, not detected again


@torch.inference_mode()
def iter_detections(model: torch.nn.Module, names: Sequence[str], paths: Sequence[Path],
                    device: str = "cpu", batch_size: int = BATCH_SIZE,
                    stats: DetectStats | None = None,
                    on_files: Callable[[int], None] | None = None) -> Iterator[Detections]:
    """Run the detector over image files in batches; unreadable files are warned about and skipped.

    ``on_files(n)`` is called after each batch with the number of files it read (readable or not):
    a progress bar's update.
    """
    model = model.to(device)
    stats = stats if stats is not None else DetectStats()
    for start in range(0, len(paths), batch_size):
        chunk = [(p, _read_image(p)) for p in paths[start:start + batch_size]]
        stats.unreadable += sum(img is None for _, img in chunk)
        read = len(chunk)
        chunk = [(p, img) for p, img in chunk if img is not None]
        if chunk:
            outputs = model([img.to(device) for _, img in chunk])
            for (path, _), out in zip(chunk, outputs):
                boxes = [[round(v, 2) for v in b] for b in out["boxes"].tolist()]
                keep = [i for i, (x1, y1, x2, y2) in enumerate(boxes) if x1 < x2 and y1 < y2]
                stats.empty_boxes += len(boxes) - len(keep)  # read_objects would reject them
                scores, labels = out["scores"].tolist(), out["labels"].tolist()
                labels = [labels[i] for i in keep]
                stats.written += 1
                yield Detections(path.stem, [boxes[i] for i in keep],
                                 [round(scores[i], 5) for i in keep], labels,
                                 [names[i] if 0 <= i < len(names) else str(i) for i in labels]).sorted()
        if on_files is not None:
            on_files(read)


# --------------------------------------------------------------------------- resumable runs
# detect_folder appends each finished batch to ``<out>.partial`` and a run started again after an
# interruption detects only the images not yet there: data/detect_resume.py (the file) and below.


def _detections_of(line: str) -> Detections | None:
    """One line this module wrote (None for a line cut short by an interruption)."""
    try:
        obj = json.loads(line)
        det = Detections(**obj)
    except (ValueError, TypeError):
        return None
    if not (isinstance(det.image_id, str) and len(det.boxes) == len(det.scores) == len(det.labels)
            == len(det.names)):
        return None
    return det


def read_partial(path: str | Path, settings: Mapping[str, Any]) -> dict[str, Detections]:
    """``{image_id: Detections}`` of an interrupted run with the same ``settings`` ({} when there is
    no partial file, or it was written with other settings). Lines cut short are left out (those
    images are detected again).

    Args:
        path: the partial file (:func:`partial_path`).
        settings: the settings of the run now.
    """
    done: dict[str, Detections] = {}
    for line in partial_lines(path, settings):
        det = _detections_of(line)
        if det is not None:
            done[det.image_id] = det
    return done


def _image_paths(images_dir: str | Path) -> list[Path]:
    """:func:`list_images`, refusing two files with the same image id (stem)."""
    paths = list_images(images_dir)
    stems = [p.stem for p in paths]
    if len(set(stems)) != len(stems):
        dup = sorted({s for s in stems if stems.count(s) > 1})
        raise UserError(f"{images_dir}: several files share an image id (stem): {dup[:5]}")
    return paths


def _resume(partial: Path, settings: Mapping[str, Any], paths: Sequence[Path]) -> dict[str, Detections]:
    """What an interrupted run of the same settings finished, of the images still in the folder."""
    found = {p.stem for p in paths}
    done = {i: d for i, d in read_partial(partial, settings).items() if i in found}
    if done:
        log.info("%s: %d of %d images already detected by an interrupted run; detecting the other %d",
                 partial, len(done), len(paths), len(paths) - len(done))
    return done


def _detect_resumably(detector: tuple[torch.nn.Module, list[str]], todo: Sequence[Path],
                      done: dict[str, Detections], partial: Path, settings: Mapping[str, Any],
                      stats: DetectStats, device: str, batch_size: int, progress: bool | None) -> None:
    """Detect ``todo`` into ``done``, each batch appended to the partial file as it completes.

    Args:
        detector: the model and its category names (:func:`build_detector`).
        todo: the images still to detect; done: the detections so far (added to).
        partial, settings: the partial file and the run's settings (its header).
        stats: counts (added to); ``stats.images`` is the progress bar's total.
        device, batch_size: see :func:`iter_detections`; progress: see :func:`detect_folder`.
    """
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    writer = PartialWriter(partial, settings, list(done.values()))
    bar = tqdm(total=stats.images, initial=len(done), unit="img", desc="detect", dynamic_ncols=True,
               disable=None if progress is None else not progress)
    pending: list[Detections] = []

    def flush(n_files: int) -> None:
        writer.write(pending)
        pending.clear()
        bar.update(n_files)

    try:
        with logging_redirect_tqdm():
            for det in iter_detections(*detector, todo, device, batch_size, stats, on_files=flush):
                done[det.image_id] = det
                pending.append(det)
    except BaseException:
        writer.write(pending)  # the finished images of an interrupted batch are kept too
        log.warning("%s: interrupted after %d of %d images; the same command continues from there",
                    partial, len(done), stats.images)
        raise
    finally:
        bar.close()
        writer.close()


def detect_folder(images_dir: str | Path, out: str | Path, settings: DetectorSettings = DetectorSettings(),
                  device: str = "cpu", batch_size: int = BATCH_SIZE,
                  progress: bool | None = None) -> DetectStats:
    """Detect objects in every image of a folder and write ``out`` (JSONL, one line per readable image).

    Resumable: finished images go to ``<out>.partial`` as they complete, and a run of the same
    settings started again after an interruption detects only the images not yet there
    (:func:`partial_path`; ``stats.resumed`` counts the others).

    Args:
        images_dir: folder of ``<IMGID>.<ext>`` files.
        out: the objects file to write (atomically, once every image is done).
        settings: the detector's (:class:`DetectorSettings`); the partial file's header.
        device: torch device for the detector.
        batch_size: images per forward pass.
        progress: a progress bar on stderr (images/s, time left); None: only on a terminal.
    """
    paths = _image_paths(images_dir)
    detector = build_detector(settings)
    header = {"images_dir": str(Path(images_dir).resolve()), **asdict(settings)}
    partial = partial_path(out)
    done = _resume(partial, header, paths)
    stats = DetectStats(images=len(paths), resumed=len(done))
    todo = [p for p in paths if p.stem not in done]
    _detect_resumably(detector, todo, done, partial, header, stats, device, batch_size, progress)
    stems = [p.stem for p in paths]
    write_objects(out, [done[s] for s in stems if s in done])
    partial.unlink(missing_ok=True)
    stats.written = sum(s in done for s in stems)
    if stats.unreadable:
        log.warning("%s: %d of %d images unreadable and skipped", images_dir, stats.unreadable,
                    stats.images)
    return stats
