"""Cut a text of any length into short pieces to synthesize one after another, lazily.

A server must not hold the latents of a whole book: NaturalSpeech computes the latents of a sentence at once, so
their size follows the longest sentence. The toolkit splits with pySBD over the whole text and keeps a sentence
without punctuation whole (100 KB of text without a full stop is one "sentence" of 100 KB). Here the text is first
cut into blocks of at most `block_chars` characters (after a sentence end where there is one, else at a space), each
block is split into sentences by the given splitter (the toolkit's pySBD), and a sentence longer than `max_chars` is
cut again: after a comma, semicolon or colon where there is one, else at a space, else anywhere. The pieces are
produced one by one, so the first can be spoken while the rest of the text is still unread.
"""

import re
from collections.abc import Callable, Iterator

DEFAULT_MAX_SENTENCE_CHARS = 400
_SENTENCE_END = re.compile(r"[.!?…。！？]['\")\]]*\s")
_CLAUSE_END = re.compile(r"[,;:，；：]\s")


def text_segments(
    text: str,
    split_sentences: Callable[[str], list[str]] | None,
    max_chars: int = DEFAULT_MAX_SENTENCE_CHARS,
    block_chars: int | None = None,
) -> Iterator[str]:
    """The pieces of `text` to synthesize in order, each non-empty and at most `max_chars` characters long.

    Args:
        text: The text.
        split_sentences: Splits a block into sentences (e.g. `Synthesizer.split_into_sentences`); None keeps every
            block whole (still cut at `max_chars`).
        max_chars: Longest piece.
        block_chars: Longest block handed to `split_sentences`; default `4 * max_chars`.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, got {max_chars}")
    block_chars = block_chars or 4 * max_chars
    for block in _cut(text, block_chars, (_SENTENCE_END,)):
        sentences = split_sentences(block) if split_sentences else [block]
        for sentence in sentences:
            for piece in _cut(sentence, max_chars, (_SENTENCE_END, _CLAUSE_END)):
                if piece.strip():
                    yield piece.strip()


def _cut(text: str, max_chars: int, boundaries: tuple[re.Pattern, ...]) -> Iterator[str]:
    """`text` in pieces of at most `max_chars`, each cut after the last boundary that fits (then a space)."""
    text = text.strip()
    while len(text) > max_chars:
        window = text[: max_chars + 1]  # a boundary's trailing space may be the character just past the limit
        cut = 0
        for pattern in boundaries:
            ends = [match.end() for match in pattern.finditer(window) if match.end() - 1 <= max_chars]
            if ends:
                cut = ends[-1]
                break
        if not cut:
            cut = window.rfind(" ", 1) + 1 or max_chars  # no space at all: cut inside the word
        yield text[:cut].strip()
        text = text[cut:].strip()
    if text:
        yield text
