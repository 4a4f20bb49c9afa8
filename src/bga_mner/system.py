"""The Lightning system around the network: the objective (Eqs. 10-11), span F1, AdamW with warm-up.

The network itself (``bga_mner.models``) is a plain ``nn.Module`` that returns emissions and the raw
per-layer generation terms; this class adds only what training needs, and Eq. 11 lives in one
place, :meth:`MNERSystem.objective` (training, validation logging and ``bench`` all call it). Evaluation decodes image-free (the model's ``eval()`` default, unless
``model.inference_visual=real`` or ``model.text_context=real``) and scores the FULL gold tags of each tweet: words cut off by
``data.max_length`` are predicted ``O``.
"""

from __future__ import annotations

from typing import Any, Mapping

import lightning as L
import torch
from omegaconf import DictConfig
from torch import nn
from transformers import get_linear_schedule_with_warmup

from bga_mner.config import ModelConfig, from_container, section, to_plain
from bga_mner.data.conll import LABELS
from bga_mner.data.encode import tags_from_predictions
from bga_mner.metrics import SpanF1
from bga_mner.models import BGAOutput, build_model
from bga_mner.models.bga_mner import component_of


def parameter_groups(model: nn.Module, optim_cfg: DictConfig | Mapping[str, Any]) -> list[dict]:
    """AdamW groups: text encoder (``lr``), visual encoder (``visual_lr``), emission layer
    (``head_lr``), CRF (``crf_lr``), new modules (samplers, generators, crop position embeddings,
    projections: ``new_lr``); each split into decayed weights and undecayed biases, norm weights and
    other 1-d parameters. A rate left null is ``lr``; 0 holds the group fixed (AdamW's decay is
    proportional to the rate).

    Args:
        model: the network (``component_of`` names the component of each parameter).
        optim_cfg: the ``optim:`` section (``lr``, ``visual_lr``, ``head_lr``, ``crf_lr``, ``new_lr``,
            ``weight_decay``).
    """
    lr = float(optim_cfg["lr"])

    def rate(key: str) -> float:
        value = optim_cfg[key]
        return lr if value is None else float(value)

    lrs = {"encoder": lr, "visual": rate("visual_lr"), "head": rate("head_lr"),
           "crf": rate("crf_lr"), "new": rate("new_lr")}
    buckets: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():  # a shared parameter is listed once
        if not p.requires_grad:
            continue
        component = component_of(name)
        kind = ("crf" if name.startswith("crf_head.crf.") else "head" if component == "CRF head"
                else "visual" if component == "visual encoder"
                else "encoder" if component == "text encoder" else "new")
        decay = p.ndim >= 2 and "norm" not in name.lower()
        buckets.setdefault((kind, decay), []).append(p)
    wd = float(optim_cfg["weight_decay"])
    return [{"name": f"{kind}{'' if decay else '_no_decay'}", "params": params, "lr": lrs[kind],
             "weight_decay": wd if decay else 0.0}
            for (kind, decay), params in sorted(buckets.items())]


def adamw(groups: list[dict], lr: float, fused: bool = True) -> torch.optim.AdamW:
    """AdamW over parameter groups, with torch's fused kernel (one kernel over all parameters) where
    ``fused`` and torch has one for the parameters' device (CPU, CUDA, ...), else its foreach kernel.
    The same update either way (tests/test_speed_equivalence.py), in fewer passes over memory.

    Args:
        groups: ``parameter_groups`` of the network, on its device.
        lr: the default rate (every group sets its own).
        fused: try the fused kernel. Lightning's mixed-precision plugin refuses gradient clipping
            with an optimizer that unscales its own gradients, as fused ones do, so
            ``configure_optimizers`` asks for it at full precision only.
    """
    if fused:
        try:
            return torch.optim.AdamW(groups, lr=lr, fused=True)
        except RuntimeError:  # no fused kernel for this device or dtype
            pass
    return torch.optim.AdamW(groups, lr=lr, foreach=True)


