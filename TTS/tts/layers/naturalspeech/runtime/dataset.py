"""Training data for NaturalSpeech: the toolkit's VITS dataset, with bad clips handled or skipped up front.

`VitsDataset` finds bad items while a batch is being built and replaces them with another index (its
`rescue_item_idx` hack), silently and not reproducibly. `NaturalspeechDataset` checks every sample once, before the
first epoch, in `preprocess_samples`:

| problem | what happens |
| --- | --- |
| unreadable/corrupt audio file | skipped, one warning naming the file |
| empty audio (0 samples) | skipped, one warning |
| NaN or ±inf samples (float files only) | skipped, one warning |
| samples beyond ±`MAX_ABS_SAMPLE` (float files only: e.g. int16 values stored as float) | skipped, one warning |
| no transcript | skipped, one warning |
| transcript of unknown symbols only (no token the model knows) | skipped, one warning |
| more tokens than `max_text_len` after phonemization | skipped, one warning |
| another sample rate than `audio.sample_rate` | resampled when loaded, one warning |
| shorter than the decoder's training slice | zero-padded when loaded, one warning |

A summary counts the skipped items by reason; when nothing is left, a `ValueError` stops the run before training.

Most checks read only the file header. Sample values are read only for float files (`FLOAT`/`DOUBLE` subtypes):
integer PCM, µ-law, A-law and ADPCM decode into [-1, 1] and cannot hold NaN or inf, so the usual 16-bit corpus is not
read twice.
Float samples in (1, `MAX_ABS_SAMPLE`] are kept and clipped to [-1, 1] when loaded.
"""

import collections
import logging
import os
from typing import Any

import numpy as np
import soundfile
import torch
import torchaudio

from TTS.tts.models.vits import VitsDataset

logger = logging.getLogger(__name__)

MAX_ABS_SAMPLE = 2.0  # beyond this a float clip is not slightly clipped speech but unscaled data
_FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")  # the only subtypes whose decoded samples can be non-finite or far beyond ±1
_BLOCK_FRAMES = 1 << 16


