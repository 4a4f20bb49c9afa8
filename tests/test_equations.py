"""Section 3 equation by equation, and the wiring between the equations (issue "Prove the model").

Each equation is checked by its EFFECT against a reference computed here, independently of the code
under test (an explicit formula or a loop on a small fixed example), and the network's wiring by
tracing what each part reads (forward hooks) or by changing one input and watching the right output.
The network is the registered 3-layer pair (tiny-bert-l3 + bga_test_vit_d3: N = 2 BGA layers), so that
the recursion from BGA layer l to layer l + 1 is exercised.

Only the contract of ``attention.masked_softmax`` is assumed (exact zero weight for removed units, a
softmax over the kept ones), not its internal formula: comparisons that could depend on rounding use
tight tolerances, not bit equality.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import NamedTuple

import pytest
import torch
import torch.nn.functional as F
from models_batch import NUM_LABELS, TEXT_L3, VIT_D3, deep_cfg, make_batch, tiny_cfg, tiny_model
from omegaconf import OmegaConf

from bga_mner.models.backbones import load_text_encoder, load_visual_encoder
from bga_mner.models.bga_mner import BGAMNER
from bga_mner.models.crf_head import CRFHead
from bga_mner.models.generator import masked_token_loss, token_kl
from bga_mner.models.hybrid_layer import HybridTextLayer, HybridViTBlock
from bga_mner.models.sampler import ContextSampler
from bga_mner.system import MNERSystem

N_BGA = 2  # BGA layers of the tiny pair
NV = 50 + 3 * 16  # visual tokens: cls + 7 x 7 patches of the global image + K = 3 crops of 4 x 4 patches
TIGHT = dict(rtol=1e-5, atol=1e-5)


# tiny models on a shared 2-core machine run fastest on one thread (conftest.one_thread)
pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------- tracing
class Call(NamedTuple):
    name: str
    args: tuple
    kwargs: dict
    out: object

    def arg(self, i: int, name: str):
        """The i-th positional argument, or the keyword ``name`` (None when absent)."""
        return self.args[i] if len(self.args) > i else self.kwargs.get(name)


class Trace:
    """Records, in call order, the inputs and output of each part of the network (forward hooks).

    Names: ``text_sampler{l}``, ``visual_sampler{l}``, ``t2v``, ``v2t``, ``visual_to_text``,
    ``text_to_visual``, ``text_layer{i}``, ``visual_layer{i}``.
    """

    def __init__(self, model: BGAMNER):
        parts = {"t2v": model.t2v, "v2t": getattr(model, "v2t", None), "visual_to_text": model.visual_to_text,
                 "text_to_visual": getattr(model, "text_to_visual", None)}
        for branch in ("text", "visual"):
            for l, s in enumerate(getattr(model, f"{branch}_samplers", None) or []):
                parts[f"{branch}_sampler{l}"] = s
            for i, layer in enumerate(getattr(model, f"{branch}_layers", None) or []):
                parts[f"{branch}_layer{i}"] = layer
        self.calls: list[Call] = []
        self.handles = [m.register_forward_hook(functools.partial(self._record, name), with_kwargs=True)
                        for name, m in parts.items() if m is not None]

    def _record(self, name, module, args, kwargs, out):
        self.calls.append(Call(name, args, kwargs, out))

    def __enter__(self) -> Trace:
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()

    def __call__(self, name: str, calls: list[Call] | None = None) -> list[Call]:
        return [c for c in (self.calls if calls is None else calls) if c.name == name]

    def layer(self, l: int) -> list[Call]:
        """The calls of BGA layer l: from its first sampler call to the first sampler call of layer l + 1."""
        def start(k):
            idx = [i for i, c in enumerate(self.calls) if c.name in (f"text_sampler{k}", f"visual_sampler{k}")]
            return min(idx) if idx else len(self.calls)
        return self.calls[start(l):start(l + 1)]

    def generators(self, l: int) -> dict[str, Call]:
        """Layer l's generator calls: ``t2v``/``v2t`` (main: read the other branch's real tokens) and
        ``t2v_cycle``/``v2t_cycle`` (read what the other generator produced in this layer)."""
        calls = self.layer(l)
        t2v, v2t = self("t2v", calls), self("v2t", calls)
        found: dict[str, list[Call]] = {}
        for name, mine, other in (("t2v", t2v, v2t), ("v2t", v2t, t2v)):
            for c in mine:
                cycle = any(same(c.arg(0, "memory"), o.out) for o in other)
                found.setdefault(f"{name}_cycle" if cycle else name, []).append(c)
        assert all(len(v) == 1 for v in found.values()), {k: len(v) for k, v in found.items()}
        return {k: v[0] for k, v in found.items()}


def same(a, b) -> bool:
    """Whether two tensors hold the same values (the same tensor, or an equal copy)."""
    return a is b or (torch.is_tensor(a) and torch.is_tensor(b) and a.shape == b.shape
                      and torch.equal(a.detach().float(), b.detach().float()))


def run(model, batch, seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    with torch.no_grad():
        return model(batch, **kwargs)


def traced(model, batch, seed: int = 0, **kwargs):
    with Trace(model) as trace:
        out = run(model, batch, seed, **kwargs)
    return out, trace


def valid_masks(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The real text tokens (B, Nt) and real visual units (B, Nv) of a ``make_batch`` batch."""
    keep_v = torch.cat([torch.ones(len(batch["crop_mask"]), 50, dtype=torch.bool),
                        batch["crop_mask"].repeat_interleave(16, 1)], 1)
    return batch["attention_mask"].bool(), keep_v


