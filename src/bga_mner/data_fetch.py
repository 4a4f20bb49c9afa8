"""``make data``: download the Twitter-2015/2017 text files and verify their sha256.

The sources (URLs pinned to one commit of the UMT repository, and the checksums of the original
files) are kept in ``resources/datasets.yaml``. Each file is written to
``<data_dir>/<name>/<split>.txt`` through a temporary file that is renamed only once its checksum
matches, so an interrupted or corrupted download never leaves a file that looks valid. A file
already there with the right checksum is kept; one with another checksum is an error (it is never
overwritten). The images are not redistributable from there: the command prints where to put them.

    python -m bga_mner.data_fetch [--data-dir DIR] [--datasets twitter2015 twitter2017]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import urllib.request
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

from omegaconf import OmegaConf

CHUNK = 1 << 16


class ChecksumError(RuntimeError):
    """A downloaded or existing file does not have the sha256 listed in ``datasets.yaml``."""


def load_sources(path: str | Path | None = None) -> dict[str, Any]:
    """The parsed ``datasets.yaml`` (the packaged one unless ``path`` is given)."""
    if path is None:
        text = resources.files("bga_mner").joinpath("resources/datasets.yaml").read_text("utf-8")
        return OmegaConf.to_container(OmegaConf.create(text), resolve=True)  # type: ignore[return-value]
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)  # type: ignore[return-value]


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_file(url: str, dest: str | Path, sha256: str, timeout: float = 60.0) -> bool:
    """Download ``url`` to ``dest`` unless ``dest`` already holds the expected bytes.

    Args:
        url: http(s) or file URL.
        dest: target file; written atomically (temporary file in the same folder, then rename).
        sha256: expected hex digest of the file.
        timeout: seconds before a stalled connection fails.

    Returns:
        True if the file was downloaded, False if a verified copy was already there.

    Raises:
        ChecksumError: the existing file or the download has another checksum (nothing is kept).
    """
    dest = Path(dest)
    if dest.exists():
        got = sha256_file(dest)
        if got == sha256:
            return False
        raise ChecksumError(f"{dest}: exists with sha256 {got}, expected {sha256}; "
                            "move it away to download the original")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            shutil.copyfileobj(response, out, CHUNK)
        got = sha256_file(tmp)
        if got != sha256:
            raise ChecksumError(f"{url}: downloaded sha256 {got}, expected {sha256} "
                                f"(nothing written to {dest})")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return True


def fetch_datasets(data_dir: str | Path, names: Sequence[str] | None = None,
                   sources: dict[str, Any] | None = None) -> list[Path]:
    """Download and verify every file of the named data sets (default: all of them).

    Args:
        data_dir: files go to ``<data_dir>/<name>/<file>``.
        names: data set names from ``datasets.yaml``; an unknown name is a ``KeyError``.
        sources: parsed sources (default: ``load_sources()``); tests pass ``file://`` mirrors.

    Returns:
        The paths of the verified files, in order.
    """
    sources = load_sources() if sources is None else sources
    available = sources["datasets"]
    names = list(available) if not names else list(names)
    unknown = [n for n in names if n not in available]
    if unknown:
        raise KeyError(f"unknown data set(s) {unknown}; datasets.yaml lists {list(available)}")
    paths = []
    for name in names:
        for filename, entry in available[name].items():
            dest = Path(data_dir) / name / filename
            downloaded = fetch_file(entry["url"], dest, entry["sha256"])
            print(f"{'downloaded' if downloaded else 'verified  '} {dest}  sha256 {entry['sha256'][:12]}")
            paths.append(dest)
    return paths


def image_instructions(data_dir: str | Path, names: Sequence[str], images_url: str | None) -> str:
    """What to do next: where the images go and how to run the object detector."""
    lines = ["", "Images are not downloaded (Twitter's terms): get them from the data set authors"
             + (f" ({images_url})" if images_url else "") + " and put each one at"]
    lines += [f"  {Path(data_dir) / name / 'images'}/<IMGID>.jpg" for name in names]
    lines += ["(IMGID: the id on the tweet's 'IMGID:' line). Then detect the objects once per data set:",
              f"  make detect DATA_DIR={data_dir}",
              "which writes <data_dir>/<name>/objects.jsonl (bga-mner detect). BERT-CRF needs no",
              "images; BGA-MNER learns its generators only from tweets whose image is there."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bga_mner.data_fetch", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None,
                        help="target folder (default: paths.data_dir of the config defaults)")
    parser.add_argument("--datasets", nargs="*", default=None, help="names (default: all)")
    args = parser.parse_args(argv)
    if args.data_dir is None:
        from bga_mner.config import load_config
        args.data_dir = load_config().paths.data_dir
    sources = load_sources()
    try:
        paths = fetch_datasets(args.data_dir, args.datasets, sources)
    except (ChecksumError, KeyError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    names = sorted({p.parent.name for p in paths})
    print(image_instructions(args.data_dir, names, sources.get("images")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
