"""Configuration: one merge of the base config, an experiment file, a profile and a dotlist.

Order (later wins): ``conf/base.yaml`` -> experiment ``config.yaml`` -> ``conf/profiles/<profile>.yaml``
-> ``key=value`` overrides. The profile comes after the experiment so that ``PROFILE=smoke`` swaps
data set and backbones for tiny ones while keeping the experiment's switches (ablations etc.).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig, OmegaConf

CONF_DIR = Path(__file__).parent / "conf"
PROFILES = ("full", "smoke")


def load_config(config_file: str | Path | None = None, overrides: Sequence[str] = (),
                profile: str | None = None) -> DictConfig:
    """Merge base, experiment, profile and dotlist overrides into one config.

    Args:
        config_file: an experiment ``config.yaml`` of overrides (or a full merged config saved by a run).
        overrides: ``key=value`` strings (OmegaConf dotlist), applied last.
        profile: ``full`` or ``smoke``; default: ``run.profile`` after the other merges.
    """
    cfg = OmegaConf.load(CONF_DIR / "base.yaml")
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: config file not found")
        cfg = OmegaConf.merge(cfg, OmegaConf.load(path))
        if cfg.run.experiment is None and path.name == "config.yaml":
            cfg.run.experiment = path.parent.name
    dotlist = OmegaConf.from_dotlist(list(overrides))
    if profile is None:
        profile = OmegaConf.merge(cfg, dotlist).run.profile
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {PROFILES}")
    if profile != "full":
        cfg = OmegaConf.merge(cfg, OmegaConf.load(CONF_DIR / "profiles" / f"{profile}.yaml"))
    cfg = OmegaConf.merge(cfg, dotlist)
    cfg.run.profile = profile
    return cfg


def to_yaml(cfg: DictConfig) -> str:
    """The resolved config as YAML (what each run saves beside its results)."""
    return OmegaConf.to_yaml(cfg, resolve=True)