# ---------------------------------------------------------------------------------------- references
def ref_generation_loss(gen: torch.Tensor, real: torch.Tensor, mask: torch.Tensor, has_image) -> float:
    """Eqs. 5/7 by hand: sum_i m_i KL(softmax(gen_i) || softmax(real_i)), softmax over channels,
    averaged over the samples with an image (a loop over samples, in double precision)."""
    total, n = 0.0, 0
    for b in range(gen.shape[0]):
        if not bool(has_image[b]):
            continue
        n += 1
        lp = torch.log_softmax(gen[b].double(), -1)  # (N, d)
        lq = torch.log_softmax(real[b].double(), -1)
        kl = (lp.exp() * (lp - lq)).sum(-1)  # (N,)
        total += float((kl * mask[b].double()).sum())
    return total / max(n, 1)


def crf_score(crf, emissions: torch.Tensor, tags) -> torch.Tensor:
    """Eq. 9's unnormalised log-score of one label sequence (start, emissions, transitions, end)."""
    s = crf.start_transitions[tags[0]] + emissions[0, tags[0]]
    for i in range(1, len(tags)):
        s = s + crf.transitions[tags[i - 1], tags[i]] + emissions[i, tags[i]]
    return s + crf.end_transitions[tags[-1]]


def _random_crf(num_labels: int, seed: int) -> CRFHead:
    head = CRFHead(8, num_labels, dropout=0.0)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (head.crf.start_transitions, head.crf.end_transitions, head.crf.transitions):
            p.copy_(torch.randn(p.shape, generator=g))
    return head


# ======================================================================================== Eq. 1
def test_eq1_sampler_gap_averages_only_the_units_kept_by_the_previous_layer():
    torch.manual_seed(0)
    s = ContextSampler(16).eval()
    tokens = torch.randn(2, 6, 16)
    prev = torch.tensor([[1, 0, 1, 1, 0, 1], [0, 1, 1, 0, 0, 0]], dtype=torch.float)
    logits = s.logits(tokens, prev)
    # reference, Eq. 1: z_i = MLP_phi(T_i); g = mean of MLP_psi(T_j) over units j kept by m^{l-1};
    # p_i = Softmax(MLP_Phi([z_i, g]))
    with torch.no_grad():
        x = s.in_mlp(tokens)
        h = x.shape[-1] // 2
        for b in range(2):
            kept = [j for j in range(6) if prev[b, j] == 1]
            g = sum(x[b, j, h:] for j in kept) / len(kept)
            for i in range(6):
                expected = s.out_mlp(torch.cat([x[b, i, :h], g])).log_softmax(-1)
                torch.testing.assert_close(logits[b, i], expected, **TIGHT)
    others = [0, 2, 3, 5]  # tweet 0: units 1 and 4 were removed by the previous layer
    changed = tokens.clone()
    changed[0, 1] += 5 * torch.randn(16)  # a removed unit: only its own (local) decision may change
    after = s.logits(changed, prev)
    torch.testing.assert_close(after[0, others], logits[0, others], **TIGHT)
    torch.testing.assert_close(after[1], logits[1], **TIGHT)
    changed = tokens.clone()
    changed[0, 2] += 5 * torch.randn(16)  # a kept unit: the global content of every unit changes
    after = s.logits(changed, prev)
    assert all(not torch.allclose(after[0, i], logits[0, i], **TIGHT) for i in (0, 3, 5))


