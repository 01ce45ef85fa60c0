"""Phoneme and word start/end times of a synthesis, from the durations NaturalSpeech predicts.

The durator gives every token a duration in latent frames; the decoder turns each frame into exactly `hop_length`
samples. So a token's span of the audio is exact, not estimated:

- Frames to tokens: frame `t` (centre `t + 0.5`) belongs to token `k` when `s_k <= t + 0.5 < e_k`, with
  `e_k = cumsum(durations)_k` and `s_k = e_k - d_k` — the convention of the durator's boundary grids and of hard
  length regulation (`durator.py`). Token `k` then ends at frame `ceil(e_k - 0.5)`, clipped to the frames synthesized;
  the last token ends at the last frame, so the spans cover the audio exactly, from sample 0 to the last sample.
- Symbols: each symbol of the phoneme string (phoneme, stress mark, space, punctuation, BOS/EOS) gets one entry. The
  blank tokens that `add_blank` puts between symbols have no entry of their own: a blank belongs to the symbol before
  it (a leading blank to the first symbol), as in Piper's alignments (`include_alignments`). Entries are contiguous.
- Words: the phonemizer separates words by a space in its output, so a word is a run of phonemes (with their stress
  and length marks) between spaces, punctuation and BOS/EOS. A word starts where its first symbol starts and ends
  where its last symbol ends (with that symbol's trailing blank); spaces and punctuation between words are gaps, in
  no word. espeak-ng speaks some word pairs as one word ("in the" -> "ɪnðə"): that is one word here, because that is
  where the phonemizer puts the boundary. `text` gives the words of the cleaned text a phoneme word speaks, when they
  can be matched up (:func:`match_text_words`); otherwise it is None.

Times are in seconds (`start`, `end`) and in samples (`start_sample`, `end_sample`; exact integers).
:func:`synthesize_with_timings` synthesizes and times a text with a PyTorch model; `Naturalspeech.inference_stream`
gives the timings before the first audio chunk; the ONNX graphs output the durations to feed :func:`synthesis_timings`.
The toolkit's `TTS.api.TTS.tts()` returns only the waveform (and the `tts` command has no hook for more), hence these
functions and the `naturalspeech-tts` command (`runtime/cli.py`).
"""

import functools
import json
import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

PHONEME, SUPRASEGMENTAL = "phoneme", "suprasegmental"  # the symbols of a word
WORD_SEPARATOR, PUNCTUATION, SPECIAL = "word_separator", "punctuation", "special"  # between words
SUPRASEGMENTALS = "ˈˌːˑ"  # stress and length marks: tokens with durations of their own, but not sounds
_STRESS = re.compile("[ˈˌ]")


def token_frame_bounds(durations: Sequence[float], num_frames: int) -> np.ndarray:
    """The frame where each token starts, and the end: `bounds[k]` to `bounds[k + 1]` are token `k`'s frames.

    Shapes:
        - durations: :math:`[T_text]`
        - bounds: :math:`[T_text + 1]`, from 0 to `num_frames`, non-decreasing
    """
    ends = np.cumsum(np.asarray(durations, dtype=np.float64))
    bounds = np.concatenate([[0], np.clip(np.ceil(ends - 0.5), 0, num_frames).astype(np.int64)])
    bounds[-1] = num_frames
    return np.maximum.accumulate(bounds)


def symbol_kind(symbol: str, characters: Any) -> str | None:
    """What a token is for timings: None for a blank (it joins the symbol before it), else one of the kinds."""
    if characters.blank and symbol == characters.blank:
        return None
    if symbol in {characters.pad, characters.bos, characters.eos} - {None, ""}:
        return SPECIAL
    if symbol.isspace():
        return WORD_SEPARATOR
    if symbol in (characters.punctuations or ""):
        return PUNCTUATION
    if symbol in SUPRASEGMENTALS:
        return SUPRASEGMENTAL
    return PHONEME


