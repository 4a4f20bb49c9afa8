"""tools/scs_keep.py: what the samplers keep in training and at evaluation, on a smoke run; its argmax
rule is the evaluation rule up to d6a749f."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from bga_mner.models.sampler import ContextSampler

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("scs_keep", ROOT / "tools" / "scs_keep.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_argmax_rule_keeps_every_unit_of_probability_at_least_one_half(tool):
    """Samplers that give every unit p_keep near 0.7 (or 0.3): the argmax keeps all of them (one per
    row), the rho share 70% of them; the rule is restored on leaving."""
    g = torch.Generator().manual_seed(0)
    valid = torch.ones(2, 50, dtype=torch.bool)
    s = ContextSampler(4, keep_ratio=0.7).eval()
    for p_keep, argmax_kept in ((0.7, 100), (0.3, 2)):
        p = p_keep + 0.05 * torch.rand(2, 50, generator=g)
        logits = torch.stack([p, 1 - p], -1).log()
        with tool.argmax_rule():
            assert s(torch.zeros(2, 50, 4), valid.float(), valid, logits=logits).sum() == argmax_kept
        assert s(torch.zeros(2, 50, 4), valid.float(), valid, logits=logits).sum() == 70


def test_report_of_a_smoke_run(tool, smoke_run, one_thread):
    from bga_mner.analysis import collect_masks, keep_rates, load_run

    run_dir, _ = smoke_run
    run = load_run(run_dir)
    stats = tool.keep_statistics(run, draws=2)
    rates = keep_rates(collect_masks(run.model, run.datamodule.test_dataloader(), pixels=0))
    N = run.model.num_bga_layers
    assert [len(stats[b]) for b in ("text", "visual")] == [N, N]
    for l in range(N):  # evaluation: what the analysis reads for Fig. 4
        assert stats["text"][l]["kept"] == pytest.approx(rates.text[l])
        assert stats["visual"][l]["kept"] == pytest.approx(rates.visual[l])
        for b in ("text", "visual"):
            s = stats[b][l]
            assert 0 < s["drawn"] < 1 and 0 <= s["argmax"] <= 1
            assert 0 < s["p05"] <= s["mean_p"] <= s["p95"] < 1
    grads = tool.loss_gradients(run, batches=1)
    assert grads["visual samplers ← L_mner"] == 0  # the text branch never reads the visual one
    for b in ("text", "visual"):
        assert grads[f"{b} samplers ← α·ratio_weight·L_keep"] > 0
        assert grads[f"{b} samplers ← α·(L_recon + L_cycle)"] > 0
    assert grads["text samplers ← L_mner"] > 0  # through the generated tokens the text layers read
    report = tool.keep_report(run_dir, draws=1, batches=1)
    assert report.count("| 1 | text |") == 1 and "kept at evaluation (ρ share)" in report