def test_eq1_stage_refinement_each_sampler_gets_the_previous_layers_mask():
    model, batch = tiny_model().train(), make_batch()
    out, trace = traced(model, batch)
    keep_t, keep_v = valid_masks(batch)
    for branch, valid, masks in (("text", keep_t, out.text_masks), ("visual", keep_v, out.visual_masks)):
        calls = [trace(f"{branch}_sampler{l}") for l in range(N_BGA)]
        assert [len(c) for c in calls] == [1] * N_BGA
        sampled = [c[0].out for c in calls]
        assert all(torch.equal(m.detach() > 0.5, o) for m, o in zip(sampled, masks))  # the returned masks
        prev = [c[0].arg(1, "prev_mask").detach() for c in calls]
        assert torch.equal(prev[0], valid.float())  # first layer: all real units (all-one vector)
        assert not torch.equal(sampled[0].detach(), valid.float())  # the sampler removed some units
        for l in range(1, N_BGA):
            assert torch.equal(prev[l], sampled[l - 1].detach())  # m^{l-1} feeds layer l's SCS
        # each SCS reads its branch's tokens entering the BGA layer (T^l / V^l: the output of layer l)
        for l in range(N_BGA):
            assert same(calls[l][0].arg(0, "tokens"), trace(f"{branch}_layer{l}")[0].out)


# ======================================================================================== Eqs. 2-4
def test_eqs2_4_each_generator_reads_the_other_branch_under_its_sampled_mask():
    model, batch = tiny_model().train(), make_batch()
    out, trace = traced(model, batch)
    B, Nt = batch["input_ids"].shape
    keep_t, _ = valid_masks(batch)
    assert model.t2v.queries.shape == (NV, 64) and model.v2t.queries.shape == (128, 48)  # Q_v, Q_t
    for l in range(N_BGA):
        gen = trace.generators(l)
        text_scs, visual_scs = trace(f"text_sampler{l}")[0], trace(f"visual_sampler{l}")[0]
        # Eq. 2: V_hat^l = G_t2v(T^l, Q_v, m_t^l)
        assert same(gen["t2v"].arg(0, "memory"), text_scs.arg(0, "tokens"))
        assert same(gen["t2v"].arg(1, "keep"), text_scs.out)
        assert gen["t2v"].out.shape == (B, NV, 64) and same(gen["t2v"].out, out.generated_visual[l])
        # Eq. 4: T_hat^l = G_v2t(V^l, Q_t, m_v^l), one query per text position, padding excluded
        assert same(gen["v2t"].arg(0, "memory"), visual_scs.arg(0, "tokens"))
        assert same(gen["v2t"].arg(1, "keep"), visual_scs.out)
        assert gen["v2t"].out.shape == (B, Nt, 48)
        assert torch.equal(gen["v2t"].arg(3, "query_padding"), ~keep_t)


def _force_keep_pattern(monkeypatch):
    """Every SCS keeps the units whose index is not 1 mod 3 (logits +-10: Gumbel noise cannot flip them)."""
    def logits(self, tokens, prev_mask):
        keep = torch.arange(tokens.shape[1]) % 3 != 1
        z = torch.where(keep, 10.0, -10.0)
        return torch.stack([z, -z], -1).log_softmax(-1).expand(tokens.shape[0], -1, -1) + 0 * tokens.sum()
    monkeypatch.setattr(ContextSampler, "logits", logits)


def _run_perturbing_generator_inputs(model, batch, where: str):
    """Run (training, seed 0) while each generator's main call sees its memory changed at the units
    its branch's SCS just removed (``where='removed'``) or kept (``'kept'``); other calls are untouched."""
    g = torch.Generator().manual_seed(1)  # not the global RNG: dropout and Gumbel noise stay the same
    pending: dict[str, torch.Tensor] = {}

    def remember(branch, module, args, output):
        pending[branch] = output.detach()

    def perturb(branch, module, args, kwargs):
        mask = pending.pop(branch, None)  # the first generator call after this branch's SCS
        if mask is None:
            return None
        units = (mask == 0) if where == "removed" else (mask == 1)
        memory = args[0].clone()
        memory[units] += 3 * torch.randn(int(units.sum()), memory.shape[-1], generator=g)
        return (memory, *args[1:]), kwargs

    handles = [s.register_forward_hook(functools.partial(remember, branch))
               for branch in ("text", "visual") for s in getattr(model, f"{branch}_samplers")]
    handles += [model.t2v.register_forward_pre_hook(functools.partial(perturb, "text"), with_kwargs=True),
                model.v2t.register_forward_pre_hook(functools.partial(perturb, "visual"), with_kwargs=True)]
    try:
        return run(model, batch)
    finally:
        for h in handles:
            h.remove()


def _flat(out) -> list[torch.Tensor]:
    terms = [getattr(t, k) for t in out.layer_losses for k in
             ("recon_visual", "recon_text", "cycle_visual", "cycle_text", "keep_ratio_text", "keep_ratio_visual")]
    return [out.emissions, out.text_states, *out.generated_visual, *terms]


