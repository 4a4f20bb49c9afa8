"""``bga-mner sweep TARGET [VAR=value ...] --launcher slurm|local [--dry-run]``.

Runs the unfinished runs of a make target (``reproduce-table2``, ``ablations``, ``all``, ...) as
submitit jobs: SLURM job arrays (``slurm``, returns once submitted) or jobs on this machine
(``local``, waits for them). The plan is make's own (``bga_mner.sweep.plan.make_plan``), so finished runs
are skipped exactly as ``make TARGET`` skips them; ``make TARGET`` afterwards writes the report.
Run it from the repository root (or ``-C DIR``). docs/experiments.md has the walk-through.
"""

from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path

from bga_mner.sweep.launch import LAUNCHERS, SlurmOptions, run_local, submit_slurm
from bga_mner.sweep.plan import SweepError, check_installed, make_plan


def _sbatch_option(text: str) -> tuple[str, str]:
    if "=" not in text or not text.split("=", 1)[0]:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE, e.g. account=abc")
    key, value = text.split("=", 1)
    return key, value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text}: must be at least 0")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: must be at least 1")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="a make target: reproduce-table2, ablations, data-efficiency, "
                                       "table4, table6, table7, all")
    parser.add_argument("variables", nargs="*", metavar="VAR=value",
                        help="make variables, as for make: PROFILE=smoke SEEDS='42 43 44' RUNS=runs "
                             "DATA_DIR=... OVERRIDES='k=v ...' (local only: GPUS='0 1 2 3')")
    parser.add_argument("--launcher", choices=LAUNCHERS, default="local",
                        help="slurm: submit job arrays and return; local: run the jobs here and wait "
                             "(default)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, submit nothing")
    parser.add_argument("-C", dest="make_dir", type=Path, default=Path("."),
                        help="folder of the Makefile (default: here)")
    parser.add_argument("--logs", type=Path, default=None,
                        help="submitit's folder: job scripts, pickles, logs (default "
                             "RUNS/sweep-logs/TARGET-<date>-<time>; on SLURM a folder the nodes share)")
    parser.add_argument("--jobs", type=_positive, default=None,
                        help="at most this many runs at once (local default: the number of GPUS "
                             "slots, else 1; slurm: the job array's %%N cap, default submitit's 256)")
    parser.add_argument("--time", type=_positive, default=None, metavar="MINUTES",
                        help="time limit of one run (required with slurm: sbatch --time)")
    parser.add_argument("--signal-lead", type=_positive, default=SlurmOptions.signal_lead_s, metavar="SECONDS",
                        help="SLURM signals a job this long before its time limit (and on "
                             "preemption): the job stops its run (SIGTERM; it keeps its last "
                             "finished epoch) and is requeued, and the run continues (default %(default)s)")
    slurm = parser.add_argument_group("slurm (sbatch options of each job)")
    slurm.add_argument("--partition", default=None, help="sbatch --partition")
    slurm.add_argument("--nodes", type=_positive, default=SlurmOptions.nodes,
                       help="nodes per run (DDP across nodes when more than 1)")
    slurm.add_argument("--gpus-per-node", type=_non_negative, default=SlurmOptions.gpus_per_node,
                       help="GPUs per node, one task each (DDP when nodes x GPUs > 1; 0: a CPU job)")
    slurm.add_argument("--cpus-per-task", type=_positive, default=None, help="sbatch --cpus-per-task")
    slurm.add_argument("--mem-gb", type=float, default=None, help="memory per node (sbatch --mem)")
    slurm.add_argument("--sbatch", type=_sbatch_option, action="append", default=[], metavar="KEY=VALUE",
                       help="any other sbatch option, e.g. --sbatch account=abc --sbatch qos=high")
    slurm.add_argument("--setup", action="append", default=[], metavar="LINE",
                       help="shell line run before each job, e.g. --setup 'module load cuda'")


def main(args: argparse.Namespace) -> int:
    from bga_mner.gpu_slots import parse_slots

    plan = make_plan(args.target, args.variables, args.make_dir)
    done = plan.total - len(plan.items)
    print(f"{args.target}: {len(plan.items)} of {plan.total} runs to make ({done} finished, skipped)")
    for wave, items in enumerate(plan.waves()):
        for item in items:
            after = f"  (after {Path(item.after).parent.name})" if item.after else ""
            print(f"  wave {wave}  {item.name}{after}")
            if args.dry_run:
                print(f"      {item.command}")
    make_line = shlex.join(["make", args.target, *args.variables])
    if not plan.items:
        print(f"nothing to run; `{make_line}` writes the report")
        return 0
    if args.dry_run:
        return 0
    check_installed(plan)
    logs = args.logs or plan.runs_dir / "sweep-logs" / f"{args.target}-{time.strftime('%Y%m%d-%H%M%S')}"
    if args.launcher == "slurm":
        if args.time is None:
            raise SweepError("--time MINUTES is required with --launcher slurm (a job's time limit)")
        options = SlurmOptions(time_min=args.time, partition=args.partition, nodes=args.nodes,
                               gpus_per_node=args.gpus_per_node, cpus_per_task=args.cpus_per_task,
                               mem_gb=args.mem_gb, jobs=args.jobs, extra=dict(args.sbatch),
                               setup=list(args.setup), signal_lead_s=args.signal_lead)
        submit_slurm(plan, logs, options)
        print(f"logs in {logs}; when the jobs have ended, `{make_line}` writes the report (and "
              f"runs nothing finished); `bga-mner sweep` again resubmits what did not finish")
        return 0
    gpus = next((v.split("=", 1)[1] for v in reversed(args.variables) if v.startswith("GPUS=")), None)
    slots = parse_slots(gpus) if gpus else []  # each job's make takes one (GPUS is passed on)
    outcome = run_local(plan, logs, jobs=args.jobs or max(1, len(slots)), timeout_min=args.time,
                        signal_lead_s=args.signal_lead)
    print(f"{len(outcome.succeeded)} finished, {len(outcome.failed)} failed, {len(outcome.skipped)} "
          f"skipped (logs in {logs})")
    if outcome.failed or outcome.skipped:
        return 1
    print(f"`{make_line}` writes the report")
    return 0
