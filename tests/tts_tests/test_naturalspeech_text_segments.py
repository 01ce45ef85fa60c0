"""`text_segments`: any text in pieces of bounded length, in order, nothing lost, cut at sentence and clause ends."""

import pytest

from TTS.tts.layers.naturalspeech.runtime.text_segments import text_segments


def _words(pieces):
    return " ".join(pieces).split()


def test_short_sentences_pass_through_the_splitter():
    text = "One. Two, three! Four?"
    pieces = list(text_segments(text, lambda block: block.split(". "), max_chars=100))
    assert pieces == ["One", "Two, three! Four?"]


@pytest.mark.parametrize("text", ["word " * 500, "a, b; " * 300, "x" * 1234, "First. " + "y " * 400 + "end."])
def test_pieces_are_bounded_and_lose_nothing(text):
    pieces = list(text_segments(text, None, max_chars=50))
    assert all(0 < len(piece) <= 50 for piece in pieces)
    assert "".join(_words(pieces)) == "".join(text.split())


def test_long_sentence_is_cut_after_a_clause_then_at_a_space():
    text = "alpha beta gamma, delta epsilon zeta eta theta iota kappa"
    assert list(text_segments(text, None, max_chars=25)) == [
        "alpha beta gamma,",
        "delta epsilon zeta eta",
        "theta iota kappa",
    ]


def test_blocks_reach_the_splitter_bounded_and_lazily():
    seen = []

    def split(block):
        seen.append(block)
        return [block]

    pieces = text_segments("Sentence number one. " * 1000, split, max_chars=40)
    next(pieces)
    assert len(seen) == 1 and len(seen[0]) <= 160  # one block of at most 4 x max_chars read so far
