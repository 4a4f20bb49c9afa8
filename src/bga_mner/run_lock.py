"""One owner per run folder: :class:`RunLock`, an ``fcntl.flock`` on ``<run>/.lock``.

Imports nothing from the package but the error base class.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any, Mapping

from bga_mner.errors import UserError

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"


class RunBusyError(UserError, FileExistsError):
    """Another live process holds the run folder (its ``.lock``)."""


class NotWritableError(UserError, PermissionError):
    """The runs folder (or the run folder) cannot be written."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _describe(holder: Mapping[str, Any] | None) -> str:
    if not holder:
        return "holder unknown"
    return f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"


class RunLock:
    """The exclusive ownership of a run folder: ``fcntl.flock`` on ``<run>/.lock``.

    The file holds ``{"pid", "host", "started"}`` of the owner, for the error message of a run that
    is refused. The kernel drops a flock when its process dies, so the lock of a killed run is free
    at once: the next run takes it over (logged, naming the dead owner). On a file system without
    flock the file alone decides: a lock whose pid is not running on this host is stale and taken
    over; one from another host is respected (delete ``.lock`` by hand if that host died).
    Released (and the file removed) by :meth:`release` or at the end of a ``with`` block.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _read(self, fd: int) -> dict | None:
        try:
            data = os.pread(fd, 4096, 0).decode("utf-8", "replace")
            holder = json.loads(data) if data.strip() else None
        except (OSError, ValueError):
            return None
        return holder if isinstance(holder, dict) else None

    def _busy(self, holder: dict | None) -> RunBusyError:
        return RunBusyError(f"{self.run_dir}: in use by another run ({_describe(holder)}); "
                            "wait for it to end, or choose another run name")

    def acquire(self) -> "RunLock":
        """Take the lock or raise :class:`RunBusyError` at once (never waits)."""
        if self.held:
            return self
        host = socket.gethostname()
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:
                if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                    raise NotWritableError(f"{self.run_dir}: run folder is not writable") from err
                raise
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self._read(fd)
                os.close(fd)
                raise self._busy(holder) from None
            except OSError as err:  # no flock on this file system: the pid decides
                if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    os.close(fd)
                    raise
                holder = self._read(fd)
                if holder and holder.get("pid") != os.getpid() and (
                        holder.get("host") != host or _pid_alive(int(holder.get("pid", 0)))):
                    os.close(fd)
                    raise self._busy(holder) from None
            # The previous owner removes the file when it releases: a lock taken on a removed file
            # is no lock. Try again on the file that is there now.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = self._read(fd)
        if previous and previous.get("pid") != os.getpid():
            log.warning("%s: taking over the stale lock of a run that is no longer running (%s)",
                        self.run_dir, _describe(previous))
        mine = json.dumps({"pid": os.getpid(), "host": host,
                           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, mine, 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        """Remove the lock file and drop the lock (nothing if not held)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
