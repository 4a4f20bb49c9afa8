"""GPU slots under ``make -j N TARGET GPUS='...'``: one run per slot at a time, a crashed or killed
holder frees its slot, and what the runs share (the synthetic set) is made once. Fake GPU ids:
nothing here needs a GPU."""

from __future__ import annotations

import json
import multiprocessing
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bga_mner.gpu_slots import SlotSpecError, parse_slots, try_acquire

ROOT = Path(__file__).resolve().parents[1]
FAKE_BGA = f"{shlex.quote(sys.executable)} {shlex.quote(str(ROOT / 'tests' / 'fixtures' / 'fake_bga.py'))}"
# Records (slot, start, end) into its own file in argv[1], after sleeping argv[2] seconds.
RECORD = ("import json, os, sys, time; t = time.time(); time.sleep(float(sys.argv[2])); "
          "open(os.path.join(sys.argv[1], str(os.getpid())), 'w').write("
          "json.dumps([os.environ['CUDA_VISIBLE_DEVICES'], t, time.time()]))")


def _slot_command(lock_dir: Path, gpus: str, *command: str) -> list[str]:
    return [sys.executable, "-m", "bga_mner.gpu_slots", "--gpus", gpus, "--lock-dir", str(lock_dir),
            "--poll", "0.05", "--", *command]


def _assert_no_slot_shared(intervals: list[tuple[str, float, float]]) -> None:
    """No two intervals of one slot overlap, and no GPU is in two slots held at once."""
    for i, (slot_a, start_a, end_a) in enumerate(intervals):
        for slot_b, start_b, end_b in intervals[i + 1:]:
            if set(slot_a.split(",")) & set(slot_b.split(",")):
                assert end_a <= start_b or end_b <= start_a, (slot_a, start_a, end_a, slot_b, start_b, end_b)


@pytest.mark.parametrize("text,slots", [("0 1 2 3", ["0", "1", "2", "3"]), ("0,1  2,3\n", ["0,1", "2,3"]),
                                        ("7", ["7"])])
def test_parse_slots(text: str, slots: list[str]) -> None:
    assert parse_slots(text) == slots


@pytest.mark.parametrize("text,message", [("", "empty"), ("0 a", "'a' is not a GPU id"),
                                          ("0 1 0", "GPU 0 is in two slots"),
                                          ("0,1 1,2", "GPU 1 is in two slots"), ("0,", "not a GPU id")])
def test_parse_slots_refuses(text: str, message: str) -> None:
    with pytest.raises(SlotSpecError, match=message):
        parse_slots(text)


@pytest.mark.parametrize("gpus", ["0 1 2", "0,1 2,3"])
def test_concurrent_commands_never_share_a_slot(gpus: str, tmp_path: Path) -> None:
    out, locks = tmp_path / "out", tmp_path / "locks"
    out.mkdir()
    procs = [subprocess.Popen(_slot_command(locks, gpus, sys.executable, "-c", RECORD, str(out), "0.4"))
             for _ in range(6)]
    assert [p.wait(timeout=60) for p in procs] == [0] * 6
    intervals = [tuple(json.loads(f.read_text())) for f in out.iterdir()]
    assert len(intervals) == 6
    assert {slot for slot, _, _ in intervals} <= set(parse_slots(gpus))
    assert len({slot for slot, _, _ in intervals}) >= 2, "the slots were not used side by side"
    _assert_no_slot_shared(intervals)


