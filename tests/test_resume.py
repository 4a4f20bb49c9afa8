"""Nothing lost: one owner per run folder, exact resume of a stopped run, atomic writes.

The slow test kills a smoke fit (SIGKILL, mid-epoch) and resumes it with ``bga-mner fit --resume``:
its test scores, ``predictions/test.conll`` and ``csv/metrics.csv`` are byte for byte those of an
uninterrupted run of the same seed. A fast one does the same in seconds, in-process, with SIGTERM
at the start of the second epoch (status 143, the resume line), so that a resume that loses the
train loader's shuffling generator or the random streams fails in the fast suite; another stops a
run with SIGINT as it tests, moves its folder and resumes it from its own files. The others check
the refusals (a folder in use, an unfinished folder without ``--resume``, a resume with another
config, a read-only runs folder, an unreadable ``last.ckpt``), the takeover of a stale lock, the
replacement of an evaluation run and that a failed write leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import SMOKE_FIT
from lightning.pytorch.callbacks import Callback

from bga_mner import cli
from bga_mner.build import AtomicCheckpointIO
from bga_mner.config import load_config
from bga_mner.data.conll import Tweet
from bga_mner.evaluation import Evaluation, claim_evaluation_dir, write_evaluation_run
from bga_mner.atomic import atomic_write, atomic_write_text
from bga_mner.run import UnfinishedRunError, claim_run_dir, resume_config, save_config
from bga_mner.run_lock import LOCK_FILE, NotWritableError, RunBusyError, RunLock

ROOT = Path(__file__).resolve().parents[1]

# Long enough to be killed in the middle of an epoch (8 steps of 8 tweets, 3 epochs), and a rate at
# which the tiny models tag some entities, so that the comparison is not one of empty predictions.
RESUME_FIT = ("run.profile=smoke", "data.synthetic.train=64", "data.synthetic.valid=16",
              "data.synthetic.test=32", "trainer.max_epochs=3", "optim.lr=1e-2",
              "trainer.log_every_n_steps=1", "trainer.enable_model_summary=false")


def _fit(*argv: str) -> tuple[int, str, str]:
    """``bga-mner fit`` in-process: exit status, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.main(["fit", *argv])
    return status, out.getvalue(), err.getvalue()


@pytest.fixture
def no_work(monkeypatch):
    """Any data setup or model build fails the test: a refusal must come before the work."""
    def work(*args, **kwargs):
        raise AssertionError("the run started working")

    import bga_mner.training as training

    monkeypatch.setattr(training, "build_datamodule", work)
    monkeypatch.setattr(training, "MNERSystem", work)


def _smoke(runs: Path, cache: Path, name: str) -> list[str]:
    return [*SMOKE_FIT, f"paths.runs_dir={runs}", f"paths.cache_dir={cache}", f"run.name={name}",
            "logging.wandb=false"]


# --------------------------------------------------------------------------- one owner per folder
def test_a_second_fit_of_the_same_name_is_refused_before_any_work(tmp_path, no_work):
    (tmp_path / "runs" / "same").mkdir(parents=True)
    with RunLock(tmp_path / "runs" / "same"):  # the first fit, still running
        status, _, err = _fit(*_smoke(tmp_path / "runs", tmp_path / "cache", "same"))
        assert status == 2
        assert err.strip() == (
            f"bga-mner fit: error: {tmp_path / 'runs' / 'same'}: in use by another run (pid "
            f"{os.getpid()} on {socket.gethostname()}, started "
            f"{json.loads((tmp_path / 'runs' / 'same' / LOCK_FILE).read_text())['started']}); "
            "wait for it to end, or choose another run name")
        assert [p.name for p in (tmp_path / "runs" / "same").iterdir()] == [LOCK_FILE]  # nothing written
    assert not (tmp_path / "runs" / "same" / LOCK_FILE).exists()  # released, file removed


