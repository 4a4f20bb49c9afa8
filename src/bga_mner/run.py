"""The run folder: its name, seeding, provenance (git commit, package versions) and results JSON.

One folder per run under ``paths.runs_dir`` (layout in docs/ARCHITECTURE.md)::

    runs/<run name>/config.yaml, results.json, checkpoints/, predictions/, csv/, wandb/
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf

from bga_mner.config import to_yaml

# Distributions whose versions every results.json records (import name differs for some).
TRACKED_PACKAGES: tuple[str, ...] = ("torch", "lightning", "transformers", "timm", "pytorch-crf",
                                     "torchmetrics", "omegaconf", "wandb", "bga-mner")
RESULTS_FILE = "results.json"


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
    """
    if not cfg.run.name:
        cfg.run.name = default_run_name(cfg)
    run_dir = Path(cfg.paths.runs_dir) / str(cfg.run.name)
    if (run_dir / RESULTS_FILE).exists():
        raise FileExistsError(f"{run_dir}: already holds a finished run ({RESULTS_FILE}); "
                              "choose another run.name or delete the folder")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def save_config(cfg: DictConfig, run_dir: Path) -> Path:
    """Write the merged, resolved config as ``run_dir/config.yaml``."""
    path = run_dir / "config.yaml"
    path.write_text(to_yaml(cfg), encoding="utf-8")
    return path


def git_commit(path: str | Path | None = None) -> str | None:
    """``git rev-parse HEAD`` of the repository holding ``path`` (default: this package), with a
    ``-dirty`` suffix when tracked files differ from it; None outside a repository."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=where, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()

    try:
        sha = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{sha}-dirty" if sha and dirty else sha or None


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
                  truncated: Mapping[str, int], missing_images: Mapping[str, int | None]) -> dict:
    """The ``results.json`` dict of docs/ARCHITECTURE.md (P/R/F1 in percent, unrounded).

    ``best_epoch``, ``dev`` and ``seconds_per_epoch`` are None (JSON null) only for the evaluation
    of a checkpoint whose training run is unknown (``bga-mner test --out``).
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
        "config": OmegaConf.to_container(cfg, resolve=True),
        "git_commit": cfg.run.get("git_commit") or git_commit(),  # fit records it at the start
        "versions": package_versions(),
    }


def write_json(path: str | Path, data: Mapping[str, Any]) -> Path:
    """Write JSON atomically (a temporary file renamed into place)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
