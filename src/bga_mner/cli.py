"""The ``bga-mner`` command line: ``bga-mner <command> --help`` for each command.

Each command lives in ``bga_mner.commands.<name>`` and is imported only when run, so that
``bga-mner stats`` does not pay for importing torch and Lightning.

Errors: every user error raised anywhere below a command (:class:`bga_mner.errors.UserError` and
its subclasses, the operating system's file errors, bytes that are not UTF-8, OmegaConf's errors)
ends the command with ONE line on stderr, ``bga-mner <command>: error: <message>`` (the message
names the file, and the line where there is one), and exit status 2, without a traceback;
``BGA_MNER_DEBUG=1`` prints the traceback before that line. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from typing import Sequence

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

    return (UserError, FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError,
            PermissionError, UnicodeDecodeError, OmegaConfBaseException)


USER_ERRORS = _user_errors()
DEBUG_ENV = "BGA_MNER_DEBUG"


def error_message(err: BaseException) -> str:
    """One line for a user error: its message, or for an OS error ``<file>: <reason>``."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        text = f"{err.filename}: {err.strerror}"
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


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] not in COMMANDS:
        parser.parse_args(argv)  # prints help or the error and exits
        return 2
    module = importlib.import_module(f"bga_mner.commands.{argv[0]}")
    sub = argparse.ArgumentParser(prog=f"bga-mner {argv[0]}", description=COMMANDS[argv[0]])
    module.add_arguments(sub)
    args = sub.parse_args(argv[1:])
    try:
        return int(module.main(args) or 0)
    except USER_ERRORS as err:  # bad input: one clear line naming the file (and line), no traceback
        if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            traceback.print_exc()
        print(f"bga-mner {argv[0]}: error: {error_message(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