def test_the_lock_of_a_killed_process_is_taken_over(tmp_path, caplog):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from bga_mner.run_lock import RunLock; "
         f"RunLock({str(run_dir)!r}).acquire(); print('locked', flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunBusyError, match=f"pid {holder.pid} on "):
            RunLock(run_dir).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with caplog.at_level(logging.WARNING, logger="bga_mner.run"):
        lock = RunLock(run_dir).acquire()  # the kernel dropped the dead process's flock
    assert f"taking over the stale lock of a run that is no longer running (pid {holder.pid} " in caplog.text
    assert json.loads((run_dir / LOCK_FILE).read_text())["pid"] == os.getpid()
    lock.release()


def test_a_lock_file_naming_a_dead_pid_is_stale(tmp_path, caplog):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(),
                                                   "started": "2020-01-01T00:00:00+0000"}))
    with caplog.at_level(logging.WARNING, logger="bga_mner.run"), RunLock(tmp_path):
        assert f"pid {dead.pid} on {socket.gethostname()}" in caplog.text


def test_an_unfinished_folder_needs_resume(tmp_path, no_work):
    runs, cache = tmp_path / "runs", tmp_path / "cache"
    cfg = load_config(overrides=_smoke(runs, cache, "cut"))
    (runs / "cut").mkdir(parents=True)
    save_config(cfg, runs / "cut")  # a run killed after it started
    status, _, err = _fit(*_smoke(runs, cache, "cut"))
    assert status == 2
    assert err.strip() == (f"bga-mner fit: error: {runs / 'cut'}: holds an unfinished run (no "
                           "results.json); continue it with `bga-mner fit --resume` and the same "
                           "config, or delete the folder to start over")
    with pytest.raises(UnfinishedRunError):
        claim_run_dir(cfg)
    # a finished folder stays refused, --resume or not
    (runs / "cut" / "results.json").write_text("{}")
    status, _, err = _fit("--resume", *_smoke(runs, cache, "cut"))
    assert status == 2 and "already holds a finished run" in err
    assert not (runs / "cut" / LOCK_FILE).exists()


def test_resume_keeps_the_runs_config(tmp_path, no_work):
    runs, cache = tmp_path / "runs", tmp_path / "cache"
    cfg = load_config(overrides=_smoke(runs, cache, "cut"))
    cfg.run.git_commit = "abc"
    (runs / "cut").mkdir(parents=True)
    save_config(cfg, runs / "cut")
    status, _, err = _fit("--resume", *_smoke(runs, cache, "cut"), "seed=43", "optim.lr=0.5")
    assert status == 2
    assert f"{runs / 'cut' / 'config.yaml'}: --resume continues the run with its own config" in err
    assert "optim.lr=0.001 there, 0.5 here, seed=42 there, 43 here" in err
    # paths, logging and the commit may differ; the commit stays the one the run started from
    other = load_config(overrides=[*_smoke(tmp_path / "elsewhere", cache, "cut"), "logging.wandb=true"])
    other.run.git_commit = "def"
    kept = resume_config(other, runs / "cut")
    assert kept.run.git_commit == "abc" and kept.logging.wandb is True
    status, _, err = _fit("--resume", *SMOKE_FIT, f"paths.runs_dir={runs}")
    assert status == 2 and "--resume continues the run folder named by run.name" in err


def test_a_read_only_runs_folder_is_one_clear_error(tmp_path, monkeypatch, no_work):
    runs = tmp_path / "runs"
    runs.mkdir()
    runs.chmod(0o555)
    if os.access(runs, os.W_OK):  # root writes anywhere: make it look read-only
        import bga_mner.run as run

        real = os.access
        monkeypatch.setattr(run.os, "access", lambda p, mode: False if Path(p) in (runs, runs / "r")
                            else real(p, mode))
    try:
        status, _, err = _fit(*_smoke(runs, tmp_path / "cache", "r"))
    finally:
        runs.chmod(0o755)
    assert status == 2
    assert err.strip() == f"bga-mner fit: error: {runs}: runs folder is not writable"


