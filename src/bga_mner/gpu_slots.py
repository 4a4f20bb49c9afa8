"""GPU slots: one run per GPU (or per group of GPUs) under ``make -j N TARGET GPUS='0 1 2 3'``.

``python -m bga_mner.gpu_slots --gpus '0 1 2 3' -- COMMAND ...`` waits for a free slot, takes it and
replaces itself with ``COMMAND`` (``os.execvp``) with ``CUDA_VISIBLE_DEVICES`` set to the slot. A
slot is one word of ``--gpus``: ``'0 1 2 3'`` is four one-GPU slots, ``'0,1 2,3'`` two two-GPU
slots. Taking a slot is an ``fcntl.flock`` on ``<lock dir>/gpu-<slot>.lock``, and the command
inherits the locked descriptor: the slot is held for as long as the command (or any process it
started) lives, and the kernel frees it when the last of them exits, crashed or killed. Nothing
has to be cleaned up after a crash.

The lock folder (``--lock-dir``, default :func:`default_lock_dir`) is what the processes that share
GPUs must agree on: every ``make`` and ``bga-mner sweep --launcher local`` of one user on one
machine, by default. A lock file holds ``{"pid", "host", "started", "command"}`` of its last holder,
for the message of a process that waits.

Imports nothing from the package but the error base class (the experiments' Makefile runs it in
front of every run when ``GPUS`` is set).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shlex
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from bga_mner.errors import UserError

LOCK_DIR_ENV = "BGA_MNER_GPU_SLOTS"
POLL_S = 1.0  # seconds between tries while every slot is taken (python -m bga_mner.gpu_slots --poll)


class SlotSpecError(UserError, ValueError):
    """A ``GPUS`` value that is not a list of GPU ids (or comma-joined groups of ids)."""


def parse_slots(text: str) -> list[str]:
    """The slots of a ``GPUS`` value: one per whitespace-separated word.

    Args:
        text: e.g. ``"0 1 2 3"`` (four slots of one GPU) or ``"0,1 2,3"`` (two slots of two GPUs).

    Returns:
        The slots as ``CUDA_VISIBLE_DEVICES`` values, in the order given.

    Raises:
        SlotSpecError: empty, a word that is not comma-joined non-negative integers, or a GPU in
            two slots (two runs would share it).
    """
    slots = text.split()
    if not slots:
        raise SlotSpecError("GPUS is empty: give GPU ids, e.g. GPUS='0 1 2 3' (or '0,1 2,3')")
    seen: dict[str, str] = {}
    for slot in slots:
        ids = slot.split(",")
        if not all(i.isdigit() for i in ids):
            raise SlotSpecError(f"GPUS={text!r}: {slot!r} is not a GPU id (or comma-joined ids, "
                                "e.g. '0,1')")
        for i in ids:
            if str(int(i)) in seen:
                raise SlotSpecError(f"GPUS={text!r}: GPU {i} is in two slots ({seen[str(int(i))]!r} "
                                    f"and {slot!r}); two runs would share it")
            seen[str(int(i))] = slot
    return slots


def default_lock_dir() -> Path:
    """``$BGA_MNER_GPU_SLOTS``, else ``<temp dir>/bga-mner-gpu-slots-<uid>``: the processes of one
    user on one machine share it."""
    env = os.environ.get(LOCK_DIR_ENV)
    if env:
        return Path(env)
    return Path(tempfile.gettempdir()) / f"bga-mner-gpu-slots-{os.getuid()}"


def _lock_path(lock_dir: Path, slot: str) -> Path:
    return lock_dir / f"gpu-{slot}.lock"


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return "?"
    return f"pid {info.get('pid')} since {info.get('started')}: {info.get('command', '?')}"


@dataclass
class SlotLease:
    """A slot held: ``fd`` is the locked descriptor (the slot is free again once every process
    holding a copy of it has ended or :meth:`release` closed it)."""

    slot: str
    fd: int
    path: Path

    def release(self) -> None:
        """Free the slot (in this process; a command that inherited the descriptor still holds it)."""
        if self.fd >= 0:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "SlotLease":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def try_acquire(slots: Sequence[str], lock_dir: str | Path, command: str = "") -> SlotLease | None:
    """Take the first free slot, or None when all are held (never waits).

    Args:
        slots: the slots (:func:`parse_slots`).
        lock_dir: the folder of the lock files (created).
        command: what the slot is for, written into the lock file for the messages of waiters.
    """
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    for slot in slots:
        path = _lock_path(lock_dir, slot)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": command})
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode(), 0)
        return SlotLease(slot, fd, path)
    return None


def acquire(slots: Sequence[str], lock_dir: str | Path, command: str = "", poll_s: float = POLL_S,
            timeout_s: float | None = None) -> SlotLease:
    """Wait for a free slot and take it (:func:`try_acquire` every ``poll_s`` seconds).

    Args:
        slots: the slots (:func:`parse_slots`).
        lock_dir: the folder of the lock files.
        command: what the slot is for (lock file, messages).
        poll_s: seconds between tries.
        timeout_s: give up after this long (None: wait for ever).

    Raises:
        TimeoutError: no slot became free within ``timeout_s``.
    """
    start = time.monotonic()
    told = False
    while True:
        lease = try_acquire(slots, lock_dir, command)
        if lease is not None:
            return lease
        if not told:
            holders = "; ".join(f"GPU {s}: {_holder(_lock_path(Path(lock_dir), s))}" for s in slots)
            print(f"gpu_slots: all {len(slots)} slots busy ({holders}); waiting", file=sys.stderr)
            told = True
        if timeout_s is not None and time.monotonic() - start >= timeout_s:
            raise TimeoutError(f"no GPU slot of {list(slots)} became free in {timeout_s:g} s")
        time.sleep(poll_s)


def exec_in_slot(lease: SlotLease, command: Sequence[str]) -> None:
    """Replace this process by ``command`` on the slot's GPUs; the command keeps the slot's lock.

    Args:
        lease: the slot taken.
        command: program and arguments (looked up on PATH).
    """
    os.set_inheritable(lease.fd, True)
    os.environ["CUDA_VISIBLE_DEVICES"] = lease.slot
    print(f"gpu_slots: CUDA_VISIBLE_DEVICES={lease.slot}: {shlex.join(command)}", file=sys.stderr,
          flush=True)
    os.execvp(command[0], list(command))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bga_mner.gpu_slots --gpus '0 1' [--lock-dir DIR] -- COMMAND ...``; returns only
    on an error (otherwise the process becomes ``COMMAND``).

    Args:
        argv: the arguments (default ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(prog="python -m bga_mner.gpu_slots",
                                     description="run COMMAND on a GPU slot of its own")
    parser.add_argument("--gpus", required=True, help="slots: '0 1 2 3', or '0,1 2,3' for two GPUs each")
    parser.add_argument("--lock-dir", type=Path, default=None,
                        help=f"folder of the slot locks (default ${LOCK_DIR_ENV} or {default_lock_dir()})")
    parser.add_argument("--poll", type=float, default=POLL_S,
                        help="seconds between tries while waiting (default %(default)s)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command after --")
    try:
        slots = parse_slots(args.gpus)
    except SlotSpecError as err:
        parser.error(str(err))
    lease = acquire(slots, args.lock_dir or default_lock_dir(), shlex.join(command), args.poll)
    try:
        exec_in_slot(lease, command)
    except OSError as err:  # exec failed: the command was not started
        lease.release()
        print(f"gpu_slots: cannot run {command[0]!r}: {err.strerror}", file=sys.stderr)
        return 127
    return 0  # not reached: exec replaced the process


if __name__ == "__main__":
    sys.exit(main())
