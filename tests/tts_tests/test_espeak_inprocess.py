"""The in-process espeak-ng phonemizer gives exactly the toolkit's `ESpeak` (subprocess) phonemes and token ids."""

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests import make_phonemizing_tiny_config
from TTS.tts.layers.naturalspeech.runtime.espeak_inprocess import InProcessESpeak, use_inprocess_espeak
from TTS.tts.utils.text.phonemizers.espeak_wrapper import ESpeak
from TTS.tts.utils.text.tokenizer import TTSTokenizer

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")

TRANSCRIPTS = Path("/work/shared/data/ljspeech_transcripts.txt")
EDGE_CASES = [
    "",
    "   ",
    "\n\t ",
    "When",
    "Was",
    "sir.",
    "Hello, world. How are you today? Fine!",
    "sentence one\nsentence two",
    "Dr. Smith paid $5.20 on 3/4/1999 at 10:30 a.m., i.e. 15 minutes late.",
    "The 1st, 2nd and 23rd items cost 1,234,567 dollars (approx.).",
    "He said \"no\" and left; she said 'yes' -- then (quietly) nothing...",
    "Café naïve — “quoted” Ünïcödé straße 日本語 ok",
    "<b>bold</b> & more",
    "[[h@l'oU]] there",
    "NASA, the FBI and the U.S.A. met Mr. and Mrs. O'Neil.",
    "a\x00b c",
]


def _ljspeech_sentences(count: int) -> list[str]:
    if not TRANSCRIPTS.exists():
        pytest.skip(f"{TRANSCRIPTS} is missing")
    lines = [line.split("|", 1)[1].strip() for line in TRANSCRIPTS.read_text(encoding="utf-8").splitlines()]
    kept = [
        line
        for line, raw in zip(lines, TRANSCRIPTS.read_text(encoding="utf-8").splitlines())
        if not raw.startswith("LJ050")
    ]
    return kept[:: max(1, len(kept) // count)][:count]


def test_same_phonemes_as_the_toolkit_english():
    texts = _ljspeech_sentences(320) + EDGE_CASES
    reference, in_process = ESpeak("en-us"), InProcessESpeak("en-us")
    assert in_process.in_process
    for separator in ("", "|"):
        expected = [reference.phonemize(text, separator=separator) for text in texts]
        got = [in_process.phonemize(text, separator=separator) for text in texts]
        mismatches = [(t, e, g) for t, e, g in zip(texts, expected, got) if e != g]
        assert not mismatches, mismatches[:5]
    # whole texts with their punctuation reach espeak-ng as several clauses (`phonemize` splits them first)
    whole = texts[::3]
    expected = [reference.phonemize_espeak(text, "|") for text in whole]
    assert [in_process.phonemize_espeak(text, "|") for text in whole] == expected


def test_same_phonemes_as_the_toolkit_german_after_english():
    texts = [
        "Guten Tag, wie geht es Ihnen? Mir geht es gut.",
        "Die Straße ist 3,5 Kilometer lang.",
        "Ja",
        "Übermorgen fahren wir nach München; danach nach Köln.",
        "Das ist ein Computer.",
    ]
    english = InProcessESpeak("en-us")
    english.phonemize("The voice is switched back and forth.")
    german = InProcessESpeak("de")
    assert [german.phonemize(t) for t in texts] == [ESpeak("de").phonemize(t) for t in texts]
    assert english.phonemize("Hello there.") == ESpeak("en-us").phonemize("Hello there.")


def test_naturalspeech_tokenizer_ids_unchanged():
    from TTS.tts.models.naturalspeech import Naturalspeech

    config = make_phonemizing_tiny_config()
    reference, _ = TTSTokenizer.init_from_config(config)
    model = Naturalspeech(config)  # in-process by default (`phonemize_in_process`)
    assert type(reference.phonemizer) is ESpeak
    assert type(model.tokenizer.phonemizer) is InProcessESpeak
    assert config.phonemizer == "espeak"  # the config (and so the checkpoint) is unchanged
    texts = _ljspeech_sentences(40) + EDGE_CASES[6:13]
    assert [model.tokenizer.text_to_ids(t) for t in texts] == [reference.text_to_ids(t) for t in texts]


def test_naturalspeech_switch_keeps_the_program():
    from TTS.tts.models.naturalspeech import Naturalspeech

    config = make_phonemizing_tiny_config({"phonemize_in_process": False})
    model = Naturalspeech(config)
    assert type(model.tokenizer.phonemizer) is ESpeak


def test_concurrent_threads_give_the_sequential_results():
    texts = _ljspeech_sentences(60)
    english, german = InProcessESpeak("en-us"), InProcessESpeak("de")
    expected = [english.phonemize(t) for t in texts]
    expected_de = [german.phonemize(t) for t in texts]
    jobs = [(english, t) for t in texts] * 3 + [(german, t) for t in texts]
    with ThreadPoolExecutor(max_workers=6) as pool:
        got = list(pool.map(lambda job: job[0].phonemize(job[1]), jobs))
    assert got == expected * 3 + expected_de


_FORKED_PHONEMIZER: InProcessESpeak | None = None


def _phonemize_in_child(text: str) -> str:
    return _FORKED_PHONEMIZER.phonemize(text)


def test_forked_data_loader_workers_give_the_parents_phonemes():
    """The recipes' loader workers are forked after the model (and the library) were loaded and used."""
    import multiprocessing

    global _FORKED_PHONEMIZER
    texts = _ljspeech_sentences(24)
    _FORKED_PHONEMIZER = InProcessESpeak("en-us")
    expected = [_FORKED_PHONEMIZER.phonemize(t) for t in texts]
    with multiprocessing.get_context("fork").Pool(2) as pool:
        assert pool.map(_phonemize_in_child, texts) == expected


def test_unloadable_library_falls_back_to_the_subprocess():
    phonemizer = InProcessESpeak("en-us", library="/nonexistent/libespeak-ng.so.1")
    assert not phonemizer.in_process
    texts = ["When", "Hello, world. How are you?"]
    assert [phonemizer.phonemize(t) for t in texts] == [ESpeak("en-us").phonemize(t) for t in texts]


def test_other_phonemizers_are_left_alone():
    config = make_phonemizing_tiny_config()
    tokenizer, _ = TTSTokenizer.init_from_config(config)
    tokenizer.phonemizer.backend = "espeak-ng"
    custom = type("CustomESpeak", (ESpeak,), {})("en-us")
    tokenizer.phonemizer = custom
    use_inprocess_espeak(tokenizer)
    assert tokenizer.phonemizer is custom
