"""Sweeps through ``submitit``: a make target's unfinished runs as SLURM job arrays, or local jobs.

The plan comes from make itself, so that a sweep and ``make TARGET`` never disagree on what a
target's runs are or which are finished: :func:`plan.make_plan` runs ``make -n TARGET SWEEP_PLAN=1``,
in which experiments/experiments.mk prints each run it would make (a run without its
``results.json``, or an evaluation older than its trained run) as
``sweep-plan <results.json> <results.json it needs first, or -> <recipe>``. A job is
``make <its results.json> VAR=...`` (:func:`plan.job_command`): make runs the run's recipe with the
Makefile's environment, continues an interrupted fit (``--resume``) and does nothing for a run
finished meanwhile.

- ``plan.py``: the plan (:class:`plan.Plan`: runs in waves) and each run's job command;
- ``launch.py``: the launchers. ``local`` (:func:`launch.run_local`): submitit's ``LocalExecutor``
  on this machine; ``slurm`` (:func:`launch.submit_slurm`): one job array per wave;
- ``job.py``: what a job runs (:class:`job.MakeJob`: the make in its own process group, stopped
  with SIGTERM and requeued on SLURM's signal before the time limit or on preemption).

Imports nothing from the package but the error base class; ``submitit`` is imported by the
launchers only.
"""
