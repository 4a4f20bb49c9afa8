"""A sweep's plan: what ``make TARGET`` would run, read from ``make -n TARGET SWEEP_PLAN=1``.

experiments/experiments.mk prints each run it would make (a run without its ``results.json``, or
an evaluation older than its trained run) as ``sweep-plan <results.json> <results.json it needs
first, or -> <recipe>``; :func:`make_plan` reads those lines into a :class:`Plan`, whose waves
order the runs (an evaluation after its trained run). A run's job is ``make <its results.json>
VAR=...`` (:func:`job_command`), so make runs the recipe, resumes an interrupted fit and skips a
run finished meanwhile.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from bga_mner.errors import UserError

PLAN_MARK = "sweep-plan"
# A make variable on the command line: NAME=value (NAME as GNU make allows it, without spaces).
_MAKE_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*=")


class SweepError(UserError):
    """A sweep that cannot start: a bad make variable, a make error, an out-of-date venv, no SLURM."""


@dataclass(frozen=True)
class PlanItem:
    """One unfinished run of a target, as make would make it.

    Attributes:
        output: the run's ``results.json`` (make's file target), as make names it.
        after: the ``results.json`` of a run of the same plan that must end first (an evaluation's
            trained run), or None.
        command: the recipe line make would run (``--dry-run`` shows it).
    """

    output: str
    after: str | None
    command: str

    @property
    def name(self) -> str:
        """The run folder's name."""
        return Path(self.output).parent.name


@dataclass
class Plan:
    """A target's unfinished runs (:class:`PlanItem`, in make's order) and how many runs it has."""

    target: str
    items: list[PlanItem]
    total: int
    make_dir: Path
    variables: list[str] = field(default_factory=list)

    @property
    def runs_dir(self) -> Path | None:
        """The runs folder of the plan's runs (``RUNS``), or None for an empty plan."""
        return self.make_dir / Path(self.items[0].output).parent.parent if self.items else None

    def waves(self) -> list[list[PlanItem]]:
        """The items by depth: wave 0 needs nothing of the plan, wave k+1 needs a run of wave k."""
        depth: dict[str, int] = {}
        for item in self.items:  # make's order: a run comes after the run it needs
            depth[item.output] = 0 if item.after is None else depth[item.after] + 1
        waves: list[list[PlanItem]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
        for item in self.items:
            waves[depth[item.output]].append(item)
        return waves


def check_variables(variables: Sequence[str]) -> list[str]:
    """Make variables given on the command line, checked.

    Args:
        variables: ``NAME=value`` strings (``PROFILE=smoke``, ``SEEDS=42 43``, ``RUNS=runs/x``).

    Raises:
        SweepError: one is not ``NAME=value``, or sets ``SWEEP_PLAN`` (the sweep's own).
    """
    for var in variables:
        if not _MAKE_VAR.match(var):
            raise SweepError(f"{var!r}: expected a make variable NAME=value (e.g. PROFILE=smoke, "
                             "SEEDS='42 43 44', RUNS=runs)")
        if var.startswith("SWEEP_PLAN="):
            raise SweepError("SWEEP_PLAN is set by bga-mner sweep itself")
    return list(variables)


def _make(make: str, make_dir: Path, args: Sequence[str]) -> subprocess.CompletedProcess:
    if shutil.which(make) is None:
        raise SweepError(f"{make!r} not found on PATH: a sweep reads its plan from make")
    if not (make_dir / "Makefile").is_file():
        raise SweepError(f"{make_dir}: no Makefile here; run bga-mner sweep from the repository "
                         "root or pass -C DIR")
    return subprocess.run([make, "--no-print-directory", "-C", str(make_dir), *args],
                          capture_output=True, text=True)


def _plan_lines(make: str, make_dir: Path, target: str, variables: Sequence[str],
                always: bool) -> list[PlanItem]:
    flags = ["-n", "-B"] if always else ["-n"]
    proc = _make(make, make_dir, [*flags, target, *variables, "SWEEP_PLAN=1"])
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        raise SweepError(f"make -n {target} failed: {lines[-1] if lines else f'exit {proc.returncode}'}")
    items = []
    for line in proc.stdout.splitlines():
        if not line.startswith(PLAN_MARK + " "):
            continue
        parts = line.split(" ", 3)
        if len(parts) < 4:
            raise SweepError(f"make -n {target}: a plan line without a command: {line!r}")
        items.append(PlanItem(parts[1], None if parts[2] == "-" else parts[2], parts[3].strip()))
    return items


def make_plan(target: str, variables: Sequence[str] = (), make_dir: str | Path = ".",
              make: str = "make") -> Plan:
    """The unfinished runs of a make target: what ``make TARGET`` would run, read from ``make -n``.

    Args:
        target: a target of experiments/experiments.mk (``reproduce-table2``, ``all``, ...).
        variables: make variables (``PROFILE=smoke``, ``SEEDS=42 43``, ``RUNS=...``).
        make_dir: the folder of the Makefile (the repository root).
        make: the make program.

    Raises:
        SweepError: bad variables, no make or Makefile, or make fails (an unknown target).
    """
    variables = check_variables(variables)
    make_dir = Path(make_dir).resolve()
    items = _plan_lines(make, make_dir, target, variables, always=False)
    known = {item.output for item in items}
    items = [PlanItem(i.output, i.after if i.after in known else None, i.command) for i in items]
    total = len(_plan_lines(make, make_dir, target, variables, always=True))
    return Plan(target, items, total, make_dir, variables)


def check_installed(plan: Plan, make: str = "make") -> None:
    """Refuse to start jobs that would each install the venv (``make install`` is out of date):
    they would run pip at the same time.

    Args:
        plan: the plan (its Makefile folder and variables).
        make: the make program.
    """
    proc = _make(make, plan.make_dir, ["-q", "install", *plan.variables])
    if proc.returncode == 1:
        raise SweepError("the venv is older than pyproject.toml: run `make install` first (every "
                         "job would install it at once)")


def job_command(plan: Plan, item: PlanItem, extra: Sequence[str] = (), make: str = "make") -> list[str]:
    """The command of one job: make the run's results.json with the plan's variables.

    Args:
        plan: the plan.
        item: the run.
        extra: more make variables, after the plan's (they win).
        make: the make program on the machine that runs the job.
    """
    return [make, "--no-print-directory", "-C", str(plan.make_dir), item.output, *plan.variables, *extra]

