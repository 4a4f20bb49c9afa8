"""W&B logs offline without writing to the console: no banner, no run history or summary."""

from __future__ import annotations

from pathlib import Path

import pytest

from bga_mner.build import make_loggers, wandb_settings
from bga_mner.config import load_config


def test_wandb_run_prints_nothing(tmp_path: Path, capfd: pytest.CaptureFixture,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from lightning.pytorch.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_SILENT", raising=False)
    cfg = load_config(None, ["run.profile=smoke", "run.name=quiet", "logging.wandb=true"])
    (logger,) = [lg for lg in make_loggers(cfg, tmp_path) if isinstance(lg, WandbLogger)]
    capfd.readouterr()
    run = logger.experiment  # wandb.init
    for step in range(3):
        logger.log_metrics({"val/f1": float(step)}, step=step)
    run.summary["test/f1"] = 1.0
    run.finish()
    out, err = capfd.readouterr()
    assert "wandb:" not in out + err, out + err
    assert list(tmp_path.glob("wandb/offline-run-*"))  # it did log


def test_wandb_silent_false_brings_wandb_messages_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_SILENT", "false")
    assert not wandb_settings().silent
    monkeypatch.delenv("WANDB_SILENT")
    assert wandb_settings().silent and wandb_settings().quiet
