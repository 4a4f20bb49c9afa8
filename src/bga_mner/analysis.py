"""Analyses of a trained run: generative alignment (Fig. 3), sampled content (Fig. 4) and F1 on
the synthetic set's ambiguous names.

**Generative alignment (Fig. 3).** For each held-out tweet WITH an image, the text branch alone
(image-free, ``visual=False``) generates the pseudo visual tokens V_hat^l; the visual branch
encodes the real image into V^l (the tokens the generation loss of Eq. 5 compares V_hat^l with).
Both are pooled over the image's real visual tokens, and the generated features of each tweet
rank all held-out images by cosine similarity: recall@k is the share of tweets whose own image
is among the top k (ties count against it), against chance k/n. Choices (the paper is silent):

* Tokens are centred over channels before pooling. The generation loss is a KL divergence
  between channel softmaxes, which ignores a per-token shift, so only the centred token
  (log-softmax up to a constant) is what generation is trained to reproduce.
* The pooled features are centred on their mean over the held-out set (generated and real
  apart) before the cosine: otherwise the component shared by all images dominates and a few
  "hub" images are nearest to every query, whatever the text.
* The score averages the similarity matrices of all BGA layers (``layers="mean"``): every level
  is trained to align (Eq. 11 averages the losses over layers), and no single level is privileged;
  the per-layer recalls are reported too (``layers=<index>`` or ``"last"`` select one).

**Ambiguous names.** :func:`ambiguous_f1` scores only the entities that cover an ambiguous word
position of the synthetic ``meta.json`` (names such as "Jordan" whose type only the image tells):
gold entities covering such a position, and predicted entities overlapping one.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from bga_mner.data.conll import Tweet, read_conll
from bga_mner.data.spans import Span, bio_to_spans
from bga_mner.metrics import Scores, span_scores

# --------------------------------------------------------------------------- loading a run


@dataclass
class LoadedRun:
    """A finished run ready for analysis: its system (eval mode, visual branch built) and data."""

    run_dir: Path
    config: DictConfig
    system: Any          # bga_mner.system.MNERSystem
    datamodule: Any      # bga_mner.data.datamodule.MNERDataModule (set up, images on)

    @property
    def model(self) -> nn.Module:
        return self.system.model


def load_run(run_dir: str | Path, checkpoint: str = "checkpoints/best.ckpt") -> LoadedRun:
    """Rebuild a run's network from its Lightning checkpoint and its data module (with images).

    Args:
        run_dir: the run folder (docs/ARCHITECTURE.md).
        checkpoint: the checkpoint inside it (the visual branch needs ``best.ckpt``).
    """
    from bga_mner.data.datamodule import MNERDataModule
    from bga_mner.inference import build_system, read_checkpoint
    from bga_mner.models.backbones import load_tokenizer

    run_dir = Path(run_dir)
    ckpt = read_checkpoint(run_dir / checkpoint)
    use_mcg = bool(ckpt.config.model.use_mcg)
    system = build_system(ckpt, build_visual=use_mcg)
    cfg = system.cfg.copy()
    cfg.data.use_images = use_mcg
    cfg.data.modality_missing = False  # the analysis needs the real test images
    datamodule = MNERDataModule.from_config(cfg, load_tokenizer(cfg.model.text_encoder))
    datamodule.setup("test")
    return LoadedRun(run_dir, cfg, system, datamodule)


# --------------------------------------------------------------------------- Fig. 3
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


def _to(batch: Mapping[str, Any], device: torch.device | str) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _select(batch: Mapping[str, Any], keep: torch.Tensor) -> dict[str, Any]:
    """The rows of a batch where ``keep`` (B,) is true."""
    idx = keep.nonzero().flatten().tolist()
    return {k: v[keep] if isinstance(v, torch.Tensor) else [v[i] for i in idx]
            for k, v in batch.items()}


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
            batch = _to(_select(batch, batch["has_image"].bool()), device)
            generated = model(batch, visual=False).generated_visual  # image-free: N x (B, Nv, d_v)
            with _capture_outputs(layers) as real:
                model(batch, visual=True)
            keep_v = model.visual_embed.token_mask(batch["crop_mask"])  # (B, Nv) real visual tokens
            gen_all.append(torch.stack([masked_mean(_centre(g), keep_v) for g in generated], 1))
            real_all.append(torch.stack([masked_mean(_centre(r), keep_v) for r in real], 1))
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
    sims = torch.stack([cosine_matrix(generated[:, l], real[:, l]) for l in range(num_layers)])
    if layers == "mean":
        sim = sims.mean(0)
    else:
        layers = num_layers - 1 if layers == "last" else int(layers)
        sim = sims[layers]
    return Retrieval(recall_at_1=recall_at_k(sim, 1), recall_at_5=recall_at_k(sim, 5),
                     chance_at_1=1 / n, chance_at_5=min(5, n) / n, n=n, layer=layers,
                     per_layer=[recall_at_k(s, 1) for s in sims], similarity=sim, ids=list(ids))


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


# --------------------------------------------------------------------------- ambiguous names
def _spans_to_tags(spans: Iterable[Span], n: int) -> list[str]:
    tags = ["O"] * n
    for s in spans:
        tags[s.start:s.end] = [f"B-{s.type}"] + [f"I-{s.type}"] * (s.end - s.start - 1)
    return tags


def _restrict(tags: Sequence[str], positions: set[int]) -> list[str]:
    """The tags with only the entities that cover one of ``positions`` (the others become O)."""
    kept = [s for s in bio_to_spans(tags) if positions.intersection(range(s.start, s.end))]
    return _spans_to_tags(kept, len(tags))


def ambiguous_f1(gold: Sequence[Tweet], predicted: Sequence[Sequence[str]],
                 ambiguous_positions: Mapping[str, Sequence[int]]) -> dict[str, Any]:
    """Span P/R/F1 (percent) on the ambiguous names and overall.

    Args:
        gold: the gold tweets (their ``image_id`` keys ``ambiguous_positions``).
        predicted: predicted tags, one list per gold tweet.
        ambiguous_positions: word positions of the ambiguous names of each tweet id (missing: none).

    Returns:
        ``{"ambiguous": Scores, "overall": Scores, "ambiguous_entities": n gold entities scored}``.
    """
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold tweets but {len(predicted)} predictions")
    gold_amb, pred_amb = [], []
    for tweet, pred in zip(gold, predicted):
        if len(pred) != len(tweet.tags):
            raise ValueError(f"{tweet.image_id}: {len(pred)} predicted tags for {len(tweet.tags)} words")
        positions = set(ambiguous_positions.get(tweet.image_id, ()))
        gold_amb.append(_restrict(tweet.tags, positions))
        pred_amb.append(_restrict(pred, positions))
    return {"ambiguous": span_scores(gold_amb, pred_amb),
            "overall": span_scores([t.tags for t in gold], predicted),
            "ambiguous_entities": sum(len(bio_to_spans(t)) for t in gold_amb)}


def synthetic_root(cfg: DictConfig) -> Path:
    """The synthetic data set folder of a run's config (generated if absent)."""
    from bga_mner.data.synthetic import SynthConfig, ensure_synthetic

    if cfg.data.name != "synthetic":
        raise ValueError(f"data.name={cfg.data.name}: the ambiguous-name analysis needs the synthetic set")
    if cfg.data.root:
        return Path(cfg.data.root)
    return ensure_synthetic(cfg.paths.cache_dir, SynthConfig(**(cfg.data.synthetic or {})))


