"""Throughput of one process (``bga-mner bench``).

Measures, on the device of ``trainer.accelerator``: training samples/s of BGA-MNER and of BERT-CRF
on the same batch (forward, Eqs. 10-11 loss, backward, AdamW step), image-free inference tweets/s
of both (forward + Viterbi), and the (dev) data loader's samples/s once its image cache is warm.
Warm-up steps are excluded; CUDA work is synchronised before each clock read. ``run_bench``
interleaves the two models' steps one by one (``bench_alternating``), so that on a shared machine a
load from other processes hits both alike and their ratio holds.

``compiled=True`` (``--compiled``) adds BGA-MNER compiled against eager (``bench_compiled``), their
steps interleaved in the same way, and the seconds spent compiling.

``profile=True`` (``--profile``) adds, per model, where one training step spends its work
(``profile_model``, through ``profiling.py``: time per part of the network, forward and backward;
FLOPs; random draws), and the ratios BGA-MNER / BERT-CRF of step time, FLOPs and draws.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, Callable

import lightning as L
import torch
from lightning.pytorch.utilities import move_data_to_device
from omegaconf import DictConfig

from bga_mner.build import build_datamodule, compile_network
from bga_mner.models.labels import label
from bga_mner.profiling import format_profile, profile_step, step_flops, step_random_draws, synchronize
from bga_mner.run import model_name
from bga_mner.system import MNERSystem, adamw, parameter_groups

IMAGE_KEYS = ("image", "crops", "crop_mask", "has_image")
STEPS, WARMUP = 20, 3  # timed and untimed steps per measurement (bga-mner bench --steps, --warmup)


def pick_device(accelerator: str) -> torch.device:
    """The torch device of a Lightning ``accelerator`` name (auto: CUDA when present)."""
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def _timed(fn: Callable[[], Any], steps: int, warmup: int, device: torch.device) -> float:
    """Seconds for ``steps`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    synchronize(device)
    return time.perf_counter() - start


def _autocast(cfg: DictConfig, device: torch.device) -> contextlib.AbstractContextManager:
    precision = str(cfg.trainer.precision)
    if precision.startswith("bf16"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision.startswith("16"):
        return torch.autocast(device.type, dtype=torch.float16)
    return contextlib.nullcontext()


@dataclass
class ModelSteps:
    """One model's steps on the bench batch (``prepare_model``); each sets the mode it needs."""

    train_step: Callable[[], None]  # forward, Eq. 11, backward, AdamW step
    forward_backward: Callable[[], None]  # forward, Eq. 11, backward (what ``step_flops`` counts)
    infer_step: Callable[[], None]  # image-free forward + Viterbi
    zero_grad: Callable[[], None]
    parameters: int


def prepare_model(cfg: DictConfig, batch: dict, device: torch.device) -> ModelSteps:
    """Build the model of ``cfg`` (``model.use_mcg``: BGA-MNER or BERT-CRF) and its AdamW as
    training does, and the steps the bench times on ``batch`` (on ``device``)."""
    L.seed_everything(int(cfg.seed), verbose=False)
    system = MNERSystem(cfg).to(device)
    model = compile_network(system.model, cfg)  # trainer.compile: compiled in the warm-up steps
    mixed = str(cfg.trainer.precision).endswith("-mixed")
    optimizer = adamw(parameter_groups(model, cfg.optim), float(cfg.optim.lr), fused=not mixed)  # as in training
    text_batch = {k: v for k, v in batch.items() if k not in IMAGE_KEYS}

    def forward_backward() -> None:
        system.train()
        with _autocast(cfg, device):
            out = model(batch)
            with label("CRF"):  # Eq. 10's NLL (and Eq. 11's sum of the terms)
                loss, _ = system.objective(batch, out)  # Eq. 11, as in training_step
        loss.backward()

    def train_step() -> None:
        forward_backward()
        with label("optimizer step"):
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    def infer_step() -> None:
        system.eval()
        with torch.inference_mode(), _autocast(cfg, device):
            system.decode_batch(text_batch)

    return ModelSteps(train_step, forward_backward, infer_step, lambda: optimizer.zero_grad(set_to_none=True),
                      sum(p.numel() for p in model.parameters()))


def profile_model(m: ModelSteps, device: torch.device) -> dict[str, Any]:
    """``profile`` (``profile_step`` of one training step), ``flops`` (``step_flops``) and
    ``random_draws`` (``step_random_draws``) of a model."""
    result = {"profile": profile_step(m.train_step, device), "flops": step_flops(m.forward_backward)}
    m.zero_grad()
    result["random_draws"] = step_random_draws(m.forward_backward)
    m.zero_grad()
    return result


def bench_model(cfg: DictConfig, batch: dict, device: torch.device, steps: int, warmup: int,
                profile: bool = False) -> dict:
    """Training samples/s and image-free inference tweets/s of the model of ``cfg``.

    Args:
        cfg: the config (``model.use_mcg`` picks BGA-MNER or BERT-CRF).
        batch: a training batch on ``device``.
        steps, warmup: timed and untimed steps per measurement.
        profile: also ``profile`` (``profile_step`` of one step) and ``flops`` (``step_flops``).
    """
    m = prepare_model(cfg, batch, device)
    size = batch["input_ids"].shape[0]
    train_s = _timed(m.train_step, steps, warmup, device)
    result = profile_model(m, device) if profile else {}
    infer_s = _timed(m.infer_step, steps, warmup, device)
    return {"train_samples_per_s": steps * size / train_s,
            "inference_tweets_per_s": steps * size / infer_s,
            "parameters": m.parameters, **result}


def bench_alternating(models: dict[str, ModelSteps], size: int, steps: int, warmup: int,
                      device: torch.device) -> dict[str, dict[str, float]]:
    """``bench_model``'s rates for several models, their steps interleaved one by one (after
    ``warmup`` untimed steps each), so that a load from other processes hits all models alike.

    Args:
        models: name -> ``prepare_model``; size: the batch size; steps, warmup: per model.
    """
    rates: dict[str, dict[str, float]] = {name: {} for name in models}
    for kind, key in (("train_step", "train_samples_per_s"), ("infer_step", "inference_tweets_per_s")):
        for m in models.values():
            for _ in range(warmup):
                getattr(m, kind)()
        seconds = dict.fromkeys(models, 0.0)
        for _ in range(steps):
            for name, m in models.items():
                seconds[name] += _timed(getattr(m, kind), 1, 0, device)
        for name in models:
            rates[name][key] = steps * size / seconds[name]
    return rates


def compile_seconds() -> float | None:
    """Seconds spent compiling so far in this process (dynamo + AOT + inductor, forward and
    backward), from torch's own counters; None where this torch has none."""
    try:
        from torch._dynamo.utils import calculate_time_spent

        return float(calculate_time_spent().get("total_wall_time", 0.0))
    except Exception:  # a private API: absent or changed in another torch
        return None


def bench_compiled(cfg: DictConfig, batch: dict, device: torch.device, steps: int, warmup: int) -> dict:
    """BGA-MNER compiled (``trainer.compile``) against eager on the same batch, their steps
    interleaved (``bench_alternating``); the compiling happens in the warm-up steps (at least one).

    Args:
        cfg: the config (``model.use_mcg`` and ``trainer.compile`` are set here).
        batch: a training batch on ``device``; steps, warmup: per measurement.

    Returns:
        ``{"eager": rates, "compiled": rates, "train_ratio", "inference_ratio", "compile_seconds"}``:
        the rates as in ``bench_alternating``, the ratios compiled / eager, and the seconds spent
        compiling the training and the image-free graphs (None where torch has no counter).
    """
    models = {}
    for mode in ("eager", "compiled"):
        mode_cfg = cfg.copy()
        mode_cfg.model.use_mcg = True
        mode_cfg.trainer.compile = mode == "compiled"
        models[mode] = prepare_model(mode_cfg, batch, device)
    before = compile_seconds()
    rates = bench_alternating(models, int(batch["input_ids"].shape[0]), steps, max(warmup, 1), device)
    after = compile_seconds()
    eager, compiled = rates["eager"], rates["compiled"]
    return {"eager": eager, "compiled": compiled,
            "train_ratio": compiled["train_samples_per_s"] / eager["train_samples_per_s"],
            "inference_ratio": compiled["inference_tweets_per_s"] / eager["inference_tweets_per_s"],
            "compile_seconds": None if before is None or after is None else after - before}


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


def run_bench(cfg: DictConfig, steps: int = STEPS, warmup: int = WARMUP, profile: bool = False,
              compiled: bool = False) -> dict:
    """All measurements as a dict (see the module docstring).

    Args:
        cfg: the config; both models are measured (``model.use_mcg`` true and false).
        steps, warmup: timed and untimed steps per measurement.
        profile: add the per-part profile and the FLOPs of each model, and their ratios.
        compiled: add ``bench_compiled`` (BGA-MNER compiled against eager) as ``compiled``.
    """
    device = pick_device(str(cfg.trainer.accelerator))
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    datamodule = build_datamodule(cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    batch = move_data_to_device(next(iter(loader)), device)
    out: dict[str, Any] = {"device": str(torch.cuda.get_device_name(device) if device.type == "cuda"
                                         else "cpu"),
                           "threads": torch.get_num_threads(),
                           "batch_size": int(batch["input_ids"].shape[0]),
                           "tokens": int(batch["input_ids"].shape[1]),
                           "steps": steps, "warmup": warmup, "precision": str(cfg.trainer.precision),
                           "models": {}}
    models = {}
    for use_mcg in (True, False):
        model_cfg = cfg.copy()
        model_cfg.model.use_mcg = use_mcg
        models[model_name(model_cfg)] = prepare_model(model_cfg, batch, device)
    rates = bench_alternating(models, out["batch_size"], steps, warmup, device)
    for name, m in models.items():
        out["models"][name] = {**rates[name], "parameters": m.parameters,
                               **(profile_model(m, device) if profile else {})}
    bga, base = out["models"]["bga-mner"], out["models"]["bert-crf"]
    out["train_time_ratio"] = base["train_samples_per_s"] / bga["train_samples_per_s"]  # BGA / BERT-CRF
    out["inference_speed_ratio"] = bga["inference_tweets_per_s"] / base["inference_tweets_per_s"]
    if profile:
        out["flop_ratio"] = bga["flops"] / base["flops"]
        out["random_draw_ratio"] = bga["random_draws"] / max(base["random_draws"], 1)
    if compiled:
        out["compiled"] = bench_compiled(cfg, batch, device, steps, warmup)
    out["loader_samples_per_s"] = bench_loader(datamodule.val_dataloader(), steps)
    return out


def format_table(result: dict) -> str:
    """The measurements as markdown tables."""
    lines = [f"device {result['device']} ({result.get('threads', '?')} threads), batch {result['batch_size']} "
             f"x {result['tokens']} tokens, {result['steps']} timed steps after {result['warmup']} warm-up, "
             f"{result['precision']}",
             "", "| model | params | train samples/s | inference tweets/s (image-free) |",
             "|---|---:|---:|---:|"]
    for name, m in result["models"].items():
        lines.append(f"| {name} | {m['parameters'] / 1e6:.1f}M | {m['train_samples_per_s']:.1f} | "
                     f"{m['inference_tweets_per_s']:.1f} |")
    lines += ["", f"BGA-MNER / BERT-CRF: training step time {result['train_time_ratio']:.2f}x"
              + (f", FLOPs {result['flop_ratio']:.2f}x, random draws {result['random_draw_ratio']:.2f}x"
                 if "flop_ratio" in result else "")
              + f"; image-free inference speed {result['inference_speed_ratio']:.2f}x", ""]
    for name, m in result["models"].items():
        if "profile" in m:
            lines += format_profile(name, m)
    if "compiled" in result:
        c = result["compiled"]
        seconds = "?" if c["compile_seconds"] is None else f"{c['compile_seconds']:.1f}"
        lines += [f"BGA-MNER compiled / eager (steps interleaved): training {c['train_ratio']:.2f}x "
                  f"({c['compiled']['train_samples_per_s']:.1f} vs {c['eager']['train_samples_per_s']:.1f} "
                  f"samples/s), image-free inference {c['inference_ratio']:.2f}x "
                  f"({c['compiled']['inference_tweets_per_s']:.1f} vs {c['eager']['inference_tweets_per_s']:.1f} "
                  f"tweets/s); {seconds} s compiling", ""]
    lines += [f"data loader (warm image cache): {result['loader_samples_per_s']:.1f} samples/s"]
    return "\n".join(lines)