def phoneme_timings(
    token_ids: Sequence[int],
    durations: Sequence[float],
    num_frames: int,
    characters: Any,
    hop_length: int,
    sample_rate: int,
) -> list[dict[str, Any]]:
    """One entry per symbol of the token sequence, blanks folded into the symbol before them.

    Args:
        token_ids: The token ids synthesized.
        durations: Frames per token, as the model predicted them (float).
        num_frames: Latent frames synthesized (`frame_lengths`); the audio is `num_frames * hop_length` samples.
        characters: The tokenizer's vocabulary (`tokenizer.characters`).
        hop_length: Samples per frame.
        sample_rate: Samples per second.

    Returns:
        Dicts with `symbol`, `kind` (`phoneme`, `suprasegmental` — a stress or length mark —, `word_separator`,
        `punctuation` or `special` — BOS, EOS, padding), `start`, `end` (seconds), `start_sample`, `end_sample`.
    """
    if len(token_ids) != len(durations):
        raise ValueError(f"{len(token_ids)} token ids but {len(durations)} durations")
    bounds = token_frame_bounds(durations, num_frames) * hop_length
    entries: list[dict[str, Any]] = []
    for index, token_id in enumerate(token_ids):
        symbol = characters.id_to_char(int(token_id))
        kind = symbol_kind(symbol, characters)
        if kind is None:  # a blank: the symbol before it ends later (a leading blank waits for the first symbol)
            if entries:
                entries[-1]["end_sample"] = int(bounds[index + 1])
            continue
        start = int(bounds[index]) if entries else 0
        entries.append({"symbol": symbol, "kind": kind, "start_sample": start, "end_sample": int(bounds[index + 1])})
    if not entries:
        raise ValueError("the token sequence has only blanks: nothing to time")
    for entry in entries:
        entry["start"], entry["end"] = entry["start_sample"] / sample_rate, entry["end_sample"] / sample_rate
    return entries


