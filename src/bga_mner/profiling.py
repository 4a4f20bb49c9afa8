"""Where one training step spends its work (``bga-mner bench --profile``): time per part of the
network, FLOPs and random draws.

* ``profile_step``: milliseconds per ``bga:`` profiler label (``models/labels.py``), forward and
  backward apart, and the share of each part spent in matrix products;
* ``step_flops``: FLOPs of matrix products and attention (``FlopCounterMode``), forward and backward;
* ``step_random_draws``: random numbers drawn (dropout masks, Gumbel noise), which no FLOP count sees.

Each takes a step as a callable; ``benchmark.profile_model`` applies them to the bench's models, and
``format_profile`` renders one model's profile as markdown. Imports nothing of the package but the
label names.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch.profiler import ProfilerActivity
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from bga_mner.models.labels import PREFIX

BACKWARD_ROOT = "autograd::engine::evaluate_function"  # the profiler's name of one backward node
OTHER = "other"  # ops outside every label (Python glue, mask arithmetic, autograd bookkeeping)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA; nothing to wait for on the CPU), before a clock read."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# FlopCounterMode knows the CUDA attention kernels but not the CPU one that
# F.scaled_dot_product_attention dispatches to: count it with the same formulas (2 matmuls).
_CPU_SDPA_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu:
        lambda q, k, v, *args, out_shape=None, **kwargs: sdpa_flop_count(q, k, v),
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward:
        lambda g, q, k, v, *args, out_shape=None, **kwargs: sdpa_backward_flop_count(g, q, k, v),
}


def step_flops(step: Callable[[], None]) -> int:
    """FLOPs of one call of ``step`` (matrix products and attention, forward and backward; the
    element-wise work and the optimizer's update are not counted).

    Args:
        step: one training step.
    """
    with FlopCounterMode(display=False, custom_mapping=_CPU_SDPA_FLOPS) as counter:
        step()
    return int(counter.get_total_flops())


# the aten ops whose FLOPs step_flops counts: matrix products, the CPU attention kernel and the
# ViT's patch convolution (profile_step's "matrix products")
MATMUL_OPS = frozenset({"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm",
                        "aten::_scaled_dot_product_flash_attention_for_cpu",
                        "aten::_scaled_dot_product_flash_attention_for_cpu_backward",
                        "aten::mkldnn_convolution", "aten::convolution_backward"})
# the aten ops that draw random numbers (one per output element): dropout masks, Gumbel noise
RANDOM_OPS = frozenset({"bernoulli", "bernoulli_", "native_dropout", "uniform_", "normal_", "exponential_",
                        "random_", "rand", "rand_like", "randn", "randn_like", "randint", "randint_like"})


class _CountDraws(TorchDispatchMode):
    """Counts the elements written by ``RANDOM_OPS`` while active (``draws``)."""

    def __init__(self) -> None:
        super().__init__()
        self.draws = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.__name__.split(".")[0] in RANDOM_OPS:
            self.draws += (out[0] if isinstance(out, tuple) else out).numel()
        return out


def step_random_draws(step: Callable[[], None]) -> int:
    """Random numbers drawn by one call of ``step`` (dropout masks, the samplers' Gumbel noise):
    element-wise work that no FLOP count sees. On a CPU aten draws them one at a time (5-7 ns each
    on the 2-core machine of the README's Speed section, some 400-600 matrix-product FLOPs there).

    Args:
        step: one training step.
    """
    with _CountDraws() as counter:
        step()
    return counter.draws


def _label_of(event: Any) -> str | None:
    """The innermost ``bga:`` label around a profiler event (None outside every label)."""
    while event is not None:
        if event.name.startswith(PREFIX):
            return event.name[len(PREFIX):]
        event = event.cpu_parent
    return None


def _backward_node(event: Any) -> Any:
    """The backward node (``evaluate_function``) an event runs in, or None in the forward pass."""
    while event is not None:
        if event.name.startswith(BACKWARD_ROOT):
            return event
        event = event.cpu_parent
    return None


def profile_step(step: Callable[[], None], device: torch.device) -> dict[str, dict[str, float]]:
    """Milliseconds of one call of ``step`` per ``bga:`` label, forward and backward apart.

    Each op's own time (self time: CPU time on the CPU, kernel time on CUDA) is charged to its
    innermost label; an op of the backward pass to the label of the forward op whose gradient it
    computes (the autograd sequence number links them); ops outside every label to ``other``.

    Args:
        step: one training step (forward, loss, backward, optimizer step under labels).
        device: where it runs.

    Returns:
        ``{part: {"forward_ms", "backward_ms", "total_ms", "matmul_ms"}}``; ``matmul_ms`` is the
        part's time in matrix products (``MATMUL_OPS``, forward and backward), the work
        ``step_flops`` counts; the rest is element-wise work and overhead.
    """
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.profiler.profile(activities=activities) as prof:
        step()
        synchronize(device)
    events = prof.events()
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    forward_label: dict[int, str] = {}  # autograd sequence number -> label of the forward op
    for e in events:
        if e.sequence_nr >= 0 and _backward_node(e) is None:
            forward_label.setdefault(e.sequence_nr, _label_of(e) or OTHER)
    parts: dict[str, dict[str, float]] = {}
    for e in events:
        node = _backward_node(e)
        if node is None:
            part, phase = _label_of(e) or OTHER, "forward_ms"
        else:
            part, phase = forward_label.get(node.sequence_nr, OTHER), "backward_ms"
        row = parts.setdefault(part, {"forward_ms": 0.0, "backward_ms": 0.0, "matmul_ms": 0.0})
        row[phase] += getattr(e, key) / 1e3  # us -> ms
        if e.name in MATMUL_OPS:
            row["matmul_ms"] += getattr(e, key) / 1e3
    for row in parts.values():
        row["total_ms"] = row["forward_ms"] + row["backward_ms"]
    return dict(sorted(parts.items(), key=lambda kv: -kv[1]["total_ms"]))


def format_profile(name: str, m: dict) -> list[str]:
    """One model's ``profile_step`` as markdown lines (parts by time, with their share)."""
    total = sum(r["total_ms"] for r in m["profile"].values())
    matmul = sum(r["matmul_ms"] for r in m["profile"].values())
    lines = [f"{name}: one training step, {total:.0f} ms profiled, {m['flops'] / 1e9:.1f} GFLOP, "
             f"{m['random_draws'] / 1e6:.1f}M random draws; matrix products {matmul:.0f} ms "
             f"({m['flops'] / 1e6 / max(matmul, 1e-9):.1f} GFLOP/s), the rest {total - matmul:.0f} ms",
             "", "| part | forward ms | backward ms | total ms | of which matrix products ms | share |",
             "|---|---:|---:|---:|---:|---:|"]
    for part, r in m["profile"].items():
        lines.append(f"| {part} | {r['forward_ms']:.1f} | {r['backward_ms']:.1f} | {r['total_ms']:.1f} | "
                     f"{r['matmul_ms']:.1f} | {100 * r['total_ms'] / total:.1f}% |")
    return lines + [""]
