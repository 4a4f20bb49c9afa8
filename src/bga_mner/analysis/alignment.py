"""Generative alignment (Fig. 3) in numbers: do a tweet's generated visual features retrieve its image?

For each held-out tweet WITH an image, the text branch alone (image-free, ``visual=False``)
generates the pseudo visual tokens V_hat^l; the visual branch encodes the real image into V^l (the
tokens the generation loss of Eq. 5 compares V_hat^l with). Both are pooled over the image's real
visual tokens, and the generated features of each tweet rank all held-out images by cosine
similarity: recall@k is the share of tweets whose own image is among the top k (ties count against
it), against chance k/n. Choices (the paper is silent):

* Tokens are centred over channels before pooling. The generation loss is a KL divergence
  between channel softmaxes, which ignores a per-token shift, so only the centred token
  (log-softmax up to a constant) is what generation is trained to reproduce.
* The pooled features are centred on their mean over the held-out set (generated and real
  apart) before the cosine: otherwise the component shared by all images dominates and a few
  "hub" images are nearest to every query, whatever the text.
* The score averages the similarity matrices of all BGA layers (``layers="mean"``): every level
  is trained to align (Eq. 11 averages the losses over layers), and no single level is privileged;
  the per-layer recalls are reported too (``layers=<index>`` or ``"last"`` select one).

The plots of these numbers are in :mod:`bga_mner.analysis.alignment_plots`.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, Sequence

import torch
from lightning.pytorch.utilities import move_data_to_device
from torch import nn


@dataclass
class Retrieval:
    """Image retrieval by generated visual features (Fig. 3).

    Attributes:
        recall_at_1, recall_at_5: shares (0-1) of tweets whose own image ranks first / in the top 5.
        chance_at_1, chance_at_5: the same for a random ranking (1/n, 5/n).
        n: held-out tweets with an image (the gallery size).
        layer: the BGA layer scored (0-based) or ``"mean"``.
        per_layer: recall@1 of each BGA layer alone.
        similarity: (n, n) cosine similarity, row i = generated features of tweet i, column j =
            real features of image j.
        ids: the image ids of the rows/columns.
        layer_similarity: (N, n, n) the similarity of each BGA layer alone (``similarity`` is
            their mean, or one of them).
    """

    recall_at_1: float
    recall_at_5: float
    chance_at_1: float
    chance_at_5: float
    n: int
    layer: int | str
    per_layer: list[float] = field(default_factory=list)
    similarity: torch.Tensor | None = field(default=None, repr=False)
    ids: list[str] = field(default_factory=list, repr=False)
    layer_similarity: torch.Tensor | None = field(default=None, repr=False)

    def recall_curve(self, ks: Sequence[int], layer: int | None = None) -> list[float]:
        """Recall@k for each k of ``ks``: of the scored similarity (``layer=None``) or of one BGA
        layer alone (0-based)."""
        sim = self.similarity if layer is None else self.layer_similarity[layer]
        if sim is None:
            raise ValueError("this Retrieval holds no similarity matrix")
        return [recall_at_k(sim, k) for k in ks]

    def chance_curve(self, ks: Sequence[int]) -> list[float]:
        """Recall@k of a random ranking: min(k, n) / n."""
        return [min(k, self.n) / self.n for k in ks]

    def summary(self) -> dict[str, Any]:
        """The numbers as a plain dict (for JSON or printing)."""
        return {"recall@1": self.recall_at_1, "recall@5": self.recall_at_5,
                "chance@1": self.chance_at_1, "chance@5": self.chance_at_5, "n": self.n,
                "layer": self.layer, "recall@1 per layer": self.per_layer}


def masked_mean(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of (B, N, d) tokens over the positions where the (B, N) mask is true -> (B, d)."""
    w = mask.to(tokens.dtype).unsqueeze(-1)  # (B, N, 1)
    return (tokens * w).sum(1) / w.sum(1).clamp(min=1.0)


def _centre(tokens: torch.Tensor) -> torch.Tensor:
    return tokens - tokens.mean(-1, keepdim=True)  # per token over channels (KL's invariance)