def word_timings(phonemes: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Words from :func:`phoneme_timings`: runs of phonemes (and their stress and length marks), with their span.

    Returns:
        Dicts with `phonemes` (the word's phoneme string), `start`, `end`, `start_sample`, `end_sample`.
    """
    words: list[dict[str, Any]] = []
    run: list[dict[str, Any]] = []
    for entry in [*phonemes, None]:
        if entry is not None and entry["kind"] in (PHONEME, SUPRASEGMENTAL):
            run.append(entry)
            continue
        if run:
            first, last = run[0], run[-1]
            words.append(
                {
                    "phonemes": "".join(e["symbol"] for e in run),
                    "start": first["start"],
                    "end": last["end"],
                    "start_sample": first["start_sample"],
                    "end_sample": last["end_sample"],
                }
            )
            run = []
    return words


def synthesis_timings(
    token_ids: Sequence[int],
    durations: Sequence[float],
    num_frames: int,
    tokenizer: Any,
    hop_length: int,
    sample_rate: int,
    text: str | None = None,
    language: str | None = None,
) -> dict[str, Any]:
    """Phoneme and word timings of one synthesis: `{"phonemes": [...], "words": [...]}`.

    With `text` (the text synthesized), each word also gets `text`: the words of the cleaned text it speaks, or None
    where they cannot be matched (:func:`match_text_words`).
    """
    phonemes = phoneme_timings(token_ids, durations, num_frames, tokenizer.characters, hop_length, sample_rate)
    words = word_timings(phonemes)
    if text is not None:
        matched = match_text_words(text, [w["phonemes"] for w in words], tokenizer, language)
        for word, text_words in zip(words, matched):
            word["text"] = text_words
    return {"phonemes": phonemes, "words": words}


def match_text_words(
    text: str, phoneme_words: Sequence[str], tokenizer: Any, language: str | None = None
) -> list[str | None]:
    """The words of the cleaned `text` that each phoneme word speaks, or None for a word that cannot be matched.

    When there are as many phoneme words as text words they match one to one (always so without a phonemizer: the
    tokens are then the cleaned text's characters). Otherwise every text word is phonemized on its own (cached) and a
    monotonic alignment groups them onto the phoneme words (up to three text words into one, as espeak-ng joins "in
    the" into "ɪnðə", or one text word into several), minimising the edit distance of the phonemes without stress
    marks. A group that still differs in more than half of its phonemes is left unmatched (None), not mislabelled.
    """
    if tokenizer.text_cleaner is not None:
        from TTS.tts.utils.languages import normalize_language

        text = tokenizer.text_cleaner(text, lang=normalize_language(language))  # as `TTSTokenizer.text_to_ids` does
    punctuation = tokenizer.characters.punctuations or ""
    text_words = [w for w in (w.strip(punctuation) for w in text.split()) if w]
    if len(text_words) == len(phoneme_words):
        return list(text_words)
    if tokenizer.phonemizer is None or not text_words or not phoneme_words:
        return [None] * len(phoneme_words)
    spoken = [_phonemize_word(tokenizer.phonemizer, w, language, punctuation) for w in text_words]
    return _align_groups(text_words, spoken, [_plain(p, punctuation) for p in phoneme_words])


@functools.lru_cache(maxsize=4096)
def _phonemize_word(phonemizer: Any, word: str, language: str | None, punctuation: str) -> str:
    return _plain(phonemizer.phonemize(word, separator="", language=language), punctuation)


def _plain(phonemes: str, punctuation: str) -> str:
    return _STRESS.sub("", "".join(c for c in phonemes if c not in punctuation and not c.isspace()))


def _align_groups(text_words: list[str], spoken: list[str], targets: list[str], max_group: int = 3) -> list[str | None]:
    """Monotonic many-to-many alignment of text words (phonemized alone) onto phoneme words; see `match_text_words`."""
    n, m = len(targets), len(text_words)
    cost = np.full((n + 1, m + 1), math.inf)
    back: dict[tuple[int, int], tuple[int, int]] = {}
    cost[0, 0] = 0.0
    for i in range(n + 1):
        for j in range(m + 1):
            if not math.isfinite(cost[i, j]):
                continue
            for di in range(1, max_group + 1):
                for dj in range(1, max_group + 1):
                    if i + di > n or j + dj > m or (di > 1 and dj > 1):
                        continue
                    target, source = "".join(targets[i : i + di]), "".join(spoken[j : j + dj])
                    step = _edit_distance(target, source) / max(len(target), len(source), 1)
                    if cost[i, j] + step < cost[i + di, j + dj]:
                        cost[i + di, j + dj] = cost[i, j] + step
                        back[(i + di, j + dj)] = (i, j)
    matched: list[str | None] = [None] * n
    if not math.isfinite(cost[n, m]):  # too many words on one side to group
        return matched
    i, j = n, m
    while (i, j) != (0, 0):
        pi, pj = back[(i, j)]
        target, source = "".join(targets[pi:i]), "".join(spoken[pj:j])
        if _edit_distance(target, source) <= len(target) / 2:
            words = " ".join(text_words[pj:j])
            for k in range(pi, i):
                matched[k] = words
        i, j = pi, pj
    return matched


def _edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1]


def synthesize_with_timings(
    model: Any,
    text: str,
    *,
    noise_scale: float | None = None,
    length_scale: float | None = None,
    language: str | None = None,
) -> dict[str, Any]:
    """Synthesize `text` as one utterance with a PyTorch `Naturalspeech` model; the audio and its timings.

    The toolkit's `TTS.api.TTS.tts()` returns the waveform only, so timings come from here (or from
    `model.inference_stream(text).timings()` when streaming).

    Returns:
        `{"wav": float32 numpy [T_wav], "sample_rate": int, "timings": {"phonemes": [...], "words": [...]}}`.

    Examples:
        >>> from TTS.api import TTS
        >>> from TTS.tts.layers.naturalspeech.runtime.timings import synthesize_with_timings
        >>> model = TTS(model_path="run/best_model.pth", config_path="run/config.json").synthesizer.tts_model
        >>> result = synthesize_with_timings(model, "Hello world.")
        >>> result["timings"]["words"][0]
        {'phonemes': 'həlˈoʊ', 'start': 0.0, 'end': ..., 'start_sample': 0, 'end_sample': ..., 'text': 'hello'}
    """
    import torch

    ids = model.speakable_ids(text, language=language)
    tokens = torch.tensor([ids], dtype=torch.long, device=model.device)
    aux_input = {"noise_scale": noise_scale, "length_scale": length_scale}
    outputs = model.inference(tokens, {k: v for k, v in aux_input.items() if v is not None})
    num_frames = int(outputs["frame_lengths"][0])
    audio = model.config.audio
    wav = outputs["model_outputs"][0, 0, : num_frames * audio.hop_length].float().cpu().numpy()
    durations = outputs["durations"][0].float().cpu().numpy()
    timings = synthesis_timings(
        ids, durations, num_frames, model.tokenizer, audio.hop_length, audio.sample_rate, text, language
    )
    return {"wav": wav, "sample_rate": audio.sample_rate, "timings": timings}


def shift_timings(timings: dict[str, Any], samples: int, sample_rate: int) -> dict[str, Any]:
    """`timings` moved `samples` later (to join the timings of consecutive sentences)."""

    def shifted(entry: dict[str, Any]) -> dict[str, Any]:
        start, end = entry["start_sample"] + samples, entry["end_sample"] + samples
        times = {"start": start / sample_rate, "end": end / sample_rate}
        return {**entry, "start_sample": start, "end_sample": end, **times}

    return {key: [shifted(entry) for entry in entries] for key, entries in timings.items()}


def write_json(timings: dict[str, Any], path: str | Path, sample_rate: int) -> None:
    """Write timings as JSON (UTF-8, IPA kept readable), with the sample rate the sample indices count in."""
    document = {"sample_rate": sample_rate, **timings}
    Path(path).write_text(json.dumps(document, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def srt_time(seconds: float) -> str:
    """`HH:MM:SS,mmm`, the SubRip time format (rounded to the millisecond)."""
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d},{millis:03d}"


def to_srt(words: Sequence[dict[str, Any]]) -> str:
    """SubRip subtitles with one cue per word: its text when matched, else its phonemes."""
    cues = []
    for index, word in enumerate(words, 1):
        label = word.get("text") or word["phonemes"]
        cues.append(f"{index}\n{srt_time(word['start'])} --> {srt_time(word['end'])}\n{label}\n")
    return "\n".join(cues)
