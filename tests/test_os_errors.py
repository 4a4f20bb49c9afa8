"""What the operating system answers goes through the command line's one error path: a full disk
says ``disk full`` and names the file (and leaves no cut file), a read-only file system names the
path, a broken pipe ends quietly (status 141), a signal outside a fit ends with 128 + signal; none
shows a traceback unless ``BGA_MNER_DEBUG=1``.

A full disk is the kernel's own ENOSPC: the file being written is a link to ``/dev/full``. Where
torch writes a checkpoint its C++ writer hides the errno ("enforce fail ... unexpected pos"): the
disk is then found full by ``statvfs``, here made to say so.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import error_line

from bga_mner import atomic
from bga_mner.build import AtomicCheckpointIO
from bga_mner.cli import error_message, main

needs_dev_full = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")


@pytest.fixture
def full_disk(monkeypatch):
    """Every atomic write's temporary file is a link to /dev/full (writes fail with ENOSPC) on a
    file system that statvfs reports full; returns the links made."""
    links: list[Path] = []
    real = atomic._temporary

    def temporary(path: Path) -> Path:
        tmp = real(path)
        tmp.symlink_to("/dev/full")
        links.append(tmp)
        return tmp

    class Full:
        f_bavail = f_bfree = 0
        f_frsize = 4096

    monkeypatch.setattr(atomic, "_temporary", temporary)
    monkeypatch.setattr(atomic.os, "statvfs", lambda path: Full())
    return links


# --------------------------------------------------------------------------- a full disk
@needs_dev_full
def test_a_checkpoint_on_a_full_disk_says_disk_full_and_names_the_file(tmp_path, full_disk):
    path = tmp_path / "checkpoints" / "last.ckpt"
    with pytest.raises(OSError) as caught:
        AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.zeros(100_000)}}, path)
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(path)
    assert isinstance(caught.value.__cause__, RuntimeError)  # torch's "enforce fail ... unexpected pos"
    assert error_message(caught.value) == f"{path}: disk full (No space left on device)"
    assert list(path.parent.iterdir()) == [] and not full_disk[0].is_symlink()  # nothing left


@needs_dev_full
def test_a_failed_write_on_a_disk_with_room_keeps_its_own_error(tmp_path, monkeypatch):
    def fail(tmp: Path) -> None:
        tmp.write_bytes(b"x")
        raise RuntimeError("not the disk")

    with pytest.raises(RuntimeError, match="not the disk"):
        atomic.atomic_write(tmp_path / "x.bin", fail)
    assert list(tmp_path.iterdir()) == []


@needs_dev_full
def test_predict_out_on_a_full_disk_is_one_line_and_leaves_the_old_file(capsys, smoke_run, tmp_path, full_disk):
    out = tmp_path / "pred.jsonl"
    out.write_text("the previous predictions\n")
    tweets = tmp_path / "tweets.txt"
    tweets.write_text("Kawhi Leonard wins the fan vote in Toronto\n" * 200)
    assert error_line(capsys, ["predict", "--ckpt", str(smoke_run[0] / "checkpoints" / "inference.pt"),
                               "--input", str(tweets), "--out", str(out)]) == (
        f"bga-mner predict: error: {out}: disk full (No space left on device)")
    assert out.read_text() == "the previous predictions\n"  # never cut mid-line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred.jsonl", "tweets.txt"]


@needs_dev_full
def test_test_predictions_on_a_full_disk_is_one_line_and_leaves_nothing(capsys, smoke_run, tmp_path, full_disk):
    out = tmp_path / "test.conll"
    assert error_line(capsys, ["test", "--ckpt", str(smoke_run[0] / "checkpoints" / "inference.pt"),
                               "--predictions", str(out)]) == (
        f"bga-mner test: error: {out}: disk full (No space left on device)")
    assert list(tmp_path.iterdir()) == []  # not even a 0-byte file


@needs_dev_full
def test_stdout_on_a_full_disk_is_one_line():
    """``bga-mner stats ... > file`` on a full disk: the last flush fails in the command's error
    path, not in the interpreter's exit (where Python prints "Exception ignored ...")."""
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "bga_mner.cli", "stats", "--json",
                               str(Path(__file__).parent / "fixtures" / "tweets")],
                              stdout=full, stderr=subprocess.PIPE, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == "bga-mner stats: error: <stdout>: disk full (No space left on device)"


