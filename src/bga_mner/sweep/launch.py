"""The launchers of a sweep's plan (:mod:`bga_mner.sweep.plan`), through ``submitit``.

- ``local`` (:func:`run_local`): submitit's ``LocalExecutor`` on this machine, at most ``jobs`` at
  once; an evaluation starts when its trained run's job succeeded (and is skipped when it failed).
  With ``GPUS='0 1 2 3'`` each job's make takes a GPU slot of its own (:mod:`bga_mner.gpu_slots`).
- ``slurm`` (:func:`submit_slurm`): one job array per wave (wave 0: runs that need nothing, wave
  k+1: evaluations of runs of wave k, submitted with ``--dependency=afterany:<array of wave k>``),
  and returns. A job of N nodes x G GPUs runs G tasks per node, one process per GPU, which
  Lightning's SLURM environment joins into one DDP run (``trainer.devices=G
  trainer.num_nodes=N trainer.strategy=ddp`` through the make variable ``OVERRIDES``).

Preemption and time limits: each job is a :class:`bga_mner.sweep.job.MakeJob`, which submitit
checkpoints. SLURM signals a job ``--signal-lead`` seconds before its end (submitit's
``--signal=USR2@<lead>``; on preemption at once); the job then stops its make with SIGTERM (the fit
exits 143, its last finished epoch kept in ``last.ckpt``) and submitit requeues it (``scontrol
requeue``; the local launcher restarts it). The requeued job runs the same ``make``, whose fit
continues with ``--resume``.

``submitit`` is imported by the launchers only.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from bga_mner.sweep.job import MakeJob
from bga_mner.sweep.plan import Plan, PlanItem, SweepError, job_command

LAUNCHERS = ("slurm", "local")
# LocalExecutor needs a time limit; without --time a local job gets one it never reaches.
NO_LIMIT_MIN = 60 * 24 * 365
SIGNAL_LEAD_S = 120  # seconds before a job's time limit at which it stops its run and is requeued


def ddp_overrides(nodes: int, gpus_per_node: int) -> list[str]:
    """The config overrides of one run over ``nodes`` x ``gpus_per_node`` GPUs (none for one GPU).

    Args:
        nodes: SLURM nodes per run.
        gpus_per_node: GPUs (and tasks) per node.
    """
    if nodes * max(gpus_per_node, 1) <= 1:
        return []
    return [f"trainer.devices={max(gpus_per_node, 1)}", f"trainer.num_nodes={nodes}", "trainer.strategy=ddp"]


def with_overrides(variables: Sequence[str], overrides: Sequence[str]) -> list[str]:
    """``OVERRIDES=...`` for the jobs: the user's (if any) followed by ``overrides``.

    Args:
        variables: the plan's make variables.
        overrides: config overrides to append.
    """
    if not overrides:
        return []
    user = [v.split("=", 1)[1] for v in variables if v.startswith("OVERRIDES=")]
    return ["OVERRIDES=" + " ".join([*user[-1:], *overrides])]


@dataclass
class LocalOutcome:
    """What a local sweep did: the run names that succeeded, failed, or were skipped (their trained
    run failed)."""

    succeeded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def run_local(plan: Plan, folder: str | Path, jobs: int = 1, timeout_min: float | None = None,
              poll_s: float = 0.5, signal_lead_s: int = SIGNAL_LEAD_S,
              echo: Callable[[str], Any] = print) -> LocalOutcome:
    """Run the plan on this machine with submitit's ``LocalExecutor``, at most ``jobs`` at once.

    Args:
        plan: the plan (:func:`make_plan`).
        folder: submitit's folder: each job's ``<id>_submitted.pkl``, ``<id>_0_log.out``/``.err``
            and ``<id>_0_result.pkl``.
        jobs: jobs at the same time. With ``GPUS=...`` among the plan's variables each job's make
            takes a GPU slot (:mod:`bga_mner.gpu_slots`); without, a job sees the GPUs this
            process sees.
        timeout_min: time limit of one job in minutes (None: none); ``signal_lead_s`` before it
            the job stops its run and is restarted (it continues from its last finished epoch).
        poll_s: seconds between checks of the running jobs.
        signal_lead_s: see ``timeout_min``.
        echo: where progress lines go.
    """
    import submitit

    executor = submitit.LocalExecutor(folder=folder)
    executor.update_parameters(timeout_min=int(timeout_min or NO_LIMIT_MIN), signal_delay_s=signal_lead_s)
    # LocalExecutor hides every GPU (CUDA_VISIBLE_DEVICES=""); a job sees what this process sees.
    env = {"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES")}
    outcome = LocalOutcome()
    waiting = list(plan.items)
    running: dict[str, tuple[PlanItem, Any]] = {}
    ended: dict[str, bool] = {}  # output -> succeeded
    n, started = len(plan.items), 0
    while waiting or running:
        for item in list(waiting):
            if item.after is not None and ended.get(item.after) is False:
                waiting.remove(item)
                ended[item.output] = False
                outcome.skipped.append(item.name)
                echo(f"skipped {item.name}: its trained run failed")
            elif (item.after is None or ended.get(item.after)) and len(running) < max(1, jobs):
                waiting.remove(item)
                job = executor.submit(MakeJob(), job_command(plan, item), env)
                started += 1
                running[item.output] = (item, job)
                echo(f"[{started}/{n}] started {item.name} (local job {job.job_id})")
        if waiting and not running:  # each waiting run needs a run that ended: never so
            raise RuntimeError(f"sweep stuck: {[i.name for i in waiting]} wait for runs that ended")
        for output, (item, job) in list(running.items()):
            if not job.done():
                continue
            del running[output]
            try:
                job.result()
            except Exception as err:  # the job failed: its log has the run's own error
                ended[output] = False
                outcome.failed.append(item.name)
                status = re.search(r"exited with status \d+", str(err))
                lines = str(err).strip().splitlines()
                why = f"make {status.group(0)}" if status else (lines[-1] if lines else type(err).__name__)
                echo(f"FAILED {item.name}: {why} (log: {job.paths.stderr})")
            else:
                ended[output] = True
                outcome.succeeded.append(item.name)
                echo(f"finished {item.name}")
        if running:
            time.sleep(poll_s)
    return outcome


@dataclass
class SlurmOptions:
    """What each SLURM job asks for.

    Attributes:
        time_min: time limit of a job in minutes (sbatch --time).
        partition: sbatch --partition (None: the cluster's default).
        nodes: nodes per run.
        gpus_per_node: GPUs per node, one task (process) each; 0 for a CPU job of one task.
        cpus_per_task: sbatch --cpus-per-task (None: the cluster's default).
        mem_gb: memory per node in GB (None: the cluster's default).
        jobs: at most this many jobs of an array at once (None: no cap of ours).
        extra: more sbatch options, e.g. ``{"account": "abc", "qos": "high"}``.
        setup: shell lines run before the job (``module load cuda``, ...).
        signal_lead_s: seconds before the time limit at which SLURM signals the job, which then
            stops its run and is requeued (submitit's ``--signal=USR2@<lead>``).
    """

    time_min: int
    partition: str | None = None
    nodes: int = 1
    gpus_per_node: int = 1
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    jobs: int | None = None
    extra: dict[str, str] = field(default_factory=dict)
    setup: list[str] = field(default_factory=list)
    signal_lead_s: int = SIGNAL_LEAD_S

    def parameters(self, name: str) -> dict[str, Any]:
        """submitit ``AutoExecutor.update_parameters`` keywords of these options.

        Args:
            name: the job name.
        """
        params: dict[str, Any] = {"name": name, "timeout_min": self.time_min, "nodes": self.nodes,
                                  "tasks_per_node": max(1, self.gpus_per_node),
                                  "slurm_signal_delay_s": self.signal_lead_s}
        if self.gpus_per_node:
            params["gpus_per_node"] = self.gpus_per_node
        if self.cpus_per_task is not None:
            params["cpus_per_task"] = self.cpus_per_task
        if self.mem_gb is not None:
            params["mem_gb"] = self.mem_gb
        if self.partition:
            params["slurm_partition"] = self.partition
        if self.jobs:
            params["slurm_array_parallelism"] = self.jobs
        # requeue-able: SLURM's own requeue (preemption, node failure) reruns the job as well
        params["slurm_additional_parameters"] = {"requeue": True, **self.extra}
        if self.setup:
            params["slurm_setup"] = list(self.setup)
        return params


def submit_slurm(plan: Plan, folder: str | Path, options: SlurmOptions,
                 echo: Callable[[str], Any] = print) -> list[list[Any]]:
    """Submit the plan as SLURM job arrays, one per wave (:meth:`Plan.waves`), and return the jobs.

    Args:
        plan: the plan (:func:`make_plan`).
        folder: submitit's folder, on a file system the compute nodes share: the sbatch script of
            each array (``<array id>_submission.sh``), and each job's pickles and logs
            (``<array id>_<index>_0_log.out``/``.err``).
        options: what each job asks for.
        echo: where progress lines go.

    Raises:
        SweepError: no ``srun`` on PATH (not a SLURM cluster).
    """
    import submitit

    if shutil.which("srun") is None:
        raise SweepError("no srun on PATH: this is not a SLURM login node (use --launcher local)")
    if any(v.startswith("GPUS=") for v in plan.variables):
        raise SweepError("GPUS is for one machine; on SLURM each job gets its GPUs from "
                         "--gpus-per-node")
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    executor.update_parameters(**options.parameters(f"bga-mner-{plan.target}"))
    extra = with_overrides(plan.variables, ddp_overrides(options.nodes, options.gpus_per_node))
    submitted: list[list[Any]] = []
    previous: str | None = None
    for depth, wave in enumerate(plan.waves()):
        if previous is not None:
            executor.update_parameters(slurm_dependency=f"afterany:{previous}")
        with executor.batch():
            jobs = [executor.submit(MakeJob(), job_command(plan, item, extra), {}) for item in wave]
        previous = str(jobs[0].job_id).split("_")[0]
        submitted.append(jobs)
        after = f", after job {submitted[-2][0].job_id.split('_')[0]}" if depth else ""
        echo(f"submitted wave {depth}: job array {previous} of {len(wave)} run(s){after}: "
             + " ".join(item.name for item in wave))
    return submitted
