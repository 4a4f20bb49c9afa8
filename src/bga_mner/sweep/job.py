"""What one sweep job runs: a ``make`` of one run, as a submitit checkpointable callable (imports
nothing from the package; ``submitit`` only in :meth:`MakeJob.checkpoint`).

SLURM signals a job before its time limit (``--signal=USR2@<lead>``, written by submitit) and on
preemption; submitit then calls :meth:`MakeJob.checkpoint`, which stops the make (SIGTERM to its
process group: the fit exits 143 with its last finished epoch in ``last.ckpt``), and requeues the
job with the same command (``scontrol requeue``; the local launcher restarts it). The requeued
make runs the fit again with ``--resume``: it continues where the stopped one left off.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from typing import Any


class JobFailedError(RuntimeError):
    """A job's make exited with a non-zero status (the run's own error is in the job's log)."""


class MakeJob:
    """What a job runs: ``command`` (a make) with ``env`` applied (None removes a variable), as a
    submitit checkpointable callable (submitit calls :meth:`checkpoint` on the requeue signal).

    The command runs in a process group of its own, with submitit's requeue signal ignored (SLURM
    signals every process of the job step; only this one, submitit's, acts on it).

    Args:
        grace_s: after SIGTERM, seconds the command has to end before it is killed (keep it under
            the signal's lead time).
    """

    def __init__(self, grace_s: float = 60.0) -> None:
        self.grace_s = grace_s
        self._proc: subprocess.Popen | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"grace_s": self.grace_s}  # a process belongs to the running job only

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)

    def __call__(self, command: list[str], env: dict[str, str | None]) -> int:
        """Run ``command``.

        Args:
            command: program and arguments (:func:`bga_mner.sweep.plan.job_command`).
            env: environment changes.

        Raises:
            JobFailedError: the command exited with a non-zero status.
        """
        environ = dict(os.environ)
        for key, value in env.items():
            if value is None:
                environ.pop(key, None)
            else:
                environ[key] = value
        ignored = _requeue_signal()

        def ignore_requeue_signal() -> None:
            if ignored is not None:
                signal.signal(ignored, signal.SIG_IGN)  # kept across exec: make and the fit ignore it

        self._proc = subprocess.Popen(command, env=environ, start_new_session=True,
                                      preexec_fn=ignore_requeue_signal)
        while self._proc.poll() is None:  # no blocking wait: checkpoint() may run meanwhile
            time.sleep(0.2)
        status = self._proc.returncode
        if status != 0:
            raise JobFailedError(f"`{shlex.join(command)}` exited with status {status}")
        return 0

    def stop(self) -> None:
        """SIGTERM to the command's process group (make, the shell, the fit), then SIGKILL after
        ``grace_s`` if it has not ended."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(self.grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def checkpoint(self, command: list[str], env: dict[str, str | None]) -> Any:
        """submitit's requeue hook: stop the command (the fit keeps its last finished epoch) and
        requeue the same command (make then continues the fit, ``--resume``)."""
        from submitit.helpers import DelayedSubmission

        self.stop()
        return DelayedSubmission(MakeJob(self.grace_s), command, env)


def _requeue_signal() -> int | None:
    """The signal submitit requeues a job on (SIGUSR2 unless ``SUBMITIT_PREEMPT_SIGNAL`` says)."""
    name = "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
    return getattr(signal, name, None)