@needs_dev_full
def test_the_debug_variable_shows_the_traceback_of_an_os_error(capsys, smoke_run, tmp_path, full_disk, monkeypatch):
    monkeypatch.setenv("BGA_MNER_DEBUG", "1")
    out = tmp_path / "test.conll"
    assert main(["test", "--ckpt", str(smoke_run[0] / "checkpoints" / "inference.pt"),
                 "--predictions", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().endswith(
        f"bga-mner test: error: {out}: disk full (No space left on device)")


# --------------------------------------------------------------------------- a read-only file system
@pytest.fixture
def read_only(tmp_path, monkeypatch) -> Path:
    """``<tmp>/ro``: a folder on a read-only file system (creating anything in it fails, EROFS)."""
    ro = tmp_path / "ro"
    real_mkdir, real_open = Path.mkdir, os.open

    def inside(path) -> bool:
        return Path(path).absolute().is_relative_to(ro)

    def mkdir(self, *args, **kwargs):
        if inside(self):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_mkdir(self, *args, **kwargs)

    def os_open(path, flags, *args, **kwargs):
        if inside(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    monkeypatch.setattr(os, "open", os_open)
    return ro


def test_a_cache_on_a_read_only_file_system_is_one_line_naming_it(capsys, tmp_path, read_only):
    cache = read_only / "cache"
    assert error_line(capsys, ["fit", "run.profile=smoke", f"paths.runs_dir={tmp_path / 'runs'}",
                               f"paths.cache_dir={cache}", "logging.wandb=false", "run.name=r"]) == (
        f"bga-mner fit: error: {cache}: read-only file system")


def test_an_output_on_a_read_only_file_system_is_one_line_naming_it(capsys, tmp_path, read_only):
    tweets = tmp_path / "tweets.txt"
    tweets.write_text("Kawhi Leonard wins\n")
    out = read_only / "out" / "pred.jsonl"
    with pytest.raises(OSError) as caught:
        with atomic.output(out):
            pass
    assert error_message(caught.value) == f"{out.parent}: read-only file system"


# --------------------------------------------------------------------------- a broken pipe
def test_a_broken_pipe_ends_predict_quietly(smoke_run, tmp_path):
    """``bga-mner predict ... | head -n 1``: the reader goes away after one line."""
    tweets = tmp_path / "tweets.txt"
    tweets.write_text("".join(f"Kawhi Leonard wins the fan vote in Toronto {i}\n" for i in range(1000)))
    proc = subprocess.Popen([sys.executable, "-m", "bga_mner.cli", "predict", "--ckpt",
                             str(smoke_run[0] / "checkpoints" / "inference.pt"), "--input", str(tweets)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.stdout.readline().startswith(b'{"id": "line1"')
    proc.stdout.close()  # head exits
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 128 + signal.SIGPIPE
    assert "Traceback" not in err and "Broken pipe" not in err and "Exception ignored" not in err, err


# --------------------------------------------------------------------------- a signal
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_a_command_with_128_plus_the_signal(capsys, monkeypatch, tmp_path, signum):
    from bga_mner.commands import stats

    def killed(*args, **kwargs):
        os.kill(os.getpid(), signum)

    monkeypatch.setattr(stats, "read_split_dir", killed)
    before = signal.getsignal(signal.SIGTERM)
    assert main(["stats", str(Path(__file__).parent / "fixtures" / "tweets")]) == 128 + signum
    assert capsys.readouterr().err.strip() == f"bga-mner stats: interrupted by {signal.Signals(signum).name}"
    assert signal.getsignal(signal.SIGTERM) == before  # the command's handlers are gone with it
