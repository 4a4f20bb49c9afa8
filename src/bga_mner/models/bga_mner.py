"""BGA-MNER (Sec. 3): a text branch and a visual branch joined by N bidirectional generative alignment layers.

    text:   encoder embeddings -> layer 0 -> BGA layers 1..N (hybrid text layers 1..N) -> CRF head
    visual: ViT patch embedding of image + K crops -> Block 0 -> BGA layers 1..N
    BGA layer l:  m_t = SCS_t(T, m_t^{l-1})      m_v = SCS_v(V, m_v^{l-1})            (Eq. 1)
                  V_hat = G_t2v(T, Q_v, m_t)      T_hat = G_v2t(V, Q_t, m_v)           (Eqs. 2-4)
                  L_recon^l, L_cycle^l                                                 (Eqs. 5-7)
                  T <- Hybrid_t(T, [T; V_hat])    V <- Hybrid_v(V, [V; T_hat])          (Eq. 8)

Decisions where the paper is silent (also in docs/implementation_notes.md):

* The visual output of the last BGA layer feeds nothing (no loss, no prediction), so the last
  ViT block and the ViT's final norm are not built: the visual branch keeps blocks 0..N-1.
* The text branch always attends to the GENERATED visual tokens (training and inference, all Nv
  of them: they exist whether or not the image had crops). ``inference_visual=real`` (Table 4)
  swaps in the real visual tokens of the same level at evaluation (missing crops masked).
  ``text_context=real`` (the real-context control, not in the paper) makes the text branch attend to
  the real visual tokens V (keep mask keep_v) in training AND evaluation, the fusion of most earlier
  MNER models: the visual branch then always runs (no image-free mode). The generators and their
  losses stay as they are (trained, unused by the text branch).
* Losses: per-token KL(generated || real), summed over the units weighted by the keep masks
  (Eq. 5, Eq. 7), averaged over samples that have an image. The network returns these raw terms
  per layer (``LayerLosses``); ``MNERSystem.objective`` averages them over layers (1/N) and
  weights them (Eq. 11). Cycle generation uses all real units as its mask (padding is never a unit).
* The real features are the losses' TARGETS (stop-gradient, ``detach_targets=True``): a branch
  learns from Eqs. 5/7 only as the generator's INPUT ("be informative enough to generate the other
  modality from"), never by moving its features toward the generated ones. Without it, the visual
  branch (whose only training signal is the generation loss) lowers the loss by collapsing its
  features onto the generator's text-independent average: on the synthetic set the loss then no
  longer tells matched from mismatched image-text pairs (docs/implementation_notes.md).
* Widths: each generator works at the width of what it generates; when the two encoders differ
  in width, linear projections map the other branch's tokens in (``memory_proj``) and the
  generated tokens into the extracting branch (``visual_to_text``, ``text_to_visual``).

``use_mcg=False`` builds exactly BERT-CRF: the same text-encoder layers (their own ``forward``) and CRF head,
no sampler, generator or visual module.

Speed (issue 11; the same outputs up to float rounding, tests/test_speed_equivalence.py): each
generator's input-independent work is computed once per forward pass (``precompute``, shared by
its N reconstruction and N cycle calls), ``visual_to_text`` is composed into the text layers'
key/value maps when cheaper (``extra_proj``), and the parts of the pass run under ``bga:`` profiler
labels (``labels.py``) that ``bga-mner bench --profile`` reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from bga_mner.config import ModelConfig
from bga_mner.models.backbones import VisualSpec
from bga_mner.models.backbones import visual_spec as spec_of
from bga_mner.models.crf_head import CRFHead
from bga_mner.models.generator import CrossModalGenerator, GeneratorCache, masked_token_loss
from bga_mner.models.hybrid_layer import HybridTextLayer, HybridViTBlock
from bga_mner.models.labels import label
from bga_mner.models.sampler import ContextSampler, keep_ratio_loss
from bga_mner.models.visual_embedding import VisualEmbedding

INFERENCE_VISUAL = ("generated", "real")
TEXT_CONTEXT = ("generated", "real")  # model.text_context: what the text layers attend to
# parameter-name prefix -> component (longest prefix wins); used by ``params`` and optimiser groups
COMPONENTS: dict[str, str] = {
    "text_embeddings": "text encoder",
    "text_layers": "text encoder",
    "visual_embed": "visual encoder",
    "visual_layers": "visual encoder",
    "text_samplers": "text samplers",
    "visual_samplers": "visual samplers",
    "t2v": "t2v generator",
    "v2t": "v2t generator",
    "visual_embed.crop_pos_embed": "crop pos/projections",
    "t2v.memory_proj": "crop pos/projections",
    "v2t.memory_proj": "crop pos/projections",
    "visual_to_text": "crop pos/projections",
    "text_to_visual": "crop pos/projections",
    "crf_head": "CRF head",
}
# what image-free inference never touches (dropped by ``inference_state_dict``)
VISUAL_ONLY = ("visual_embed.", "visual_layers.", "visual_samplers.", "v2t.", "text_to_visual.")


def component_of(param_name: str) -> str:
    """The component (a ``COMPONENTS`` value) a parameter belongs to."""
    best = max((p for p in COMPONENTS if param_name == p or param_name.startswith(p + ".")), key=len,
               default=None)
    if best is None:
        raise KeyError(f"parameter {param_name!r} belongs to no known component")
    return COMPONENTS[best]


@dataclass
class LayerLosses:
    """The raw generation terms of one BGA layer l (weighted and averaged by Eq. 11 in the system).

    Attributes:
        recon_visual: Eq. 5's t2v term, KL(V_hat^l || V^l) under the visual keep mask.
        recon_text: Eq. 5's v2t term, KL(T_hat^l || T^l) under the text keep mask.
        cycle_visual, cycle_text: Eq. 7's terms for V_bar^l and T_bar^l (None without the cycle).
        keep_ratio_text, keep_ratio_visual: the samplers' keep-ratio terms (None without SCS).
    """

    recon_visual: torch.Tensor
    recon_text: torch.Tensor
    cycle_visual: torch.Tensor | None = None
    cycle_text: torch.Tensor | None = None
    keep_ratio_text: torch.Tensor | None = None
    keep_ratio_visual: torch.Tensor | None = None


@dataclass
class BGAOutput:
    """What ``BGAMNER.forward`` returns.

    Attributes:
        emissions: (B, W, num_labels) CRF emission scores at the words' first sub-tokens.
        layer_losses: per BGA layer, its raw generation terms (``LayerLosses``); empty when the
            visual branch did not run (image-free inference) and for BERT-CRF. The objective of
            Eq. 11 (alpha, the 1/N average, the keep-ratio weight) is ``MNERSystem.objective``.
        text_masks: per BGA layer, (B, Nt) bool keep masks of the text SCS (padding False).
        visual_masks: per BGA layer, (B, Nv) bool keep masks of the visual SCS ([] image-free).
        generated_visual: per BGA layer, (B, Nv, d_v) the generated visual tokens V_hat^l.
        text_states: (B, Nt, d_t) the final textual states T^N.
    """

    emissions: torch.Tensor
    layer_losses: list[LayerLosses] = field(default_factory=list)
    text_masks: list[torch.Tensor] = field(default_factory=list)
    visual_masks: list[torch.Tensor] = field(default_factory=list)
    generated_visual: list[torch.Tensor] = field(default_factory=list)
    text_states: torch.Tensor | None = None


class BGAMNER(nn.Module):
    """The BGA-MNER network (a plain ``nn.Module``; losses and optimisation live in the system).

    Args:
        text_encoder: a transformers encoder model (BERT family); its embeddings and layers are
            reused (not copied).
        visual_encoder: a timm ``VisionTransformer`` (None when ``build_visual`` is False or no MCG).
        num_labels: number of BIO labels.
        cfg: the ``model:`` section (``config.ModelConfig``: switches, sizes; its defaults are the
            paper's). ``use_mcg=False`` builds exactly BERT-CRF (no visual branch, sampler or
            generator); ``use_scs=False`` replaces every sampled mask by all real units;
            ``text_context='real'`` makes the text layers attend to the real visual tokens in
            training and evaluation (the real-context control; it needs ``build_visual``).
        build_visual: False builds only what image-free inference needs (no ViT, visual samplers,
            v2t generator, crop position embeddings); then ``visual_spec`` must describe the ViT.
        visual_spec: shapes of the visual encoder (taken from ``visual_encoder`` when given).
    """

    def __init__(self, text_encoder: nn.Module, visual_encoder: nn.Module | None, num_labels: int,
                 cfg: ModelConfig, *, build_visual: bool = True, visual_spec: VisualSpec | None = None):
        super().__init__()
        use_mcg, use_scs, inference_visual = cfg.use_mcg, cfg.use_scs, cfg.inference_visual
        if inference_visual not in INFERENCE_VISUAL:
            raise ValueError(f"model.inference_visual={inference_visual!r}; expected one of {INFERENCE_VISUAL}")
        text_context = cfg.text_context
        if text_context not in TEXT_CONTEXT:
            raise ValueError(f"model.text_context={text_context!r}; expected one of {TEXT_CONTEXT}")
        self.use_mcg, self.use_scs, self.use_cycle = use_mcg, use_scs, cfg.use_cycle
        self.inference_visual = inference_visual
        self.text_context = text_context
        self.detach_targets = cfg.detach_targets
        if not 0.0 < cfg.keep_ratio <= 1.0:
            raise ValueError(f"model.keep_ratio={cfg.keep_ratio}: expected a share in (0, 1]")
        self.keep_ratio = cfg.keep_ratio
        max_length, num_objects, crop_size = cfg.max_length, cfg.num_objects, cfg.crop_size
        self.build_visual = build_visual and use_mcg
        self.max_length = max_length
        d_t = text_encoder.config.hidden_size
        self.text_embeddings = text_encoder.embeddings
        self.text_layers = nn.ModuleList(HybridTextLayer(layer) for layer in text_encoder.encoder.layer)
        self.num_bga_layers = len(self.text_layers) - 1  # N
        self.crf_head = CRFHead(d_t, num_labels, cfg.dropout)
        if not use_mcg:
            return
        if build_visual and visual_encoder is None:
            raise ValueError("build_visual=True needs the visual encoder")
        if not build_visual and inference_visual == "real":
            raise ValueError("inference_visual=real needs the visual branch (build_visual=True)")
        if not build_visual and text_context == "real":
            raise ValueError("text_context=real needs the visual branch (build_visual=True): the text "
                             "layers attend to the real visual tokens, there is no image-free mode")
        spec = spec_of(visual_encoder) if visual_encoder is not None else visual_spec
        if spec is None:
            raise ValueError("build_visual=False needs visual_spec (backbones.describe_visual_encoder)")
        if spec.depth != len(self.text_layers):
            raise ValueError(
                f"text encoder has {len(self.text_layers)} layers but the visual encoder has {spec.depth} "
                "blocks: BGA-MNER pairs them layer by layer (1 plain + N BGA layers each), so the depths "
                "must be equal (paper: bert-base-uncased + ViT-B/32, 12 and 12)")
        if crop_size % spec.patch_size:
            raise ValueError(f"crop_size {crop_size} is not a multiple of the ViT patch size {spec.patch_size}")
        d_v, N = spec.dim, self.num_bga_layers
        heads_t = text_encoder.config.num_attention_heads
        num_visual = spec.num_global_tokens + num_objects * (crop_size // spec.patch_size) ** 2  # Nv
        self.num_visual_tokens = num_visual
        gen = dict(ffn_dim=cfg.generator_ffn_dim, layers=cfg.generator_layers, dropout=cfg.dropout)

        def samplers(dim: int) -> nn.ModuleList | None:
            return nn.ModuleList(ContextSampler(dim, cfg.sampler_hidden_ratio, cfg.gumbel_tau,
                                                cfg.keep_ratio)
                                 for _ in range(N)) \
                if use_scs else None

        self.text_samplers = samplers(d_t)
        self.t2v = CrossModalGenerator(num_visual, d_v, d_t, spec.heads, **gen)
        self.visual_to_text = nn.Linear(d_v, d_t) if d_v != d_t else nn.Identity()
        if not self.build_visual:
            return
        self.visual_embed = VisualEmbedding(visual_encoder, num_objects, crop_size)
        assert self.visual_embed.num_tokens == num_visual
        self.visual_layers = nn.ModuleList(HybridViTBlock(b) for b in visual_encoder.blocks[:N])
        self.visual_samplers = samplers(d_v)
        self.v2t = CrossModalGenerator(max_length, d_t, d_v, heads_t, **gen)
        if N > 1:  # generated text feeds the visual extractors of layers 1..N-1 only
            self.text_to_visual = nn.Linear(d_t, d_v) if d_v != d_t else nn.Identity()

    # ------------------------------------------------------------------ forward
    def forward(self, batch: dict, visual: bool | None = None) -> BGAOutput:
        """Run the network on a batch (docs/ARCHITECTURE.md).

        Args:
            batch: the collated batch dict (text keys; image keys when the visual branch runs).
            visual: run the visual branch (needs images). Default: in training; at evaluation only
                when ``inference_visual='real'``; always with ``text_context='real'``. False is
                image-free inference (a ValueError with ``text_context='real'``).
        """
        keep_t = batch["attention_mask"].bool()  # (B, Nt)
        with label("text layers"):
            T = self.text_embeddings(input_ids=batch["input_ids"])  # (B, Nt, d_t)
            T = self.text_layers[0](T, keep_t)
        if not self.use_mcg:
            with label("text layers"):
                for layer in self.text_layers[1:]:
                    T = layer(T, keep_t)
            return BGAOutput(self._emissions(T, batch), text_states=T)

        if self.text_context == "real":  # the real-context control: real tokens, training and evaluation
            if visual is False:
                raise ValueError("model.text_context=real: the text layers attend to the real visual "
                                 "tokens, so the model has no image-free mode (visual=False)")
            visual, real_context = True, True
        else:
            if visual is None:
                visual = self.training or self.inference_visual == "real"
            real_context = visual and not self.training and self.inference_visual == "real"
        if visual:
            V, keep_v, has_image = self._visual_tokens(batch)  # (B, Nv, d_v), (B, Nv), (B,)
            m_v = keep_v.to(T.dtype)
        m_t = keep_t.to(T.dtype)
        pad_t = ~keep_t  # (B, Nt) padded text positions: v2t's query padding
        B, Nt = keep_t.shape
        with label("generator precompute"):  # reads no input: once per forward, for all 4N calls
            c_t2v = self.t2v.precompute(B)  # first block (B or 1, Nv, d_v)
            c_v2t = self.v2t.precompute(B, Nt, pad_t) if visual else None  # (B, Nt, d_t)
        out = BGAOutput(T)
        N = self.num_bga_layers
        for l in range(N):
            with label("samplers"):
                m_t = self.text_samplers[l](T, m_t, keep_t) if self.use_scs else keep_t.to(T.dtype)  # Eq. 1
            with label("t2v recon"):
                V_hat = self.t2v(T, m_t, cache=c_t2v)  # (B, Nv, d_v), Eqs. 2-3
            out.text_masks.append(m_t.detach() > 0.5)
            out.generated_visual.append(V_hat)
            if visual:
                with label("samplers"):
                    m_v = self.visual_samplers[l](V, m_v, keep_v) if self.use_scs else keep_v.to(T.dtype)
                out.visual_masks.append(m_v.detach() > 0.5)
                with label("v2t recon"):
                    T_hat = self.v2t(V, m_v, Nt, pad_t, cache=c_v2t)  # (B, Nt, d_t), Eq. 4
                out.layer_losses.append(self._layer_losses(V, T, V_hat, T_hat, m_v, m_t, keep_v, keep_t,
                                                           has_image, c_t2v, c_v2t))
            if real_context:
                context, context_keep = V, keep_v  # Table 4 / text_context=real: real visual tokens
            else:
                context, context_keep = V_hat, None  # generated tokens, all attended
            with label("text layers"):  # Eq. 8; visual_to_text maps the context in (folded when cheaper)
                T_next = self.text_layers[l + 1](T, keep_t, context, context_keep, extra_proj=self.visual_to_text)
            if visual and l < N - 1:
                with label("visual blocks"):
                    with label("hybrid extra keys"):
                        extra_v = self.text_to_visual(T_hat)  # (B, Nt, d_v)
                    V = self.visual_layers[l + 1](V, keep_v, extra_v, keep_t)  # Eq. 8
            T = T_next
        out.emissions, out.text_states = self._emissions(T, batch), T
        return out

    def _layer_losses(self, V: torch.Tensor, T: torch.Tensor, V_hat: torch.Tensor, T_hat: torch.Tensor,
                      m_v: torch.Tensor, m_t: torch.Tensor, keep_v: torch.Tensor, keep_t: torch.Tensor,
                      has_image: torch.Tensor, c_t2v: GeneratorCache | None = None,
                      c_v2t: GeneratorCache | None = None) -> LayerLosses:
        """The raw terms of one layer: Eq. 5, Eqs. 6-7 and the samplers' keep ratio
        (``c_t2v``/``c_v2t``: the generators' ``precompute`` of this forward pass, or None)."""
        ratio_t = ratio_v = cycle_v = cycle_t = None
        V_tgt, T_tgt = (V.detach(), T.detach()) if self.detach_targets else (V, T)
        with label("generation losses"):
            if self.use_scs:  # how much each sampler keeps (DynamicViT's ratio loss)
                ratio_t = keep_ratio_loss(m_t, keep_t, self.keep_ratio, has_image)
                ratio_v = keep_ratio_loss(m_v, keep_v, self.keep_ratio, has_image)
            recon_v = masked_token_loss(V_hat, V_tgt, m_v, has_image)  # Eq. 5
            recon_t = masked_token_loss(T_hat, T_tgt, m_t, has_image)
        if self.use_cycle:  # Eqs. 6-7: generate back from the generated, all real units kept
            with label("t2v cycle"):
                V_bar = self.t2v(T_hat, keep_t, cache=c_t2v)  # (B, Nv, d_v)
            with label("v2t cycle"):
                T_bar = self.v2t(V_hat, torch.ones_like(keep_v), T.shape[1], ~keep_t,
                                 cache=c_v2t)  # (B, Nt, d_t)
            with label("generation losses"):
                cycle_v = masked_token_loss(V_bar, V_tgt, m_v, has_image)  # Eq. 7
                cycle_t = masked_token_loss(T_bar, T_tgt, m_t, has_image)
        return LayerLosses(recon_v, recon_t, cycle_v, cycle_t, ratio_t, ratio_v)

    def _visual_tokens(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not self.build_visual:
            raise RuntimeError("this model was built without its visual branch (build_visual=False): "
                               "it can only run image-free (visual=False)")
        missing = [k for k in ("image", "crops", "crop_mask", "has_image") if k not in batch]
        if missing:
            raise KeyError(f"the visual branch needs batch keys {missing} (data.use_images=true); "
                           "image-free inference is visual=False")
        keep_v = self.visual_embed.token_mask(batch["crop_mask"])  # (B, Nv)
        with label("visual embedding"):
            V = self.visual_embed(batch["image"], batch["crops"])  # (B, Nv, d_v)
        with label("visual blocks"):
            V = self.visual_layers[0](V, keep_v)  # plain block 0
        return V, keep_v, batch["has_image"].bool()

    def _emissions(self, T: torch.Tensor, batch: dict) -> torch.Tensor:
        with label("CRF"):
            idx = batch["word_starts"].unsqueeze(-1).expand(-1, -1, T.shape[-1])  # (B, W, d_t)
            return self.crf_head(T.gather(1, idx))  # (B, W, num_labels)

    @torch.no_grad()
    def decode(self, batch: dict, out: BGAOutput | None = None) -> list[list[int]]:
        """Viterbi label ids of the kept words of each tweet (Sec. 3.6; ``[]`` for a tweet with none).

        Args:
            batch: the text keys of a batch (and the image keys when the visual branch runs).
            out: the network's output on it; None runs the network in its current mode (in
                ``eval()``: image-free unless ``inference_visual='real'``).
        """
        out = self(batch) if out is None else out
        return self.crf_head.decode(out.emissions, batch["word_mask"])

    # ------------------------------------------------------------------ parameters
    def inference_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights image-free inference needs: loads into a ``build_visual=False`` model."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(VISUAL_ONLY)}

    def parameter_counts(self, inference: bool = False) -> dict[str, int]:
        """Parameters per component (``COMPONENTS``); ``inference=True`` counts image-free inference only."""
        counts: dict[str, int] = {}
        for name, p in self.named_parameters():
            if inference and name.startswith(VISUAL_ONLY):
                continue
            comp = component_of(name)
            counts[comp] = counts.get(comp, 0) + p.numel()
        return counts