def test_a_read_only_runs_folder_names_the_folder(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    runs.mkdir()

    def refuse(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    cfg = load_config(overrides=_smoke(runs, tmp_path / "cache", "r"))
    with pytest.raises(NotWritableError, match=f"^{runs}: runs folder is not writable$"):
        claim_run_dir(cfg)


# --------------------------------------------------------------------------- atomic writes
def _half_then_fail(tmp: Path) -> None:
    with open(tmp, "wb") as f:
        f.write(b"x" * 1000)  # some bytes, then the disk is full
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("existing", [None, "old content\n"])
def test_a_failed_write_leaves_the_old_file_or_none_and_no_temporary_file(tmp_path, existing):
    target = tmp_path / "sub" / "results.json"
    if existing is not None:
        target.parent.mkdir()
        target.write_text(existing)
    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, _half_then_fail)
    assert sorted(p.name for p in target.parent.iterdir()) == ([] if existing is None else ["results.json"])
    if existing is not None:
        assert target.read_text() == existing
    atomic_write_text(target, "new\n")
    assert target.read_text() == "new\n" and [p.name for p in target.parent.iterdir()] == ["results.json"]


def test_checkpoints_and_the_inference_file_are_written_atomically(tmp_path, monkeypatch):
    from bga_mner import inference

    real_save = torch.save

    def full_disk(obj, f, *args, **kwargs):
        with open(f, "wb") as out:
            out.write(b"PK" * 100)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError):
        AtomicCheckpointIO().save_checkpoint({"state_dict": {}}, tmp_path / "checkpoints" / "last.ckpt")

    class System:  # what save_inference_checkpoint reads of a system
        cfg = load_config(overrides=["run.profile=smoke"])
        model = type("M", (), {"inference_state_dict": staticmethod(lambda: {"w": torch.zeros(2)})})()

    with pytest.raises(OSError):
        inference.save_inference_checkpoint(System(), tmp_path / "checkpoints" / "inference.pt")
    assert list((tmp_path / "checkpoints").iterdir()) == []
    monkeypatch.setattr(torch, "save", real_save)
    AtomicCheckpointIO().save_checkpoint({"epoch": 3}, tmp_path / "checkpoints" / "last.ckpt")
    path = inference.save_inference_checkpoint(System(), tmp_path / "checkpoints" / "inference.pt")
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True) == {"epoch": 3}
    assert torch.load(path, weights_only=True)["format"] == inference.INFERENCE_FORMAT
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["inference.pt", "last.ckpt"]


def test_the_report_is_written_atomically(tmp_path, monkeypatch):
    from bga_mner.report import writer

    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "table2.md").write_text("old\n")
    monkeypatch.setattr(Path, "write_text", lambda self, *a, **k: _half_then_fail(self))
    with pytest.raises(OSError):
        writer.build_report(tmp_path, tables=["2"])
    assert [p.name for p in (tmp_path / "report").iterdir()] == ["table2.md"]
    assert (tmp_path / "report" / "table2.md").read_bytes() == b"old\n"


def test_claiming_a_folder_removes_the_temporary_files_of_a_killed_write(tmp_path):
    cfg = load_config(overrides=_smoke(tmp_path, tmp_path / "cache", "cut"))
    leftover = tmp_path / "cut" / "checkpoints" / ".last.ckpt.123.deadbeef.tmp"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half a checkpoint")
    lock = claim_run_dir(cfg, resume=True)
    assert not leftover.exists() and lock.held
    lock.release()


# --------------------------------------------------------------------------- evaluation runs
def _evaluation(f1: float) -> Evaluation:
    cfg = load_config(overrides=["run.profile=smoke"])
    scores = {g: {"precision": f1, "recall": f1, "f1": f1} for g in ("overall", "PER", "LOC", "ORG", "MISC")}
    return Evaluation(config=cfg, scores=scores, predictions=[Tweet("1", ["Kawhi"], ["B-PER"])],
                      truncated={"test": 0}, missing_images={"test": None}, image_counts={"test": None},
                      is_global_zero=True)


