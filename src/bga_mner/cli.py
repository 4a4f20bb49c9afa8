"""The ``bga-mner`` command line: ``bga-mner <command> --help`` for each command.

Each command lives in ``bga_mner.commands.<name>`` and is imported only when run, so that
``bga-mner stats`` does not pay for importing torch and Lightning.

Errors: every user error raised anywhere below a command (:class:`bga_mner.errors.UserError` and
its subclasses, the operating system's errors, bytes that are not UTF-8, OmegaConf's errors)
ends the command with ONE line on stderr, ``bga-mner <command>: error: <message>`` (the message
names the file, and the line where there is one; a full disk says ``disk full``, a read-only file
system ``read-only file system``, both with the path), and exit status 2, without a traceback;
``BGA_MNER_DEBUG=1`` prints the traceback before that line. Anything else is a bug and keeps its
traceback.

Signals: SIGTERM (``kill``, SLURM's preemption and time limit, make) and SIGINT (Ctrl-C) raise
:class:`bga_mner.errors.Interrupted` wherever the command is: ``finally`` blocks run (a run folder's
lock is released, a half-written file removed) and the command ends with status 128 + signal (143,
130) and one line, ``bga-mner <command>: interrupted by SIGTERM`` (``fit`` adds how to resume).
A broken pipe (``bga-mner predict ... | head``) ends the command quietly, as Unix tools do, with
status 141 (128 + SIGPIPE).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import os
import signal
import sys
import traceback
from typing import Any, Iterator, Sequence

COMMANDS: dict[str, str] = {
    "fit": "train and test a model from a config (best dev-F1 checkpoint, results JSON)",
    "test": "evaluate a checkpoint on a test set",
    "predict": "tag raw text lines or a CoNLL file with an exported model or a checkpoint (no images needed)",
    "export": "a finished run as a folder to share on the Hugging Face Hub (safetensors, tokenizer, model card)",
    "push": "upload an export folder to the Hugging Face Hub",
    "stats": "tweets and entities per type per split (the paper's Table 1)",
    "score": "entity-level P/R/F1 of a predicted CoNLL file against the gold one",
    "synth": "generate the synthetic multimodal NER set (the embedded default)",
    "detect": "run Faster R-CNN over an image folder and write objects.jsonl",
    "params": "parameter counts by component, at train and inference time (Table 5)",
    "report": "paper-shaped tables and the Fig. 5 plot from a runs folder",
    "evidence": "a synthetic run's slice counts, Fig. 3 hits and Fig. 4 keep counts -> evidence.json",
    "claims": "claims.md: the paper's Section 4 claims tested on a make claims folder",
    "bench": "training and inference throughput of BGA-MNER against BERT-CRF",
    "sweep": "run a make target's unfinished runs as SLURM job arrays or local jobs (submitit)",
}


def _user_errors() -> tuple[type[BaseException], ...]:
    from omegaconf.errors import OmegaConfBaseException

    from bga_mner.errors import UserError

    # OSError: the operating system's (files, a full disk, a read-only file system, a device)
    return (UserError, OSError, UnicodeDecodeError, OmegaConfBaseException)


USER_ERRORS = _user_errors()
DEBUG_ENV = "BGA_MNER_DEBUG"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# what an OS error number means to the user, where strerror alone says too little
_OS_REASONS = {errno.ENOSPC: "disk full ({})", errno.EDQUOT: "disk quota exceeded ({})",
               errno.EROFS: "read-only file system"}


def error_message(err: BaseException) -> str:
    """One line for a user error: its message, or for an OS error ``<file>: <reason>`` (a full
    disk: ``<file>: disk full (No space left on device)``)."""
    if isinstance(err, OSError) and err.strerror:
        reason = _OS_REASONS.get(err.errno or 0, "{}").format(err.strerror)
        text = f"{err.filename}: {reason}" if err.filename is not None else reason
    elif isinstance(err, UnicodeDecodeError):
        text = f"input is not UTF-8 ({err})"
    else:
        text = str(err) or type(err).__name__
    return " ".join(line.strip() for line in text.splitlines() if line.strip())  # one line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bga-mner", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=f"bga_mner.commands.{name}")
        # arguments are added lazily in main() for the chosen command only
    return parser


def _raise_interrupted(signum: int, frame: object) -> None:
    from bga_mner.errors import Interrupted

    raise Interrupted(signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM and SIGINT raise :class:`bga_mner.errors.Interrupted` inside the block (where their
    handling is Python's default: a signal ignored by the parent, e.g. SIGINT of a background
    job, stays ignored); the previous handlers come back after it."""
    previous = {}
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) in (signal.SIG_DFL, signal.default_int_handler):
            previous[signum] = signal.signal(signum, _raise_interrupted)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _debug() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


class _NamedStdout:
    """Standard output whose write errors name it: an ``OSError`` without a file name (a full disk
    under ``> file``) gets ``<stdout>``, so that the error line says where the disk is full.
    Everything else is the wrapped stream's."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def _named(self, call: Any, *args: Any) -> Any:
        try:
            return call(*args)
        except BrokenPipeError:
            raise
        except OSError as err:
            if err.filename is not None:
                raise
            raise OSError(err.errno, err.strerror, "<stdout>") from err

    def write(self, text: str) -> int:
        return self._named(self._stream.write, text)

    def flush(self) -> None:
        self._named(self._stream.flush)


@contextlib.contextmanager
def _named_stdout() -> Iterator[None]:
    stream = sys.stdout
    sys.stdout = _NamedStdout(stream)
    try:
        yield
        sys.stdout.flush()  # a full disk or a closed pipe under stdout: here, not at exit
    finally:
        sys.stdout = stream


def _quiet_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null, so that Python's final flush of what is
    still buffered does not fail again at exit."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (a test's capture)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] not in COMMANDS:
        parser.parse_args(argv)  # prints help or the error and exits
        return 2
    from bga_mner.errors import Interrupted

    prog = f"bga-mner {argv[0]}"
    try:
        with stop_on_signals(), _named_stdout():
            module = importlib.import_module(f"bga_mner.commands.{argv[0]}")
            sub = argparse.ArgumentParser(prog=prog, description=COMMANDS[argv[0]])
            module.add_arguments(sub)
            args = sub.parse_args(argv[1:])
            status = int(module.main(args) or 0)
        return status
    except (Interrupted, KeyboardInterrupt) as err:  # SIGTERM, SIGINT: 128 + signal, one line
        if not isinstance(err, Interrupted):
            err = Interrupted(signal.SIGINT)
        if _debug():
            traceback.print_exc()
        hint = f"; {err.hint}" if err.hint else ""
        print(f"{prog}: interrupted by {err.name}{hint}", file=sys.stderr)
        return err.status
    except BrokenPipeError:  # the reader went away (`| head`): end quietly, as Unix tools do
        if _debug():
            traceback.print_exc()
        _quiet_stdout()
        return 128 + signal.SIGPIPE
    except USER_ERRORS as err:  # bad input: one clear line naming the file (and line), no traceback
        if _debug():
            traceback.print_exc()
        print(f"{prog}: error: {error_message(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
