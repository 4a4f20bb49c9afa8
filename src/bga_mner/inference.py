"""Checkpoints for evaluation and tagging: read a Lightning ``.ckpt`` or an image-free
``inference.pt``, rebuild the network from the config stored inside, and tag raw tweets.

``inference.pt`` holds ``{"format", "config", "labels", "state_dict"}`` where ``state_dict`` is the
network's ``inference_state_dict()``: the text branch only, no visual weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence, TextIO

import torch
from omegaconf import DictConfig, OmegaConf

from bga_mner.data.conll import LABELS, Tweet, parse_conll_lines
from bga_mner.system import MNERSystem, load_system_weights, strip_prefix

INFERENCE_FORMAT = "bga-mner-inference/1"


@dataclass
class Checkpoint:
    """What a checkpoint file holds, whatever its format.

    Attributes:
        path: the file.
        config: the merged config the network was trained with.
        state_dict: the network's weights (keys without Lightning's ``model.`` prefix).
        image_free: True for ``inference.pt`` (no visual branch weights).
    """

    path: Path
    config: DictConfig
    state_dict: dict[str, torch.Tensor]
    image_free: bool


def save_inference_checkpoint(system: MNERSystem, path: str | Path) -> Path:
    """Write the image-free ``inference.pt`` of a trained system (text branch + config)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": INFERENCE_FORMAT,
                "config": OmegaConf.to_container(system.cfg, resolve=True),
                "labels": list(LABELS),
                "state_dict": system.model.inference_state_dict()}, path)
    return path


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read a Lightning checkpoint (``best.ckpt``) or an ``inference.pt``.

    Args:
        path: the file; its format is recognised from its content.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    # Lightning checkpoints hold only tensors and plain containers; weights_only=True refuses
    # arbitrary pickled objects.
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if blob.get("format") == INFERENCE_FORMAT:
        if tuple(blob["labels"]) != LABELS:
            raise ValueError(f"{path}: label set {blob['labels']} differs from {list(LABELS)}")
        return Checkpoint(path, OmegaConf.create(blob["config"]), blob["state_dict"], True)
    if "state_dict" in blob and "config" in blob.get("hyper_parameters", {}):
        return Checkpoint(path, OmegaConf.create(blob["hyper_parameters"]["config"]),
                          strip_prefix(blob["state_dict"]), False)
    raise ValueError(f"{path}: neither a bga-mner Lightning checkpoint nor an {INFERENCE_FORMAT} file")


def wants_real_visual(cfg: DictConfig) -> bool:
    """True when evaluation attends to real image features (``model.inference_visual=real``)."""
    return cfg.model.use_mcg and cfg.model.inference_visual == "real"


def build_system(ckpt: Checkpoint, overrides: DictConfig | None = None,
                 build_visual: bool | None = None) -> MNERSystem:
    """The system of a checkpoint in eval mode, on the CPU.

    Args:
        ckpt: from :func:`read_checkpoint`.
        overrides: merged over the stored config (e.g. another test set); ``model:`` keys that
            change the network's shape make loading fail loudly.
        build_visual: build the visual branch (default: only when evaluation needs real images).
    """
    cfg = OmegaConf.merge(ckpt.config, overrides) if overrides is not None else ckpt.config.copy()
    if build_visual is None:
        build_visual = wants_real_visual(cfg)
    if build_visual and ckpt.image_free:
        raise ValueError(f"{ckpt.path}: an image-free inference checkpoint has no visual weights; "
                         "use the Lightning checkpoint (checkpoints/best.ckpt) for "
                         "model.inference_visual=real")
    system = MNERSystem(cfg, build_visual=build_visual, pretrained=False)  # weights: the checkpoint
    load_system_weights(system, ckpt.state_dict)
    return system.eval()


# --------------------------------------------------------------------------- raw input
def read_tweets(stream: TextIO, name: str = "<stdin>") -> list[Tweet]:
    """Tweets from a CoNLL file (recognised by ``IMGID:`` lines or tabs) or from raw text, one
    tweet per non-empty line, split on whitespace (ids ``line<N>``)."""
    lines = stream.read().splitlines()
    if any(line.startswith("IMGID:") or "\t" in line for line in lines):
        return parse_conll_lines(lines, path=name)
    return [Tweet(image_id=f"line{n}", words=line.split(), tags=["O"] * len(line.split()),
                  source=f"{name}:{n}") for n, line in enumerate(lines, start=1) if line.strip()]


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def text_batch(tokenizer: Any, tweets: Sequence[Tweet], max_length: int) -> dict:
    """The text keys of a batch (docs/ARCHITECTURE.md) for tweets, plus ``ids``/``words``/``tags``."""
    from bga_mner.data.encode import collate_text, encode_batch

    encodings = encode_batch(tokenizer, [t.words for t in tweets], max_length)
    batch = collate_text(encodings, [t.tags for t in tweets], tokenizer.pad_token_id)
    batch.update(ids=[t.image_id for t in tweets], words=[t.words for t in tweets],
                 tags=[t.tags for t in tweets])
    return batch


def tag_tweets(system: MNERSystem, tokenizer: Any, tweets: Sequence[Tweet],
               batch_size: int = 32, device: str | torch.device = "cpu") -> list[list[str]]:
    """Predicted BIO tags of every word of every tweet, image-free.

    Args:
        system: from :func:`build_system` (eval mode).
        tokenizer: the text encoder's tokenizer.
        tweets: the input; their tags are ignored.
    """
    system = system.to(device).eval()
    max_length = int(system.cfg.data.max_length)
    tags: list[list[str]] = []
    for chunk in _batches(tweets, batch_size):
        batch = text_batch(tokenizer, chunk, max_length)
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        tags.extend(system.decode_batch(batch))
    return tags


def scores_table(scores: Mapping[str, Mapping[str, float]]) -> str:
    """A small text table of P/R/F1 percentages (overall first, then each type)."""
    lines = [f"{'':8s} {'P':>7s} {'R':>7s} {'F1':>7s}"]
    for group, prf in scores.items():
        lines.append(f"{group:8s} {prf['precision']:7.2f} {prf['recall']:7.2f} {prf['f1']:7.2f}")
    return "\n".join(lines)
