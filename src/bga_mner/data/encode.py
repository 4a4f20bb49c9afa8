"""Words to WordPiece ids for the text encoder, and the text half of the batch dict.

Each word is split by the encoder's (fast) tokenizer; the first sub-token of a word carries the
word's label and is where the model reads the word's emission (``word_starts``). A word that the
tokenizer turns into nothing (``"\\u200b"``, ``"\\ufe0f"``, ...) is encoded as the unk token, so
every word keeps a position. The sequence is ``[CLS] pieces [SEP]`` of at most ``max_length``
tokens; a word is kept when its first sub-token fits (its later sub-tokens may be cut), the words
after it are absent, and the encoding says so (``n_words_kept``, ``truncated``). Evaluation always
uses the full gold tags: :func:`tags_from_predictions` tags absent words ``O``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from transformers import PreTrainedTokenizerBase

from bga_mner.data.conll import LABEL2ID, LABELS


@dataclass(frozen=True)
class Encoding:
    """One tweet's WordPiece encoding.

    Attributes:
        input_ids: ``[CLS] ... [SEP]`` ids, at most ``max_length`` long.
        word_starts: position in ``input_ids`` of the first sub-token of each kept word.
        n_words_kept: number of leading words present in ``input_ids`` (``len(word_starts)``).
        truncated: some sub-token of the tweet did not fit.
        n_words: number of words of the tweet (kept or not).
    """

    input_ids: list[int]
    word_starts: list[int]
    n_words_kept: int
    truncated: bool
    n_words: int


def _special_ids(tokenizer: PreTrainedTokenizerBase) -> tuple[int, int, int]:
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError(f"{type(tokenizer).__name__} is not a fast tokenizer; word_ids() needs one")
    ids = (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.unk_token_id)
    if None in ids:
        raise ValueError(f"{type(tokenizer).__name__} lacks a cls/sep/unk token (got ids {ids})")
    return ids  # type: ignore[return-value]


def encode_batch(tokenizer: PreTrainedTokenizerBase, word_lists: Sequence[Sequence[str]],
                 max_length: int) -> list[Encoding]:
    """Encode many tweets with one tokenizer call (see :func:`encode_words`)."""
    if max_length < 3:
        raise ValueError(f"max_length={max_length}: need room for [CLS], one word and [SEP]")
    cls_id, sep_id, unk_id = _special_ids(tokenizer)
    for i, words in enumerate(word_lists):
        if len(words) == 0:
            raise ValueError(f"tweet {i} has no words")
    batch = tokenizer([list(w) for w in word_lists], is_split_into_words=True,
                      add_special_tokens=False, truncation=False)
    budget = max_length - 2  # room left by [CLS] and [SEP]
    out = []
    for i, words in enumerate(word_lists):
        pieces: list[list[int]] = [[] for _ in words]  # sub-token ids of each word
        for token_id, word_id in zip(batch["input_ids"][i], batch.word_ids(i)):
            pieces[word_id].append(token_id)
        ids, starts = [cls_id], []
        for word_pieces in pieces:
            if len(ids) - 1 >= budget:
                break
            starts.append(len(ids))
            ids.extend((word_pieces or [unk_id])[: budget - (len(ids) - 1)])
        n_pieces = sum(max(len(p), 1) for p in pieces)
        out.append(Encoding(input_ids=ids + [sep_id], word_starts=starts,
                            n_words_kept=len(starts), truncated=n_pieces > budget,
                            n_words=len(words)))
    return out


def word_piece_counts(tokenizer: PreTrainedTokenizerBase,
                      word_lists: Sequence[Sequence[str]]) -> list[list[int]]:
    """The word pieces each word takes in :func:`encode_batch` (at least 1: an empty word is the
    unk token), without [CLS]/[SEP]. Words are tokenised one by one (``is_split_into_words``),
    so the pieces of a run of words are the sum of theirs."""
    _special_ids(tokenizer)
    if not word_lists:
        return []
    batch = tokenizer([list(w) for w in word_lists], is_split_into_words=True,
                      add_special_tokens=False, truncation=False)
    out = []
    for i, words in enumerate(word_lists):
        counts = [0] * len(words)
        for word_id in batch.word_ids(i):
            counts[word_id] += 1
        out.append([max(c, 1) for c in counts])
    return out


def encode_words(tokenizer: PreTrainedTokenizerBase, words: Sequence[str],
                 max_length: int = 128) -> Encoding:
    """Encode one tweet's words as ``[CLS] pieces [SEP]``, at most ``max_length`` ids.

    Args:
        tokenizer: the text encoder's fast tokenizer (WordPiece; RoBERTa-family BPE needs
            ``add_prefix_space=True``, which ``backbones.load_tokenizer`` sets).
        words: the tweet's words, untruncated.
        max_length: the most ids, [CLS] and [SEP] included.
    """
    return encode_batch(tokenizer, [words], max_length)[0]


def collate_text(encodings: Sequence[Encoding], tag_lists: Sequence[Sequence[str]],
                 pad_token_id: int) -> dict[str, torch.Tensor]:
    """The text keys of the batch dict (docs/ARCHITECTURE.md).

    Args:
        encodings: one :class:`Encoding` per tweet.
        tag_lists: the full gold tags of each tweet (one per word, kept or not).
        pad_token_id: the tokenizer's padding id.

    Returns:
        ``input_ids``/``attention_mask`` (B, Nt) long, ``word_starts``/``labels`` (B, W) long and
        ``word_mask`` (B, W) bool, with W the largest word count of the batch.
    """
    if len(encodings) != len(tag_lists) or not encodings:
        raise ValueError(f"{len(encodings)} encodings but {len(tag_lists)} tag lists (need >0, equal)")
    n_tokens = max(len(e.input_ids) for e in encodings)
    n_words = max(len(tags) for tags in tag_lists)
    batch_size = len(encodings)
    input_ids = torch.full((batch_size, n_tokens), pad_token_id, dtype=torch.long)  # (B, Nt)
    attention_mask = torch.zeros((batch_size, n_tokens), dtype=torch.long)  # (B, Nt)
    word_starts = torch.zeros((batch_size, n_words), dtype=torch.long)  # (B, W)
    word_mask = torch.zeros((batch_size, n_words), dtype=torch.bool)  # (B, W)
    labels = torch.zeros((batch_size, n_words), dtype=torch.long)  # (B, W); 0 = O
    for i, (enc, tags) in enumerate(zip(encodings, tag_lists)):
        if enc.n_words != len(tags):
            raise ValueError(f"tweet {i}: encoding of {enc.n_words} words but {len(tags)} tags")
        unknown = [t for t in tags if t not in LABEL2ID]
        if unknown:
            raise ValueError(f"tweet {i}: unknown labels {sorted(set(unknown))}; expected {LABELS}")
        input_ids[i, : len(enc.input_ids)] = torch.tensor(enc.input_ids)
        attention_mask[i, : len(enc.input_ids)] = 1
        word_starts[i, : enc.n_words_kept] = torch.tensor(enc.word_starts, dtype=torch.long)
        word_mask[i, : enc.n_words_kept] = True
        labels[i, : len(tags)] = torch.tensor([LABEL2ID[t] for t in tags])
    return {"input_ids": input_ids, "attention_mask": attention_mask, "word_starts": word_starts,
            "word_mask": word_mask, "labels": labels}


def tags_from_predictions(pred_ids: Sequence[int], n_words: int) -> list[str]:
    """Full-length tags of a tweet: the predicted labels of its kept words, ``O`` for the rest.

    Args:
        pred_ids: label ids (indices into ``conll.LABELS``) of the kept words, in order.
        n_words: number of words of the tweet, truncated ones included.
    """
    if len(pred_ids) > n_words:
        raise ValueError(f"{len(pred_ids)} predictions for a tweet of {n_words} words")
    bad = [p for p in pred_ids if not 0 <= int(p) < len(LABELS)]
    if bad:
        raise ValueError(f"label ids {bad} out of range 0..{len(LABELS) - 1}")
    return [LABELS[int(p)] for p in pred_ids] + ["O"] * (n_words - len(pred_ids))
