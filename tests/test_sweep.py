"""``bga-mner sweep``: the plan is make's (finished runs skipped exactly as make skips them), local
jobs run it through submitit's LocalExecutor, and SLURM job arrays are built right (a fake
``sbatch`` records the scripts submitit writes; no SLURM needed). The runs are a fake bga-mner."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bga_mner import cli
from bga_mner.sweep.launch import SlurmOptions, ddp_overrides, submit_slurm
from bga_mner.sweep.plan import PlanItem, SweepError, check_variables, make_plan

ROOT = Path(__file__).resolve().parents[1]
FAKE_BGA = f"{shlex.quote(sys.executable)} {shlex.quote(str(ROOT / 'tests' / 'fixtures' / 'fake_bga.py'))}"
FIT42, FIT43 = "bga_mner-synthetic-seed42", "bga_mner-synthetic-seed43"
EVAL42, EVAL43 = "real_visual-synthetic-seed42", "real_visual-synthetic-seed43"

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")


def _variables(tmp_path: Path, *more: str) -> list[str]:
    """Table 4 in the smoke profile, two seeds: two fits, and an evaluation of each."""
    stamp = tmp_path / "stamp"  # an installed venv, as make sees it (no pip install in the jobs)
    stamp.touch()
    return ["PROFILE=smoke", "SEEDS=42 43", f"RUNS={tmp_path / 'runs'}", f"STAMP={stamp}", *more]


def _finish(tmp_path: Path, run: str, mtime: float) -> None:
    results = tmp_path / "runs" / run / "results.json"
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text("{}\n")
    os.utime(results, (mtime, mtime))


def test_the_plan_is_what_make_runs_and_skips_finished_runs(tmp_path: Path) -> None:
    variables = _variables(tmp_path)
    plan = make_plan("table4", variables, ROOT)
    assert [i.name for i in plan.items] == [FIT42, FIT43, EVAL42, EVAL43] and plan.total == 4
    assert [[i.name for i in wave] for wave in plan.waves()] == [[FIT42, FIT43], [EVAL42, EVAL43]]
    assert [i.after for i in plan.items] == [None, None, plan.items[0].output, plan.items[1].output]
    assert plan.runs_dir == tmp_path / "runs"
    made = subprocess.run(["make", "-n", "--no-print-directory", "table4", *variables], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout.splitlines()
    assert [i.command for i in plan.items] == [line.strip() for line in made if " fit " in line or " test " in line]

    now = 1_700_000_000.0
    _finish(tmp_path, FIT42, now)  # a finished fit: skipped; its evaluation needs nothing of the plan
    plan = make_plan("table4", variables, ROOT)
    assert [(i.name, i.after) for i in plan.items] == [(FIT43, None), (EVAL42, None),
                                                       (EVAL43, plan.items[0].output)]
    assert [[i.name for i in wave] for wave in plan.waves()] == [[FIT43, EVAL42], [EVAL43]]
    assert plan.total == 4
    _finish(tmp_path, EVAL42, now + 60)
    assert [i.name for i in make_plan("table4", variables, ROOT).items] == [FIT43, EVAL43]
    _finish(tmp_path, FIT42, now + 120)  # the trained run was redone: its evaluation is stale
    assert [i.name for i in make_plan("table4", variables, ROOT).items] == [FIT43, EVAL42, EVAL43]


def test_dry_run_prints_the_plan_and_submits_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _finish(tmp_path, FIT42, 1_700_000_000.0)
    assert cli.main(["sweep", "table4", *_variables(tmp_path), "-C", str(ROOT), "--dry-run",
                     "--launcher", "slurm"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "table4: 3 of 4 runs to make (1 finished, skipped)"
    assert lines[1:7:2] == [f"  wave 0  {FIT43}", f"  wave 0  {EVAL42}", f"  wave 1  {EVAL43}  (after {FIT43})"]
    assert lines[2].strip().startswith(".venv/bin/bga-mner fit --resume ") and f"run.name={FIT43}" in lines[2]
    assert not (tmp_path / "runs" / "sweep-logs").exists()


@pytest.mark.parametrize("variables,message", [(["PROFILE"], "expected a make variable NAME=value"),
                                               (["=x"], "expected a make variable"),
                                               (["SWEEP_PLAN=1"], "set by bga-mner sweep")])
def test_bad_variables_are_refused(variables: list[str], message: str) -> None:
    with pytest.raises(SweepError, match=message):
        check_variables(variables)


def test_make_errors_name_the_cause(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SweepError, match="No rule to make target 'table99'"):
        make_plan("table99", [], ROOT)
    with pytest.raises(SweepError, match="no Makefile here"):
        make_plan("all", [], tmp_path)
    assert cli.main(["sweep", "table4", *_variables(tmp_path), "-C", str(ROOT), "--launcher", "slurm"]) == 2
    assert "--time MINUTES is required" in capsys.readouterr().err


def test_a_job_raises_on_a_failing_command() -> None:
    from bga_mner.sweep.job import MakeJob

    assert MakeJob()([sys.executable, "-c", "import os, sys; sys.exit(os.environ.get('X') != 'y')"], {"X": "y"}) == 0
    with pytest.raises(RuntimeError, match="exited with status 1"):
        MakeJob()([sys.executable, "-c", "import os, sys; sys.exit(os.environ.get('X') != 'y')"], {"X": None})


def _records(log: Path) -> dict[str, dict]:
    return {r["run"]: r for r in (json.loads(f.read_text()) for f in log.iterdir()) if r["command"] in ("fit", "test")}


def test_local_sweep_runs_the_plan_and_never_resubmits_finished_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    log, logs = tmp_path / "log", tmp_path / "sweep-logs"
    monkeypatch.setenv("FAKE_BGA_LOG", str(log))
    args = ["sweep", "table4", *_variables(tmp_path, f"BGA={FAKE_BGA}", "GPUS=0 1",
                                          f"GPU_SLOTS_DIR={tmp_path / 'locks'}"),
            "--launcher", "local", "-C", str(ROOT), "--logs", str(logs), "--jobs", "4"]
    assert cli.main(args) == 0, capsys.readouterr()  # 4 jobs at once, on 2 GPU slots
    out = capsys.readouterr().out
    assert "4 of 4 runs to make" in out and "4 finished, 0 failed, 0 skipped" in out
    records = _records(log)
    assert sorted(records) == sorted([FIT42, FIT43, EVAL42, EVAL43]) and len(list(log.iterdir())) == 4
    assert {r["cuda"] for r in records.values()} <= {"0", "1"}  # each job's make took a GPU slot
    for fit, evaluation in ((FIT42, EVAL42), (FIT43, EVAL43)):
        assert records[evaluation]["start"] >= records[fit]["end"]
    jobs = sorted(logs.iterdir())
    assert len([j for j in jobs if j.name.endswith("_submitted.pkl")]) == 4

    assert cli.main(args) == 0
    assert "0 of 4 runs to make (4 finished, skipped)" in capsys.readouterr().out
    assert sorted(logs.iterdir()) == jobs  # nothing submitted
    assert len(list(log.iterdir())) == 4


def test_local_sweep_skips_the_evaluation_of_a_failed_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    log = tmp_path / "log"
    monkeypatch.setenv("FAKE_BGA_LOG", str(log))
    monkeypatch.setenv("FAKE_BGA_FAIL", FIT42)
    args = ["sweep", "table4", *_variables(tmp_path, f"BGA={FAKE_BGA}"), "--launcher", "local",
            "-C", str(ROOT), "--jobs", "2"]
    assert cli.main(args) == 1
    out = capsys.readouterr().out
    assert f"FAILED {FIT42}" in out and f"skipped {EVAL42}: its trained run failed" in out
    assert "2 finished, 1 failed, 1 skipped" in out
    assert sorted(_records(log)) == sorted([FIT42, FIT43, EVAL43])
    [logs] = (tmp_path / "runs" / "sweep-logs").iterdir()  # the default: RUNS/sweep-logs/TARGET-<time>
    assert logs.name.startswith("table4-") and len(list(logs.glob("*_0_log.err"))) == 3
    plan = make_plan("table4", _variables(tmp_path), ROOT)  # what is left for the next sweep
    assert [i.name for i in plan.items] == [FIT42, EVAL42]


@pytest.fixture
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``srun`` and ``sbatch`` on PATH; sbatch answers job ids 1, 2, ... and submits nothing."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "sbatch").write_text(
        "#!/bin/sh\nn=$(( $(cat \"$0.count\" 2>/dev/null || echo 0) + 1 ))\necho $n > \"$0.count\"\n"
        "echo \"Submitted batch job $n\"\n")
    for tool in ("srun", "sbatch"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


def test_slurm_submits_one_array_per_wave_with_the_asked_resources(tmp_path: Path, fake_slurm: Path) -> None:
    variables = _variables(tmp_path, "OVERRIDES=trainer.precision=bf16-mixed")
    plan = make_plan("table4", variables, ROOT)
    options = SlurmOptions(time_min=90, partition="gpu", nodes=2, gpus_per_node=4, cpus_per_task=8, mem_gb=64,
                           jobs=1, extra={"account": "abc"}, setup=["module load cuda"])
    waves = submit_slurm(plan, tmp_path / "logs", options, echo=lambda line: None)
    assert [[job.job_id for job in wave] for wave in waves] == [["1_0", "1_1"], ["2_0", "2_1"]]
    first, second = (wave[0].paths.submission_file.read_text() for wave in waves)
    for flag in ("--job-name=bga-mner-table4", "--partition=gpu", "--time=90", "--nodes=2", "--ntasks-per-node=4",
                 "--gpus-per-node=4", "--cpus-per-task=8", "--mem=64GB", "--account=abc", "--array=0-1%1"):
        assert f"#SBATCH {flag}\n" in first and f"#SBATCH {flag}\n" in second, flag
    assert "module load cuda" in first and "--dependency" not in first
    assert "#SBATCH --dependency=afterany:1\n" in second  # the evaluations wait for the fits' array
    overrides = ("OVERRIDES=trainer.precision=bf16-mixed trainer.devices=4 trainer.num_nodes=2 "
                 "trainer.strategy=ddp")
    from bga_mner.sweep.job import MakeJob

    for wave, items in zip(waves, plan.waves()):
        for job, item in zip(wave, items):
            submission = job.submission()
            assert isinstance(submission.function, MakeJob)
            assert submission.args[0] == ["make", "--no-print-directory", "-C", str(ROOT), item.output,
                                          *variables, overrides]
    assert (fake_slurm / "sbatch.count").read_text().strip() == "2"


def test_slurm_needs_srun_and_takes_no_gpus_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     fake_slurm: Path) -> None:
    plan = make_plan("table4", _variables(tmp_path, "GPUS=0 1"), ROOT)
    with pytest.raises(SweepError, match="GPUS is for one machine"):
        submit_slurm(plan, tmp_path / "logs", SlurmOptions(time_min=5), echo=lambda line: None)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SweepError, match="no srun on PATH"):
        submit_slurm(plan, tmp_path / "logs", SlurmOptions(time_min=5), echo=lambda line: None)


def test_one_gpu_runs_get_no_ddp_overrides() -> None:
    assert ddp_overrides(1, 1) == [] and ddp_overrides(1, 0) == []
    assert ddp_overrides(1, 2) == ["trainer.devices=2", "trainer.num_nodes=1", "trainer.strategy=ddp"]


def test_lightning_joins_the_tasks_of_a_multi_gpu_job_into_one_ddp_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment srun gives task 5 of a 2-node x 4-GPU job, with the sweep's overrides: the
    Trainer runs under Lightning's SLURM environment as global rank 5 of 8 (CPU stands in for GPU)."""
    from lightning.fabric.plugins.environments import SLURMEnvironment

    from bga_mner.build import build_trainer
    from bga_mner.config import load_config

    slurm = {"SLURM_JOB_NAME": "bga-mner-table4", "SLURM_JOB_ID": "7", "SLURM_NTASKS": "8",
             "SLURM_NTASKS_PER_NODE": "4", "SLURM_NNODES": "2", "SLURM_NODEID": "1", "SLURM_PROCID": "5",
             "SLURM_LOCALID": "1", "SLURM_NODELIST": "node[1-2]"}
    for key, value in slurm.items():
        monkeypatch.setenv(key, value)
    # the Trainer sets the process-wide rank (rank_zero_only.rank = 5): restore it after the test, or
    # every later logger in this process would think it is not rank 0
    from lightning.fabric.utilities import rank_zero as fabric_rank_zero
    from lightning.pytorch.utilities import rank_zero as pl_rank_zero
    from lightning_utilities.core.rank_zero import rank_zero_only as utilities_rank_zero_only

    for fn in {fabric_rank_zero.rank_zero_only, pl_rank_zero.rank_zero_only, utilities_rank_zero_only}:
        monkeypatch.setattr(fn, "rank", getattr(fn, "rank", 0), raising=False)
    cfg = load_config(ROOT / "experiments" / "bga_mner" / "config.yaml",
                      [*ddp_overrides(2, 4), "trainer.accelerator=cpu"])
    trainer = build_trainer(cfg, logger=False, enable_checkpointing=False)
    assert isinstance(trainer.strategy.cluster_environment, SLURMEnvironment)
    # one requeue path, the sweep's: no Lightning SIGUSR1 handler saving an hpc_ckpt mid-epoch
    assert trainer.strategy.cluster_environment.auto_requeue is False
    assert (trainer.world_size, trainer.global_rank, trainer.local_rank, trainer.node_rank) == (8, 5, 1, 1)


