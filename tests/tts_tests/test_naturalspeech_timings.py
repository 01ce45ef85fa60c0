"""Phoneme and word timings from the predicted durations: exact cover of the audio, words where the phonemizer has them.

Tiny randomly initialised models: their durations are arbitrary, which is all timings need (the spans follow the
durations whatever they are).
"""

import itertools
import json
import re
import shutil

import numpy as np
import pytest
import torch

from tests import make_tiny_config
from TTS.tts.layers.naturalspeech.runtime.timings import (
    PHONEME,
    SPECIAL,
    SUPRASEGMENTAL,
    phoneme_timings,
    srt_time,
    synthesize_with_timings,
    to_srt,
    token_frame_bounds,
    write_json,
)
from TTS.tts.models.naturalspeech import Naturalspeech

# punctuation inside and at the end; espeak-ng joins "in the" and "of the" into one word each
SENTENCE = "In the beginning, Mister Smith paid; then, at the end of the year, he left!"


def _phoneme_model(**config):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (make setup installs it)")
    model_args = config.pop("model_args", None)
    config = make_tiny_config(
        model_args=model_args,
        use_phonemes=True,
        phonemizer="espeak",
        phoneme_language="en-us",
        text_cleaner="english_cleaners",
        **config,
    )
    return Naturalspeech.init_from_config(config).eval()


@pytest.fixture(scope="module")
def model():
    return _phoneme_model()  # add_blank=True, the NaturalSpeech default


@pytest.fixture(scope="module")
def result(model):
    torch.manual_seed(0)
    return synthesize_with_timings(model, SENTENCE)


def _phonemizer_output(model, text):
    """The phoneme string the tokenizer encodes for `text` (cleaned, then phonemized)."""
    tokenizer = model.tokenizer
    return tokenizer.phonemizer.phonemize(tokenizer.text_cleaner(text, lang=None), separator="")


def _phonemizer_words(model, text):
    punctuation = model.tokenizer.characters.punctuations
    return [w for w in (w.strip(punctuation) for w in _phonemizer_output(model, text).split()) if w]


def check_cover(entries, num_samples, sample_rate):
    """Contiguous, monotonic spans from sample 0 to exactly the end of the audio, seconds consistent with samples."""
    assert entries[0]["start_sample"] == 0
    assert entries[-1]["end_sample"] == num_samples
    assert entries[-1]["end"] == num_samples / sample_rate
    for before, after in itertools.pairwise(entries):
        assert before["end_sample"] == after["start_sample"]
    for entry in entries:
        assert 0 <= entry["start_sample"] <= entry["end_sample"] <= num_samples
        assert entry["start"] == entry["start_sample"] / sample_rate
        assert entry["end"] == entry["end_sample"] / sample_rate


def test_phonemes_cover_the_audio_exactly(model, result):
    hop = model.config.audio.hop_length
    phonemes = result["timings"]["phonemes"]
    check_cover(phonemes, len(result["wav"]), result["sample_rate"])
    assert all(e["start_sample"] % hop == 0 for e in phonemes)  # boundaries on the frame grid
    assert sum(e["end_sample"] > e["start_sample"] for e in phonemes) > len(phonemes) // 2


def test_phonemes_are_the_phonemizer_output_without_blanks(model, result):
    symbols = "".join(e["symbol"] for e in result["timings"]["phonemes"])
    assert symbols == _phonemizer_output(model, SENTENCE)
    assert {e["kind"] for e in result["timings"]["phonemes"] if e["symbol"] in "ˈˌː"} <= {SUPRASEGMENTAL}


def test_words_fall_on_the_phonemizer_word_boundaries(model, result):
    words, phonemes = result["timings"]["words"], result["timings"]["phonemes"]
    expected = _phonemizer_words(model, SENTENCE)
    assert len(expected) < len(SENTENCE.split())  # the phonemizer joined some words: its count is the one to match
    assert [w["phonemes"] for w in words] == expected
    starts = {e["start_sample"]: i for i, e in enumerate(phonemes)}
    ends = {e["end_sample"]: i for i, e in enumerate(phonemes)}
    for word in words:
        first, last = starts[word["start_sample"]], ends[word["end_sample"]]  # a word's ends are phoneme boundaries
        inside = phonemes[first : last + 1]
        # ... of exactly its symbols (zero-length symbols at either edge aside)
        spoken = "".join(e["symbol"] for e in inside if e["kind"] in (PHONEME, SUPRASEGMENTAL))
        assert word["phonemes"] in spoken
        assert all(e["kind"] in (PHONEME, SUPRASEGMENTAL) or e["end_sample"] == e["start_sample"] for e in inside)
    for before, after in itertools.pairwise(words):
        assert before["end_sample"] <= after["start_sample"]
    gaps = [e for e in phonemes if e["kind"] not in (PHONEME, SUPRASEGMENTAL)]
    assert any(e["symbol"] == "," for e in gaps) and any(e["symbol"] == " " for e in gaps)


