"""The run folder: its name, seeding, provenance (git commit, package versions) and results JSON.

One folder per run under ``paths.runs_dir`` (layout in docs/ARCHITECTURE.md)::

    runs/<run name>/config.yaml, results.json, checkpoints/, predictions/, csv/, wandb/

One owner per folder: a run holds :class:`RunLock` (``fcntl.flock`` on ``<run>/.lock``, which names
the holder) from before its first piece of work to its end, so a second run of the same name is
refused at once (:class:`RunBusyError`). A folder without ``results.json`` holds an unfinished run:
``bga-mner fit --resume`` continues it, anything else is refused (:func:`claim_run_dir`).
Every file of a run is written by :func:`atomic_write`: a temporary file in the same folder,
renamed into place, so a killed process or a full disk never leaves a truncated file behind.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf

from bga_mner.atomic import atomic_write_text, remove_temporary_files
from bga_mner.config import ConfigError, to_plain, to_yaml
from bga_mner.errors import UserError
from bga_mner.run_lock import LOCK_FILE, NotWritableError, RunLock

log = logging.getLogger(__name__)

# Distributions whose versions every results.json records (import name differs for some).
TRACKED_PACKAGES: tuple[str, ...] = ("torch", "lightning", "transformers", "timm", "pytorch-crf",
                                     "torchmetrics", "omegaconf", "wandb", "bga-mner")
RESULTS_FILE = "results.json"
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"  # the end of the latest epoch (resume point)


class UnfinishedRunError(UserError, FileExistsError):
    """The run folder holds an unfinished run and the command did not ask to resume it."""


def is_unfinished(run_dir: Path) -> bool:
    """The folder holds something of a run (beyond a lock) but no ``results.json``."""
    if not run_dir.is_dir() or (run_dir / RESULTS_FILE).exists():
        return False
    return any(p.name != LOCK_FILE for p in run_dir.iterdir())


def _finished_error(run_dir: Path, hint: str = "choose another run.name or delete the folder"
                    ) -> FileExistsError:
    return FileExistsError(f"{run_dir}: already holds a finished run ({RESULTS_FILE}); {hint}")


def claim_run_dir(cfg: DictConfig, resume: bool = False) -> RunLock:
    """Create the run folder of ``cfg`` (:func:`make_run_dir`) and take its lock, before any work.

    Refused: a folder in use by a live run (:class:`RunBusyError`), a finished one
    (``FileExistsError``), and an unfinished one unless ``resume`` (:class:`UnfinishedRunError`,
    whose message suggests ``--resume`` or deleting the folder). Temporary files of an interrupted
    write are removed. Returns the held lock (``.run_dir`` is the folder); the caller releases it.
    """
    if resume and not cfg.run.name:
        raise ConfigError("--resume continues the run folder named by run.name; give run.name")
    run_dir = make_run_dir(cfg)
    lock = RunLock(run_dir).acquire()
    try:
        if (run_dir / RESULTS_FILE).exists():  # finished while we were looking
            raise _finished_error(run_dir)
        if not resume and is_unfinished(run_dir):
            raise UnfinishedRunError(
                f"{run_dir}: holds an unfinished run (no {RESULTS_FILE}); continue it with "
                "`bga-mner fit --resume` and the same config, or delete the folder to start over")
        remove_temporary_files(run_dir)
    except BaseException:
        lock.release()
        raise
    return lock


# Keys that may differ between a run's saved config and the command that resumes it: where things
# are, how the run is logged and shown, and the commit the run started from (kept). Anything else
# would make the resumed run another run.
RESUME_FREE_KEYS: tuple[str, ...] = ("paths.", "logging.", "run.git_commit",
                                     "trainer.enable_progress_bar", "trainer.enable_model_summary",
                                     "trainer.compile")


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out |= _flatten(value, f"{prefix}{key}.")
        return out or {prefix.rstrip("."): {}}
    return {prefix.rstrip("."): node}


def resume_config(cfg: DictConfig, run_dir: Path) -> DictConfig:
    """The config a resumed run goes on with: ``cfg`` (the command's), which must equal the folder's
    ``config.yaml`` in every key but :data:`RESUME_FREE_KEYS`; ``run.git_commit`` stays the one the
    run started from (a warning names both when the code changed). Without a saved config (killed
    before writing it) ``cfg`` is returned as it is.

    Raises:
        ConfigError: naming the keys that differ and both values.
    """
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        return cfg
    saved = _flatten(OmegaConf.to_container(OmegaConf.load(saved_path), resolve=True))
    given = _flatten(to_plain(cfg))
    differ = sorted(k for k in set(saved) | set(given)
                    if not k.startswith(RESUME_FREE_KEYS) and saved.get(k) != given.get(k))
    if differ:
        shown = ", ".join(f"{k}={saved.get(k)!r} there, {given.get(k)!r} here" for k in differ[:4])
        more = f" (and {len(differ) - 4} more)" if len(differ) > 4 else ""
        raise ConfigError(f"{saved_path}: --resume continues the run with its own config, and this "
                          f"command's differs: {shown}{more}; give the run's config, or delete "
                          "the folder to start over")
    cfg = cfg.copy()
    started = saved.get("run.git_commit")
    if started != cfg.run.git_commit:
        log.warning("%s: resuming with code %s; the run started from %s", run_dir,
                    cfg.run.git_commit, started)
    cfg.run.git_commit = started
    return cfg


def model_name(cfg: DictConfig) -> str:
    """``bga-mner``, or ``bert-crf`` when the cross-modal parts are off (``model.use_mcg=false``)."""
    return "bga-mner" if cfg.model.use_mcg else "bert-crf"


def default_run_name(cfg: DictConfig) -> str:
    """``<experiment or data set>-<data set>-<model>-seed<seed>[-<profile>]-<timestamp>``.

    The data set is named even with an experiment, since one experiment config runs on both
    Twitter sets; a timestamp keeps repeated runs apart.
    """
    parts = [cfg.run.experiment] if cfg.run.experiment else []
    parts += [str(cfg.data.name), model_name(cfg), f"seed{cfg.seed}"]
    if cfg.run.profile != "full":
        parts.append(str(cfg.run.profile))
    parts.append(time.strftime("%Y%m%d-%H%M%S"))
    return "-".join(parts)


def make_run_dir(cfg: DictConfig) -> Path:
    """Create ``paths.runs_dir/<run.name>`` (naming it first when ``run.name`` is null).

    Sets ``cfg.run.name``. A folder that already holds a ``results.json`` is never overwritten.
    A runs folder that cannot be written is :class:`NotWritableError` (``<folder>: runs folder is
    not writable``). Takes no lock: :func:`claim_run_dir` does, for the commands.
    """
    if not cfg.run.name:
        cfg.run.name = default_run_name(cfg)
    run_dir = Path(cfg.paths.runs_dir) / str(cfg.run.name)
    if (run_dir / RESULTS_FILE).exists():
        raise _finished_error(run_dir)
    return create_dir(run_dir)


def create_dir(run_dir: Path) -> Path:
    """``mkdir -p run_dir``, or :class:`NotWritableError` naming the runs folder (its parent) or
    the run folder that cannot be written."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        if err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        raise NotWritableError(f"{run_dir.parent}: runs folder is not writable") from err
    if not os.access(run_dir.parent, os.W_OK | os.X_OK):
        # an existing run folder may still be writable; a new one could not have been made
        if not os.access(run_dir, os.W_OK | os.X_OK):
            raise NotWritableError(f"{run_dir.parent}: runs folder is not writable")
    elif not os.access(run_dir, os.W_OK | os.X_OK):
        raise NotWritableError(f"{run_dir}: run folder is not writable")
    return run_dir


def save_config(cfg: DictConfig, run_dir: Path) -> Path:
    """Write the merged, resolved config as ``run_dir/config.yaml`` (atomically)."""
    return atomic_write_text(run_dir / "config.yaml", to_yaml(cfg))


def git_commit(path: str | Path | None = None) -> str | None:
    """``git rev-parse HEAD`` of the repository holding ``path`` (default: this package), with a
    ``-dirty`` suffix when tracked files differ from it; None outside a repository. Read only:
    ``git --no-optional-locks`` never takes the index lock nor rewrites the index (a plain
    ``git status`` refreshes it), so a read-only checkout, or one that another git command is
    using, is left alone."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}

    def git(*args: str) -> str:
        return subprocess.run(["git", "--no-optional-locks", *args], cwd=where, capture_output=True,
                              text=True, timeout=10, check=True, env=env).stdout.strip()

    try:
        sha = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{sha}-dirty" if sha and dirty else sha or None


# Caches that libraries write outside the run when they are imported or compile: matplotlib's font
# list and config folder (~/.cache, ~/.config; torchmetrics imports matplotlib with Lightning),
# torch.compile's inductor and Triton caches (/tmp/torchinductor_<user>, ~/.triton).
LIBRARY_CACHE_ENV = {"MPLCONFIGDIR": "matplotlib", "TORCHINDUCTOR_CACHE_DIR": "torchinductor",
                     "TRITON_CACHE_DIR": "triton"}


def library_caches(cache_dir: str | Path) -> None:
    """Point the caches that libraries write (:data:`LIBRARY_CACHE_ENV`) into ``paths.cache_dir``
    (``<cache_dir>/matplotlib``, ...), where the environment does not name them already, so that a
    run writes only where it was told (and a compiled run finds its kernels again). Call it
    before torch and Lightning are imported.

    Args:
        cache_dir: ``paths.cache_dir``.
    """
    for key, sub in LIBRARY_CACHE_ENV.items():
        if not os.environ.get(key):
            os.environ[key] = str(Path(cache_dir).absolute() / sub)


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages that decide the numbers (``TRACKED_PACKAGES``)."""
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    import torch

    versions["cuda"] = torch.version.cuda or "none"
    return versions


def build_results(cfg: DictConfig, *, best_epoch: int | None, dev: Mapping[str, Any] | None,
                  test: Mapping[str, Any], seconds_per_epoch: float | None,
                  truncated: Mapping[str, int], missing_images: Mapping[str, int | None],
                  image_counts: Mapping[str, Any], object_source: str | None = None,
                  label_versions: Mapping[str, str] | None = None) -> dict:
    """The ``results.json`` dict of docs/ARCHITECTURE.md (P/R/F1 in percent, unrounded).

    ``best_epoch``, ``dev`` and ``seconds_per_epoch`` are None (JSON null) only for the evaluation
    of a checkpoint whose training run is unknown (``bga-mner test --out``).

    Args:
        missing_images: tweets without a readable image per split (missing + unreadable files;
            None: the split was read without images).
        image_counts: the data module's ``image_counts``: per split, an ``images.ImageCounts``
            (or its ``as_dict()``) or None (read without images); recorded with missing and
            unreadable images apart, the clipped and dropped boxes, the crop files missing and
            unreadable, and the tweets with 0..K crops (``crops_per_tweet``, a list).
        object_source: where the K object crops came from (``detections`` | ``grounding`` |
            ``rcnn`` | ``none``; None: read without images).
        label_versions: each split's label version (``data.label_versions``; None: not known).
    """
    return {
        "run": str(cfg.run.name),
        "experiment": cfg.run.experiment,
        "dataset": str(cfg.data.name),
        "test_dataset": str(cfg.data.test_name or cfg.data.name),
        "model": model_name(cfg),
        "seed": int(cfg.seed),
        "profile": str(cfg.run.profile),
        "best_epoch": None if best_epoch is None else int(best_epoch),
        "dev": None if dev is None else dict(dev),
        "test": dict(test),
        "seconds_per_epoch": None if seconds_per_epoch is None else float(seconds_per_epoch),
        "truncated_tweets": {k: int(v) for k, v in truncated.items()},
        # None for a split read without images (data.use_images=false)
        "missing_images": {k: None if v is None else int(v) for k, v in missing_images.items()},
        "image_counts": {k: None if v is None else _plain_counts(v) for k, v in image_counts.items()},
        "object_source": object_source,
        "label_version": None if label_versions is None else dict(label_versions),
        "config": to_plain(cfg),
        "git_commit": cfg.run.git_commit or git_commit(),  # fit records it at the start
        "versions": package_versions(),
    }


def _plain_counts(counts: Any) -> dict[str, Any]:
    """An ``ImageCounts`` (or its ``as_dict()``) as JSON: ints, and lists of ints."""
    items = (counts if isinstance(counts, Mapping) else counts.as_dict()).items()
    return {n: [int(x) for x in c] if isinstance(c, (list, tuple)) else int(c) for n, c in items}


def write_json(path: str | Path, data: Mapping[str, Any]) -> Path:
    """Write JSON atomically (:func:`atomic_write`)."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")
