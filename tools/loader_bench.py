"""Samples/s of the image loader from its tensor cache: crops cut by boxes against crops read from files.

Builds a folder of synthetic images (the sizes of ``make rehearsal``), an ``objects.jsonl`` with
3-5 boxes per image and a release-style crop dict with 0-6 crop files per image, prepares each
store once (cold: decode and cache), then times ``ImageStore.load`` over every image from the warm
cache, rounds interleaved across the variants (a shared machine's load hits them alike):

- ``boxes``: ``data.object_source=detections`` (crops cut by the top-K boxes);
- ``files``: ``data.object_source=rcnn``/``grounding`` (the first K crop files);
- with ``--before PATH`` (an ``images.py`` of an earlier commit, e.g. from ``git show
  d6a749f:src/bga_mner/data/images.py``), ``before-boxes``: that version's store on the same boxes.

    python tools/loader_bench.py [--images 400] [--rounds 5] [--before /tmp/images_before.py]

Prints one line per variant: cold prepare seconds and the median (min-max) samples/s of the rounds.
One torch thread by default, as in a DataLoader worker (on a loaded 2-core machine two threads made
every variant ~25x slower, the thread pool waiting for cores).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rehearsal import draw, size  # noqa: E402

from bga_mner.data.detect import read_objects  # noqa: E402
from bga_mner.data.images import ImageStore  # noqa: E402


def build(folder: Path, n: int, seed: int = 0) -> tuple[list[str], Path, dict[str, list[Path]]]:
    """n images, their objects file and crop files; returns ids, the objects file and the crops."""
    rng = random.Random(seed)
    images, crops_dir = folder / "images", folder / "crops"
    images.mkdir()
    crops_dir.mkdir()
    ids, lines, crops = [], [], {}
    for i in range(n):
        image_id = f"img{i}"
        w, h = size(rng)
        img = draw(rng, w, h)
        img.save(images / f"{image_id}.jpg", "JPEG", quality=85)
        boxes = []
        for _ in range(rng.randint(3, 5)):
            x1, y1 = rng.uniform(0, w - 2), rng.uniform(0, h - 2)
            boxes.append([round(x1, 2), round(y1, 2), round(rng.uniform(x1 + 1, w), 2), round(rng.uniform(y1 + 1, h), 2)])
        k = len(boxes)
        lines.append(json.dumps({"image_id": image_id, "boxes": boxes, "scores": [1.0 - j / 10 for j in range(k)],
                                 "labels": [1] * k, "names": ["person"] * k}))
        files = []
        for j in range(rng.choice((0, 1, 2, 3, 4, 6))):
            crop = img.crop(tuple(int(v) for v in boxes[j % k]))
            crop.thumbnail((256, 256))
            files.append(crops_dir / f"{image_id}_{j}.jpg")
            crop.save(files[-1], "JPEG", quality=85)
        crops[image_id] = files
        ids.append(image_id)
    objects = folder / "objects.jsonl"
    objects.write_text("\n".join(lines) + "\n")
    return ids, objects, crops


def load_module(path: Path):
    spec = importlib.util.spec_from_file_location("images_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--before", type=Path, default=None, help="an earlier images.py to compare")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: as in a DataLoader worker process, the default)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ids, objects_file, crops = build(folder, args.images)
        objects = read_objects(objects_file)
        sizes = dict(global_size=224, crop_size=128, num_objects=3)
        makers = {"boxes": lambda: ImageStore(folder / "images", objects, cache_dir=folder / "cache-boxes", **sizes),
                  "files": lambda: ImageStore(folder / "images", None, cache_dir=folder / "cache-files",
                                              crop_files=crops, crop_source="rcnn", **sizes)}
        if args.before is not None:
            old = load_module(args.before)
            makers["before-boxes"] = lambda: old.ImageStore(folder / "images", objects,
                                                            cache_dir=folder / "cache-before", **sizes)
        cold, rates = {}, {name: [] for name in makers}
        for name, make in makers.items():
            t = time.perf_counter()
            make().prepare(ids)
            cold[name] = time.perf_counter() - t
        for _ in range(args.rounds):
            for name, make in makers.items():
                store = make()  # a new process's store: only the disk cache is shared
                store.prepare(ids)  # warm: hashes the files, decodes nothing
                t = time.perf_counter()
                for image_id in ids:
                    store.load(image_id)
                rates[name].append(len(ids) / (time.perf_counter() - t))
        print(f"{len(ids)} images, {sum(map(len, crops.values()))} crop files, {args.rounds} rounds (interleaved)")
        for name, values in rates.items():
            print(f"{name:<13} cold prepare {cold[name]:6.1f} s   from the cache: {statistics.median(values):7.1f} "
                  f"samples/s (min {min(values):.1f}, max {max(values):.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
