"""``MNERDataModule``: Twitter-2015, Twitter-2017 or the synthetic set as batches (docs/ARCHITECTURE.md).

Settings (the ``data:`` section of the config):

- data set: ``name`` (``twitter2015`` | ``twitter2017`` | ``synthetic``), ``root`` (default
  ``<paths.data_dir>/<name>``; the synthetic set is generated into
  ``<paths.cache_dir>/synthetic-<hash>``), ``images_dir`` (default ``<root>/images``, else the
  release's ``<root>_images``), ``object_source`` and ``objects_file``: the suite's own layout or
  the HVPNeT/MKGformer release's, read as it is (``data/image_sources.py``). A tweet without a
  readable image gets ``has_image=False``, counted and logged; a split with no readable image at
  all stops a multimodal run in ``setup`` (``image_sources.check_found``).
- ``use_images=false``: no visual input at all; the batch has no image keys.
- data-limited (Fig. 5): ``train_limit=n`` keeps n train tweets drawn with the run seed (in file
  order) and saves their ids to ``<run_dir>/train_subset.json``. With ``train_limit_fill=true`` an
  epoch draws as many tweets as the full train split holds (whole reshuffled passes over the n,
  the last one cut short), so a data-limited run takes as many optimiser steps as a full one.
- modality-missing (Table 7): ``modality_missing=true`` replaces every TEST image by one uniform
  grey image (every pixel 128 before normalisation) with no objects, and ``has_image=True``:
  the paper's setting (after UMT) gives the model an image that is present but empty, rather than
  marking the image absent. Train and dev are unchanged.
- cross-domain (Table 6): ``test_name`` / ``test_root`` take the test split of another data set.
- ``length_buckets`` (e.g. ``[32, 64, 128]``): every batch is padded to the smallest bucket that
  holds its longest tweet (:func:`pad_to_buckets`), so a compiled network (``trainer.compile``) sees
  a few shapes only. The largest bucket must hold every tweet (checked in ``setup``) and may not
  exceed ``model.max_length`` (the v2t generator's textual queries; checked in ``from_config``).

:meth:`MNERDataModule.setup` (which Lightning calls before the first training step) checks the
whole input before any image is decoded or any step runs: every split file exists, holds at least
one tweet and only known labels (``conll.read_conll``: ``path:line`` errors; an empty split is
``<path>: no tweets (empty file)``), an ``images_dir`` or ``objects_file`` that is set exists, and
every line of the objects file is valid (``detect.read_objects``). After it, ``truncated_counts``
and ``missing_image_counts`` hold ``{split: count}`` for the results JSON (tweets without a
readable image; None with ``use_images=false``), ``image_counts`` holds ``{split:
images.ImageCounts | None}`` (missing and unreadable images apart, clipped and dropped boxes, crop
files missing and unreadable, tweets with 0..K crops), ``object_source`` the source of the crops
(None without images) and ``label_versions`` ``{split: version}`` (``data.label_versions``).
"""

from __future__ import annotations

import json
import logging
import random
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import lightning as L
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset, RandomSampler

from bga_mner.atomic import atomic_write_text
from transformers import PreTrainedTokenizerBase

from bga_mner.config import ConfigError, DataConfig, section
from bga_mner.data.conll import SPLITS, Tweet, read_conll
from bga_mner.data.encode import Encoding, collate_text, encode_batch
from bga_mner.data.image_sources import ImageSource, check_found, open_images
from bga_mner.data.images import ImageCounts, ImageStore, VisualSample
from bga_mner.data.label_versions import detect_version
from bga_mner.data.synthetic import ensure_synthetic

log = logging.getLogger(__name__)


class Item(NamedTuple):
    """One dataset element: the tweet, its encoding and its visual input (None without images)."""

    tweet: Tweet
    encoding: Encoding
    visual: VisualSample | None


class MNERDataset(Dataset):
    """Tweets with their encodings and, optionally, their images.

    Args:
        tweets: the split's tweets.
        encodings: one :class:`Encoding` per tweet.
        store: where images come from; None = text only.
        replacement: if given, every tweet gets this visual input (modality-missing).
    """

    def __init__(self, tweets: Sequence[Tweet], encodings: Sequence[Encoding],
                 store: ImageStore | None = None, replacement: VisualSample | None = None) -> None:
        if len(tweets) != len(encodings):
            raise ValueError(f"{len(tweets)} tweets but {len(encodings)} encodings")
        self.tweets, self.encodings = list(tweets), list(encodings)
        self.store, self.replacement = store, replacement

    def __len__(self) -> int:
        return len(self.tweets)

    def __getitem__(self, i: int) -> Item:
        tweet = self.tweets[i]
        visual = self.replacement if self.replacement is not None else (
            self.store.load(tweet.image_id) if self.store is not None else None)
        return Item(tweet, self.encodings[i], visual)