def test_an_evaluation_run_is_replaced_only_when_asked_and_never_a_trained_run(tmp_path):
    out, ckpt = tmp_path / "modality_missing-synthetic-seed42", tmp_path / "loose.ckpt"
    with claim_evaluation_dir(out):
        write_evaluation_run(_evaluation(50.0), ckpt, out)
    with pytest.raises(FileExistsError, match="pass --replace"):
        claim_evaluation_dir(out)
    with claim_evaluation_dir(out, replace=True):
        with pytest.raises(RunBusyError):  # a second evaluation into the same folder
            claim_evaluation_dir(out, replace=True)
        write_evaluation_run(_evaluation(60.0), ckpt, out, replace=True)
    results = json.loads((out / "results.json").read_text())
    assert results["test"]["overall"]["f1"] == 60.0
    assert results["evaluated_from"] == "../loose.ckpt"  # relative to the evaluation's folder
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "predictions", "results.json"]
    trained = tmp_path / "bga_mner-synthetic-seed42"
    trained.mkdir()
    (trained / "results.json").write_text(json.dumps({"run": trained.name}))
    with pytest.raises(FileExistsError, match="holds a trained run, not an evaluation"):
        claim_evaluation_dir(trained, replace=True)
    with pytest.raises(FileExistsError, match="holds a trained run"):
        write_evaluation_run(_evaluation(1.0), ckpt, trained, replace=True)
    assert json.loads((trained / "results.json").read_text()) == {"run": trained.name}


# --------------------------------------------------------------------------- stopped by a signal
@pytest.fixture
def signal_at(monkeypatch):
    """``signal_at(signum, hook, epoch)``: fit's trainer sends this process ``signum`` once, at
    its callback ``hook`` (``on_train_epoch_start`` of ``epoch``, ``on_test_start``), as
    ``kill``/SLURM would from outside."""
    import bga_mner.training as training

    real = training.build_trainer

    def arm(signum: int, hook: str, epoch: int | None = None) -> None:
        fired: list[bool] = []

        class Send(Callback):
            pass

        def send(self, trainer, *args):
            if not fired and (epoch is None or trainer.current_epoch == epoch):
                fired.append(True)
                os.kill(os.getpid(), signum)

        setattr(Send, hook, send)

        def build(cfg, **kwargs):
            kwargs["callbacks"] = [*kwargs.get("callbacks", []), Send()]
            return real(cfg, **kwargs)

        monkeypatch.setattr(training, "build_trainer", build)

    return arm


@pytest.fixture(scope="module")
def straight(tmp_path_factory, smoke_cache) -> Path:
    """A smoke fit that nothing stops: the run every stopped-and-resumed one must equal."""
    runs = tmp_path_factory.mktemp("straight")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        status, _, err = _fit(*_smoke(runs, smoke_cache, "run"), "data.synthetic.train=48",
                              "trainer.limit_train_batches=3")
    finally:
        torch.set_num_threads(threads)
    assert status == 0, err
    return runs / "run"


