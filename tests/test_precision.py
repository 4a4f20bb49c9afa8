"""``trainer.precision=bf16-mixed`` on the CPU: the CRF in float32, a bf16 autocast training step
close to the float32 one, and a Lightning fit end to end."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from bga_mner.models.crf_head import CRFHead
from bga_mner.system import MNERSystem
from models_batch import NUM_LABELS, make_batch, tiny_cfg

# objective() is called outside a Trainer here
pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")


def _crf_case(seed: int = 0) -> tuple[CRFHead, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    head = CRFHead(16, NUM_LABELS, dropout=0.0)
    with torch.no_grad():  # transitions of a trained CRF's size, not torchcrf's +-0.1 init
        for p in (head.crf.start_transitions, head.crf.end_transitions, head.crf.transitions):
            p.copy_(torch.randn(p.shape, generator=g) * 3.0)
    B, W = 4, 40
    emissions = torch.randn(B, W, NUM_LABELS, generator=g) * 8.0
    labels = torch.randint(0, NUM_LABELS, (B, W), generator=g)
    word_mask = torch.arange(W)[None, :] < torch.tensor([[40], [31], [7], [0]])  # incl. an empty row
    return head, emissions, labels, word_mask


def test_crf_log_partition_and_viterbi_run_in_float32() -> None:
    """With bf16 emissions and a bf16 CRF (``bf16-true`` parameters), under autocast, the NLL and
    the paths are those of float32 arithmetic on the same (bf16-valued) numbers."""
    head, emissions, labels, word_mask = _crf_case()
    head16 = copy.deepcopy(head).to(torch.bfloat16)
    em16 = emissions.to(torch.bfloat16)
    reference = copy.deepcopy(head16).float()  # the same bf16 values, in float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        nll = head16.nll(em16, labels, word_mask)
        paths = head16.decode(em16, word_mask)
    expected = reference.nll(em16.float(), labels, word_mask)
    assert nll.dtype == torch.float32
    torch.testing.assert_close(nll, expected, rtol=1e-6, atol=1e-5)
    assert paths == reference.decode(em16.float(), word_mask)


def test_viterbi_keeps_a_margin_that_bf16_sums_would_round_away() -> None:
    """Forty words scored 8 each: the path ending in label 1 wins by 0.5 at a total of 320, where
    bf16's spacing is 2 (a bf16 Viterbi ties and picks label 0); float32 keeps the 0.5."""
    head = CRFHead(16, 2, dropout=0.0)
    with torch.no_grad():
        for p in (head.crf.start_transitions, head.crf.end_transitions, head.crf.transitions):
            p.zero_()
    emissions = torch.full((1, 40, 2), 8.0)
    emissions[0, -1, 1] = 8.5
    head16, mask = head.to(torch.bfloat16), torch.ones(1, 40, dtype=torch.bool)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        (path,) = head16.decode(emissions.to(torch.bfloat16), mask)
    assert path[-1] == 1


def _step(system: MNERSystem, batch: dict, bf16: bool) -> tuple[torch.Tensor, dict, torch.Tensor]:
    """Loss, its parts and the flat gradient of one training step (the same noise each call)."""
    system.zero_grad(set_to_none=True)
    torch.manual_seed(1)  # the samplers' Gumbel noise
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss, parts = system.objective(batch)  # Eqs. 10-11, as training_step
    loss.backward()
    grads = [p.grad.flatten() for p in system.parameters() if p.grad is not None]
    return loss.detach(), {k: v.detach() for k, v in parts.items()}, torch.cat(grads)


def test_bf16_autocast_training_step_is_finite_and_close_to_float32(one_thread) -> None:
    """A training step of BGA-MNER (N = 2 BGA layers: samplers, both generators, cycle, hybrid
    layers, CRF) under CPU bf16 autocast, as ``trainer.precision=bf16-mixed`` runs it."""
    torch.manual_seed(0)
    system = MNERSystem(tiny_cfg("model.dropout=0.0", "model.alpha=1.0")).train()
    batch = make_batch()
    loss32, parts32, grad32 = _step(system, batch, bf16=False)
    loss16, parts16, grad16 = _step(system, batch, bf16=True)
    assert loss16.dtype == torch.float32 and torch.isfinite(loss16)
    assert torch.isfinite(grad16).all() and grad16.abs().sum() > 0
    assert grad16.numel() == grad32.numel()  # every parameter that learns in fp32 learns in bf16
    assert loss16.item() == pytest.approx(loss32.item(), rel=2e-2)
    for name in ("mner", "recon", "cycle", "keep_ratio"):
        assert parts16[name].item() == pytest.approx(parts32[name].item(), rel=5e-2, abs=1e-3), name
    cosine = torch.nn.functional.cosine_similarity(grad16, grad32, dim=0)
    assert cosine > 0.95


def test_token_kl_is_float32_arithmetic_under_autocast() -> None:
    """Eqs. 5/7's per-token KL from bf16 features equals float32 arithmetic on the same values."""
    from bga_mner.models.generator import token_kl

    g = torch.Generator().manual_seed(3)
    generated = (torch.randn(2, 50, 64, generator=g) * 2).to(torch.bfloat16)
    real = (torch.randn(2, 50, 64, generator=g) * 2).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        kl = token_kl(generated, real)
    torch.testing.assert_close(kl.float(), token_kl(generated.float(), real.float()), rtol=1e-5,
                               atol=1e-6)


def test_masked_softmax_is_float32_arithmetic_under_autocast() -> None:
    """The masked softmax of bf16 scores equals float32 arithmetic on the same values, in bf16."""
    from bga_mner.models.attention import masked_softmax

    g = torch.Generator().manual_seed(4)
    scores = (torch.randn(2, 2, 5, 40, generator=g) * 8).to(torch.bfloat16)
    keep = (torch.rand(2, 40, generator=g) > 0.3).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        weights = masked_softmax(scores, keep)
    assert weights.dtype == torch.bfloat16
    torch.testing.assert_close(weights, masked_softmax(scores.float(), keep).to(torch.bfloat16), rtol=0, atol=0)


@pytest.mark.slow
def test_bf16_mixed_fit_end_to_end(smoke_fit, tmp_path) -> None:
    """``bga-mner fit trainer.precision=bf16-mixed`` on the CPU: Lightning's autocast around the
    training and evaluation steps, CRF decoding, checkpoints and results."""
    smoke_fit(tmp_path, "run.name=bf16", "logging.wandb=false", "trainer.precision=bf16-mixed")
    results = json.loads((tmp_path / "bf16" / "results.json").read_text())
    assert results["config"]["trainer"]["precision"] == "bf16-mixed"
    assert 0.0 <= results["test"]["overall"]["f1"] <= 100.0
    metrics = (tmp_path / "bf16" / "csv" / "metrics.csv").read_text()
    assert "nan" not in metrics.lower() and "inf" not in metrics.lower()
