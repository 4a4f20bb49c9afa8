"""Tag tweets with a trained model, image-free: ``Tagger.from_pretrained(...)(["tweet", ...])``.

The shape of transformers' token-classification pipelines: a string gives its entities, a list of
strings a list of them, each entity a dict ``{"type", "start", "end", "text"}`` with ``start`` and
``end`` character offsets into the string (``text == tweet[start:end]``)::

    from bga_mner import Tagger
    tagger = Tagger.from_pretrained("runs/export/bga-twitter2015")   # a folder, or a hub id
    tagger(["Kevin Durant scored in Boston", "NASA launch today"])

A tweet is split into words on whitespace (``str.split``, as ``bga-mner predict`` splits its
lines); :meth:`Tagger.tag` tags pre-split tweets (``data.conll.Tweet``) with BIO tags. Batches hold
tweets of similar length and keep the input order (``inference.tag_tweets``), under
``torch.inference_mode``; nothing of Lightning is imported.

A model is a ``bga-mner export`` folder (``pretrained.py``) or a hub id (downloaded once by
``hub.fetch``; offline, a hub id that is not in the cache fails at once, in one line), or a
checkpoint of a run (:meth:`Tagger.from_checkpoint`: ``inference.pt`` or ``best.ckpt``). Both
build the same network (``pretrained.PretrainedBGAMNER``), so an exported model tags exactly as the
run's checkpoint does.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from bga_mner.data.conll import Tweet
from bga_mner.inference import BATCH_SIZE, TagStats, tag_tweets

_WORD = re.compile(r"\S+")  # the words of str.split(), with their offsets


class Tagger:
    """Image-free tagging of raw tweets with a trained network and its tokenizer.

    Args:
        network: the image-free network (``pretrained.PretrainedBGAMNER``), weights loaded.
        tokenizer: its text encoder's fast tokenizer.
        max_length: word pieces per window (the run's ``data.max_length``).
        batch_size: windows per forward pass.
        device: torch device.
        runner: a callable ``batch -> emissions`` that replaces the network's forward
            (``onnx_export.OnnxRunner``: ``--runtime onnx|onnx-int8``); the CRF's Viterbi stays the
            network's. None: the network itself (torch).
    """

    def __init__(self, network: torch.nn.Module, tokenizer: Any, max_length: int,
                 batch_size: int = BATCH_SIZE, device: str | torch.device = "cpu",
                 runner: Callable[[dict], torch.Tensor] | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: must be at least 1")
        # a tagger never trains: no parameter asks for a gradient (tools that trace the forward,
        # such as torch's FlopCounterMode, then see plain tensors under inference_mode)
        self.network = network.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.runner = runner

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, *, batch_size: int = BATCH_SIZE,
                        device: str | torch.device = "cpu", revision: str | None = None,
                        runtime: str = "torch") -> "Tagger":
        """A tagger from a ``bga-mner export`` folder or a hub id.

        Args:
            name_or_path: the folder, or a hub id (``org/name``; downloaded into the Hugging Face cache).
            batch_size, device: as in :class:`Tagger`.
            revision: a branch, tag or commit of the hub repository.
            runtime: ``torch``, ``onnx`` (the folder's ``model.onnx``) or ``onnx-int8``
                (``model.int8.onnx``): ``bga-mner export --onnx`` writes both.

        Raises:
            hub.HubUnavailableError: a hub id that is neither cached nor downloadable now.
            pretrained.ModelFolderError: a folder that is not an export folder.
        """
        from bga_mner.hub import fetch
        from bga_mner.models.backbones import load_tokenizer
        from bga_mner.pretrained import FOLDER_PATTERNS, PretrainedBGAMNER, read_folder_config

        folder = fetch(name_or_path, "model", allow_patterns=FOLDER_PATTERNS, revision=revision)
        config = read_folder_config(folder)
        network = PretrainedBGAMNER.from_pretrained(folder)
        tokenizer = load_tokenizer(str(folder), family=config["text_config"]["model_type"])
        runner = None
        if runtime != "torch":
            from bga_mner.onnx_export import OnnxRunner

            runner = OnnxRunner.load(folder, runtime)
        return cls(network, tokenizer, config["max_length"], batch_size, device, runner)

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, batch_size: int = BATCH_SIZE,
                        device: str | torch.device = "cpu") -> "Tagger":
        """A tagger from a run's checkpoint (``checkpoints/inference.pt`` or ``best.ckpt``).

        Raises:
            inference.CheckpointError: not a checkpoint of this suite.
            UserError: a checkpoint of the real-context control (no image-free mode).
        """
        from bga_mner.inference import read_checkpoint
        from bga_mner.models.backbones import load_tokenizer
        from bga_mner.pretrained import network_from_checkpoint

        ckpt = read_checkpoint(path)
        network = network_from_checkpoint(ckpt)
        return cls(network, load_tokenizer(str(ckpt.config.model.text_encoder)), network.window,
                   batch_size, device)

    # ------------------------------------------------------------------ the tag_tweets protocol
    def to(self, device: str | torch.device) -> "Tagger":
        self.device = torch.device(device)
        self.network.to(self.device)
        return self

    def eval(self) -> "Tagger":
        self.network.eval()
        return self

    def decode_batch(self, batch: dict) -> list[list[str]]:
        """BIO tags of every word of each tweet of a text batch (``inference.text_batch``)."""
        from bga_mner.data.encode import tags_from_predictions

        if self.runner is None:
            pred_ids = self.network.decode(batch)
        else:  # the exported graph gives the emissions; the CRF's Viterbi runs here
            pred_ids = self.network.crf_head.decode(self.runner(batch), batch["word_mask"])
        return [tags_from_predictions(ids, len(words)) for ids, words in zip(pred_ids, batch["words"])]

    # ------------------------------------------------------------------ tagging
    def tag(self, tweets: Sequence[Tweet], stats: TagStats | None = None,
            progress: Callable[[int], None] | None = None) -> list[list[str]]:
        """BIO tags of every word of every tweet, in input order (``inference.tag_tweets``).

        Args:
            tweets: pre-split tweets (their tags are ignored).
            stats: filled with the windowed tweets.
            progress: called after each batch with the number of tweets it finished.
        """
        return tag_tweets(self, self.tokenizer, tweets, self.batch_size, self.device, stats,
                          self.max_length, progress)

    def __call__(self, tweets: str | Sequence[str]) -> list[dict] | list[list[dict]]:
        """The entities of a tweet (a string) or of each tweet of a list.

        Returns:
            per tweet, its entities in order: ``{"type", "start", "end", "text"}``, with ``start``
            and ``end`` character offsets (``end`` exclusive) and ``text = tweet[start:end]``.
        """
        from bga_mner.data.spans import bio_to_spans

        single = isinstance(tweets, str)
        texts = [tweets] if single else list(tweets)
        words = [[m for m in _WORD.finditer(text)] for text in texts]
        present = [i for i, w in enumerate(words) if w]  # a blank tweet has no entity
        tags = self.tag([Tweet(f"{i}", [m.group() for m in words[i]], ["O"] * len(words[i]))
                         for i in present]) if present else []
        out: list[list[dict]] = [[] for _ in texts]
        for i, tweet_tags in zip(present, tags):
            for span in bio_to_spans(tweet_tags):
                start, end = words[i][span.start].start(), words[i][span.end - 1].end()
                out[i].append({"type": span.type, "start": start, "end": end, "text": texts[i][start:end]})
        return out[0] if single else out
