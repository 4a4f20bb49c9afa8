"""``make rehearsal``: the GPU user's flow on a CPU, on a folder shaped like the HVPNeT/MKGformer release.

``build`` makes the folder from the real Twitter text (the real IMGIDs) with synthetic images,
in the release's layout (``bga_mner/data/release.py``, docs/data.md)::

    OUT/twitter2017/{train,valid,test}.txt            the real files (or their first --tweets tweets)
    OUT/twitter2017/twitter2017_{train,val,test}_dict.pth   grounding crops {"<IMGID>.jpg": [file, ...]}
    OUT/twitter2017_images/<IMGID>.jpg                synthetic: JPEGs of many sizes, a few greyscale
    OUT/twitter2017_aux_images/{train,val,test}/crops/<file>
    OUT/twitter17_detect/twitter17_img2crop.pth       Faster R-CNN crops {"<IMGID>": ["twitter17_detect/<file>", ...]}

Images come as a crawl has them: JPEGs from 48 to 1280 pixels wide in five aspect ratios, a few
greyscale, a CMYK JPEG, one with an EXIF orientation tag, a PNG saved as ``.jpg``, a 16-bit PNG
saved as ``.jpg``, a few missing, and one of each kind the loader must count unreadable without
stopping: a truncated JPEG, a folder, a dangling symlink and a FIFO named ``<IMGID>.jpg``. Crop
lists have 0 to 6 entries (past K = 3 is common), some images have no entry, a few listed crops
are missing and one is not an image. ``OUT/rehearsal.json`` records which image got which kind.
Nothing is written outside OUT (the text folder is only read).

``summary`` prints, from the finished runs and that record, the counts of each run (tweets, images
found/missing/unreadable, crops per tweet, object source, label version) and what the loader did
with each special image.

    python tools/rehearsal.py build --text ../shared/data --out DIR [--datasets ...] [--tweets N]
    python tools/rehearsal.py summary --data DIR --runs RUNS [--cache CACHE] [--started FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from PIL import Image, ImageDraw

DATASETS = ("twitter2015", "twitter2017")
SPLITS = ("train", "valid", "test")
RELEASE_SPLIT = {"train": "train", "valid": "val", "test": "test"}
ASPECTS = ((4, 3), (16, 9), (1, 1), (3, 4), (9, 16))
# kinds given to a few images (at least one each per data set); the others are colour JPEGs
SPECIAL = {"missing": 0.004, "grey": 0.02, "cmyk": 0, "exif_rotated": 0, "png_as_jpg": 0.001,
           "png16_as_jpg": 0, "truncated": 0, "folder": 0, "dangling_symlink": 0, "fifo": 0}
CROPS_PER_IMAGE = ((0, 0.12), (1, 0.18), (2, 0.2), (3, 0.2), (4, 0.15), (6, 0.1))  # (n, probability)
UNLISTED = 0.05      # images without an entry in a crop dict
MISSING_CROP = 0.01  # listed crop files that are not written


def tweet_blocks(path: Path) -> list[bytes]:
    """The ``IMGID:`` blocks of a CoNLL file, each with its trailing blank line (bytes as they are)."""
    data = path.read_bytes()
    blocks, current = [], b""
    for line in data.splitlines(keepends=True):
        if line.startswith(b"IMGID:") and current.strip():
            blocks.append(current)
            current = b""
        current += line
    if current.strip():
        blocks.append(current)
    return blocks


def image_ids(blocks: Sequence[bytes]) -> list[str]:
    return [b.split(b"\n", 1)[0].decode("utf-8").strip()[len("IMGID:"):] for b in blocks]


def draw(rng: random.Random, width: int, height: int) -> Image.Image:
    """A synthetic picture: a coloured background and a few shapes."""
    img = Image.new("RGB", (width, height), tuple(rng.randrange(256) for _ in range(3)))
    pen = ImageDraw.Draw(img)
    for _ in range(rng.randint(2, 6)):
        x1, y1 = rng.randrange(width), rng.randrange(height)
        x2, y2 = x1 + rng.randint(1, max(1, width // 2)), y1 + rng.randint(1, max(1, height // 2))
        shape = pen.ellipse if rng.random() < 0.5 else pen.rectangle
        shape((x1, y1, x2, y2), fill=tuple(rng.randrange(256) for _ in range(3)))
    return img


def size(rng: random.Random) -> tuple[int, int]:
    """48 to 1280 pixels wide (log-uniform), one of five aspect ratios."""
    width = int(math.exp(rng.uniform(math.log(48), math.log(1280))))
    a, b = rng.choice(ASPECTS)
    return width, max(8, width * b // a)


def write_image(path: Path, kind: str, img: Image.Image) -> None:
    """``<IMGID>.jpg`` of the given kind (or nothing, for ``missing``)."""
    if kind == "missing":
        return
    if kind == "folder":
        path.mkdir()
    elif kind == "dangling_symlink":
        path.symlink_to(path.with_name(f"gone-{path.name}"))
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "grey":
        img.convert("L").save(path, "JPEG", quality=85)
    elif kind == "cmyk":
        img.convert("CMYK").save(path, "JPEG", quality=85)
    elif kind == "exif_rotated":
        exif = Image.Exif()
        exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
        img.save(path, "JPEG", quality=85, exif=exif)
    elif kind == "png_as_jpg":
        img.save(path, "PNG")
    elif kind == "png16_as_jpg":
        import numpy as np

        grey = np.asarray(img.convert("L"), dtype=np.uint16) * 257  # 16-bit intensities
        Image.fromarray(grey).save(path, "PNG")
    elif kind == "truncated":
        img.save(path, "JPEG", quality=85)
        path.write_bytes(path.read_bytes()[: max(200, path.stat().st_size // 3)])
    else:
        img.save(path, "JPEG", quality=85)


def write_crops(rng: random.Random, img: Image.Image, folder: Path, stem: str, n: int,
                manifest: dict[str, int]) -> list[str]:
    """``n`` crop files of random boxes of ``img`` (a few listed but not written); their names."""
    names = []
    for j in range(n):
        name = f"{stem}_{j}.jpg"
        names.append(name)
        if rng.random() < MISSING_CROP:
            manifest["crops_not_written"] += 1
            continue
        w, h = img.size
        x1, y1 = rng.randrange(w), rng.randrange(h)
        box = (x1, y1, min(w, x1 + rng.randint(4, max(4, w // 2))), min(h, y1 + rng.randint(4, max(4, h // 2))))
        crop = img.crop(box)
        crop.thumbnail((256, 256))
        crop.save(folder / name, "JPEG", quality=85)
        manifest["crops_written"] += 1
    return names


def crop_count(rng: random.Random) -> int | None:
    """How many crops an image lists (None: no entry)."""
    if rng.random() < UNLISTED:
        return None
    r, acc = rng.random(), 0.0
    for n, p in CROPS_PER_IMAGE:
        acc += p
        if r < acc:
            return n
    return CROPS_PER_IMAGE[-1][0]


def kinds_of(ids: Sequence[str], rng: random.Random) -> dict[str, str]:
    """The special kind of a few image ids (at least one of each kind; the rest are ``jpeg``)."""
    order = list(ids)
    rng.shuffle(order)
    kinds, at = {}, 0
    for kind, share in SPECIAL.items():
        n = max(1, round(share * len(order)))
        for image_id in order[at: at + n]:
            kinds[image_id] = kind
        at += n
    return kinds


def build_dataset(text: Path, out: Path, name: str, tweets: int | None, seed: int) -> dict[str, Any]:
    """One data set of the folder; returns its part of the record (``rehearsal.json``)."""
    import torch

    rng = random.Random(f"{seed}-{name}")
    short = name.replace("twitter20", "twitter")
    (out / name).mkdir(parents=True)
    ids_by_split = {}
    for split in SPLITS:
        blocks = tweet_blocks(text / name / f"{split}.txt")[:tweets]
        (out / name / f"{split}.txt").write_bytes(b"".join(blocks))
        ids_by_split[split] = image_ids(blocks)
    unique = sorted({i for ids in ids_by_split.values() for i in ids})
    kinds = kinds_of(unique, rng)
    images, detect = out / f"{name}_images", out / f"{short}_detect"
    images.mkdir()
    detect.mkdir()
    crops_dirs = {s: out / f"{name}_aux_images" / RELEASE_SPLIT[s] / "crops" for s in SPLITS}
    for folder in crops_dirs.values():
        folder.mkdir(parents=True)
    record: dict[str, Any] = {"tweets": {s: len(v) for s, v in ids_by_split.items()},
                              "images": len(unique), "kinds": {}, "crops_written": 0,
                              "crops_not_written": 0, "sizes": []}
    img2crop: dict[str, list[str]] = {}
    grounding: dict[str, dict[str, list[str]]] = {s: {} for s in SPLITS}
    split_of = {i: s for s in SPLITS for i in ids_by_split[s]}  # (no IMGID is in two splits)
    for image_id in unique:
        kind = kinds.get(image_id, "jpeg")
        w, h = size(rng)
        img = draw(rng, w, h)
        write_image(images / f"{image_id}.jpg", kind, img)
        record["sizes"].append([w, h])
        if kind != "jpeg":
            record["kinds"].setdefault(kind, []).append(image_id)
        n = crop_count(rng)
        if n is not None:
            names = write_crops(rng, img, detect, f"{image_id}_rcnn", n, record)
            img2crop[image_id] = [f"{detect.name}/{c}" for c in names]
        n = crop_count(rng)
        if n is not None:
            split = split_of[image_id]
            grounding[split][f"{image_id}.jpg"] = write_crops(rng, img, crops_dirs[split], image_id, n, record)
    # one listed crop that is not an image at all
    listed = [files[0] for _, files in sorted(img2crop.items()) if files]
    if listed:
        (out / listed[0]).write_bytes(b"not an image")
        record["crop_not_an_image"] = listed[0]
    torch.save(img2crop, detect / f"{short}_img2crop.pth")
    for split in SPLITS:
        torch.save(grounding[split], out / name / f"{name}_{RELEASE_SPLIT[split]}_dict.pth")
    return record


def build(text: Path, out: Path, datasets: Sequence[str], tweets: int | None, seed: int) -> dict:
    """The whole folder; ``OUT/rehearsal.json`` records what was made."""
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out}: not empty; the rehearsal builds into a new folder")
    out.mkdir(parents=True, exist_ok=True)
    record = {"text": str(text), "tweets_per_split": tweets, "seed": seed,
              "datasets": {name: build_dataset(text, out, name, tweets, seed) for name in datasets}}
    (out / "rehearsal.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def describe_build(record: dict) -> str:
    lines = []
    for name, d in record["datasets"].items():
        widths = sorted(w for w, _ in d["sizes"])
        kinds = ", ".join(f"{k} {len(v)}" for k, v in d["kinds"].items())
        lines.append(f"{name}: tweets {d['tweets']}, {d['images']} image ids (widths {widths[0]}-{widths[-1]} px, "
                     f"median {widths[len(widths) // 2]}); special: {kinds}; crop files {d['crops_written']} "
                     f"written, {d['crops_not_written']} listed but absent, 1 not an image")
    return "\n".join(lines)


def special_outcomes(data: Path, cache: Path | None) -> list[str]:
    """What the loader does with each special image of the folder (one line per kind)."""
    from bga_mner.data.images import ImageStore

    record = json.loads((data / "rehearsal.json").read_text())
    lines = []
    for name, d in record["datasets"].items():
        store = ImageStore(data / f"{name}_images", None, cache_dir=cache)
        ids = [i for v in d["kinds"].values() for i in v]
        store.prepare(ids, split=f"{name} special")
        for kind, kind_ids in d["kinds"].items():
            status = sorted({store._status(i) for i in kind_ids})
            lines.append(f"{name}: {kind:<17} {len(kind_ids):>3} image(s) -> {', '.join(status)}")
    return lines


def summary(data: Path, runs: Path, cache: Path | None) -> str:
    """The counts of each finished run and the outcome of each special image."""
    rows = []
    for path in sorted(runs.rglob("results.json")):
        r = json.loads(path.read_text())
        counts = r.get("image_counts") or {}
        label = r.get("label_version") or {}
        objects = r.get("object_source") or "none (text only)"
        head = (f"{r['run']}: test F1 {r['test']['overall']['f1']:.2f} (plumbing), objects {objects}, "
                f"labels {', '.join(sorted(set(label.values())))}")
        rows.append(head)
        for split, c in counts.items():
            if c is None:
                continue
            found = c["tweets"] - c["missing"] - c["unreadable"]
            rows.append(f"  {split:<5} tweets {c['tweets']}, images found {found}, missing {c['missing']}, "
                        f"unreadable {c['unreadable']}; tweets with 0..K crops {c['crops_per_tweet']}, "
                        f"crop files missing {c['crops_missing']}, unreadable {c['crops_unreadable']}, "
                        f"past K {c['beyond_k']}, images without an entry {c['unlisted']}")
    return "\n".join(rows + ["special images:"] + special_outcomes(data, cache))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the release-shaped folder")
    b.add_argument("--text", type=Path, required=True, help="folder with <data set>/{train,valid,test}.txt")
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    b.add_argument("--tweets", type=int, default=None, help="the first N tweets of each split (default all)")
    b.add_argument("--seed", type=int, default=0)
    s = sub.add_parser("summary", help="counts of the finished runs and the special images' outcome")
    s.add_argument("--data", type=Path, required=True)
    s.add_argument("--runs", type=Path, required=True)
    s.add_argument("--cache", type=Path, default=None)
    s.add_argument("--started", type=Path, default=None, help="file holding the start time (date +%%s)")
    args = parser.parse_args(argv)
    if args.command == "build":
        missing = [str(args.text / d / f"{sp}.txt") for d in args.datasets for sp in SPLITS
                   if not (args.text / d / f"{sp}.txt").is_file()]
        if missing:
            print(f"rehearsal: the real text is missing: {', '.join(missing)} (make data fetches it)",
                  file=sys.stderr)
            return 2
        print(describe_build(build(args.text, args.out, args.datasets, args.tweets, args.seed)))
    else:
        print(summary(args.data, args.runs, args.cache))
        if args.started is not None:
            seconds = int(time.time()) - int(args.started.read_text().split()[0])
            print(f"make rehearsal: {seconds} s ({seconds / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
