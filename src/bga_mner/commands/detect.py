"""``bga-mner detect IMAGES_DIR --out objects.jsonl``: Faster R-CNN detections for the data module.

Put the result where the data module looks for it (``<data root>/objects.jsonl``, or set
``data.objects_file``). Unreadable images are warned about by name, skipped and counted.
A progress bar shows images/s and the time left; finished images are saved as they complete
(``OUT.partial``), so the same command run again after an interruption continues where it stopped.
"""

from __future__ import annotations

import argparse
import logging

from bga_mner.data.detect import BATCH_SIZE, WEIGHTS, DetectorSettings, detect_folder
from bga_mner.devices import torch_device
from bga_mner.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images_dir", metavar="IMAGES_DIR", help="folder of <IMGID>.jpg files")
    parser.add_argument("--out", required=True, help="objects file to write (JSONL)")
    parser.add_argument("--weights", choices=WEIGHTS, default=DetectorSettings.weights,
                        help="default: COCO weights from the torch hub cache (no download); "
                             "none: random init (tests)")
    parser.add_argument("--score-threshold", type=float, default=DetectorSettings.score_threshold,
                        help="drop detections scoring below this (default %(default)s)")
    parser.add_argument("--max-objects", type=int, default=DetectorSettings.max_objects,
                        help="detections kept per image (default %(default)s)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                        help="images per forward pass (default %(default)s)")
    parser.add_argument("--min-size", type=int, default=DetectorSettings.min_size,
                        help="detector's internal resize of the shorter side (torchvision default %(default)s)")
    parser.add_argument("--max-size", type=int, default=DetectorSettings.max_size,
                        help="detector's cap on the longer side (torchvision default %(default)s)")
    parser.add_argument("--proposals", type=int, default=DetectorSettings.proposals,
                        help="RPN proposals per image at test time (torchvision default %(default)s)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar on stderr (images/s, time left); default: on a terminal")


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if min(args.max_objects, args.batch_size, args.proposals) < 1:
        raise UserError("--max-objects, --batch-size and --proposals must be at least 1")
    torch_device(args.device)  # a device this machine has, before any image is read
    settings = DetectorSettings(weights=args.weights, score_threshold=args.score_threshold,
                                max_objects=args.max_objects, min_size=args.min_size,
                                max_size=args.max_size, proposals=args.proposals)
    stats = detect_folder(args.images_dir, args.out, settings, device=args.device,
                          batch_size=args.batch_size, progress=args.progress)
    empty = f"; {stats.empty_boxes} boxes without area dropped" if stats.empty_boxes else ""
    resumed = f"; {stats.resumed} from the interrupted run before" if stats.resumed else ""
    print(f"{args.out}: {stats.written} images with detections written; "
          f"{stats.unreadable} unreadable skipped (of {stats.images} files){empty}{resumed}")
    return 0
