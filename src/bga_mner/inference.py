"""Checkpoints for evaluation and tagging: read a Lightning ``.ckpt`` or an image-free
``inference.pt``, rebuild the network from the config stored inside, and tag raw tweets.

``inference.pt`` holds ``{"format", "config", "labels", "state_dict"}`` where ``state_dict`` is the
network's ``inference_state_dict()``: the text branch only, no visual weights. A file that is not
a checkpoint, or is truncated, is a :class:`CheckpointError` naming it.

Tagging (``bga-mner predict``, ``tagger.Tagger``; the raw input is ``data.raw_input``'s):
:func:`tag_tweets` tags tweets in batches of similar length (results in input order), and a
tweet longer than the model's window (``data.max_length`` word pieces) in overlapping windows,
so that every word gets a prediction.

This module imports only what tagging needs (torch, omegaconf, the config): the Lightning system,
the trainer's build and Lightning itself are imported inside :func:`build_system` and
:func:`save_inference_checkpoint`, so that ``bga-mner predict`` starts without them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import torch
from omegaconf import DictConfig

from bga_mner.config import check_values, from_container, merge, real_context, to_plain
from bga_mner.data.conll import LABELS, Tweet
from bga_mner.errors import UserError, one_line

if TYPE_CHECKING:
    from bga_mner.system import MNERSystem

INFERENCE_FORMAT = "bga-mner-inference/1"
BATCH_SIZE = 32  # windows per forward pass of tag_tweets (bga-mner predict --batch-size, tagger.Tagger)


class CheckpointError(UserError, ValueError):
    """A file given as a checkpoint that is not one (or is truncated, or does not fit its config);
    the message starts with the file."""


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
    """Write the image-free ``inference.pt`` of a trained system (text branch + config), atomically
    (``atomic.atomic_write``: a full disk or a kill never leaves a truncated file)."""
    from bga_mner.atomic import atomic_write

    blob = {"format": INFERENCE_FORMAT,
            "config": to_plain(system.cfg),
            "labels": list(LABELS),
            "state_dict": system.model.inference_state_dict()}
    return atomic_write(path, lambda tmp: torch.save(blob, tmp))


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read a Lightning checkpoint (``best.ckpt``) or an ``inference.pt``.

    Args:
        path: the file; its format is recognised from its content.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: the file is not a checkpoint of this suite, is truncated or damaged, or
            holds another label set (one line naming the file).
    """
    path = Path(path)
    blob = load_checkpoint_file(path)
    if blob.get("format") == INFERENCE_FORMAT:
        missing = [k for k in ("config", "labels", "state_dict") if k not in blob]
        if missing:
            raise CheckpointError(f"{path}: {INFERENCE_FORMAT} file without {missing}")
        if tuple(blob["labels"]) != LABELS:
            raise CheckpointError(f"{path}: label set {blob['labels']} differs from {list(LABELS)}")
        return Checkpoint(path, from_container(blob["config"], str(path)), blob["state_dict"], True)
    hparams = blob.get("hyper_parameters")
    if isinstance(blob.get("state_dict"), dict) and isinstance(hparams, dict) and "config" in hparams:
        from bga_mner.models import strip_prefix

        return Checkpoint(path, from_container(hparams["config"], str(path)),
                          strip_prefix(blob["state_dict"]), False)
    raise CheckpointError(f"{path}: neither a bga-mner Lightning checkpoint nor a "
                          f"{INFERENCE_FORMAT} file")

