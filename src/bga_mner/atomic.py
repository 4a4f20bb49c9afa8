"""Atomic file writes: a temporary file in the same folder, flushed, renamed into place.

A killed process or a full disk never leaves a truncated artifact behind (checkpoints,
``inference.pt``, predictions, ``config.yaml``, ``results.json``, reports, ``predict --out``): only
a temporary file, which the next owner of a run folder removes (:func:`remove_temporary_files`).
A write that fails because the disk is full is an ``OSError(ENOSPC)`` naming the file that was
being written, whatever the writer raised (``torch.save`` raises a C++ ``RuntimeError`` on a
short write). Imports nothing from the package (any layer may use it).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import sys
from pathlib import Path
from typing import IO, Any, Callable, Iterator

log = logging.getLogger(__name__)

TMP_SUFFIX = ".tmp"
# errnos of a full disk (ENOSPC) or quota (EDQUOT)
FULL_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# a write that fails with less free space than this in its folder failed on a full disk
FULL_DISK_BYTES = 1 << 20


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}")


def disk_full(err: BaseException, folder: Path) -> bool:
    """Whether a write into ``folder`` failed with ``err`` because the disk is full: an ENOSPC or
    EDQUOT ``OSError``, or any failure while the file system has (almost) no space left (call it
    before removing the partial file, which holds the space)."""
    if isinstance(err, OSError) and err.errno in FULL_DISK_ERRNOS:
        return True
    if not isinstance(err, Exception):  # a signal, a KeyboardInterrupt: not the disk
        return False
    try:
        stat = os.statvfs(folder)
    except OSError:
        return False
    free = stat.f_bfree if os.geteuid() == 0 else stat.f_bavail  # root may use the reserve
    return free * stat.f_frsize < FULL_DISK_BYTES


def full_disk_error(path: str | Path, err: BaseException | None = None) -> OSError:
    """The ``OSError(ENOSPC)`` that names ``path`` (the command line prints ``<path>: disk full
    (No space left on device)``)."""
    code = err.errno if isinstance(err, OSError) and err.errno in FULL_DISK_ERRNOS else errno.ENOSPC
    return OSError(code, os.strerror(code), str(path))


def atomic_write(path: str | Path, writer: Callable[[Path], Any], durable: bool = True) -> Path | None:
    """Write ``path`` all or nothing: ``writer(tmp)`` writes a temporary file in the same folder
    (``.<name>.<pid>.<random>.tmp``), which is flushed to disk and renamed over ``path``
    (``os.replace``, atomic on POSIX). If ``writer`` fails (a full disk, an exception, a signal)
    the temporary file is removed and ``path`` is left as it was; a process killed mid-write leaves
    only the temporary file, which the next owner of the run folder removes
    (:func:`remove_temporary_files`).

    Args:
        path: the target file; its folder is created.
        writer: writes the whole content to the path it is given (creating the file).
        durable: fsync the file and the rename (False for a cache entry that can be rebuilt).

    Returns:
        ``path``, or None when ``writer`` created no file (nothing to write; ``path`` untouched).

    Raises:
        OSError: ENOSPC (or EDQUOT) naming ``path`` when the disk is full, whatever ``writer``
            raised; ``writer``'s own error otherwise.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path)
    try:
        writer(tmp)
        if not tmp.exists():
            return None
        _commit(tmp, path, durable)
    except BaseException as err:
        if _discard(tmp, path.parent, err):
            raise full_disk_error(path, err) from err
        raise
    return path


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str = "utf-8") -> Iterator[IO[Any]]:
    """``open(path, mode)`` for writing, all or nothing (as :func:`atomic_write`): the block writes
    a temporary file in the same folder, renamed over ``path`` when the block ends without an
    error; after an error (a full disk, a signal, an exception) ``path`` is as it was.

    Args:
        path: the file (its folder is created).
        mode: ``"w"`` (text, ``encoding``) or ``"wb"``.
        encoding: of text mode.

    Raises:
        OSError: ENOSPC (or EDQUOT) naming ``path`` when the disk is full.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes a whole file: mode 'w' or 'wb', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path)
    try:
        with open(tmp, mode, encoding=None if mode == "wb" else encoding) as f:
            yield f
        _commit(tmp, path, durable=True)
    except BaseException as err:
        if _discard(tmp, path.parent, err):
            raise full_disk_error(path, err) from err
        raise


@contextlib.contextmanager
def output(path: str | Path | None) -> Iterator[IO[str]]:
    """Where a command writes its text output: ``path`` through :func:`atomic_open` (complete or
    absent, never cut mid-line), or standard output for None or ``-``, flushed at the end of the
    block so that a full disk or a broken pipe surfaces there (the command line names
    ``<stdout>``, and ends quietly on a broken pipe).

    Args:
        path: the output file, or None / ``-`` for standard output.
    """
    if path is not None and str(path) != "-":
        with atomic_open(path) as f:
            yield f
        return
    yield sys.stdout
    sys.stdout.flush()


def _commit(tmp: Path, path: Path, durable: bool) -> None:
    """Rename the written ``tmp`` over ``path`` (both fsynced first when ``durable``)."""
    if durable:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)  # a delayed write error (ENOSPC on some file systems) surfaces here
        finally:
            os.close(fd)
    os.replace(tmp, path)
    if durable:
        _fsync_dir(path.parent)


def _discard(tmp: Path, folder: Path, err: BaseException) -> bool:
    """Remove the temporary file of a failed write; returns whether the disk was full."""
    full = disk_full(err, folder)  # before the partial file gives its space back
    try:
        tmp.unlink()
    except FileNotFoundError:
        pass
    return full


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