def _wait_for(condition, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def test_a_killed_holder_frees_its_slot(tmp_path: Path) -> None:
    out, locks = tmp_path / "out", tmp_path / "locks"
    out.mkdir()
    holder = subprocess.Popen(_slot_command(locks, "5", "sleep", "60"))
    lock_file = locks / "gpu-5.lock"
    # the wrapper became `sleep` (exec): the same pid holds the slot
    _wait_for(lambda: lock_file.is_file() and f'"pid": {holder.pid}' in lock_file.read_text())
    waiter = subprocess.Popen(_slot_command(locks, "5", sys.executable, "-c", RECORD, str(out), "0"),
                              stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    assert waiter.poll() is None and not list(out.iterdir()), "the waiter ran on a held slot"
    killed_at = time.time()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert waiter.wait(timeout=30) == 0
    [record] = [json.loads(f.read_text()) for f in out.iterdir()]
    assert record[0] == "5" and record[1] >= killed_at
    assert "all 1 slots busy" in waiter.stderr.read()


def test_a_failing_command_keeps_its_status_and_frees_its_slot(tmp_path: Path) -> None:
    locks = tmp_path / "locks"
    status = subprocess.run(_slot_command(locks, "3", sys.executable, "-c", "import sys; sys.exit(3)"),
                            timeout=60).returncode
    assert status == 3
    lease = try_acquire(["3"], locks)
    assert lease is not None and lease.slot == "3"
    assert try_acquire(["3"], locks) is None  # held now, by this process
    lease.release()
    missing = subprocess.run(_slot_command(locks, "3", str(tmp_path / "no-such-program")),
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 127 and "cannot run" in missing.stderr
    assert try_acquire(["3"], locks) is not None


def _make(*args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    if shutil.which("make") is None:
        pytest.skip("make not installed")
    return subprocess.run(["make", "--no-print-directory", *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=300)


def test_make_without_gpus_runs_the_commands_as_before(tmp_path: Path) -> None:
    stamp = tmp_path / "installed"  # an up-to-date install stamp: no pip lines in the plan
    stamp.touch()
    plain = _make("-n", "table4", "PROFILE=smoke", f"RUNS={tmp_path}", f"STAMP={stamp}").stdout.splitlines()
    assert plain[0].startswith(".venv/bin/bga-mner fit --resume ")
    assert plain[1].startswith(".venv/bin/bga-mner test --ckpt ")
    slotted = _make("-n", "table4", "PROFILE=smoke", f"RUNS={tmp_path}", f"STAMP={stamp}", "GPUS=0 1").stdout.splitlines()
    wrapper = ".venv/bin/python -m bga_mner.gpu_slots --gpus '0 1' -- "
    assert slotted[:2] == [wrapper + line for line in plain[:2]]
    assert slotted[2] == plain[2] == f".venv/bin/bga-mner report {tmp_path} --table 4"  # no slot for the report


def test_make_j_gives_each_run_its_own_gpu(tmp_path: Path) -> None:
    """`make -j 3 ... GPUS='0 1'` with a fake bga-mner: 2 fits and their 2 evaluations, at most two at a
    time, never two on one GPU; the report once, after all of them."""
    runs, log, stamp = tmp_path / "runs", tmp_path / "log", tmp_path / "stamp"
    stamp.touch()
    env = dict(os.environ, FAKE_BGA_LOG=str(log), FAKE_BGA_SLEEP="0.5")
    done = _make("-j", "3", "table4", "PROFILE=smoke", "SEEDS=42 43", f"RUNS={runs}",
                 f"BGA={FAKE_BGA}", f"STAMP={stamp}", "GPUS=0 1", f"GPU_SLOTS_DIR={tmp_path / 'locks'}",
                 env=env)
    assert done.returncode == 0, done.stderr
    records = [json.loads(f.read_text()) for f in log.iterdir()]
    runs_done = [r for r in records if r["command"] in ("fit", "test")]
    assert sorted(r["run"] for r in runs_done) == ["bga_mner-synthetic-seed42", "bga_mner-synthetic-seed43",
                                                   "real_visual-synthetic-seed42", "real_visual-synthetic-seed43"]
    assert all(r["cuda"] in ("0", "1") for r in runs_done)
    _assert_no_slot_shared([(r["cuda"], r["start"], r["end"]) for r in runs_done])
    [report] = [r for r in records if r["command"] == "report"]
    assert report["start"] >= max(r["end"] for r in runs_done)
    assert all((runs / r["run"] / "results.json").is_file() for r in runs_done)


def _ensure(cache: str, out: str) -> None:
    from bga_mner.config import SynthConfig
    from bga_mner.data import synthetic

    calls = []
    real = synthetic.generate
    synthetic.generate = lambda *a, **k: calls.append(1) or real(*a, **k)
    folder = synthetic.ensure_synthetic(cache, SynthConfig(train=40, valid=10, test=10))
    Path(out, str(os.getpid())).write_text(json.dumps([str(folder), len(calls)]))


def test_concurrent_runs_generate_the_synthetic_set_once(tmp_path: Path) -> None:
    """Runs started together by `make -j` agree on one synthetic set, generated by one of them."""
    cache, out = tmp_path / "cache", tmp_path / "out"
    out.mkdir()
    from bga_mner.data import synthetic  # noqa: F401  (imported once, before the fork)

    ctx = multiprocessing.get_context("fork")  # the children use PIL only, no torch
    procs = [ctx.Process(target=_ensure, args=(str(cache), str(out))) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    results = [json.loads(f.read_text()) for f in out.iterdir()]
    assert len({folder for folder, _ in results}) == 1 and sum(n for _, n in results) == 1
    assert [p.name for p in cache.iterdir()] == [Path(results[0][0]).name]  # no lock or temporary left