def _same_run(a: Path, b: Path) -> None:
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (a, b))
    for key in ("best_epoch", "dev", "test"):
        assert ra[key] == rb[key], key
    for name in ("predictions/test.conll", "csv/metrics.csv"):  # every logged loss and score
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_sigterm_stops_a_fit_and_the_resume_is_exact(tmp_path, smoke_cache, straight, signal_at,
                                                       one_thread, monkeypatch):
    """SIGTERM as the second epoch starts: status 143, one line with the command that resumes,
    ``last.ckpt`` the end of the first epoch. The resume draws what the uninterrupted run drew
    (the train loader's shuffling generator, the torch/Python/NumPy random streams) and reads
    every checkpoint with weights_only=True, even where the environment turns that off."""
    argv = [*_smoke(tmp_path, smoke_cache, "cut"), "data.synthetic.train=48", "trainer.limit_train_batches=3"]
    signal_at(signal.SIGTERM, "on_train_epoch_start", epoch=1)
    status, _, err = _fit(*argv)
    assert status == 128 + signal.SIGTERM, err
    assert err.strip().splitlines()[-1] == (
        "bga-mner fit: interrupted by SIGTERM; resume with: bga-mner fit --resume "
        + " ".join(a for a in argv if not a.startswith("run.name=")) + " run.name=cut")
    assert torch.load(tmp_path / "cut" / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 0
    assert not (tmp_path / "cut" / "results.json").exists() and not (tmp_path / "cut" / LOCK_FILE).exists()

    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # torch's default would be False
    loads: list = []
    real_load = torch.load

    def load(*args, **kwargs):
        loads.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", load)
    status, _, err = _fit("--resume", *argv)
    assert status == 0, err
    _same_run(straight, tmp_path / "cut")
    assert len(loads) >= 3 and all(w is True for w in loads), loads  # last.ckpt (x2), best.ckpt


def test_a_moved_run_resumes_from_its_own_files(tmp_path, smoke_cache, straight, signal_at, one_thread):
    """SIGINT as the test starts (training done: last.ckpt holds the last epoch), then the folder
    moves to another runs folder and the old one is gone: the resume tests the moved folder's own
    best.ckpt, as the uninterrupted run did. No path inside the run names the old folder."""
    old, new = tmp_path / "old", tmp_path / "new"
    argv = ["data.synthetic.train=48", "trainer.limit_train_batches=3"]
    signal_at(signal.SIGINT, "on_test_start")
    status, _, err = _fit(*_smoke(old, smoke_cache, "run"), *argv)
    assert status == 128 + signal.SIGINT and "bga-mner fit: interrupted by SIGINT; resume with: " in err
    ckpt = torch.load(old / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    stored = [v for state in ckpt["callbacks"].values() for v in state.values() if isinstance(v, str)]
    assert stored and not [v for v in stored if str(old) in v or os.path.isabs(v)], stored
    new.mkdir()
    os.rename(old / "run", new / "run")
    status, _, err = _fit("--resume", *_smoke(new, smoke_cache, "run"), *argv)
    assert status == 0, err
    _same_run(straight, new / "run")
    assert not old.joinpath("run").exists()


def test_an_unreadable_last_checkpoint_is_one_line_before_any_work(tmp_path, no_work, monkeypatch):
    """A damaged last.ckpt, and one that unpickles code (refused even with
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1: nothing runs)."""
    runs, cache = tmp_path / "runs", tmp_path / "cache"
    run_dir = runs / "cut"
    (run_dir / "checkpoints").mkdir(parents=True)
    save_config(load_config(overrides=_smoke(runs, cache, "cut")), run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    last.write_bytes(b"PK\x03\x04 half a zip")
    status, _, err = _fit("--resume", *_smoke(runs, cache, "cut"))
    assert status == 2 and "Traceback" not in err
    assert err.strip().startswith(f"bga-mner fit: error: {last}: not a readable checkpoint, or a truncated one (")
    assert err.strip().endswith("; delete it, and `bga-mner fit --resume` starts the run over")

    marker = tmp_path / "code-ran"
    torch.save({"epoch": 0, "state_dict": {}, "payload": _Touch(marker)}, last)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    status, _, err = _fit("--resume", *_smoke(runs, cache, "cut"))
    assert status == 2 and f"bga-mner fit: error: {last}: not a readable checkpoint" in err
    assert not marker.exists()


class _Touch:
    """A pickled object that creates a file when unpickled (what weights_only=True refuses)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


# --------------------------------------------------------------------------- exact resume
def _rows(metrics: Path) -> list[dict]:
    try:
        with open(metrics, newline="") as f:
            return list(csv.DictReader(f))
    except (OSError, ValueError, csv.Error):
        return []


def _kill_mid_epoch(proc: subprocess.Popen, run_dir: Path, timeout: float = 600) -> int:
    """SIGKILL ``proc`` once ``last.ckpt`` exists and a training step of a later epoch is logged:
    in the middle of an epoch after the first. Returns the epoch it was killed in."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if (run_dir / "checkpoints" / "last.ckpt").exists():
            epochs = [int(r["epoch"]) for r in _rows(run_dir / "csv" / "metrics.csv")
                      if r.get("train/loss") and r.get("epoch")]
            if epochs and max(epochs) >= 1:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return max(epochs)
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"the fit ended (status {proc.poll()}) or timed out before it could be killed")


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_uninterrupted_result(tmp_path, smoke_cache, capsys):
    runs = tmp_path / "runs"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "TOKENIZERS_PARALLELISM": "false"}
    # each fit its own W&B service, as under make or SLURM: an in-process fit of this session (the
    # smoke_run fixture) leaves its service's address here, and a killed fit's run would stay held
    # in that service ("run ID ... is in use" on resume)
    env.pop("WANDB_SERVICE", None)

    def fit(name: str, *extra: str) -> list[str]:
        return [sys.executable, "-m", "bga_mner.cli", "fit", "--resume", *RESUME_FIT,
                f"paths.runs_dir={runs}", f"paths.cache_dir={smoke_cache}", f"run.name={name}", *extra]

    straight = subprocess.run(fit("straight", "logging.wandb=false"), env=env, capture_output=True,
                              text=True, timeout=900)
    assert straight.returncode == 0, straight.stderr[-3000:]

    cut = runs / "cut"
    proc = subprocess.Popen(fit("cut", "logging.wandb=true"), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    killed_in = _kill_mid_epoch(proc, cut)
    assert proc.returncode == -signal.SIGKILL and not (cut / "results.json").exists()
    ckpt_epoch = torch.load(cut / "checkpoints" / "last.ckpt", weights_only=True, mmap=True)["epoch"]
    assert killed_in > ckpt_epoch  # killed during an epoch that its last.ckpt does not hold

    # the folder is unfinished: a plain fit is refused (the dead run's lock is taken over first)
    status, _, err = _fit(*fit("cut", "logging.wandb=true")[5:])  # without --resume
    assert status == 2 and "holds an unfinished run" in err and "--resume" in err

    resumed = subprocess.run(fit("cut", "logging.wandb=true"), env=env, capture_output=True,
                             text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Restoring states from the checkpoint path at {cut / 'checkpoints' / 'last.ckpt'}" in resumed.stderr

    a, b = (json.loads((runs / n / "results.json").read_text()) for n in ("straight", "cut"))
    with capsys.disabled():
        print(f"\nkilled in epoch {killed_in} (last.ckpt: end of epoch {ckpt_epoch}); test F1 "
              f"uninterrupted {a['test']['overall']['f1']:.4f}, resumed {b['test']['overall']['f1']:.4f}")
    assert a["test"]["overall"]["f1"] > 0  # the models tag something: a real comparison
    for key in ("best_epoch", "dev", "test", "truncated_tweets", "missing_images"):
        assert a[key] == b[key], key
    for name in ("predictions/test.conll", "csv/metrics.csv"):  # every logged loss and score too
        assert (runs / "straight" / name).read_bytes() == (cut / name).read_bytes(), name
    assert b["seconds_per_epoch"] > 0
    # finished: no resume point, no lock, no temporary file; one W&B run id, two offline segments
    assert not (cut / "checkpoints" / "last.ckpt").exists() and not (cut / LOCK_FILE).exists()
    assert not list(cut.rglob("*.tmp"))
    run_id = (cut / "wandb" / "run_id").read_text().strip()
    segments = sorted(p.name for p in (cut / "wandb").glob("offline-run-*"))
    assert len(segments) == 2 and all(s.endswith(f"-{run_id}") for s in segments), segments
