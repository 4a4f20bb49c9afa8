"""``bga-mner bench --profile``: time per part of a training step (forward and backward) and FLOPs.

Structure only: which parts appear and that backward time is charged to the part whose forward
created it. No timing is asserted.
"""

from __future__ import annotations

import contextlib
import io
import json

import torch

from bga_mner.benchmark import format_table
from bga_mner.cli import main
from bga_mner.models.labels import label
from bga_mner.profiling import profile_step, step_flops, step_random_draws

BGA_PARTS = {"text layers", "visual embedding", "visual blocks", "samplers", "generator precompute",
             "t2v recon", "v2t recon", "t2v cycle", "v2t cycle", "generation losses", "hybrid extra keys",
             "CRF", "optimizer step"}


def test_backward_time_is_charged_to_the_part_that_ran_forward():
    torch.manual_seed(0)
    a, b = torch.nn.Linear(64, 64), torch.nn.Linear(64, 8)
    x = torch.randn(32, 64)

    def step() -> None:
        with label("a"):
            h = a(x).relu()
        with label("b"):
            y = b(h)
        y.square().sum().backward()

    parts = profile_step(step, torch.device("cpu"))
    assert {"a", "b"} <= set(parts) <= {"a", "b", "other"}
    for name in ("a", "b"):  # each part's own matmuls, forward and backward
        assert parts[name]["forward_ms"] > 0 and parts[name]["backward_ms"] > 0
        assert parts[name]["total_ms"] == parts[name]["forward_ms"] + parts[name]["backward_ms"]
        assert 0 < parts[name]["matmul_ms"] < parts[name]["total_ms"]  # addmm/mm, and the rest
    assert parts.get("other", {"matmul_ms": 0.0})["matmul_ms"] == 0.0
    assert list(parts) == sorted(parts, key=lambda k: -parts[k]["total_ms"])  # largest first
    # matrix products of 2 * rows * in * out FLOPs: a forward and weight gradient (x needs no
    # gradient), b forward, weight gradient and input gradient
    assert step_flops(step) == 2 * 2 * 32 * 64 * 64 + 3 * 2 * 32 * 64 * 8


def test_random_draws_count_every_drawn_element():
    x = torch.ones(4, 5)

    def step() -> None:
        torch.nn.functional.dropout(x, 0.1, training=True)  # 20 draws
        torch.rand(3)  # 3
        torch.empty(2, 2).exponential_()  # 4 (the samplers' Gumbel noise)
        torch.nn.functional.dropout(x, 0.1, training=False)  # none
        (x @ x.T).relu()  # none

    assert step_random_draws(step) == 27


def test_bench_profile_lists_the_parts_and_the_flop_ratio(smoke_cache):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["bench", "--steps", "1", "--warmup", "0", "--json", "--profile", "run.profile=smoke",
                     "data.synthetic.train=32", "data.synthetic.valid=16", "data.synthetic.test=16",
                     "data.batch_size=8", f"paths.cache_dir={smoke_cache}"]) == 0
    result = json.loads(out.getvalue())
    bga, base = result["models"]["bga-mner"], result["models"]["bert-crf"]
    assert BGA_PARTS <= set(bga["profile"]) <= BGA_PARTS | {"other"}
    assert {"text layers", "CRF", "optimizer step"} <= set(base["profile"]) <= {"text layers", "CRF",
                                                                               "optimizer step", "other"}
    for part in ("t2v recon", "v2t recon", "t2v cycle", "v2t cycle", "text layers"):
        assert bga["profile"][part]["backward_ms"] > 0, part  # backward ops found their forward's label
    assert bga["flops"] > base["flops"] > 0 and result["flop_ratio"] == bga["flops"] / base["flops"]
    assert result["train_time_ratio"] > 0 and result["inference_speed_ratio"] > 0
    assert bga["random_draws"] > base["random_draws"] > 0  # dropout in both, Gumbel noise in BGA-MNER
    assert result["random_draw_ratio"] == bga["random_draws"] / base["random_draws"]
    table = format_table(result)
    assert "FLOPs" in table and "| t2v cycle |" in table and "| optimizer step |" in table
