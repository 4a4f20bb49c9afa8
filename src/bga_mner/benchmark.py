"""Throughput of one process (``bga-mner bench``).

Measures, on the device of ``trainer.accelerator``: training samples/s of BGA-MNER and of BERT-CRF
on the same batch (forward, Eqs. 10-11 loss, backward, AdamW step), image-free inference tweets/s
of both (forward + Viterbi), and the (dev) data loader's samples/s once its image cache is warm.
Warm-up steps are excluded; CUDA work is synchronised before each clock read.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable

import lightning as L
import torch
from lightning.pytorch.utilities import move_data_to_device
from omegaconf import DictConfig

from bga_mner.build import build_datamodule
from bga_mner.run import model_name
from bga_mner.system import MNERSystem, parameter_groups

IMAGE_KEYS = ("image", "crops", "crop_mask", "has_image")


def pick_device(accelerator: str) -> torch.device:
    """The torch device of a Lightning ``accelerator`` name (auto: CUDA when present)."""
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], steps: int, warmup: int, device: torch.device) -> float:
    """Seconds for ``steps`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    return time.perf_counter() - start


def _autocast(cfg: DictConfig, device: torch.device) -> contextlib.AbstractContextManager:
    precision = str(cfg.trainer.precision)
    if precision.startswith("bf16"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision.startswith("16"):
        return torch.autocast(device.type, dtype=torch.float16)
    return contextlib.nullcontext()


def bench_model(cfg: DictConfig, batch: dict, device: torch.device, steps: int, warmup: int) -> dict:
    """Training samples/s and image-free inference tweets/s of the model of ``cfg``."""
    L.seed_everything(int(cfg.seed), verbose=False)
    system = MNERSystem(cfg).to(device)
    model = system.model
    optimizer = torch.optim.AdamW(parameter_groups(model, cfg.optim), lr=float(cfg.optim.lr))
    size = batch["input_ids"].shape[0]

    def train_step() -> None:
        with _autocast(cfg, device):
            loss, _ = system.objective(batch)  # Eq. 11, as in training_step
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    system.train()
    train_s = _timed(train_step, steps, warmup, device)
    text_batch = {k: v for k, v in batch.items() if k not in IMAGE_KEYS}

    def infer_step() -> None:
        with torch.inference_mode(), _autocast(cfg, device):
            system.decode_batch(text_batch)

    system.eval()
    infer_s = _timed(infer_step, steps, warmup, device)
    return {"train_samples_per_s": steps * size / train_s,
            "inference_tweets_per_s": steps * size / infer_s,
            "parameters": sum(p.numel() for p in model.parameters())}


def bench_loader(loader: Any, steps: int) -> float:
    """Samples/s of the first ``steps`` batches of an unshuffled loader, read a second time so
    that their images come from the cache written by the first read."""
    def read() -> int:
        n = 0
        for i, batch in enumerate(loader):
            if i == steps:
                break
            n += batch["input_ids"].shape[0]
        return n

    read()  # decodes the images and writes the cache
    start = time.perf_counter()
    n = read()
    return n / (time.perf_counter() - start)


def run_bench(cfg: DictConfig, steps: int = 20, warmup: int = 3) -> dict:
    """All measurements as a dict (see the module docstring)."""
    device = pick_device(str(cfg.trainer.accelerator))
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    datamodule = build_datamodule(cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    batch = move_data_to_device(next(iter(loader)), device)
    out: dict[str, Any] = {"device": str(torch.cuda.get_device_name(device) if device.type == "cuda"
                                         else "cpu"),
                           "batch_size": int(batch["input_ids"].shape[0]),
                           "tokens": int(batch["input_ids"].shape[1]),
                           "steps": steps, "warmup": warmup, "precision": str(cfg.trainer.precision),
                           "models": {}}
    for use_mcg in (True, False):
        model_cfg = cfg.copy()
        model_cfg.model.use_mcg = use_mcg
        out["models"][model_name(model_cfg)] = bench_model(model_cfg, batch, device, steps, warmup)
    out["loader_samples_per_s"] = bench_loader(datamodule.val_dataloader(), steps)
    return out


def format_table(result: dict) -> str:
    """The measurements as a markdown table."""
    lines = [f"device {result['device']}, batch {result['batch_size']} x {result['tokens']} tokens, "
             f"{result['steps']} timed steps after {result['warmup']} warm-up, {result['precision']}",
             "", "| model | params | train samples/s | inference tweets/s (image-free) |",
             "|---|---:|---:|---:|"]
    for name, m in result["models"].items():
        lines.append(f"| {name} | {m['parameters'] / 1e6:.1f}M | {m['train_samples_per_s']:.1f} | "
                     f"{m['inference_tweets_per_s']:.1f} |")
    lines += ["", f"data loader (warm image cache): {result['loader_samples_per_s']:.1f} samples/s"]
    return "\n".join(lines)


