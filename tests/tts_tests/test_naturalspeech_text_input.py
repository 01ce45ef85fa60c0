"""Text given to synthesis: control characters (espeak-ng stops at a NUL) and text with nothing to speak."""

import logging
import shutil

import pytest
import torch

from tests import make_tiny_config
from TTS.tts.layers.naturalspeech.runtime.text_input import strip_control_characters


@pytest.fixture(scope="module")
def model():
    """A tiny untrained model that phonemizes with espeak-ng, as the recipes do."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (make setup installs it)")
    from TTS.tts.models.naturalspeech import Naturalspeech

    config = make_tiny_config(use_phonemes=True, phonemizer="espeak", phoneme_language="en-us")
    config.text_cleaner = "english_cleaners"
    return Naturalspeech(config).eval()


def test_nul_does_not_cut_the_text_short(model, caplog):
    with caplog.at_level(logging.WARNING, logger="TTS.tts.layers.naturalspeech.runtime.text_input"):
        ids = model.speakable_ids("Hello\x00 world")
    assert ids == model.speakable_ids("Hello world")
    assert "Removed 1 control character(s) from the text to synthesize (U+0000 at position 5)" in caplog.text

    torch.manual_seed(0)
    result = model.synthesize("Hello\x00 world, \x1b[1mhow\x1b[0m are you?")
    expected = model.speakable_ids("Hello world, [1mhow[0m are you?")
    assert result["text_inputs"][0].tolist() == expected


def test_control_characters_are_removed_and_whitespace_kept():
    assert strip_control_characters("a\tb\nc\r\n") == "a\tb\nc\r\n"
    assert strip_control_characters("a\x0cb\x1fc") == "a b c"  # form feed, unit separator: whitespace to Python
    assert strip_control_characters("a\x00b\x07c\x7fd\x85e\x9bf") == "abcd ef"
    assert strip_control_characters("Grüße, 你好 😀") == "Grüße, 你好 😀"


@pytest.mark.parametrize("text", ["", "   \n\t", "\x00 \x0c"])
def test_empty_or_whitespace_text_is_a_clear_error(model, text):
    with pytest.raises(ValueError, match=r"^text is empty or only whitespace: "):
        model.synthesize(text)
    with pytest.raises(ValueError, match=r"^text is empty or only whitespace: "):
        model.speakable_ids(text)
