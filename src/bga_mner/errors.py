"""The errors that end a command without a traceback (the bottom of the layering: imports nothing).

A :class:`UserError` is a problem with what the user gave (a file, a line of it, a config value),
not a bug: its message says what is wrong and where (``path:line: ...`` where there is a line), and
the command line (``bga_mner.cli``) prints it as one line ``bga-mner <command>: error: <message>``
with exit status 2 and no traceback (``BGA_MNER_DEBUG=1`` shows the traceback too). The
operating system's errors (a file not found, a folder, no permission, a full disk, a read-only
file system) are treated the same way there. Every error class of the package that reports bad
input derives from it (``config.ConfigError``, ``data.conll.CoNLLFormatError``,
``data.detect.ObjectsFormatError``, ``inference.CheckpointError``,
``commands.score.TweetMismatchError``, ...).

:class:`Interrupted` is how a signal ends a command (SIGTERM from ``kill``, SLURM or make; SIGINT
from Ctrl-C): ``cli`` raises it from its signal handlers, and it ends the command with status
``128 + signal`` and one line (for ``fit``: how to resume).
"""

from __future__ import annotations

import signal


class UserError(Exception):
    """Bad input named in the message (file and line where there is one); not a bug."""


class Interrupted(BaseException):
    """A signal asked the command to stop (a ``BaseException``, like ``KeyboardInterrupt``, so that
    ``except Exception`` blocks let it through; ``finally`` blocks still run: locks are released).

    Attributes:
        signum: the signal.
        hint: what to run to continue the work (set by the command that knows it), or None.
        run_name: the run folder's name of an interrupted ``fit`` (``training.run_fit`` sets it).
    """

    def __init__(self, signum: int, hint: str | None = None) -> None:
        super().__init__(signum)
        self.signum = int(signum)
        self.hint = hint
        self.run_name: str | None = None

    @property
    def name(self) -> str:
        """``SIGTERM``, ``SIGINT``, ..."""
        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"

    @property
    def status(self) -> int:
        """The exit status of a process ended by this signal, as a shell reports it: 128 + signal."""
        return 128 + self.signum


def one_line(err: BaseException, limit: int = 160) -> str:
    """``Type: first sentence of the message``, on one line, at most ``limit`` characters: a
    library's error (torch's, huggingface_hub's run to paragraphs) quoted inside a message of ours."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    first = lines[0].split(". ")[0].rstrip(".") if lines else ""
    text = f"{type(err).__name__}: {first}" if first else type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