def test_plan_item_name() -> None:
    assert PlanItem("runs/x-seed1/results.json", None, "cmd").name == "x-seed1"


# --------------------------------------------------------------------------- preemption: requeue
def _ancestor(pid: int, mark: str) -> int:
    """The nearest ancestor process of ``pid`` whose command line holds ``mark``."""
    while pid > 1:
        stat = Path(f"/proc/{pid}/stat").read_text()
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # the parent (field 4)
        if mark in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode():
            return pid
    raise AssertionError(f"no ancestor process runs {mark!r}")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_a_preempted_local_job_stops_its_run_and_is_requeued_to_resume_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The signal SLURM sends before a time limit or on preemption (submitit's SIGUSR2), sent to a
    local job and to every process under it, as SLURM does: the job stops its make with SIGTERM
    (make and the run ignore SIGUSR2), submitit requeues it, and the requeued job's make runs
    the fit again with --resume, to the end."""
    from bga_mner.sweep.launch import run_local

    log = tmp_path / "log"
    monkeypatch.setenv("FAKE_BGA_LOG", str(log))
    monkeypatch.setenv("FAKE_BGA_BLOCK", FIT42)
    plan = make_plan("table4", _variables(tmp_path, f"BGA={FAKE_BGA}", "SEEDS=42"), ROOT)
    assert [i.name for i in plan.items] == [FIT42, EVAL42]
    outcome: list = []
    thread = threading.Thread(target=lambda: outcome.append(
        run_local(plan, tmp_path / "logs", jobs=1, echo=lambda line: None)))
    thread.start()
    pid_file = tmp_path / "runs" / FIT42 / ".fake-pid"
    deadline = time.monotonic() + 120
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pid_file.exists(), "the fit never started"
    time.sleep(0.3)  # the pid is written before the run sleeps: let it get there
    fit = int(pid_file.read_text())
    make, job = _ancestor(fit, "make"), _ancestor(fit, "submitit")
    for pid in (fit, make, job):  # SLURM signals every process of the job step
        os.kill(pid, signal.SIGUSR2)
    thread.join(180)
    assert not thread.is_alive() and outcome, "the sweep did not end"
    assert outcome[0].succeeded == [FIT42, EVAL42] and not outcome[0].failed
    attempts = sorted((json.loads(f.read_text()) for f in log.glob(f"fit-{FIT42}-*.json")),
                      key=lambda r: r["start"])
    assert [a.get("interrupted") for a in attempts] == ["SIGTERM", None]  # stopped, then finished
    assert all("--resume" in a["args"] for a in attempts)  # make's fit continues the run
    assert (tmp_path / "runs" / FIT42 / "results.json").is_file()
    assert "Requeued job" in "".join(p.read_text() for p in (tmp_path / "logs").glob("*_log.*"))


def test_slurm_jobs_are_signalled_before_their_time_limit_and_requeueable(tmp_path: Path,
                                                                         fake_slurm: Path) -> None:
    from bga_mner.sweep.job import MakeJob

    plan = make_plan("table4", _variables(tmp_path), ROOT)
    waves = submit_slurm(plan, tmp_path / "logs", SlurmOptions(time_min=60, signal_lead_s=300),
                         echo=lambda line: None)
    script = waves[0][0].paths.submission_file.read_text()
    assert "#SBATCH --signal=USR2@300\n" in script and "#SBATCH --requeue\n" in script
    job = waves[0][0].submission().function
    assert isinstance(job, MakeJob) and callable(job.checkpoint)  # submitit requeues checkpointables


def test_make_keeps_a_finished_run_when_a_signal_stops_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A signal to make (a requeued job, Ctrl-C) just after the run wrote its results.json: make
    deletes a target its interrupted recipe changed, unless it is .PRECIOUS."""
    monkeypatch.setenv("FAKE_BGA_HOLD", "30")
    results = tmp_path / "runs" / FIT42 / "results.json"
    make = subprocess.Popen(["make", "--no-print-directory", "-C", str(ROOT), str(results),
                             *_variables(tmp_path, f"BGA={FAKE_BGA}")], start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while not results.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert results.exists()
    time.sleep(0.2)
    os.killpg(make.pid, signal.SIGTERM)
    out, _ = make.communicate(timeout=60)
    assert make.returncode != 0 and "Deleting file" not in out, out
    assert results.is_file()


# --------------------------------------------------------------------------- dry runs stay dry
def _targets() -> list[str]:
    """Every target `make help` lists, and the claims runs (make's own sub-target)."""
    text = (ROOT / "Makefile").read_text() + (ROOT / "experiments" / "experiments.mk").read_text()
    return sorted(set(re.findall(r"^([a-zA-Z0-9_.-]+):.*## ", text, re.M)) | {"claims-runs"})


def test_every_make_target_answers_a_dry_run(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    targets = _targets()
    assert {"claims", "all", "reproduce-table2", "demo", "clean"} <= set(targets)
    with ThreadPoolExecutor(4) as pool:
        done = list(pool.map(lambda t: (t, subprocess.run(
            ["make", "-n", "--no-print-directory", "-C", str(ROOT), t, f"RUNS={runs}"],
            capture_output=True, text=True)), targets))
    failed = {t: p.stderr.strip().splitlines()[-1:] for t, p in done if p.returncode != 0}
    assert not failed, failed
    assert not runs.exists()  # a dry run creates nothing


def test_every_target_has_a_sweep_dry_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    runs = tmp_path / "runs"
    for target in _targets():
        assert cli.main(["sweep", target, f"RUNS={runs}", "SEEDS=42", "CLAIMS_SEEDS=42", "-C", str(ROOT),
                         "--dry-run"]) == 0, (target, capsys.readouterr().err)
        out = capsys.readouterr().out
        if target == "claims":  # make claims' runs are planned like every other target's
            assert "claims: 13 of 13 runs to make" in out and "wave 1  bga_real_visual-seed42" in out
    assert not runs.exists()