class NaturalspeechDataset(VitsDataset):
    """`VitsDataset` that validates samples once and never swaps a bad item for another at load time.

    Args:
        sample_rate: The model's audio rate; clips at another rate are resampled.
        min_audio_samples: Shorter clips are zero-padded to this many samples (one decoder training slice plus
            one FFT window, so the spectrogram and the slice are never empty).
        *args, **kwargs: `VitsDataset` arguments.
    """

    def __init__(self, *args, sample_rate: int, min_audio_samples: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.sample_rate = sample_rate
        self.min_audio_samples = min_audio_samples
        self.skipped: collections.Counter = collections.Counter()

    ##########################
    # validation
    ##########################

    def preprocess_samples(self) -> None:
        self.samples = self.validate_samples(self.samples)
        super().preprocess_samples()

    def validate_samples(self, samples: list[dict]) -> list[dict]:
        """Keep the usable samples, annotate those that need resampling/padding; one warning per bad file."""
        self.samples = samples  # `get_token_ids` reads the phoneme cache name from `self.samples[idx]`
        kept = []
        for idx, item in enumerate(samples):
            reason = self._problem(idx, item)
            if reason is None:
                kept.append(item)
                continue
            self.skipped[reason] += 1
            logger.warning("Skipping training sample %s: %s.", item["audio_file"], reason)
        if self.skipped:
            by_kind: collections.Counter = collections.Counter()
            for reason, count in self.skipped.items():  # the details in parentheses differ from file to file
                by_kind[reason.split(" (")[0]] += count
            counts = ", ".join(f"{count} {kind}" for kind, count in sorted(by_kind.items()))
            logger.warning("Skipped %d of %d training samples (%s).", len(samples) - len(kept), len(samples), counts)
        if not kept:
            msg = (
                f"No usable training samples: all {len(samples)} were skipped "
                f"({dict(self.skipped)}). Check the dataset path, the metadata file and the audio files."
            )
            raise ValueError(msg)
        return kept

    def _problem(self, idx: int, item: dict) -> str | None:
        path = item["audio_file"]
        if not item.get("text") or not str(item["text"]).strip():
            return "no transcript"
        try:
            info = soundfile.info(path)
        except (RuntimeError, OSError, soundfile.LibsndfileError) as error:
            return f"unreadable or corrupt audio ({type(error).__name__}: {str(error).strip()[:120]})"
        if info.frames <= 0:
            return "empty audio (0 samples)"
        token_ids = self.get_token_ids(idx, item["text"], item.get("language"))
        # blank/pad/bos/eos and the word separator alone carry no speech
        characters = self.tokenizer.characters
        special = {getattr(characters, name, None) for name in ("blank_id", "pad_id", "bos_id", "eos_id")}
        markers = ("<BLNK>", "<PAD>", "<BOS>", "<EOS>", " ")
        special |= {characters.char_to_id(c) for c in markers if c in characters.vocab}
        if not any(int(t) not in special for t in token_ids):
            return "transcript has no known symbols (all characters are outside the vocabulary)"
        if len(token_ids) > self.max_text_len:
            return f"{len(token_ids)} tokens after phonemization exceed max_text_len={self.max_text_len}"
        if info.subtype in _FLOAT_SUBTYPES:  # last: the only check that reads the samples
            try:
                bad_samples = _sample_problem(path)
            except (RuntimeError, OSError, soundfile.LibsndfileError) as error:
                return f"unreadable or corrupt audio ({type(error).__name__}: {str(error).strip()[:120]})"
            if bad_samples is not None:
                return bad_samples
        if info.samplerate != self.sample_rate:
            logger.warning(
                "Training sample %s is at %d Hz: resampled to %d Hz when loaded.",
                path,
                info.samplerate,
                self.sample_rate,
            )
        frames_at_rate = info.frames * self.sample_rate // info.samplerate
        if frames_at_rate < self.min_audio_samples:
            logger.warning(
                "Training sample %s has %d samples, fewer than one training slice (%d): zero-padded when loaded.",
                path,
                frames_at_rate,
                self.min_audio_samples,
            )
        return None

    ##########################
    # loading
    ##########################

    def load_waveform(self, path: str) -> torch.Tensor:
        """Mono float waveform `[1, T_wav]` at `sample_rate`, in [-1, 1], at least `min_audio_samples` long."""
        try:
            audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
        except (RuntimeError, OSError, soundfile.LibsndfileError) as error:
            msg = f"Cannot read training sample {path} (it was readable when the dataset was checked): {error}"
            raise RuntimeError(msg) from error
        wav = torch.from_numpy(np.ascontiguousarray(audio.T)).mean(0, keepdim=True)
        if rate != self.sample_rate:
            wav = torchaudio.functional.resample(wav, rate, self.sample_rate)
        wav = wav.clamp(-1.0, 1.0)
        if wav.size(1) < self.min_audio_samples:
            wav = torch.nn.functional.pad(wav, (0, self.min_audio_samples - wav.size(1)))
        return wav

    def __getitem__(self, idx: int) -> dict[str, Any]:
        item = self.samples[idx]
        token_ids = self.get_token_ids(idx, item["text"], item["language"])
        return {
            "raw_text": item["text"],
            "token_ids": token_ids,
            "token_len": len(token_ids),
            "wav": self.load_waveform(item["audio_file"]),
            "wav_file": os.path.basename(item["audio_file"]),
            "speaker_name": item["speaker_name"],
            "language_name": item["language"],
            "audio_unique_name": item["audio_unique_name"],
        }


def _sample_problem(path: str) -> str | None:
    """Why the samples of a float audio file are unusable (NaN, ±inf, far beyond ±1), or None; read block by block."""
    peak, offset = 0.0, 0
    for block in soundfile.blocks(path, blocksize=_BLOCK_FRAMES, dtype="float32", always_2d=True):
        finite = np.isfinite(block)
        if not finite.all():
            kinds = [
                name
                for name, test in (("NaN", np.isnan), ("+inf", np.isposinf), ("-inf", np.isneginf))
                if test(block).any()
            ]
            first = offset + int(np.argmin(finite.all(axis=1)))
            return f"non-finite audio samples ({', '.join(kinds)}; first at sample {first})"
        peak = max(peak, float(np.abs(block).max(initial=0.0)))
        offset += len(block)
    if peak > MAX_ABS_SAMPLE:
        return (
            f"audio samples far outside [-1, 1] (peak {peak:.4g} > {MAX_ABS_SAMPLE:g}: float audio that was never "
            "scaled to [-1, 1])"
        )
    return None