def load_checkpoint_file(path: str | Path, hint: str = "", mmap: bool = False) -> dict[str, Any]:
    """The dict a checkpoint file holds, read with ``torch.load(weights_only=True)``: tensors and
    plain containers only, never arbitrary pickled objects (``weights_only=True`` given here wins
    over ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``).

    Args:
        path: the file.
        hint: appended to the error message (what to do about an unreadable file).
        mmap: map the file instead of reading it (to look at a few entries of a large one).

    Raises:
        FileNotFoundError, IsADirectoryError: no such file; a folder.
        CheckpointError: not a checkpoint, truncated or damaged, or not a dict (one line naming it).
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: a folder, not a checkpoint file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        with warnings.catch_warnings():  # e.g. "pickle protocol 4": the error below says it all
            warnings.simplefilter("ignore", UserWarning)
            blob = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except (PermissionError, FileNotFoundError, IsADirectoryError):
        raise  # the command line names the file
    except Exception as err:  # pickle/zip/EOF/OS/RuntimeError: not a checkpoint, or a truncated one
        raise CheckpointError(f"{path}: not a readable checkpoint, or a truncated one "
                              f"({one_line(err)}){hint}") from None
    if not isinstance(blob, dict):
        raise CheckpointError(f"{path}: not a bga-mner checkpoint (holds a {type(blob).__name__}){hint}")
    return blob



def build_system(ckpt: Checkpoint, overrides: DictConfig | None = None,
                 build_visual: bool | None = None) -> MNERSystem:
    """The system of a checkpoint in eval mode, on the CPU.

    Args:
        ckpt: from :func:`read_checkpoint`.
        overrides: merged over the stored config (e.g. another test set); ``model:`` keys that
            change the network's shape make loading fail loudly (a :class:`CheckpointError`).
        build_visual: build the visual branch (default: only when evaluation reads real images,
            ``build.reads_images(cfg, "test")``: ``model.inference_visual=real`` or
            ``model.text_context=real``).
    """
    from bga_mner.build import reads_images
    from bga_mner.system import MNERSystem

    cfg = check_values(merge(ckpt.config, overrides, "overrides")) if overrides is not None \
        else ckpt.config.copy()
    if build_visual is None:
        build_visual = reads_images(cfg, "test")
    real = real_context(cfg)
    if (build_visual or real) and ckpt.image_free:
        key = "model.text_context=real" if real else "model.inference_visual=real"
        raise CheckpointError(f"{ckpt.path}: an image-free inference checkpoint has no visual "
                              "weights; use the Lightning checkpoint (checkpoints/best.ckpt) for "
                              f"{key}")
    system = MNERSystem(cfg, build_visual=build_visual, pretrained=False)  # weights: the checkpoint
    load_checkpoint_weights(system.model, ckpt)
    return system.eval()


def load_checkpoint_weights(network: torch.nn.Module, ckpt: Checkpoint) -> None:
    """Load a checkpoint's weights into its network (``models.load_network_weights``).

    Raises:
        CheckpointError: missing weights, or shapes the checkpoint's config does not give.
    """
    from bga_mner.models import load_network_weights

    try:
        load_network_weights(network, ckpt.state_dict)
    except (KeyError, RuntimeError) as err:
        raise CheckpointError(f"{ckpt.path}: its weights do not fit the network of its config "
                              f"({one_line(err)})") from None


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def text_batch(tokenizer: Any, tweets: Sequence[Tweet], max_length: int) -> dict:
    """The text keys of a batch (docs/ARCHITECTURE.md) for tweets, plus ``ids``/``words``/``tags``.

    Words past ``max_length`` word pieces are absent from ``word_mask`` (``decode_batch`` tags
    them ``O``); :func:`tag_tweets` never lets that happen (it cuts long tweets into windows).
    """
    from bga_mner.data.encode import collate_text, encode_batch

    encodings = encode_batch(tokenizer, [t.words for t in tweets], max_length)
    batch = collate_text(encodings, [t.tags for t in tweets], tokenizer.pad_token_id)
    batch.update(ids=[t.image_id for t in tweets], words=[t.words for t in tweets],
                 tags=[t.tags for t in tweets])
    return batch


# --------------------------------------------------------------------------- windows
@dataclass
class TagStats:
    """What :func:`tag_tweets` did: ``windowed`` of ``tweets`` were longer than the model's window
    (``data.max_length`` word pieces) and were tagged in ``windows`` overlapping windows."""

    tweets: int = 0
    windowed: int = 0
    windows: int = 0


def plan_windows(costs: Sequence[int], budget: int) -> list[tuple[int, int]]:
    """Word windows ``[start, end)`` that cover a tweet, each at most ``budget`` word pieces.

    One window when the tweet fits. Otherwise each window takes as many words as fit, and the
    next starts about ``budget // 2`` pieces later, so that consecutive windows overlap by about
    half a window and every word is at least a quarter window from the edge of the window it is
    taken from (:func:`merge_windows`), except at the tweet's own ends. A word longer than the
    budget is a window of its own (the encoder keeps its first pieces).

    Args:
        costs: word pieces of each word (:func:`data.encode.word_piece_counts`).
        budget: pieces per window (``max_length - 2``: room for [CLS] and [SEP]).
    """
    if budget < 1:
        raise ValueError(f"budget={budget}: a window needs room for one word piece")
    costs = [min(max(int(c), 1), budget) for c in costs]
    n = len(costs)
    if sum(costs) <= budget:
        return [(0, n)]
    stride = max(1, budget // 2)
    windows: list[tuple[int, int]] = []
    start = 0
    while True:
        end, total = start, 0
        while end < n and total + costs[end] <= budget:
            total += costs[end]
            end += 1
        windows.append((start, end))
        if end == n:
            return windows
        nxt, advanced = start + 1, costs[start]
        while nxt < end - 1 and advanced < stride:
            advanced += costs[nxt]
            nxt += 1
        start = nxt


def merge_windows(windows: Sequence[tuple[int, int]], window_tags: Sequence[Sequence[str]]
                  ) -> list[str]:
    """One tag per word from overlapping windows' tags (the windows of :func:`plan_windows`).

    Each seam between consecutive windows A and B is a cut ``c``: words before it take A's tags,
    words from it B's. The cut is the middle of the overlap (each word is taken from the window in
    which it is the more central), moved by up to a quarter of the overlap to the nearest place
    where the two windows agree on the words on both sides of it (or on one of them), so that the
    transition across the seam is one that a single window's CRF decoded. Where they agree nowhere
    near the middle, an ``I-X`` right after the cut that does not continue an ``X`` becomes ``B-X``
    (the same entity under the conlleval rule, written as valid BIO).
    """
    if len(windows) != len(window_tags):
        raise ValueError(f"{len(windows)} windows but {len(window_tags)} tag lists")
    for (s, e), tags in zip(windows, window_tags):
        if len(tags) != e - s:
            raise ValueError(f"window [{s}, {e}) has {len(tags)} tags")
    cuts: list[tuple[int, bool]] = []  # (first word taken from the next window, agreed there)
    previous = windows[0][0]
    for k in range(len(windows) - 1):
        (s_a, e_a), (s_b, _) = windows[k], windows[k + 1]
        tags_a, tags_b = window_tags[k], window_tags[k + 1]
        lo, hi = max(s_b, previous), e_a  # the cut: A gives [previous, c), B from c on
        mid = max(lo, min(hi, (s_b + e_a) // 2))
        reach = max(1, (e_a - s_b) // 4)

        def agree(i: int) -> int:  # both windows tag word i, and the same way
            return int(s_b <= i < e_a and tags_a[i - s_a] == tags_b[i - s_b])

        best, best_key = mid, None
        for c in range(max(lo, mid - reach), min(hi, mid + reach) + 1):
            key = (agree(c - 1) + agree(c), -abs(c - mid))
            if key[0] and (best_key is None or key > best_key):
                best, best_key = c, key
        cuts.append((best, best_key is not None))
        previous = best
    bounds = [windows[0][0]] + [c for c, _ in cuts] + [windows[-1][1]]
    merged: list[str] = []
    for k, (s, _) in enumerate(windows):
        merged.extend(window_tags[k][bounds[k] - s: bounds[k + 1] - s])
    for c, agreed in cuts:
        if not agreed and 0 < c < len(merged) and merged[c].startswith("I-"):
            etype = merged[c][2:]
            if merged[c - 1] not in (f"B-{etype}", f"I-{etype}"):
                merged[c] = f"B-{etype}"
    return merged


def _to_device(batch: dict, device: str | torch.device) -> dict:
    """The batch's tensors on ``device`` (the other keys as they are)."""
    if torch.device(device).type == "cpu":
        return batch
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def tag_tweets(system: Any, tokenizer: Any, tweets: Sequence[Tweet],
               batch_size: int = BATCH_SIZE, device: str | torch.device = "cpu",
               stats: TagStats | None = None, max_length: int | None = None,
               progress: Callable[[int], None] | None = None) -> list[list[str]]:
    """Predicted BIO tags of every word of every tweet, image-free, in input order.

    The tweets' windows are sorted by their number of word pieces and batched in that order, so
    a batch pads to about its own length, not to the longest tweet of the input; the forward
    passes run under ``torch.inference_mode``. A tweet longer than the model's window
    (``max_length`` word pieces with [CLS] and [SEP]) is tagged in overlapping windows
    (:func:`plan_windows`, :func:`merge_windows`), so every word gets a prediction; a tweet that
    fits is tagged in one pass, as in training.

    Args:
        system: what decodes a batch: ``decode_batch(batch) -> tags`` with ``to``/``eval`` (an
            ``MNERSystem`` from :func:`build_system`, or a ``tagger.Tagger``).
        tokenizer: the text encoder's tokenizer.
        tweets: the input; their tags are ignored.
        batch_size: windows per forward pass.
        device: torch device.
        stats: filled with the number of tweets, of windowed tweets and of their windows.
        max_length: the model's window; None: ``system.cfg.data.max_length``.
        progress: called after each batch with the number of tweets it finished.
    """
    from bga_mner.data.encode import word_piece_counts

    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: must be at least 1")
    system = system.to(device).eval()
    max_length = int(system.cfg.data.max_length if max_length is None else max_length)
    costs = word_piece_counts(tokenizer, [t.words for t in tweets])
    plans = [plan_windows(c, max_length - 2) for c in costs]
    pieces = [(i, s, e) for i, plan in enumerate(plans) for s, e in plan]
    order = sorted(range(len(pieces)),  # by word pieces (stable: input order among equals)
                   key=lambda k: sum(costs[pieces[k][0]][pieces[k][1]:pieces[k][2]]))
    window_tags: list[list[str]] = [[] for _ in pieces]
    left = [len(plan) for plan in plans]  # windows still to tag, per tweet
    with torch.inference_mode():
        for chunk in _batches(order, batch_size):
            windows = [Tweet(tweets[i].image_id, list(tweets[i].words[s:e]), ["O"] * (e - s),
                             tweets[i].source) for i, s, e in (pieces[k] for k in chunk)]
            batch = _to_device(text_batch(tokenizer, windows, max_length), device)
            done = 0
            for k, tags in zip(chunk, system.decode_batch(batch), strict=True):
                window_tags[k] = tags
                left[pieces[k][0]] -= 1
                done += left[pieces[k][0]] == 0
            if progress is not None:
                progress(done)
    tags: list[list[str]] = []
    at = 0
    for plan in plans:
        tags.append(list(window_tags[at]) if len(plan) == 1
                    else merge_windows(plan, window_tags[at: at + len(plan)]))
        at += len(plan)
    if stats is not None:
        long = [plan for plan in plans if len(plan) > 1]
        stats.tweets += len(tweets)
        stats.windowed += len(long)
        stats.windows += sum(map(len, long))
    return tags


def scores_table(scores: Mapping[str, Mapping[str, float]]) -> str:
    """A small text table of P/R/F1 percentages (overall first, then each type)."""
    lines = [f"{'':8s} {'P':>7s} {'R':>7s} {'F1':>7s}"]
    for group, prf in scores.items():
        lines.append(f"{group:8s} {prf['precision']:7.2f} {prf['recall']:7.2f} {prf['f1']:7.2f}")
    return "\n".join(lines)
