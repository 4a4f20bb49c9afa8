"""`bio_to_spans`: conlleval chunking, checked by hand and against seqeval's default mode."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from seqeval.metrics.sequence_labeling import get_entities

from bga_mner.data.conll import LABELS
from bga_mner.data.spans import Span, bio_to_spans


def test_well_formed_entities() -> None:
    tags = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "O", "B-MISC"]
    assert bio_to_spans(tags) == [Span("PER", 0, 2), Span("LOC", 3, 4), Span("LOC", 4, 6),
                                  Span("MISC", 7, 8)]


def test_i_after_o_opens_an_entity() -> None:  # conlleval: O I-X I-X is one X entity
    assert bio_to_spans(["O", "I-PER", "I-PER", "O"]) == [Span("PER", 1, 3)]
    assert bio_to_spans(["I-ORG"]) == [Span("ORG", 0, 1)]  # at the start of the tweet too


def test_type_switch_opens_an_entity() -> None:
    assert bio_to_spans(["B-PER", "I-LOC", "I-LOC"]) == [Span("PER", 0, 1), Span("LOC", 1, 3)]
    assert bio_to_spans(["I-PER", "I-ORG"]) == [Span("PER", 0, 1), Span("ORG", 1, 2)]


def test_no_entities() -> None:
    assert bio_to_spans([]) == []
    assert bio_to_spans(["O", "O"]) == []


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(LABELS), max_size=25))
def test_matches_seqeval_default_mode(tags: list[str]) -> None:
    expected = [Span(t, start, end + 1) for t, start, end in get_entities(tags)]
    assert bio_to_spans(tags) == expected


def test_the_type_is_everything_after_the_first_hyphen() -> None:  # e.g. WNUT-17's creative-work
    tags = ["B-creative-work", "I-creative-work", "O", "I-x-y"]
    assert bio_to_spans(tags) == [Span("creative-work", 0, 2), Span("x-y", 3, 4)]
    assert bio_to_spans(tags) == [Span(t, start, end + 1) for t, start, end in get_entities(tags)]  # as seqeval
