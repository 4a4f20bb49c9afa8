"""The partial file that makes ``detect_folder`` (data/detect.py) resumable.

While it runs, ``detect_folder`` appends each finished batch to ``<out>.partial`` (a header line
with the settings, then one objects line per image, flushed to disk per batch). An interrupted run
(Ctrl-C, a crash, a lost machine) leaves that file; the same command run again reads it, skips the
images already there and detects the rest. Once every image is done, ``out`` is written atomically
(sorted like the image folder) and the partial file removed. A partial file of other settings
(weights, thresholds, sizes, image folder) is not reused: it is started afresh.

This module knows the file (header, lines, syncing), not the objects format: it reads back lines
as text, and writes anything with a ``to_json()`` (data/detect.py's ``Detections``).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping, Protocol, Sequence

log = logging.getLogger(__name__)

PARTIAL_HEADER_KEY = "bga_mner_detect_partial"


class JsonLine(Protocol):
    """What the partial file holds one line of: ``Detections``."""

    def to_json(self) -> str: ...


def partial_path(out: str | Path) -> Path:
    """The file an unfinished ``detect_folder`` run of ``out`` appends to.

    Args:
        out: the objects file the run writes once done.
    """
    out = Path(out)
    return out.with_name(out.name + ".partial")


def partial_lines(path: str | Path, settings: Mapping[str, Any]) -> list[str]:
    """The lines after the header of a partial file written with the same ``settings`` ([] when
    there is no partial file, or it was written with other settings: a warning says so).

    Args:
        path: the partial file (:func:`partial_path`).
        settings: the settings of the run now (JSON-able; compared with the header's).
    """
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    try:
        header = json.loads(lines[0]).get(PARTIAL_HEADER_KEY) if lines else None
    except (ValueError, AttributeError):
        header = None
    if header != dict(settings):
        log.warning("%s: from a run with other settings (%s); starting afresh", path, header)
        return []
    return lines[1:]


class PartialWriter:
    """Appends lines to the partial file, each batch flushed and synced to disk.

    Args:
        path: the partial file; rewritten at once with the header and the lines of ``done``.
        settings: the run's settings (the header).
        done: what an interrupted run finished (kept: its complete lines only).
    """

    def __init__(self, path: Path, settings: Mapping[str, Any], done: Iterable[JsonLine]):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:  # start from a clean copy: the header and the complete lines only
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(json.dumps({PARTIAL_HEADER_KEY: dict(settings)}) + "\n")
                f.writelines(item.to_json() + "\n" for item in done)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.file = open(path, "a", encoding="utf-8")

    def write(self, items: Sequence[JsonLine]) -> None:
        """Append one line per item and sync the file (nothing for no items)."""
        if items:
            self.file.writelines(item.to_json() + "\n" for item in items)
            self.file.flush()
            os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()
