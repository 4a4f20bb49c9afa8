"""Shared pytest fixtures."""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

# Lightning gives its loggers a handler on the sys.stderr of the moment it is first imported. Tagging
# does not import it (bga-mner predict starts without it), so the first test to import it could be
# one whose stderr capsys replaces and then closes: import it here, on the session's stderr.
import lightning  # noqa: E402,F401

# A fit in seconds on a CPU: smoke profile (tiny models), a small synthetic set, two short epochs.
SMOKE_FIT = ("run.profile=smoke", "data.synthetic.train=32", "data.synthetic.valid=16",
             "data.synthetic.test=16", "trainer.max_epochs=2", "trainer.limit_train_batches=2",
             "trainer.log_every_n_steps=1", "trainer.enable_model_summary=false")


def error_line(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    """Run the command line in-process; assert exit status 2, no traceback, and ONE error line
    ``bga-mner <command>: error: ...``; return it."""
    from bga_mner.cli import main

    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith(f"bga-mner {argv[0]}: error: ")]
    assert len(lines) == 1 and err.rstrip().endswith(lines[0]), err
    return lines[0]


@pytest.fixture
def one_thread():
    """One torch thread for the test: tiny models on a shared 2-core machine run fastest so, and
    single-threaded numbers are bit-for-bit repeatable."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def smoke_cache(tmp_path_factory) -> Path:
    """``paths.cache_dir`` shared by the session's smoke fits (synthetic set + image cache)."""
    return tmp_path_factory.mktemp("smoke-cache")


def synthetic_split(run_dir: Path, split: str = "test") -> Path:
    """The synthetic set's CoNLL file of ``split`` that the run at ``run_dir`` read (its config's
    ``data.synthetic``: the session's cache holds sets of other sizes too)."""
    from bga_mner.config import from_container, section
    from bga_mner.data.synthetic import digest

    cfg = from_container(json.loads((run_dir / "results.json").read_text(encoding="utf-8"))["config"])
    return Path(cfg.paths.cache_dir) / f"synthetic-{digest(section(cfg, 'data').synthetic)}" / f"{split}.txt"


def as_experiment(run_dir: Path, experiment: str) -> None:
    """Record a run folder's ``results.json`` as a run of ``experiment`` (the registry's key, which
    places it in the report's tables), as if made with ``--config experiments/<experiment>/config.yaml``."""
    path = run_dir / "results.json"
    path.write_text(json.dumps(json.loads(path.read_text(encoding="utf-8")) | {"experiment": experiment}),
                    encoding="utf-8")


def fit_cli(runs_dir: Path, cache_dir: Path, *overrides: str) -> str:
    """``bga-mner fit`` on :data:`SMOKE_FIT` in-process; returns what it printed."""
    from bga_mner.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["fit", *SMOKE_FIT, f"paths.runs_dir={runs_dir}",
                     f"paths.cache_dir={cache_dir}", *overrides]) == 0
    return out.getvalue()


@pytest.fixture(scope="session")
def smoke_fit(smoke_cache):
    """``smoke_fit(runs_dir, *overrides) -> stdout``: :func:`fit_cli` with the shared cache."""
    return lambda runs_dir, *overrides: fit_cli(runs_dir, smoke_cache, *overrides)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, smoke_cache) -> tuple[Path, str]:
    """One finished smoke fit with W&B (offline) on: its run folder and its stdout."""
    runs = tmp_path_factory.mktemp("runs")
    stdout = fit_cli(runs, smoke_cache, "run.name=smoke", "logging.wandb=true")
    return runs / "smoke", stdout
