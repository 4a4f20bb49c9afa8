"""Atomic file writes: a temporary file in the same folder, flushed, renamed into place.

A killed process or a full disk never leaves a truncated artifact behind (checkpoints,
``inference.pt``, predictions, ``config.yaml``, ``results.json``, reports): only a temporary file,
which the next owner of a run folder removes (:func:`remove_temporary_files`). Imports nothing from
the package (any layer may use it).
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)

TMP_SUFFIX = ".tmp"


def atomic_write(path: str | Path, writer: Callable[[Path], Any]) -> Path | None:
    """Write ``path`` all or nothing: ``writer(tmp)`` writes a temporary file in the same folder
    (``.<name>.<pid>.<random>.tmp``), which is flushed to disk and renamed over ``path``
    (``os.replace``, atomic on POSIX). If ``writer`` fails (a full disk, an exception, ...) the
    temporary file is removed and ``path`` is left as it was; a process killed mid-write leaves
    only the temporary file, which the next owner of the run folder removes
    (:func:`remove_temporary_files`).

    Args:
        path: the target file; its folder is created.
        writer: writes the whole content to the path it is given (creating the file).

    Returns:
        ``path``, or None when ``writer`` created no file (nothing to write; ``path`` untouched).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}")
    try:
        writer(tmp)
        if not tmp.exists():
            return None
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)  # a delayed write error (ENOSPC on some file systems) surfaces here
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: not every file system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """:func:`atomic_write` of a UTF-8 text."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def remove_temporary_files(run_dir: Path) -> list[Path]:
    """Remove the temporary files that a killed :func:`atomic_write` left under ``run_dir`` (only
    call it while holding the folder's lock: a live writer's file would go too)."""
    removed = []
    for tmp in run_dir.rglob(f".*{TMP_SUFFIX}"):
        if tmp.is_file() and "wandb" not in tmp.relative_to(run_dir).parts:
            tmp.unlink()
            removed.append(tmp)
    if removed:
        log.info("%s: removed %d temporary file(s) of an interrupted write", run_dir, len(removed))
    return removed
