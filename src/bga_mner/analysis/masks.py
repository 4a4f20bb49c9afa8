"""Sampled content (Fig. 4) in numbers: what the Stage-refined Context Samplers keep at each BGA layer.

:func:`sampled_masks` reads the evaluation-mode keep decisions of both samplers (each keeps the
``model.keep_ratio`` share of a tweet's units it scores highest: ``models.sampler``) for the
tweets of a batch that have an image (:class:`TweetMasks`: word pieces, gold entity of each piece,
global-image and crop patches); :func:`keep_rates` pools them over many tweets (:class:`KeepRates`).
The figures are in :mod:`bga_mner.analysis.mask_plots`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping, Sequence

import torch
from lightning.pytorch.utilities import move_data_to_device
from torch import nn


@dataclass
class TweetMasks:
    """Fig. 4 for one tweet: the keep decisions of both samplers (SCS) at every BGA layer.

    Attributes:
        image_id: the tweet's id.
        pieces: its word pieces as the model read them ([CLS] ... [SEP]).
        entity: per piece, the gold entity type of its word (None: filler or a special token).
        special: per piece, whether it belongs to no word ([CLS], [SEP]).
        text_keep: (N, pieces) bool, the text SCS's decisions per BGA layer.
        cls_keep: (N,) bool, the visual SCS's decision on the global image's class token.
        global_keep: (N, g, g) bool, on the global image's patches (row-major grid).
        crop_keep: (N, K, c, c) bool, on each object crop's patches (all False for a missing crop).
        crop_present: (K,) bool, which crops exist.
        image: (3, G, G) float in [0, 1], the global image as the model saw it.
        crops: (K, 3, C, C) float in [0, 1], the crops as the model saw them.
    """

    image_id: str
    pieces: list[str]
    entity: list[str | None]
    special: list[bool]
    text_keep: torch.Tensor
    cls_keep: torch.Tensor
    global_keep: torch.Tensor
    crop_keep: torch.Tensor
    crop_present: torch.Tensor
    image: torch.Tensor
    crops: torch.Tensor

    @property
    def num_layers(self) -> int:
        return int(self.text_keep.shape[0])

    def text_units(self, which: str = "all") -> torch.Tensor:
        """(N, units) text decisions: ``all`` real pieces (special tokens too, as the sampler sees
        them), ``entity`` (pieces of gold entities) or ``filler`` (the other words' pieces)."""
        entity = torch.tensor([e is not None for e in self.entity], dtype=torch.bool)
        special = torch.tensor(self.special, dtype=torch.bool)
        select = {"all": torch.ones_like(entity), "entity": entity, "filler": ~entity & ~special}[which]
        return self.text_keep[:, select]

    def visual_units(self, which: str = "all") -> torch.Tensor:
        """(N, units) visual decisions: ``all`` real tokens (class token, global patches, the
        present crops' patches), ``global`` patches or ``crops`` patches."""
        n = self.num_layers
        glob = self.global_keep.reshape(n, -1)  # (N, g*g)
        crops = self.crop_keep[:, self.crop_present].reshape(n, -1)  # (N, present crops * c*c)
        parts = {"global": [glob], "crops": [crops], "all": [self.cls_keep.reshape(n, 1), glob, crops]}
        return torch.cat(parts[which], dim=1)

    def text_keep_rate(self, which: str = "all") -> list[float]:
        """Share of :meth:`text_units` kept per layer (NaN where the tweet has none)."""
        return _rates(self.text_units(which))

    def visual_keep_rate(self, which: str = "all") -> list[float]:
        """Share of :meth:`visual_units` kept per layer (NaN where the tweet has none)."""
        return _rates(self.visual_units(which))


def _rates(keep: torch.Tensor) -> list[float]:
    """(N, units) bool -> per-row share kept (NaN for no units)."""
    if keep.shape[1] == 0:
        return [float("nan")] * keep.shape[0]
    return keep.float().mean(1).tolist()


def _piece_words(word_starts: torch.Tensor, word_mask: torch.Tensor, length: int) -> list[int | None]:
    """The word of each of ``length`` word pieces (None for [CLS], [SEP], padding): word w covers its
    first piece up to the next present word's first piece, or up to the last piece ([SEP])."""
    starts = [(int(s), w) for w, (s, m) in enumerate(zip(word_starts.tolist(), word_mask.tolist())) if m]
    owner: list[int | None] = [None] * length
    for k, (start, w) in enumerate(starts):
        end = starts[k + 1][0] if k + 1 < len(starts) else length - 1
        for j in range(start, min(end, length)):
            owner[j] = w
    return owner


def _piece_entities(owner: Sequence[int | None], tags: Sequence[str]) -> list[str | None]:
    """The gold entity type of each piece's word (None: no word, or a word tagged O)."""
    return [None if w is None or w >= len(tags) or tags[w] == "O" else tags[w].split("-", 1)[-1]
            for w in owner]


def _unnormalize(pixels: torch.Tensor) -> torch.Tensor:
    """CLIP-normalised (..., 3, H, W) -> [0, 1] (the data module's normalisation undone)."""
    from timm.data import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    mean = torch.tensor(OPENAI_CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(OPENAI_CLIP_STD).view(3, 1, 1)
    return (pixels.float().cpu() * std + mean).clamp(0, 1)


def _visual_decisions(visual: torch.Tensor, ve: nn.Module
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One tweet's (N, Nv) visual decisions split by token kind.

    Args:
        visual: (N, Nv) bool, the class token, the global patches, then each crop's tokens.
        ve: the model's ``VisualEmbedding`` (its grid sizes).

    Returns:
        class token (N,), global patches (N, g, g) and crop patches (N, K, c, c).
    """
    n_layers = visual.shape[0]
    grid = ve.image_size // ve.patch_embed.patch_size[0]
    crop_grid = int(round(ve.crop_tokens ** 0.5))
    crops = visual[:, ve.num_global_tokens:].reshape(n_layers, ve.num_crops, crop_grid, crop_grid)
    return visual[:, 0], visual[:, 1:1 + grid * grid].reshape(n_layers, grid, grid), crops


def _tweet_masks(batch: Mapping[str, Any], i: int, text: torch.Tensor, visual: torch.Tensor,
                 ve: nn.Module, tokenizer: Any) -> TweetMasks:
    """:class:`TweetMasks` of tweet ``i`` of a batch.

    Args:
        batch: the batch (image keys present).
        i: the tweet's row.
        text: (N, Nt) bool, its text decisions; visual: (N, Nv) bool, its visual decisions.
        ve: the model's ``VisualEmbedding``.
        tokenizer: ids -> word pieces (``convert_ids_to_tokens``); None: the ids as text.
    """
    length = int(batch["attention_mask"][i].sum())
    ids = batch["input_ids"][i][:length].tolist()
    pieces = (list(tokenizer.convert_ids_to_tokens(ids)) if tokenizer is not None
              else [str(t) for t in ids])
    owner = _piece_words(batch["word_starts"][i], batch["word_mask"][i], length)
    cls_keep, global_keep, crop_keep = _visual_decisions(visual, ve)
    return TweetMasks(
        image_id=batch["ids"][i], pieces=pieces, entity=_piece_entities(owner, batch["tags"][i]),
        special=[w is None for w in owner], text_keep=text[:, :length], cls_keep=cls_keep,
        global_keep=global_keep, crop_keep=crop_keep, crop_present=batch["crop_mask"][i].bool().cpu(),
        image=_unnormalize(batch["image"][i]), crops=_unnormalize(batch["crops"][i]))


@torch.no_grad()
def sampled_masks(model: nn.Module, batch: Mapping[str, Any], tokenizer: Any = None,
                  device: torch.device | str = "cpu") -> list[TweetMasks]:
    """Fig. 4's content: the evaluation-mode SCS decisions (the ``keep_ratio`` share of most
    probable units) for the tweets of a batch that have an image.

    Args:
        model: a ``BGAMNER`` with its visual branch (``use_mcg=true``, ``build_visual=True``).
        batch: a batch with image keys (docs/ARCHITECTURE.md).
        tokenizer: turns ids into word pieces (``convert_ids_to_tokens``); None: the ids as text.
        device: where to run.
    """
    if not getattr(model, "use_mcg", False) or not getattr(model, "build_visual", False):
        raise ValueError("the sampled masks need a BGA-MNER network with its visual branch "
                         "(use_mcg=true, built with build_visual=True)")
    if "has_image" not in batch:
        raise KeyError("the batch lacks image keys: build the data with data.use_images=true")
    was_training = model.training
    model.eval().to(device)
    try:
        out = model(move_data_to_device(dict(batch), device), visual=True)
    finally:
        model.train(was_training)
    text = torch.stack(out.text_masks).cpu()      # (N, B, Nt)
    visual = torch.stack(out.visual_masks).cpu()  # (N, B, Nv)
    return [_tweet_masks(batch, i, text[:, i], visual[:, i], model.visual_embed, tokenizer)
            for i in range(len(batch["ids"])) if bool(batch["has_image"][i])]


def collect_masks(model: nn.Module, dataloader: Iterable[Mapping[str, Any]], tokenizer: Any = None,
                  device: torch.device | str = "cpu", limit: int | None = None,
                  pixels: int | None = None) -> list[TweetMasks]:
    """:func:`sampled_masks` over a data loader (the tweets with an image; at most ``limit``).

    Args:
        model, tokenizer, device: as for :func:`sampled_masks`.
        dataloader: batches with image keys.
        limit: at most this many tweets (None: all).
        pixels: keep the images of only the first ``pixels`` tweets (the ones to draw); the others
            get empty ``image``/``crops`` tensors, so that a whole test set's decisions fit in memory.
    """
    masks: list[TweetMasks] = []
    for batch in dataloader:
        if limit is not None and len(masks) >= limit:
            break
        if bool(batch["has_image"].any()):
            for m in sampled_masks(model, batch, tokenizer, device):
                if pixels is not None and len(masks) >= pixels:
                    m = replace(m, image=torch.empty(0), crops=torch.empty(0))
                masks.append(m)
    return masks[:limit] if limit is not None else masks


@dataclass
class KeepRates:
    """Keep rates per BGA layer over many tweets (units pooled, not tweets averaged)."""

    text: list[float]
    entity: list[float]
    filler: list[float]
    visual: list[float]
    global_patches: list[float]
    crop_patches: list[float]
    tweets: int

    def table(self) -> str:
        """A markdown table: one row per BGA layer, keep rates in percent."""
        rows = ["| BGA layer | text | entity pieces | filler pieces | visual | global patches | crop patches |",
                "|---|---|---|---|---|---|---|"]
        cols = (self.text, self.entity, self.filler, self.visual, self.global_patches, self.crop_patches)
        for layer in range(len(self.text)):
            rows.append(f"| {layer + 1} | " + " | ".join(_pct(c[layer]) for c in cols) + " |")
        return "\n".join(rows)


def _pct(x: float) -> str:
    return "—" if x != x else f"{100 * x:.1f}%"


def keep_rates(masks: Sequence[TweetMasks]) -> KeepRates:
    """Pool the decisions of many tweets: the share of all their units kept, per layer.

    Args:
        masks: the tweets' decisions (:func:`collect_masks`), at least one.
    """
    if not masks:
        raise ValueError("no tweets: nothing to pool")

    def pooled(branch: str, which: str) -> list[float]:
        return _rates(torch.cat([getattr(m, f"{branch}_units")(which) for m in masks], dim=1))

    return KeepRates(
        text=pooled("text", "all"), entity=pooled("text", "entity"), filler=pooled("text", "filler"),
        visual=pooled("visual", "all"), global_patches=pooled("visual", "global"),
        crop_patches=pooled("visual", "crops"),
        tweets=len(masks))