def bucket_length(n: int, buckets: Sequence[int]) -> int:
    """The smallest bucket that holds ``n``.

    Args:
        n: a length (word pieces or words).
        buckets: increasing lengths (``data.length_buckets``).

    Raises:
        ValueError: ``n`` is longer than the largest bucket.
    """
    for b in buckets:
        if n <= b:
            return int(b)
    raise ValueError(f"a sequence of {n} word pieces is longer than the largest of "
                     f"data.length_buckets={list(buckets)}: add a bucket >= data.max_length")


def _pad_to(x: torch.Tensor, length: int, value: Any) -> torch.Tensor:
    """(B, n) -> (B, length), the new columns filled with ``value``."""
    return torch.nn.functional.pad(x, (0, length - x.shape[1]), value=value)


def pad_to_buckets(batch: dict[str, Any], buckets: Sequence[int], pad_token_id: int) -> dict[str, Any]:
    """Pad the text keys of a collated batch to bucket lengths (``data.length_buckets``), in place.

    The token axis Nt goes to the smallest bucket >= Nt (a longer sequence is a ``ValueError``), with
    ``pad_token_id`` and attention 0; the word axis W to the smallest bucket >= W, with word start 0,
    word mask False and label 0 (O). Only a batch holding a tweet of more words than the largest
    bucket keeps its own W (its words past ``data.max_length`` are truncated: masked anyway). The
    model masks every padded position, so the outputs at real tokens do not change.

    Args:
        batch: the dict of :func:`collate` (``input_ids``, ``attention_mask`` (B, Nt); ``word_starts``,
            ``word_mask``, ``labels`` (B, W)).
        buckets: increasing lengths.
        pad_token_id: the tokenizer's padding id.
    """
    n_tokens = bucket_length(batch["input_ids"].shape[1], buckets)
    batch["input_ids"] = _pad_to(batch["input_ids"], n_tokens, pad_token_id)  # (B, Nt_bucket)
    batch["attention_mask"] = _pad_to(batch["attention_mask"], n_tokens, 0)
    n_words = batch["labels"].shape[1]
    if n_words <= buckets[-1]:
        n_words = bucket_length(n_words, buckets)
    batch["word_starts"] = _pad_to(batch["word_starts"], n_words, 0)  # (B, W_bucket)
    batch["word_mask"] = _pad_to(batch["word_mask"], n_words, False)
    batch["labels"] = _pad_to(batch["labels"], n_words, 0)
    return batch


def collate(items: Sequence[Item], pad_token_id: int,
            length_buckets: Sequence[int] | None = None) -> dict[str, Any]:
    """The batch dict of docs/ARCHITECTURE.md (image keys only when the items carry images).

    Args:
        items: the dataset elements of the batch.
        pad_token_id: the tokenizer's padding id.
        length_buckets: pad the text axes to these lengths (:func:`pad_to_buckets`); None: to the
            batch's longest.
    """
    batch: dict[str, Any] = collate_text([it.encoding for it in items],
                                         [it.tweet.tags for it in items], pad_token_id)
    if length_buckets:
        pad_to_buckets(batch, length_buckets, pad_token_id)
    if items[0].visual is not None:
        batch["image"] = torch.stack([it.visual.image for it in items])          # (B, 3, G, G)
        batch["crops"] = torch.stack([it.visual.crops for it in items])          # (B, K, 3, C, C)
        batch["crop_mask"] = torch.stack([it.visual.crop_mask for it in items])  # (B, K)
        batch["has_image"] = torch.tensor([it.visual.has_image for it in items])  # (B,)
    batch["ids"] = [it.tweet.image_id for it in items]
    batch["words"] = [list(it.tweet.words) for it in items]
    batch["tags"] = [list(it.tweet.tags) for it in items]
    return batch