def run_ambiguous_f1(run_dir: str | Path) -> dict[str, Any]:
    """:func:`ambiguous_f1` of a finished synthetic run (its ``predictions/test.conll``).

    Args:
        run_dir: the run folder (its ``config.yaml`` locates the synthetic set and ``meta.json``).
    """
    run_dir = Path(run_dir)
    cfg = OmegaConf.load(run_dir / "config.yaml")
    root = synthetic_root(cfg)
    meta = json.loads((root / "meta.json").read_text(encoding="utf-8"))["tweets"]
    gold = read_conll(root / "test.txt", type_map=cfg.data.type_map or {})
    predicted = {t.image_id: t.tags for t in read_conll(run_dir / "predictions" / "test.conll")}
    missing = [t.image_id for t in gold if t.image_id not in predicted]
    if missing:
        raise ValueError(f"{run_dir / 'predictions' / 'test.conll'}: no prediction for "
                         f"{len(missing)} test tweets, e.g. {missing[:3]}")
    positions = {i: m["ambiguous_positions"] for i, m in meta.items()}
    return ambiguous_f1(gold, [predicted[t.image_id] for t in gold], positions)


def format_scores(scores: Mapping[str, Any]) -> str:
    """One line: ``ambiguous F1 x (n entities), overall F1 y``."""
    return (f"ambiguous-name F1 {scores['ambiguous']['overall']['f1']:6.2f} "
            f"({scores['ambiguous_entities']} entities), overall F1 {scores['overall']['overall']['f1']:6.2f}")


__all__ = ["LoadedRun", "Retrieval", "alignment_features", "alignment_retrieval", "ambiguous_f1",
           "cosine_matrix", "format_scores", "load_run", "masked_mean", "recall_at_k",
           "retrieval_from_features", "run_ambiguous_f1", "synthetic_root"]