class MNERSystem(L.LightningModule):
    """BGA-MNER (or BERT-CRF with ``model.use_mcg=false``) with its training objective.

    Args:
        config: the merged config (a typed DictConfig, or its plain-dict form as stored in
            checkpoints).
        build_visual: passed to ``build_model``; False builds only the image-free text branch.
        pretrained: passed to ``build_model``; False: random init (weights loaded next from a
            checkpoint), None: as ``model.text_pretrained``/``visual_pretrained`` say.
    """

    def __init__(self, config: DictConfig | Mapping[str, Any], build_visual: bool = True,
                 pretrained: bool | None = None) -> None:
        super().__init__()
        cfg = config if isinstance(config, DictConfig) else from_container(config, "checkpoint config")
        self.save_hyperparameters({"config": to_plain(cfg)})  # plain words: read with weights_only=True
        self.cfg = cfg
        model_cfg: ModelConfig = section(cfg, "model")
        self.model = build_model(model_cfg, num_labels=len(LABELS), build_visual=build_visual,
                                 pretrained=pretrained)
        # from_pretrained leaves the reused HF modules in eval mode (dropout off) and Lightning
        # keeps each module's mode: start the whole network in training mode.
        self.model.train()
        self.alpha, self.ratio_weight = model_cfg.alpha, model_cfg.ratio_weight
        self.val_f1 = SpanF1()
        self.test_f1 = SpanF1()
        self.val_history: list[dict] = []  # per epoch: {"epoch": e, "scores": SpanF1 dict}
        self.test_scores: dict | None = None
        # (id, words, predicted tags) per test tweet in file order, all processes' after the epoch
        self.test_predictions: list[tuple[str, list[str], list[str]]] = []

    # ----------------------------------------------------------------------------- objective
    def objective(self, batch: dict, out: BGAOutput | None = None
                  ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Eq. 11 with the samplers' keep-ratio term (weight ``model.ratio_weight``, our addition):

            L = L_mner + alpha * [ (1/N) sum_l (L_recon^l + L_cycle^l) + ratio_weight * (1/N) sum_l L_keep^l ]

        Args:
            batch: a collated batch.
            out: the network's output on ``batch``; None runs the network (in its current mode).

        Returns:
            the loss and its parts (``mner`` of Eq. 10, the layer-averaged ``recon``, ``cycle`` and
            ``keep_ratio``, and ``auxiliary``, the bracket above); the generation parts are 0 when
            the visual branch did not run.
        """
        out = self.model(batch) if out is None else out
        mner = self.model.crf_head.nll(out.emissions, batch["labels"], batch["word_mask"])  # Eq. 10
        zero = mner.new_zeros(())
        recon, cycle, keep = zero, zero, zero
        for t in out.layer_losses:  # summed in the network's order: layer by layer, visual first
            recon = recon + t.recon_visual + t.recon_text  # Eq. 5
            if t.cycle_visual is not None:
                cycle = cycle + t.cycle_visual + t.cycle_text  # Eq. 7
            if t.keep_ratio_text is not None:
                keep = keep + t.keep_ratio_text + t.keep_ratio_visual
        N = max(len(out.layer_losses), 1)  # the BGA layers that produced terms
        recon, cycle, keep = recon / N, cycle / N, keep / N  # Eq. 11's 1/N
        auxiliary = recon + cycle + self.ratio_weight * keep
        loss = mner + self.alpha * auxiliary  # Eq. 11
        return loss, {"mner": mner, "recon": recon, "cycle": cycle, "keep_ratio": keep,
                      "auxiliary": auxiliary}

    # ----------------------------------------------------------------------------- training
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, parts = self.objective(batch)
        size = batch["input_ids"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self.log_dict({f"train/{k}": v for k, v in parts.items()}, batch_size=size)
        return loss

    def configure_optimizers(self) -> dict:
        optim = self.cfg.optim
        mixed = str(self.cfg.trainer.precision).endswith("-mixed")  # Lightning's AMP plugin: no fused
        optimizer = adamw(parameter_groups(self.model, optim), float(optim.lr), fused=not mixed)
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = get_linear_schedule_with_warmup(
            optimizer, num_warmup_steps=int(float(optim.warmup_ratio) * total),
            num_training_steps=total)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}

    # --------------------------------------------------------------------------- evaluation
    @torch.no_grad()
    def decode_batch(self, batch: dict, out: BGAOutput | None = None) -> list[list[str]]:
        """Predicted tags for ALL words of each tweet (truncated words: ``O``).

        Args:
            batch: a collated batch.
            out: the network's output on it; None runs the network image-free unless
                ``model.inference_visual=real`` (the model's eval-mode default).
        """
        pred_ids = self.model.decode(batch, out)
        return [tags_from_predictions(ids, len(words)) for ids, words in zip(pred_ids, batch["words"])]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        # The visual branch runs where the batch has images, for the generation terms of the dev
        # loss. The text branch never reads real visual tokens (unless inference_visual=real), so
        # the emissions, and the dev F1, are those of image-free inference. Under text_context=real
        # the network always runs it and its text layers read the real tokens (no image-free mode).
        visual = True if self.model.use_mcg and "image" in batch else None  # None: the model's default
        out = self.model(batch, visual=visual)
        loss, parts = self.objective(batch, out)
        size = batch["input_ids"].shape[0]
        self.log_dict({"val/loss": loss, **{f"val/{k}": v for k, v in parts.items()}},
                      batch_size=size, sync_dist=True)
        self.val_f1.update(self.decode_batch(batch, out), batch["tags"])

    def on_test_epoch_start(self) -> None:
        self.test_predictions = []

    def test_step(self, batch: dict, batch_idx: int) -> None:
        preds = self.decode_batch(batch)
        self.test_f1.update(preds, batch["tags"])
        self.test_predictions.extend(zip(batch["ids"], batch["words"], preds))

    def _log_scores(self, split: str, scores: Mapping[str, Mapping[str, float]]) -> None:
        flat = {}
        for group, prf in scores.items():
            prefix = f"{split}/" if group == "overall" else f"{split}/{group}/"
            flat.update({f"{prefix}{k}": float(v) for k, v in prf.items()})
        # SpanF1.compute() already sums its counts over all processes, so every rank logs the same
        # numbers. Lightning still wants sync_dist=True for epoch-level values under DDP; max over
        # equal values is exact (a mean could round) and keeps val/f1 on every rank for the
        # checkpoint monitor (rank_zero_only would not).
        sync = {"sync_dist": True, "reduce_fx": "max"}
        self.log(f"{split}/f1", flat.pop(f"{split}/f1"), prog_bar=True, **sync)
        self.log_dict(flat, **sync)

    def on_validation_epoch_end(self) -> None:
        scores = self.val_f1.compute()
        self.val_f1.reset()
        self._log_scores("val", scores)
        if not self.trainer.sanity_checking:
            self.val_history.append({"epoch": int(self.current_epoch), "scores": scores})

    def on_test_epoch_end(self) -> None:
        self.test_scores = self.test_f1.compute()
        self.test_f1.reset()
        self._log_scores("test", self.test_scores)
        self.test_predictions = self._gather_test_predictions()

    def _gather_test_predictions(self) -> list[tuple[str, list[str], list[str]]]:
        """Every process's test predictions, in test-set order, on every process.

        Each process holds the tweets its sampler gave it, in sampler order (the eval loaders are
        unshuffled); the sampler's dataset indices put the union back in file order.
        """
        loader = self.trainer.test_dataloaders
        if isinstance(loader, (list, tuple)):
            (loader,) = loader  # one test set
        indices = list(loader.sampler)[:len(self.test_predictions)]  # limit_test_batches: a prefix
        local = list(zip(indices, self.test_predictions))
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            shares: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(shares, local)  # a collective: every rank calls it
            local = [item for share in shares for item in share]
        return [prediction for _, prediction in sorted(local, key=lambda item: item[0])]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # the dev scores of the epochs so far: a resumed run selects among all of them
        checkpoint["val_history"] = [{"epoch": h["epoch"], "scores": h["scores"]}
                                     for h in self.val_history]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "val_history" in checkpoint:
            self.val_history = [{"epoch": int(h["epoch"]), "scores": h["scores"]}
                                for h in checkpoint["val_history"]]

    def best_validation(self) -> dict:
        """The first epoch with the highest dev F1 (what ``ModelCheckpoint(mode="max")`` keeps)."""
        if not self.val_history:
            raise RuntimeError("no validation epoch ran: cannot select a checkpoint on dev")
        return max(self.val_history, key=lambda h: h["scores"]["overall"]["f1"])  # first max wins


__all__ = ["MNERSystem", "adamw", "parameter_groups"]