def test_eq3_a_unit_removed_by_the_sampler_influences_no_output(monkeypatch):
    _force_keep_pattern(monkeypatch)
    model, batch = tiny_model().train(), make_batch()
    base = run(model, batch)
    assert all((m[:, 1::3] == 0).all() and m[:, ::3].any() for m in base.text_masks + base.visual_masks)
    removed = _run_perturbing_generator_inputs(model, batch, "removed")
    for a, b in zip(_flat(base), _flat(removed), strict=True):
        torch.testing.assert_close(a, b, **TIGHT)
    kept = _run_perturbing_generator_inputs(model, batch, "kept")  # control: kept units do matter
    assert not torch.allclose(kept.generated_visual[0], base.generated_visual[0], **TIGHT)
    assert not torch.allclose(kept.layer_losses[0].recon_text, base.layer_losses[0].recon_text, **TIGHT)


# ======================================================================================== Eqs. 5-7
def test_eqs5_7_masked_token_loss_matches_a_hand_computation():
    g = torch.Generator().manual_seed(0)
    gen, real = torch.randn(3, 4, 5, generator=g), torch.randn(3, 4, 5, generator=g)
    mask = torch.tensor([[1, 0, 1, 1], [0, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.float)
    has_image = [True, True, False]

    def kl(p_logits, q_logits):  # plain Python: KL(softmax(p) || softmax(q)) over the channels
        zp, zq = sum(math.exp(v) for v in p_logits), sum(math.exp(v) for v in q_logits)
        return sum(math.exp(a) / zp * ((a - math.log(zp)) - (b - math.log(zq))) for a, b in zip(p_logits, q_logits))

    per_token = [[kl(gen[b, i].tolist(), real[b, i].tolist()) for i in range(4)] for b in range(3)]
    torch.testing.assert_close(token_kl(gen, real), torch.tensor(per_token), **TIGHT)
    expected = sum(per_token[b][i] * mask[b, i].item() for b in range(3) if has_image[b] for i in range(4)) / 2
    assert masked_token_loss(gen, real, mask, torch.tensor(has_image)).item() == pytest.approx(expected, rel=1e-5)
    # the direction is generated || real: the reverse KL differs
    assert masked_token_loss(real, gen, mask, torch.tensor(has_image)).item() != pytest.approx(expected, rel=1e-3)


def test_eq5_reconstruction_terms_are_weighted_by_each_branchs_own_mask():
    model, batch = tiny_model().train(), make_batch()
    out, trace = traced(model, batch)
    keep_t, keep_v = valid_masks(batch)
    has_image = batch["has_image"]
    for l, terms in enumerate(out.layer_losses):
        gen = trace.generators(l)
        text_scs, visual_scs = trace(f"text_sampler{l}")[0], trace(f"visual_sampler{l}")[0]
        T, m_t = text_scs.arg(0, "tokens"), text_scs.out
        V, m_v = visual_scs.arg(0, "tokens"), visual_scs.out
        V_hat, T_hat = gen["t2v"].out, gen["v2t"].out
        # Eq. 5: sum_i KL(V_hat_i || V_i) m_v,i  +  sum_i KL(T_hat_i || T_i) m_t,i
        assert terms.recon_visual.item() == pytest.approx(ref_generation_loss(V_hat, V, m_v, has_image), rel=1e-5)
        assert terms.recon_text.item() == pytest.approx(ref_generation_loss(T_hat, T, m_t, has_image), rel=1e-5)
        # the masks matter on this example: every real unit (or the other layer's mask) gives other values
        assert terms.recon_visual.item() != pytest.approx(ref_generation_loss(V_hat, V, keep_v, has_image), rel=1e-3)
        assert terms.recon_text.item() != pytest.approx(ref_generation_loss(T_hat, T, keep_t, has_image), rel=1e-3)


def test_eqs6_7_cycle_generates_back_from_the_generated_tokens():
    model, batch = tiny_model().train(), make_batch()
    with torch.no_grad():  # at random init the queries dominate what is generated: make it input-driven,
        model.t2v.queries.zero_()  # so that the cycle and reconstruction terms differ clearly
        model.v2t.queries.zero_()
    out, trace = traced(model, batch)
    keep_t, _ = valid_masks(batch)
    has_image = batch["has_image"]
    for l, terms in enumerate(out.layer_losses):
        gen = trace.generators(l)
        assert set(gen) == {"t2v", "v2t", "t2v_cycle", "v2t_cycle"}
        text_scs, visual_scs = trace(f"text_sampler{l}")[0], trace(f"visual_sampler{l}")[0]
        T, m_t = text_scs.arg(0, "tokens"), text_scs.out
        V, m_v = visual_scs.arg(0, "tokens"), visual_scs.out
        # Eq. 6: V_bar = G_t2v(T_hat, Q_v, 1), T_bar = G_v2t(V_hat, Q_t, 1) (1: every real unit)
        assert same(gen["t2v_cycle"].arg(0, "memory"), gen["v2t"].out)
        assert torch.equal(gen["t2v_cycle"].arg(1, "keep").bool(), keep_t)
        assert same(gen["v2t_cycle"].arg(0, "memory"), gen["t2v"].out)
        assert gen["v2t_cycle"].arg(1, "keep").bool().all()
        V_bar, T_bar = gen["t2v_cycle"].out, gen["v2t_cycle"].out
        assert V_bar.shape == V.shape and T_bar.shape == T.shape
        assert not torch.allclose(V_bar, gen["t2v"].out, **TIGHT) and not torch.allclose(T_bar, gen["v2t"].out, **TIGHT)
        # Eq. 7 against the REAL features, weighted by the sampled masks
        cycle_v, cycle_t = ref_generation_loss(V_bar, V, m_v, has_image), ref_generation_loss(T_bar, T, m_t, has_image)
        assert terms.cycle_visual.item() == pytest.approx(cycle_v, rel=1e-5)
        assert terms.cycle_text.item() == pytest.approx(cycle_t, rel=1e-5)
        assert terms.cycle_visual.item() != pytest.approx(terms.recon_visual.item(), rel=1e-3)
        assert terms.cycle_text.item() != pytest.approx(terms.recon_text.item(), rel=1e-3)


# ======================================================================================== Eq. 8
def test_eq8_in_training_each_branch_attends_to_the_generated_other_modality():
    model, batch = tiny_model().train(), make_batch()
    out, trace = traced(model, batch)
    keep_t, _ = valid_masks(batch)
    proj_v = trace("text_to_visual")
    assert len(proj_v) == N_BGA - 1  # the last visual output feeds nothing
    for l in range(N_BGA):
        gen = trace.generators(l)
        text_scs, visual_scs = trace(f"text_sampler{l}")[0], trace(f"visual_sampler{l}")[0]
        # text: T^{l+1} = Hybrid_t(T^l, [T^l; V_hat^l]), V_hat^l mapped to the text width by
        # visual_to_text, which the layer composes into its key/value maps (extra_proj)
        (layer,) = trace(f"text_layer{l + 1}")
        assert same(layer.arg(0, "hidden"), text_scs.arg(0, "tokens"))
        extra = layer.arg(2, "extra")
        assert same(extra, gen["t2v"].out) and not same(extra, visual_scs.arg(0, "tokens"))
        assert layer.arg(5, "extra_proj") is model.visual_to_text
        extra_keep = layer.arg(3, "extra_keep")
        assert extra_keep is None or extra_keep.all()  # all Nv generated tokens attended
        if l < N_BGA - 1:  # visual: V^{l+1} = Hybrid_v(V^l, [V^l; T_hat^l]), T_hat^l mapped to the ViT width
            assert same(proj_v[l].args[0], gen["v2t"].out) and not same(proj_v[l].args[0], text_scs.arg(0, "tokens"))
            (block,) = trace(f"visual_layer{l + 1}")
            assert same(block.arg(0, "x"), visual_scs.arg(0, "tokens"))
            assert same(block.arg(2, "extra"), proj_v[l].out)
            assert torch.equal(block.arg(3, "extra_keep"), keep_t)  # padded text positions are not attended
    assert same(out.text_states, trace(f"text_layer{N_BGA}")[0].out)


@pytest.mark.parametrize("inference_visual", ["generated", "real"])
def test_eq8_at_evaluation_the_text_attends_to_generated_or_real_visual_tokens(inference_visual):
    model, batch = tiny_model(f"model.inference_visual={inference_visual}").eval(), make_batch()
    _, keep_v = valid_masks(batch)
    out, trace = traced(model, batch)
    for l in range(N_BGA):
        (layer,) = trace(f"text_layer{l + 1}")  # its extra tokens, mapped in by visual_to_text (extra_proj)
        extra_keep, extra = layer.arg(3, "extra_keep"), layer.arg(2, "extra")
        assert layer.arg(5, "extra_proj") is model.visual_to_text
        if inference_visual == "generated":  # image-free: the visual branch does not even run
            assert not trace("visual_sampler0") and not trace("v2t")
            assert same(extra, out.generated_visual[l])
            assert extra_keep is None or extra_keep.all()
        else:  # Table 4: the real visual tokens of the same level, missing crops masked
            assert same(extra, trace(f"visual_sampler{l}")[0].arg(0, "tokens"))
            assert torch.equal(extra_keep, keep_v)


def _ref_text_hybrid(layer, hidden, keep, extra, extra_keep):
    """Eq. 8 on a post-norm BERT layer, written out: per head Softmax(T W^Q [T W^K; V W^K]^T / sqrt(dk))
    [T W^V; V W^V], then the layer's output projection + add & norm and its FFN + add & norm."""
    sa, out_attn = layer.attention.self, layer.attention.output
    heads, (B, n, d) = sa.num_attention_heads, hidden.shape
    dh = d // heads
    kv, allowed = torch.cat([hidden, extra], 1), torch.cat([keep, extra_keep], 1)
    context = torch.zeros(B, n, d)
    for b in range(B):
        q = hidden[b] @ sa.query.weight.T + sa.query.bias
        k = kv[b] @ sa.key.weight.T + sa.key.bias
        v = kv[b] @ sa.value.weight.T + sa.value.bias
        for h in range(heads):
            c = slice(h * dh, (h + 1) * dh)
            scores = (q[:, c] @ k[:, c].T / math.sqrt(dh)).masked_fill(~allowed[b], float("-inf"))
            context[b, :, c] = scores.softmax(-1) @ v[:, c]
    ln1, ln2 = out_attn.LayerNorm, layer.output.LayerNorm
    a = F.layer_norm(hidden + context @ out_attn.dense.weight.T + out_attn.dense.bias, (d,), ln1.weight, ln1.bias,
                     ln1.eps)
    f = F.gelu(a @ layer.intermediate.dense.weight.T + layer.intermediate.dense.bias)
    return F.layer_norm(a + f @ layer.output.dense.weight.T + layer.output.dense.bias, (d,), ln2.weight, ln2.bias,
                        ln2.eps)


def _ref_vit_hybrid(block, x, keep, extra, extra_keep):
    """Eq. 8 on a pre-norm timm block, written out: norm1 on [V; T_hat], queries from V only."""
    attn, (B, n, d) = block.attn, x.shape
    heads = attn.num_heads
    dh = d // heads
    y = F.layer_norm(torch.cat([x, extra], 1), (d,), block.norm1.weight, block.norm1.bias, block.norm1.eps)
    qkv = y @ attn.qkv.weight.T + attn.qkv.bias
    q, k, v = qkv[:, :n, :d], qkv[..., d:2 * d], qkv[..., 2 * d:]
    allowed = torch.cat([keep, extra_keep], 1)
    context = torch.zeros(B, n, d)
    for b in range(B):
        for h in range(heads):
            c = slice(h * dh, (h + 1) * dh)
            scores = (q[b, :, c] @ k[b, :, c].T / math.sqrt(dh)).masked_fill(~allowed[b], float("-inf"))
            context[b, :, c] = scores.softmax(-1) @ v[b, :, c]
    x = x + context @ attn.proj.weight.T + attn.proj.bias
    z = F.layer_norm(x, (d,), block.norm2.weight, block.norm2.bias, block.norm2.eps)
    return x + F.gelu(z @ block.mlp.fc1.weight.T + block.mlp.fc1.bias) @ block.mlp.fc2.weight.T + block.mlp.fc2.bias


def test_eq8_hybrid_attention_matches_the_formula_with_a_context():
    torch.manual_seed(0)
    layer = load_text_encoder(TEXT_L3).eval().encoder.layer[1]
    block = load_visual_encoder(VIT_D3, pretrained=False).eval().blocks[1]
    keep = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    extra_keep = torch.tensor([[1, 0, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 1, 1]], dtype=torch.bool)
    with torch.no_grad():
        for hybrid, wrapped, ref, d in ((HybridTextLayer(layer).eval(), layer, _ref_text_hybrid, 48),
                                        (HybridViTBlock(block).eval(), block, _ref_vit_hybrid, 64)):
            own, extra = torch.randn(2, 5, d), torch.randn(2, 7, d)
            torch.testing.assert_close(hybrid(own, keep, extra, extra_keep), ref(wrapped, own, keep, extra, extra_keep),
                                       **TIGHT)


# ======================================================================================== Eqs. 9-10
@pytest.mark.parametrize("seed", range(4))
def test_eq9_viterbi_decode_is_the_brute_force_best_sequence(seed):
    L, lengths = 4, [4, 3, 1, 0]
    head = _random_crf(L, seed)
    emissions = 2 * torch.randn(len(lengths), 4, L, generator=torch.Generator().manual_seed(100 + seed))
    word_mask = torch.tensor([[i < n for i in range(4)] for n in lengths])
    with torch.no_grad():
        decoded = head.decode(emissions, word_mask)
        for row, n in enumerate(lengths):
            if n == 0:
                assert decoded[row] == []
                continue
            best = max(itertools.product(range(L), repeat=n), key=lambda y: crf_score(head.crf, emissions[row], y))
            assert decoded[row] == list(best)


def test_eq9_decode_uses_the_transitions_not_the_emission_argmax():
    head = _random_crf(3, 0)
    with torch.no_grad():
        for p in (head.crf.start_transitions, head.crf.end_transitions, head.crf.transitions):
            p.zero_()
        head.crf.transitions[1, 1] = -10.0  # label 1 never follows label 1
    emissions = torch.tensor([[[0.0, 1.0, 0.8]] * 3])  # alone, label 1 wins at every word
    assert emissions.argmax(-1).tolist() == [[1, 1, 1]]
    assert head.decode(emissions, torch.ones(1, 3, dtype=torch.bool)) == [[1, 2, 1]]  # 1 + 0.8 + 1 > 3 - 20


@pytest.mark.parametrize("seed", range(3))
def test_eq10_nll_is_the_log_partition_minus_the_gold_score(seed):
    L, lengths = 3, [4, 2, 1, 0]
    head = _random_crf(L, seed)
    g = torch.Generator().manual_seed(200 + seed)
    emissions = torch.randn(len(lengths), 4, L, generator=g)
    labels = torch.randint(0, L, (len(lengths), 4), generator=g)
    word_mask = torch.tensor([[i < n for i in range(4)] for n in lengths])
    labels[~word_mask] = 0
    with torch.no_grad():
        expected = 0.0
        for row, n in enumerate(lengths):
            if n == 0:
                continue  # a tweet with no word contributes 0 (and still counts in the batch mean)
            scores = [crf_score(head.crf, emissions[row], y).item() for y in itertools.product(range(L), repeat=n)]
            log_z = math.log(sum(math.exp(s) for s in scores))
            expected += log_z - crf_score(head.crf, emissions[row], labels[row, :n].tolist()).item()
        assert head.nll(emissions, labels, word_mask).item() == pytest.approx(expected / len(lengths), rel=1e-5)


# ======================================================================================== Eq. 11
def test_eq11_objective_averages_the_terms_of_both_bga_layers():
    torch.manual_seed(0)
    system = MNERSystem(tiny_cfg("model.alpha=0.5"))
    batch = make_batch()
    out = run(system.model.train(), batch)
    assert len(out.layer_losses) == system.model.num_bga_layers == N_BGA
    first, second = out.layer_losses
    assert first.recon_visual.item() != pytest.approx(second.recon_visual.item(), rel=1e-3)
    loss, parts = system.objective(batch, out)
    recon = sum(t.recon_visual.item() + t.recon_text.item() for t in out.layer_losses) / N_BGA
    cycle = sum(t.cycle_visual.item() + t.cycle_text.item() for t in out.layer_losses) / N_BGA
    keep = sum(t.keep_ratio_text.item() + t.keep_ratio_visual.item() for t in out.layer_losses) / N_BGA
    nll = parts["mner"].item()
    assert parts["recon"].item() == pytest.approx(recon, rel=1e-6)
    assert parts["cycle"].item() == pytest.approx(cycle, rel=1e-6)
    assert loss.item() == pytest.approx(nll + 0.5 * (recon + cycle + system.ratio_weight * keep), rel=1e-6)


# ======================================================================================== wiring
def test_the_generated_visual_tokens_drive_the_emissions():
    """Perturb V_hat (the t2v output): the emissions follow it, unless the text reads the real tokens."""
    batch = make_batch()
    for inference_visual in ("generated", "real"):
        model = tiny_model(f"model.inference_visual={inference_visual}").eval()
        base = run(model, batch)
        handle = model.t2v.register_forward_hook(lambda m, args, out: out + 0.5 * torch.randn_like(out))
        try:
            perturbed = run(model, batch)
        finally:
            handle.remove()
        if inference_visual == "generated":
            assert not torch.allclose(perturbed.emissions, base.emissions, **TIGHT)
        else:
            torch.testing.assert_close(perturbed.emissions, base.emissions, **TIGHT)


def test_in_training_the_text_side_never_sees_the_real_image():
    """Same seed, real images and crops swapped for noise: the text states, emissions, text masks and
    generated visual tokens are identical; the generation losses (which compare with V) change."""
    model, batch = tiny_model().train(), make_batch()
    g = torch.Generator().manual_seed(7)
    noise = dict(batch, image=torch.randn(batch["image"].shape, generator=g),
                 crops=torch.randn(batch["crops"].shape, generator=g))
    a, b = run(model, batch), run(model, noise)
    torch.testing.assert_close(a.text_states, b.text_states, **TIGHT)
    torch.testing.assert_close(a.emissions, b.emissions, **TIGHT)
    assert all(torch.equal(x, y) for x, y in zip(a.text_masks, b.text_masks, strict=True))
    for x, y in zip(a.generated_visual, b.generated_visual, strict=True):
        torch.testing.assert_close(x, y, **TIGHT)
    for x, y in zip(a.layer_losses, b.layer_losses, strict=True):  # a noise image is statistically alike:
        assert x.recon_visual.item() != y.recon_visual.item()  # the values differ, if only by a little
        assert x.recon_text.item() != y.recon_text.item()


def test_wrapping_keeps_the_pretrained_weights():
    """The hybrid layers reuse the pretrained modules untouched (real MiniLM weights and a ViT)."""
    cfg = OmegaConf.to_object(deep_cfg("model.text_pretrained=true").model)
    text = load_text_encoder("all-MiniLM-L6-v2", pretrained=True)
    torch.manual_seed(0)
    vit = load_visual_encoder("bga_test_vit_d6", pretrained=False)
    text_before = {k: v.clone() for k, v in text.state_dict().items()}
    vit_before = {k: v.clone() for k, v in vit.state_dict().items()}
    model = BGAMNER(text, vit, NUM_LABELS, cfg)
    for i, hybrid in enumerate(model.text_layers):
        state = hybrid.layer.state_dict()
        assert state and all(torch.equal(v, text_before[f"encoder.layer.{i}.{k}"]) for k, v in state.items())
    for k, v in model.text_embeddings.state_dict().items():
        assert torch.equal(v, text_before[f"embeddings.{k}"])
    for i, hybrid in enumerate(model.visual_layers):
        state = hybrid.block.state_dict()
        assert state and all(torch.equal(v, vit_before[f"blocks.{i}.{k}"]) for k, v in state.items())


# ======================================================================================== Gumbel noise
def test_training_sampler_draws_its_mask_from_the_keep_probability():
    """Gumbel-max with tau = 1: each unit is kept with probability p_keep (here 0.3), not by argmax."""
    torch.manual_seed(0)
    s = ContextSampler(4).train()
    p_keep = 0.3
    logits = torch.tensor([p_keep, 1 - p_keep]).log().expand(4, 500, 2)
    valid = torch.ones(4, 500, dtype=torch.bool)
    mask = s(torch.zeros(4, 500, 4), valid.float(), valid, logits=logits)
    assert abs(mask.mean().item() - p_keep) < 0.04  # argmax would keep one unit per row (0.002)


def test_training_masks_are_sampled_with_gumbel_noise():
    model, batch = tiny_model().eval(), make_batch()
    for s in [*model.text_samplers, *model.visual_samplers]:
        s.train()  # only the samplers train: the only randomness left is their Gumbel noise
    a, b, a2 = run(model, batch, seed=0, visual=True), run(model, batch, seed=1, visual=True), \
        run(model, batch, seed=0, visual=True)
    assert all(torch.equal(x, y) for x, y in zip(a.text_masks + a.visual_masks, a2.text_masks + a2.visual_masks))
    assert not torch.equal(a.text_masks[0], b.text_masks[0])
    assert not torch.equal(a.visual_masks[0], b.visual_masks[0])


def test_evaluation_masks_are_the_noise_free_top_keep_ratio_share(monkeypatch):
    """Evaluation keeps, per row, the floor(rho * n) real units (at least one) of highest keep
    probability (DynamicViT's inference rule), whatever the Gumbel seed."""
    recorded: dict[int, torch.Tensor] = {}
    original = ContextSampler.logits

    def logits(self, tokens, prev_mask):
        lp = original(self, tokens, prev_mask)
        recorded[id(self)] = lp.detach()
        return lp

    model, batch = tiny_model().eval(), make_batch()
    keep_t, keep_v = valid_masks(batch)
    monkeypatch.setattr(ContextSampler, "logits", logits)
    a, b = run(model, batch, seed=0, visual=True), run(model, batch, seed=1, visual=True)
    rho = model.keep_ratio
    partial = 0
    for branch, valid in (("text", keep_t), ("visual", keep_v)):
        for l in range(N_BGA):
            lp = recorded[id(getattr(model, f"{branch}_samplers")[l])]
            expected = torch.zeros_like(valid)
            for row in range(valid.shape[0]):  # the reference: a sort per row
                units = [j for j in range(valid.shape[1]) if valid[row, j]]
                k = max(1, math.floor(rho * len(units) + 1e-9))
                for j in sorted(units, key=lambda j: (-float(lp[row, j, 0]), j))[:k]:
                    expected[row, j] = True
            partial += int(((expected.sum(1) > 1) & (expected != valid).any(1)).all())
            mask_a, mask_b = getattr(a, f"{branch}_masks")[l], getattr(b, f"{branch}_masks")[l]
            assert torch.equal(mask_a, expected) and torch.equal(mask_b, expected)
    assert partial == 2 * N_BGA  # each sampler keeps some units of each row and removes others
