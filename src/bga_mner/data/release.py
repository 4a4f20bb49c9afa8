"""The HVPNeT/MKGformer release of Twitter-2015/2017, read as it is unpacked (docs/data.md).

HVPNeT (``zjunlp/HVPNeT``, ``run.py`` and ``processor/dataset.py``) distributes ``data/NER_data/``;
unpacked to a folder ``R`` it reads::

    R/twitter2015/{train,valid,test}.txt
    R/twitter2015/twitter2015_{train,val,test}_dict.pth   {"<IMGID>.jpg": ["<crop file>", ...]}
    R/twitter2015_images/<IMGID>.jpg
    R/twitter2015_aux_images/{train,val,test}/crops/<crop file>
    R/twitter15_detect/twitter15_img2crop.pth             {"<IMGID>": ["<path under R>", ...]}

and the same for twitter2017 (``twitter17_detect``). The ``*_dict.pth`` files hold the
visual-grounding crops of each split (``grounding``), ``*_img2crop.pth`` the Faster R-CNN crops of
all splits (``rcnn``; read by MKGformer's ``MNER/processor/datasets.py``, whose crop paths are
relative to the folder that holds ``twitter17_detect``). Both are pickles: :func:`read_crop_dict`
loads them with ``torch.load(..., weights_only=True)``, so nothing but plain containers can come
out, and accepts only ``{str: [str, ...]}``; anything else is a one-line :class:`ReleaseFormatError`
naming the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from bga_mner.data.detect import IMAGE_EXTENSIONS
from bga_mner.errors import UserError

# the release names the dev split "val" in its dict files and crop folders ("valid.txt" for text)
RELEASE_SPLITS: dict[str, str] = {"train": "train", "valid": "val", "test": "test"}


class ReleaseFormatError(UserError, ValueError):
    """A crop dict of the release that is not ``{image: [crop file, ...]}`` of strings."""


def short_name(name: str) -> str:
    """``twitter2015`` -> ``twitter15`` (the release's name for its detection folders)."""
    return re.sub(r"^twitter20(\d\d)$", r"twitter\1", name)


def image_key(key: str) -> str:
    """A dict key as the tweets' image id: ``<IMGID>.jpg`` -> ``<IMGID>`` (extension removed)."""
    stem, dot, ext = key.rpartition(".")
    return stem if dot and f".{ext.lower()}" in IMAGE_EXTENSIONS else key


@dataclass(frozen=True)
class ReleaseLayout:
    """Where the release keeps the images and crops of the data set whose text is in ``root``.

    Args:
        root: the text folder (``R/twitter2015``); its name names the data set.
    """

    root: Path

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def images_dir(self) -> Path:
        """``R/<name>_images``."""
        return self.root.parent / f"{self.name}_images"

    def grounding_dict(self, split: str) -> Path:
        """``R/<name>/<name>_{train,val,test}_dict.pth``."""
        return self.root / f"{self.name}_{RELEASE_SPLITS[split]}_dict.pth"

    def grounding_crops(self, split: str) -> Path:
        """``R/<name>_aux_images/{train,val,test}/crops``."""
        return self.root.parent / f"{self.name}_aux_images" / RELEASE_SPLITS[split] / "crops"

    def rcnn_candidates(self) -> list[Path]:
        """Where the Faster R-CNN dict may be: MKGformer's place first, then DeepKE's."""
        short = short_name(self.name)
        detect = f"{short}_detect"
        return [self.root.parent / detect / f"{short}_img2crop.pth",
                self.root / detect / f"{short}_img2crop.pth",
                self.root / f"{short}_img2crop.pth", self.root / f"{self.name}_img2crop.pth"]

    def rcnn_dict(self) -> Path | None:
        """The first Faster R-CNN dict that exists, or None."""
        return next((p for p in self.rcnn_candidates() if p.is_file()), None)

    def has_grounding(self) -> bool:
        return any(self.grounding_dict(s).exists() for s in RELEASE_SPLITS)


def _describe(value: Any) -> str:
    kinds = sorted({type(v).__name__ for v in value}) if isinstance(value, (list, tuple)) else []
    return f"a {type(value).__name__}" + (f" of {', '.join(kinds)}" if kinds else "")


def read_crop_dict(path: str | Path) -> dict[str, list[str]]:
    """A release crop dict as ``{image id: [crop file, ...]}`` (keys without their extension).

    Raises:
        FileNotFoundError: no such file.
        ReleaseFormatError: it does not load with ``weights_only=True`` (it pickles something other
            than plain containers), or it is not a dict of lists of strings.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: crop dict not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickles of other objects, or not a pickle at all
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ReleaseFormatError(f"{path}: does not load as plain containers of strings "
                                 f"(torch.load weights_only=True: {first})") from None
    if not isinstance(obj, dict):
        raise ReleaseFormatError(f"{path}: expected a dict {{image: [crop file, ...]}}, got {_describe(obj)}")
    out: dict[str, list[str]] = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise ReleaseFormatError(f"{path}: key {key!r} is {_describe(key)}, not an image file name")
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ReleaseFormatError(f"{path}: entry {key!r} holds {_describe(value)}, not a list "
                                     "of crop file names")
        out[image_key(key)] = list(value)
    return out


def resolve(crops: Mapping[str, Sequence[str]], bases: Sequence[Path],
            probe: int = 50) -> dict[str, list[Path]]:
    """Crop names as paths under the base folder where most of them exist (the first of
    ``bases`` on a tie), judged on the first ``probe`` names in image-id order."""
    names = [n for key in sorted(crops)[:probe] for n in crops[key]]
    base = max(bases, key=lambda b: (sum((b / n).is_file() for n in names), -bases.index(b)))
    return {key: [base / n for n in files] for key, files in crops.items()}


def grounding_crops(layout: ReleaseLayout, splits: Sequence[str]) -> dict[str, list[Path]]:
    """The visual-grounding crop files of the splits, per image id (one map: an image id listed by
    two splits' dicts with different crops is an error).

    Raises:
        FileNotFoundError: a split's dict file or crop folder is missing (one line naming it).
        ReleaseFormatError: see :func:`read_crop_dict`; or an image listed twice, differently.
    """
    out: dict[str, list[Path]] = {}
    first: dict[str, Path] = {}
    for split in splits:
        path, folder = layout.grounding_dict(split), layout.grounding_crops(split)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing crop dict of the {split} split "
                                    f"(data.object_source=grounding)")
        crops = read_crop_dict(path)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: crop folder of {path.name} not found")
        for key, files in resolve(crops, [folder]).items():
            if key in out and out[key] != files:
                raise ReleaseFormatError(f"{path}: image {key!r} is also in {first[key]} with other crops")
            out[key], first[key] = files, first.get(key, path)
    return out


def rcnn_crops(layout: ReleaseLayout) -> dict[str, list[Path]]:
    """The Faster R-CNN crop files of all splits, per image id.

    Raises:
        FileNotFoundError: no ``*_img2crop.pth`` where the release keeps it (the places are named).
        ReleaseFormatError: see :func:`read_crop_dict`.
    """
    path = layout.rcnn_dict()
    if path is None:
        places = ", ".join(str(p) for p in layout.rcnn_candidates())
        raise FileNotFoundError(f"{layout.root}: no Faster R-CNN crop dict (data.object_source=rcnn); "
                                f"looked for {places}")
    holder = path.parent.parent if path.parent.name.endswith("_detect") else path.parent
    return resolve(read_crop_dict(path), [holder, path.parent])
