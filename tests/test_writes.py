"""Writes go only where the user said: a fit changes its run folder and the caches it was named
(``paths.cache_dir``), and nothing else: not the package checkout (git is read without taking its
locks), not the home folder (W&B's files go under the run folder), not the working folder."""

from __future__ import annotations

import compileall
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SMOKE_FIT

from bga_mner.run import git_commit

SRC = Path(__file__).resolve().parents[1] / "src"

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


def _checkout(root: Path, src: Path | None = None) -> str:
    """A git checkout at ``root`` (of ``src``'s files, or one file) whose index is stale (every
    file touched after the commit): a plain ``git status`` would rewrite the index. Returns HEAD."""
    root.mkdir(parents=True)
    if src is not None:
        shutil.copytree(src, root / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    else:
        (root / "f.txt").write_text("x\n")
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "c")
    later = os.stat(root / ".git" / "index").st_mtime + 5
    for path in root.rglob("*"):
        if ".git" not in path.parts:
            os.utime(path, (later, later))
    return _git(root, "rev-parse", "HEAD")


def _snapshot(folder: Path) -> dict[str, tuple]:
    """Every file and folder under ``folder``: kind, size, mtime."""
    return {str(p.relative_to(folder)): (p.is_dir(), p.lstat().st_size if not p.is_dir() else 0,
                                         p.lstat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def _changed(before: dict, after: dict) -> list[str]:
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))


def test_the_git_commit_is_read_without_taking_the_index_lock(tmp_path):
    repo = tmp_path / "repo"
    head = _checkout(repo)
    index = repo / ".git" / "index"
    before = (index.read_bytes(), index.stat().st_mtime_ns)
    assert git_commit(repo) == head  # touched, not changed: not dirty
    assert (index.read_bytes(), index.stat().st_mtime_ns) == before
    (repo / "f.txt").write_text("y\n")
    assert git_commit(repo) == f"{head}-dirty"
    assert (index.read_bytes(), index.stat().st_mtime_ns) == before


def test_a_fit_writes_only_its_run_folder_and_the_named_cache(tmp_path, smoke_cache):
    """A fit with W&B (offline), HOME an empty folder, the package imported from a read-only git
    checkout (compiled beforehand, as an installed package is), and an empty working folder."""
    checkout, home, work, tmp = (tmp_path / n for n in ("checkout", "home", "work", "tmp"))
    head = _checkout(checkout, SRC)
    compileall.compile_dir(checkout / "src", quiet=1)
    for folder in (home, work, tmp):
        folder.mkdir()
    for path in [checkout, *checkout.rglob("*")]:  # read-only (root writes anyway: the snapshot tells)
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    before = {f: _snapshot(f) for f in (checkout, home, work, tmp)}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "XDG_", "PYTHON"))}
    env |= {"HOME": str(home), "TMPDIR": str(tmp), "PYTHONPATH": str(checkout / "src"),
            "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    try:
        proc = subprocess.run([sys.executable, "-m", "bga_mner.cli", "fit", *SMOKE_FIT, "run.name=w",
                               "paths.runs_dir=runs", f"paths.cache_dir={smoke_cache}", "logging.wandb=true"],
                              cwd=work, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        after = {f: _snapshot(f) for f in (checkout, home, work, tmp)}
    finally:
        for path in [checkout, *checkout.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
    run = work / "runs" / "w"
    assert "W&B run: runs/w/wandb/offline-run-" in proc.stdout
    assert (run / "results.json").is_file() and list((run / "wandb").glob("offline-run-*"))
    assert '"git_commit": "' + head + '"' in (run / "results.json").read_text()  # read from the checkout
    assert _changed(before[checkout], after[checkout]) == []  # no index rewritten, no bytecode
    assert _changed(before[home], after[home]) == []  # W&B's logs and caches: under the run folder
    assert _changed(before[tmp], after[tmp]) == []  # nothing left in the temporary folder
    assert {k.split(os.sep)[0] for k in _changed(before[work], after[work])} == {"runs"}
    assert {k.split(os.sep)[1] for k in _changed(before[work], after[work]) if os.sep in k} == {"w"}
