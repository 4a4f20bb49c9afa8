"""Loading a finished run for analysis: its network (visual branch built) and its test data with images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from torch import nn


@dataclass
class LoadedRun:
    """A finished run ready for analysis: its system (eval mode, visual branch built) and data."""

    run_dir: Path
    config: DictConfig
    system: Any          # bga_mner.system.MNERSystem
    datamodule: Any      # bga_mner.data.datamodule.MNERDataModule (set up, images on)

    @property
    def model(self) -> nn.Module:
        return self.system.model


def load_run(run_dir: str | Path, checkpoint: str = "checkpoints/best.ckpt") -> LoadedRun:
    """Rebuild a run's network from its Lightning checkpoint and its data module (with images).

    Args:
        run_dir: the run folder (docs/ARCHITECTURE.md).
        checkpoint: the checkpoint inside it (the visual branch needs ``best.ckpt``).
    """
    from bga_mner.build import build_datamodule, decide_images, reads_images
    from bga_mner.inference import build_system, read_checkpoint

    run_dir = Path(run_dir)
    ckpt = read_checkpoint(run_dir / checkpoint)
    system = build_system(ckpt, build_visual=reads_images(ckpt.config, "analysis"))
    cfg = decide_images(system.cfg, "analysis")
    cfg.data.modality_missing = False  # the analysis needs the real test images
    datamodule = build_datamodule(cfg)
    datamodule.setup("test")
    return LoadedRun(run_dir, cfg, system, datamodule)
