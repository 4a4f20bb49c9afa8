"""The devices a command names, checked before it creates anything: a config's
``trainer.accelerator`` / ``trainer.devices`` (:func:`check_devices`) and a ``--device`` option
(:func:`torch_device`). A device this machine does not have is one line naming the key or option
(``errors.UserError``), not Lightning's or torch's traceback after the run folder was made.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig, OmegaConf

from bga_mner.errors import UserError


def check_devices(cfg: DictConfig) -> None:
    """Refuse a ``trainer.accelerator`` that Lightning does not know or this machine does not have,
    and more CUDA ``trainer.devices`` than it has, in one line, before a command creates anything.

    Args:
        cfg: the merged config (``trainer.accelerator``, ``trainer.devices``).

    Raises:
        UserError: naming the key, the value and what this machine has.
    """
    from lightning.pytorch.accelerators import AcceleratorRegistry

    accelerator, devices = str(cfg.trainer.accelerator), cfg.trainer.devices
    known = sorted({"auto", "gpu", *AcceleratorRegistry.available_accelerators()})
    if accelerator not in known:
        raise UserError(f"trainer.accelerator={accelerator!r}: must be one of {', '.join(known)}")
    name = accelerator
    if accelerator == "gpu":  # Lightning's word for CUDA, or MPS on a Mac
        name = "mps" if torch.backends.mps.is_available() else "cuda"
    if name != "auto" and not AcceleratorRegistry.get(name).is_available():
        raise UserError(f"trainer.accelerator={accelerator}: this machine has no {name} device "
                        "(trainer.accelerator=cpu or auto runs on what it has)")
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        count = torch.cuda.device_count()
        wanted = list(devices) if isinstance(devices, (list, tuple)) or OmegaConf.is_list(devices) \
            else None
        if wanted is not None and any(int(i) >= count for i in wanted):
            raise UserError(f"trainer.devices={wanted}: this machine has {count} CUDA device(s), "
                            f"ids 0-{count - 1}")
        if isinstance(devices, int) and not isinstance(devices, bool) and devices > count:
            raise UserError(f"trainer.devices={devices}: this machine has {count} CUDA device(s)")


def torch_device(name: str, what: str = "--device") -> torch.device:
    """The torch device named ``name`` (``cpu``, ``cuda``, ``cuda:1``, ``mps``), checked to exist here.

    Args:
        name: the device string.
        what: how the user gave it, for the message (an option or a key).

    Raises:
        UserError: not a device name, or no such device on this machine (one line).
    """
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UserError(f"{what} {name}: not a torch device (e.g. cpu, cuda, cuda:1, mps)") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UserError(f"{what} {name}: this machine has no CUDA device (use --device cpu)")
        if (device.index or 0) >= count:
            raise UserError(f"{what} {name}: this machine has {count} CUDA device(s), cuda:0-{count - 1}")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"{what} {name}: this machine has no MPS device (use --device cpu)")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"{what} {name}: not a device this suite runs on (cpu, cuda, mps)")
    return device