def test_words_carry_the_text_they_speak(model, result):
    words = result["timings"]["words"]
    cleaned = model.tokenizer.text_cleaner(SENTENCE, lang=None)
    text_words = [w.strip(model.tokenizer.characters.punctuations) for w in cleaned.split()]
    assert all(w["text"] for w in words)
    assert " ".join(w["text"] for w in words) == " ".join(text_words)
    assert "in the" in [w["text"] for w in words]  # two text words spoken as one phonemizer word


def test_grapheme_model_words_are_the_text_words():
    model = Naturalspeech.init_from_config(make_tiny_config(text_cleaner="english_cleaners")).eval()
    result = synthesize_with_timings(model, "Hello there, world.", noise_scale=0.0)
    check_cover(result["timings"]["phonemes"], len(result["wav"]), result["sample_rate"])
    assert [(w["phonemes"], w["text"]) for w in result["timings"]["words"]] == [
        ("hello", "hello"),
        ("there", "there"),
        ("world", "world"),
    ]


def test_bos_eos_without_blanks():
    model = _phoneme_model(add_blank=False, enable_eos_bos_chars=True)
    result = synthesize_with_timings(model, "Be a voice, not an echo.", length_scale=1.3)
    phonemes = result["timings"]["phonemes"]
    check_cover(phonemes, len(result["wav"]), result["sample_rate"])
    assert phonemes[0]["kind"] == phonemes[-1]["kind"] == SPECIAL
    assert len(result["timings"]["words"]) == 6


def test_hard_length_regulation_spans_are_the_integer_durations():
    model = _phoneme_model(model_args={"use_learnable_upsampling": False})
    ids = model.tokenizer.text_to_ids(SENTENCE)
    out = model.inference(torch.tensor([ids]), {"noise_scale": 0.0})
    durations = out["durations"][0].numpy()
    assert np.array_equal(durations, np.round(durations))
    bounds = token_frame_bounds(durations, int(out["frame_lengths"][0]))
    np.testing.assert_array_equal(bounds, np.concatenate([[0], np.cumsum(durations)]).astype(np.int64))


@pytest.mark.parametrize(
    ("durations", "num_frames", "expected"),
    [
        ([2.0, 3.0, 1.0], 6, [0, 2, 5, 6]),
        ([1.4, 1.2, 2.9], 6, [0, 1, 3, 6]),  # frame centres 0.5, 1.5, ...: ends 1.4 -> 1, 2.6 -> 3, 5.5 -> 6 (last)
        ([0.2, 0.2, 3.0], 3, [0, 0, 0, 3]),  # tokens shorter than half a frame get no frame
        ([4.0, 4.0, 4.0], 7, [0, 4, 7, 7]),  # cut at `max_inference_len`: later tokens end with the audio
    ],
)
def test_token_frame_bounds(durations, num_frames, expected):
    assert token_frame_bounds(durations, num_frames).tolist() == expected


def test_leading_blank_joins_the_first_symbol_and_blanks_the_symbol_before(model):
    chars = model.tokenizer.characters
    blank, a, space, b = (chars.char_to_id(c) for c in (chars.blank, "a", " ", "b"))
    entries = phoneme_timings([blank, a, blank, space, blank, b, blank], [1, 2, 1, 1, 1, 2, 1], 9, chars, 10, 100)
    assert [(e["symbol"], e["start_sample"], e["end_sample"]) for e in entries] == [
        ("a", 0, 40),
        (" ", 40, 60),
        ("b", 60, 90),
    ]
    with pytest.raises(ValueError, match="only blanks"):
        phoneme_timings([blank, blank], [1, 1], 2, chars, 10, 100)
    with pytest.raises(ValueError, match="3 token ids but 2 durations"):
        phoneme_timings([a, b, a], [1, 1], 2, chars, 10, 100)


def test_max_inference_len_cuts_the_timings_with_the_audio():
    model = _phoneme_model(model_args={"max_inference_len": 20})
    result = synthesize_with_timings(model, SENTENCE)
    assert len(result["wav"]) == 20 * model.config.audio.hop_length
    check_cover(result["timings"]["phonemes"], len(result["wav"]), result["sample_rate"])


def test_srt_and_json(result, tmp_path):
    words = result["timings"]["words"]
    srt = to_srt(words)
    cues = srt.strip().split("\n\n")
    assert len(cues) == len(words)
    first = cues[0].splitlines()
    assert first[0] == "1" and first[2] == words[0]["text"]
    assert re.fullmatch(r"\d\d:\d\d:\d\d,\d\d\d --> \d\d:\d\d:\d\d,\d\d\d", first[1])
    assert srt_time(3725.0123) == "01:02:05,012"
    path = tmp_path / "t.json"
    write_json(result["timings"], path, result["sample_rate"])
    loaded = json.loads(path.read_text(encoding="utf-8"))
    assert loaded["sample_rate"] == result["sample_rate"] and loaded["words"] == words
    assert "ɪnðə" in path.read_text(encoding="utf-8")  # IPA written as such, not as \\u escapes