class MNERDataModule(L.LightningDataModule):
    """Train/valid/test loaders of one data set (see the module docstring for the settings).

    Args:
        data_cfg: the config's ``data:`` section (``config.DataConfig``).
        tokenizer: the text encoder's fast tokenizer.
        seed: the run seed (train shuffling and the data-limited subset).
        run_dir: the run folder (``train_subset.json`` goes there); None: not saved.
        data_dir: ``paths.data_dir``, parent of the named data sets.
        cache_dir: ``paths.cache_dir``, home of the synthetic set and (by default) the image cache.
    """

    def __init__(self, data_cfg: DataConfig, tokenizer: PreTrainedTokenizerBase,
                 seed: int = 42, run_dir: str | Path | None = None,
                 data_dir: str | Path = "../shared/data", cache_dir: str | Path = ".cache") -> None:
        super().__init__()
        self.cfg = data_cfg
        self.tokenizer, self.seed = tokenizer, seed
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.data_dir, self.cache_dir = Path(data_dir), Path(cache_dir)
        if tokenizer.pad_token_id is None:
            raise ValueError(f"{type(tokenizer).__name__} has no pad token")
        self.name: str = self.cfg.name
        test_root = self.cfg.test_root
        self.test_name: str = self.cfg.test_name or (Path(test_root).name if test_root
                                                            else self.name)
        self.datasets: dict[str, MNERDataset] = {}
        self.truncated_counts: dict[str, int] = {}
        self.missing_image_counts: dict[str, int | None] = {}
        self.image_counts: dict[str, ImageCounts | None] = {}
        self.object_source: str | None = None  # detections | grounding | rcnn | none (None: no images)
        self.label_versions: dict[str, str] = {}  # split -> umt-original | hvpnet-repaired | unknown
        self.train_subset_ids: list[str] | None = None
        self.full_train_size: int | None = None  # the train split's size before train_limit
        # the train loader's shuffling generator, and the state a resumed run restores it to
        # (state_dict / load_state_dict: Lightning saves them in checkpoints)
        self._train_generator: torch.Generator | None = None
        self._restored_generator_state: torch.Tensor | None = None

    @classmethod
    def from_config(cls, cfg: DictConfig, tokenizer: PreTrainedTokenizerBase,
                    run_dir: str | Path | None = None) -> "MNERDataModule":
        """Build from the whole merged config (``data``, ``seed``, ``paths``).

        Raises:
            ConfigError: the largest of ``data.length_buckets`` exceeds ``model.max_length`` (the
                image-to-text generator has that many textual queries, one per token position).
        """
        data_cfg: DataConfig = section(cfg, "data")
        buckets = data_cfg.length_buckets
        if buckets and buckets[-1] > int(cfg.model.max_length):
            raise ConfigError(f"data.length_buckets={list(buckets)}: the largest bucket exceeds "
                              f"model.max_length={cfg.model.max_length}, the v2t generator's number "
                              "of textual queries (one per word-piece position)")
        return cls(data_cfg, tokenizer, seed=cfg.seed, run_dir=run_dir,
                   data_dir=cfg.paths.data_dir, cache_dir=cfg.paths.cache_dir)

    # ------------------------------------------------------------------ locations
    def _root(self, name: str, root: str | None) -> Path:
        if root:
            return Path(root)
        if name == "synthetic":
            return ensure_synthetic(self.cache_dir, self.cfg.synthetic)
        return self.data_dir / name

    # ------------------------------------------------------------------ Lightning hooks
    def _cross_domain(self) -> bool:
        return bool(self.cfg.test_name or self.cfg.test_root)

    def prepare_data(self) -> None:
        sets = [(self.name, self.cfg.root)]
        if self._cross_domain():
            sets.append((self.test_name, self.cfg.test_root))
        for name, root in sets:
            if name == "synthetic" and not root:
                self._root(name, None)  # generate once, on the main process

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        type_map = self.cfg.type_map or {}
        root = self._root(self.name, self.cfg.root)
        cross = self._cross_domain()
        test_root = self._root(self.test_name, self.cfg.test_root) if cross else root
        tweets: dict[str, list[Tweet]] = {}
        for split in SPLITS:
            split_root = test_root if split == "test" else root
            path = split_root / f"{split}.txt"
            if not path.is_file():
                raise FileNotFoundError(f"{path}: missing split file of data set {split_root}")
            tweets[split] = read_conll(path, type_map=type_map)  # raises on an empty split
        self._record_label_versions(root, test_root, tweets)
        tweets["train"] = self._limit_train(tweets["train"])

        stores: dict[str, ImageStore | None] = {"train": None, "valid": None, "test": None}
        images: dict[str, ImageSource] = {}
        if self.cfg.use_images:
            cache = Path(self.cfg.cache_dir) if self.cfg.cache_dir else self.cache_dir / "images"
            main = open_images(self.cfg, root, cache, splits=("train", "valid") if cross else SPLITS)
            images = dict.fromkeys(SPLITS, main)
            if cross:
                images["test"] = open_images(self.cfg, test_root, cache, own_settings=False, splits=("test",))
            stores = {split: source.store for split, source in images.items()}
            self.object_source = main.source
        for split in SPLITS:
            encodings = encode_batch(self.tokenizer, [t.words for t in tweets[split]],
                                     self.cfg.max_length)
            self._check_buckets(split, encodings)
            self.truncated_counts[split] = sum(e.truncated for e in encodings)
            if self.truncated_counts[split]:
                log.info("%s: %d of %d tweets truncated to max_length=%d word pieces", split,
                         self.truncated_counts[split], len(encodings), self.cfg.max_length)
            store, replacement, counts = stores[split], None, None
            if store is None:
                pass
            elif split == "test" and self.cfg.modality_missing:
                replacement = store.uniform()
                counts = ImageCounts(tweets=len(tweets[split]))
                log.info("test: modality-missing: all %d images replaced by one uniform grey image",
                         len(tweets[split]))
            else:
                counts = store.prepare([t.image_id for t in tweets[split]], split=split)
                check_found(split, counts, images[split])  # stops here, before any training step
            self.image_counts[split] = counts
            self.missing_image_counts[split] = None if counts is None else counts.without_image
            self.datasets[split] = MNERDataset(tweets[split], encodings, store, replacement)

    def _record_label_versions(self, root: Path, test_root: Path, tweets: dict[str, list[Tweet]]) -> None:
        """``label_versions``: each split's label version (the test split's of its own set)."""
        own = {s: t for s, t in tweets.items() if s != "test" or test_root == root}
        versions = detect_version(root, own).splits
        if test_root != root:
            versions |= detect_version(test_root, {"test": tweets["test"]}).splits
        self.label_versions = {s: versions[s].version for s in SPLITS}

    def _check_buckets(self, split: str, encodings: Sequence[Encoding]) -> None:
        """Every encoded tweet fits the largest length bucket (checked before any step runs)."""
        buckets = self.cfg.length_buckets
        longest = max(len(e.input_ids) for e in encodings)
        if buckets and longest > buckets[-1]:
            raise ConfigError(f"{split}: a tweet of {longest} word pieces is longer than the largest "
                              f"of data.length_buckets={list(buckets)}; the largest bucket must be "
                              f">= data.max_length={self.cfg.max_length}")

    def _limit_train(self, train: list[Tweet]) -> list[Tweet]:
        n = self.cfg.train_limit
        if n is None:
            return train
        if not 0 < int(n) <= len(train):
            raise ConfigError(f"data.train_limit={n}: must be between 1 and the {len(train)} "
                              f"train tweets")
        chosen = sorted(random.Random(self.seed).sample(range(len(train)), int(n)))
        subset = [train[i] for i in chosen]
        self.train_subset_ids = [t.image_id for t in subset]
        self.full_train_size = len(train)
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            record = {"dataset": self.name, "n": int(n), "seed": self.seed,
                      "indices": chosen, "ids": self.train_subset_ids}
            atomic_write_text(self.run_dir / "train_subset.json", json.dumps(record, indent=1) + "\n")
        log.info("train: data-limited to %d of %d tweets (seed %d)", len(subset), len(train), self.seed)
        return subset

    # ------------------------------------------------------------------ loaders
    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if not self.datasets:
            self.setup()
        workers = int(self.cfg.num_workers or 0)
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        if generator is not None:
            if self._restored_generator_state is not None:  # a resumed run: the next epoch's order
                generator.set_state(self._restored_generator_state)
                self._restored_generator_state = None
            self._train_generator = generator
        sampler, batch_size = None, self.cfg.batch_size if shuffle else self.cfg.eval_batch_size
        if shuffle and self.cfg.train_limit and self.cfg.train_limit_fill:
            # as many draws as the full train split: passes over the n tweets, each reshuffled
            sampler = RandomSampler(self.datasets[split], num_samples=self.full_train_size,
                                    generator=generator)
            shuffle = False  # the sampler shuffles
        elif not shuffle and self.trainer is not None and self.trainer.world_size > 1:
            # Distributed evaluation: every tweet exactly once. Lightning's DistributedSampler pads
            # the last ranks with repeated tweets, which would change the span counts; it keeps a
            # DistributedSampler (subclass) that the loader already has.
            sampler = UnrepeatedDistributedSampler(self.datasets[split], shuffle=False,
                                                   num_replicas=self.trainer.world_size,
                                                   rank=self.trainer.global_rank)
        return DataLoader(self.datasets[split],
                          batch_size=batch_size,
                          shuffle=shuffle, sampler=sampler, generator=generator, num_workers=workers,
                          persistent_workers=workers > 0,
                          collate_fn=partial(collate, pad_token_id=self.tokenizer.pad_token_id,
                                             length_buckets=self.cfg.length_buckets))

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("valid", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    # ------------------------------------------------------------------ resuming
    def state_dict(self) -> dict[str, Any]:
        """The train loader's shuffling generator as it is now (Lightning saves it in every
        checkpoint): at an epoch's end, the state the next epoch's shuffle starts from."""
        if self._train_generator is None:
            return {}
        return {"train_generator": self._train_generator.get_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the train generator (Lightning calls it before the train loader is made when it
        resumes from a checkpoint), so the resumed epoch draws the order the uninterrupted run drew
        rather than epoch 0's."""
        if "train_generator" in state_dict:
            self._restored_generator_state = state_dict["train_generator"]