@contextmanager
def _capture_outputs(modules: Sequence[nn.Module]) -> Iterator[list[torch.Tensor | None]]:
    """Record the latest output of each module while the context is open."""
    outputs: list[torch.Tensor | None] = [None] * len(modules)

    def hook(i: int):
        def record(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            outputs[i] = output
        return record

    handles = [m.register_forward_hook(hook(i)) for i, m in enumerate(modules)]
    try:
        yield outputs
    finally:
        for h in handles:
            h.remove()


def _select(batch: Mapping[str, Any], keep: torch.Tensor) -> dict[str, Any]:
    """The rows of a batch where ``keep`` (B,) is true."""
    idx = keep.nonzero().flatten().tolist()
    return {k: v[keep] if isinstance(v, torch.Tensor) else [v[i] for i in idx]
            for k, v in batch.items()}


def _batch_features(model: nn.Module, batch: Mapping[str, Any], layers: Sequence[nn.Module]
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled generated and real features of a batch whose tweets all have an image.

    Args:
        model: the ``BGAMNER`` (eval mode, on the batch's device).
        batch: the batch (only tweets with an image).
        layers: the visual blocks whose outputs are V^l of the BGA layers.

    Returns:
        generated (B, N, d_v) and real (B, N, d_v) features.
    """
    generated = model(batch, visual=False).generated_visual  # image-free: N x (B, Nv, d_v)
    with _capture_outputs(layers) as real:
        model(batch, visual=True)  # real: N x (B, Nv, d_v)
    keep_v = model.visual_embed.token_mask(batch["crop_mask"])  # (B, Nv) real visual tokens
    return (torch.stack([masked_mean(_centre(g), keep_v) for g in generated], 1),   # (B, N, d_v)
            torch.stack([masked_mean(_centre(r), keep_v) for r in real], 1))


@torch.no_grad()
def alignment_features(model: nn.Module, dataloader: Iterable[Mapping[str, Any]],
                       device: torch.device | str = "cpu", max_batches: int | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Pooled generated and real visual features of every tweet with an image.

    Args:
        model: a ``BGAMNER`` with its visual branch (``build_visual=True``).
        dataloader: batches with image keys (docs/ARCHITECTURE.md).
        device: where to run.
        max_batches: stop after this many batches (None: all).

    Returns:
        generated (n, N, d_v) and real (n, N, d_v) features (N = BGA layers; tokens centred over
        channels, then averaged over the image's real visual tokens), and the n image ids.
    """
    if not getattr(model, "use_mcg", False) or not getattr(model, "build_visual", False):
        raise ValueError("alignment needs a BGA-MNER network with its visual branch "
                         "(use_mcg=true, built with build_visual=True)")
    was_training = model.training
    model.eval().to(device)
    gen_all, real_all, ids = [], [], []
    layers = model.visual_layers[: model.num_bga_layers]  # V^l of BGA layer l = output of block l
    try:
        for b, batch in enumerate(dataloader):
            if max_batches is not None and b >= max_batches:
                break
            if "has_image" not in batch:
                raise KeyError("batches lack image keys: build the data with data.use_images=true")
            if not batch["has_image"].any():
                continue
            batch = move_data_to_device(_select(batch, batch["has_image"].bool()), device)
            generated, real = _batch_features(model, batch, layers)
            gen_all.append(generated)
            real_all.append(real)
            ids.extend(batch["ids"])
    finally:
        model.train(was_training)
    if not ids:
        raise ValueError("no tweet with an image in the data: nothing to retrieve")
    return torch.cat(gen_all).cpu(), torch.cat(real_all).cpu(), ids  # (n, N, d_v) each


def cosine_matrix(queries: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
    """(n, d) x (m, d) -> (n, m) cosine similarities."""
    q = nn.functional.normalize(queries, dim=-1)
    g = nn.functional.normalize(gallery, dim=-1)
    return q @ g.T


def recall_at_k(similarity: torch.Tensor, k: int) -> float:
    """Share of rows whose diagonal entry is among the k largest of the row (ties count against)."""
    diag = similarity.diagonal().unsqueeze(1)  # (n, 1)
    rank = (similarity >= diag).sum(1) - 1  # items scoring at least as high as the right one
    return float((rank < k).float().mean())


def retrieval_from_features(generated: torch.Tensor, real: torch.Tensor, ids: Sequence[str],
                            layers: int | str = "mean") -> Retrieval:
    """Recall@1/5 of :func:`alignment_features` output.

    Args:
        generated, real: (n, N, d) pooled features.
        ids: the n image ids.
        layers: ``"mean"`` (similarity averaged over BGA layers), ``"last"`` or a layer index.
    """
    n, num_layers = generated.shape[:2]
    generated = generated - generated.mean(0, keepdim=True)  # centre on the held-out set: remove
    real = real - real.mean(0, keepdim=True)  # what all tweets/images share (hub images)
    sims = torch.stack([cosine_matrix(generated[:, l], real[:, l]) for l in range(num_layers)])  # (N, n, n)
    if layers == "mean":
        sim = sims.mean(0)  # (n, n)
    else:
        layers = num_layers - 1 if layers == "last" else int(layers)
        sim = sims[layers]
    return Retrieval(recall_at_1=recall_at_k(sim, 1), recall_at_5=recall_at_k(sim, 5),
                     chance_at_1=1 / n, chance_at_5=min(5, n) / n, n=n, layer=layers,
                     per_layer=[recall_at_k(s, 1) for s in sims], similarity=sim, ids=list(ids),
                     layer_similarity=sims)


def alignment_retrieval(model: nn.Module, dataloader: Iterable[Mapping[str, Any]],
                        layers: int | str = "mean", device: torch.device | str = "cpu",
                        max_batches: int | None = None) -> Retrieval:
    """Fig. 3 as numbers: do a tweet's generated visual features retrieve its own image?

    Args:
        model: a ``BGAMNER`` with its visual branch.
        dataloader: held-out batches with images (e.g. ``LoadedRun.datamodule.test_dataloader()``).
        layers: ``"mean"`` over BGA layers (default, see the module docstring), ``"last"`` or an index.
        device: where to run; max_batches: limit the batches read.
    """
    generated, real, ids = alignment_features(model, dataloader, device, max_batches)
    return retrieval_from_features(generated, real, ids, layers)
