"""Scores of synthesized held-out sentences against the teacher's references (`corpus.py`), for any model.

Input per sentence (`Synthesized`): the waveform (float, any sample rate) and, optionally, the model's per-token
phoneme strings with per-token durations in frames of `hop_length` samples. Every metric is computed per sentence and
averaged (NaN-aware) over the sentences:

MCD (`mcd_db`, dB): both waveforms at 22,050 Hz (the synthesized one resampled with `librosa.resample`), each
    peak-normalized; 80-band mel power spectra (`librosa.feature.melspectrogram`: n_fft 1024, window 1024, hop 256,
    0-8 kHz); decibels relative to the clip's maximum, floored 80 dB below it (`librosa.power_to_db(ref=np.max,
    top_db=80)`), converted to natural-log amplitude (× ln 10 / 20); orthonormal DCT-II over the 80 bands
    (`librosa.feature.mfcc`) divided by sqrt(2 · 80), which gives the coefficients in SPTK's convention
    (ln|X(ω̃)| = c0 + 2 Σ_k c_k cos kω̃ on the mel-warped axis); c1..c24 are kept (c0, the level, is dropped). The two
    cepstrum sequences are aligned by DTW (`librosa.sequence.dtw`, Euclidean frame cost), and MCD = mean over the
    DTW path's frame pairs of 10/ln 10 · sqrt(2 · Σ_k (c_k - ĉ_k)²). Silences are kept (the -80 dB floor bounds
    them). A mel filterbank is not SPTK's mel-cepstral analysis: the values are on the usual dB scale but are not
    interchangeable with published MCDs; compare them within this benchmark.
log-F0 RMSE (`log_f0_rmse`, natural log; × 1731 gives cents) and voicing error (`vuv_error`): F0 by `librosa.pyin`
    (65-400 Hz, frame 1024, hop 256, 22,050 Hz: the cepstra's frame grid), on the same DTW path: the RMSE of
    ln F0 over the pairs voiced in both, and the fraction of pairs whose voiced/unvoiced decisions differ.
Durations (`duration_mae_frames`, `duration_matched_fraction`): both token sequences are reduced to units of one
    phoneme together with the blank/pad that follows it (the model's `<BLNK>`, the teacher's `_`); blanks before the
    first phoneme and sentence boundaries (`^`, `$`, `<BOS>`, `<EOS>`) are left out. The two phoneme sequences are
    matched with `difflib.SequenceMatcher` (phonemizers differ slightly); the MAE is over matched units, in frames of
    256 samples at 22,050 Hz; the matched fraction is matched units / teacher units.
Length ratio (`length_ratio`): synthesized seconds / teacher seconds (needs no durations).
ASR CER (`cer`): pocketsphinx with its bundled US English model on the waveform resampled to 16 kHz and
    peak-normalized (as the teacher's clips are; pocketsphinx's transcripts depend on the level); CER = character edit
    distance / reference length, both texts normalized (lowercase; letters, digits, apostrophes and spaces; spaces
    collapsed).
DNSMOS (`dnsmos_ovrl`, `dnsmos_sig`, `dnsmos_bak`): `speechmos`'s DNSMOS P.835 ONNX models on the same 16 kHz
    peak-normalized waveform (speechmos repeats a clip shorter than 9.01 s until it is longer, then averages 9.01 s
    windows hopped by 1 s, so a 7 s clip costs 5 windows).

The teacher's row (`score_teacher`, cached as `<corpus_dir>/teacher_scores.json`): CER and DNSMOS of the references
themselves, and every metric of the second, independent teacher rendering (`heldout/second_take`) against the
references: the floor a model that speaks exactly like the teacher would reach.

All ONNX Runtime sessions run on one thread so that scoring leaves a shared machine's other cores free.
"""

import difflib
import functools
import json
import logging
import math
import os
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np
import soundfile

logger = logging.getLogger(__name__)

SAMPLE_RATE = 22050
HOP_LENGTH = 256
ASR_SAMPLE_RATE = 16000
NUM_CEPSTRA = 24
N_MELS = 80
F0_RANGE = (65.0, 400.0)
MCD_CONSTANT = 10.0 / math.log(10.0) * math.sqrt(2.0)
BLANK_TOKENS = frozenset({"<BLNK>", "<PAD>", "_"})
BOUNDARY_TOKENS = frozenset({"^", "$", "<BOS>", "<EOS>"})
METRICS = (
    "mcd_db",
    "log_f0_rmse",
    "vuv_error",
    "duration_mae_frames",
    "duration_matched_fraction",
    "length_ratio",
    "cer",
    "dnsmos_ovrl",
    "dnsmos_sig",
    "dnsmos_bak",
)
TEACHER_SCORES = "teacher_scores.json"
SCORING_VERSION = 2  # bump when a recipe above changes: it invalidates `teacher_scores.json`
INSTALL_HINT = 'scoring needs the benchmark extra: pip install ".[bench]" (pocketsphinx, speechmos)'


@dataclass
class Synthesized:
    """One synthesized held-out sentence.

    Args:
        id: Held-out clip id (`LJ050-…`).
        waveform: Float waveform `[T_wav]`, nominally in [-1, 1].
        sample_rate: Its sample rate.
        tokens: The model's input tokens, blanks included (optional; for the duration metrics).
        durations: Frames per token `[T_text]` (optional, with `tokens`).
        hop_length: Samples per duration frame at `sample_rate` (needed with `durations`).
    """

    id: str
    waveform: np.ndarray
    sample_rate: int
    tokens: Sequence[str] | None = None
    durations: Sequence[float] | None = None
    hop_length: int | None = None


# --- references -------------------------------------------------------------------------------------------------


def heldout_texts(heldout_dir: str | os.PathLike) -> dict[str, str]:
    """`id → normalized text` of the held-out `metadata.csv`."""
    path = Path(heldout_dir) / "metadata.csv"
    if not path.is_file():
        msg = f"held-out metadata not found: {path} (generate the corpus with benchmarks/learning/corpus.py)"
        raise FileNotFoundError(msg)
    texts = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            clip_id, _, rest = line.partition("|")
            texts[clip_id] = rest.split("|")[-1]
    return texts


def load_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Float32 mono waveform and sample rate of an audio file, with a clear error when it is missing."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    audio, sample_rate = soundfile.read(path, dtype="float32", always_2d=True)
    return audio.mean(axis=1), sample_rate


def load_durations(path: str | os.PathLike) -> dict:
    """A teacher durations file: `{"phonemes": [...], "samples": [...], "sample_rate": 22050}`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"teacher durations not found: {path}")
    return json.loads(path.read_text(encoding="utf-8"))


def teacher_item(take_dir: str | os.PathLike, clip_id: str) -> Synthesized:
    """A teacher rendering (`heldout/` or `heldout/second_take/`) as a `Synthesized` with its alignment units."""
    take_dir = Path(take_dir)
    waveform, sample_rate = load_wav(take_dir / "wavs" / f"{clip_id}.wav")
    durations = load_durations(take_dir / "durations" / f"{clip_id}.json")
    return Synthesized(
        id=clip_id,
        waveform=waveform,
        sample_rate=sample_rate,
        tokens=durations["phonemes"],
        durations=[samples / HOP_LENGTH for samples in durations["samples"]],
        hop_length=HOP_LENGTH,
    )


# --- spectral features ------------------------------------------------------------------------------------------


def _to_analysis_rate(waveform: np.ndarray, sample_rate: int) -> np.ndarray:
    waveform = np.nan_to_num(np.asarray(waveform, dtype=np.float32))
    if sample_rate != SAMPLE_RATE:
        waveform = librosa.resample(waveform, orig_sr=sample_rate, target_sr=SAMPLE_RATE)
    if len(waveform) < 1024:  # a frame at least: a broken model may return (almost) nothing
        waveform = np.pad(waveform, (0, 1024 - len(waveform)))
    peak = np.max(np.abs(waveform), initial=0.0)
    return waveform / peak if peak > 0 else waveform


def mel_cepstra(waveform: np.ndarray) -> np.ndarray:
    """Mel-cepstra c1..c24 `[24, T_feats]` of a 22,050 Hz waveform (recipe in the module docstring)."""
    mel = librosa.feature.melspectrogram(
        y=waveform, sr=SAMPLE_RATE, n_fft=1024, hop_length=HOP_LENGTH, win_length=1024, n_mels=N_MELS, fmin=0, fmax=8000
    )
    log_amplitude = librosa.power_to_db(mel, ref=np.max, top_db=80.0) * (math.log(10.0) / 20.0)
    cepstra = librosa.feature.mfcc(S=log_amplitude, n_mfcc=NUM_CEPSTRA + 1, dct_type=2, norm="ortho")[1:]
    return cepstra / math.sqrt(2 * N_MELS)  # orthonormal DCT → SPTK's cosine-series coefficients


def log_f0(waveform: np.ndarray) -> np.ndarray:
    """Natural-log F0 per frame `[T_feats]` of a 22,050 Hz waveform, NaN where unvoiced (`librosa.pyin`)."""
    f0, voiced, _ = librosa.pyin(
        waveform, fmin=F0_RANGE[0], fmax=F0_RANGE[1], sr=SAMPLE_RATE, frame_length=1024, hop_length=HOP_LENGTH
    )
    return np.where(voiced, np.log(f0), np.nan)


@dataclass
class Features:
    cepstra: np.ndarray  # [24, T_feats]
    log_f0: np.ndarray | None  # [T_feats]
    seconds: float


def features(waveform: np.ndarray, sample_rate: int, f0: bool = True) -> Features:
    """Cepstra and (optionally) log-F0 on one frame grid, and the duration in seconds."""
    audio = _to_analysis_rate(waveform, sample_rate)
    cepstra = mel_cepstra(audio)
    contour = log_f0(audio)[: cepstra.shape[1]] if f0 else None
    return Features(cepstra, contour, len(waveform) / sample_rate)


@functools.lru_cache(maxsize=512)
def _reference_features(wav_path: Path, mtime: float) -> Features:  # the mtime keys the cache on the file's version
    return features(*load_wav(wav_path))


def reference_features(wav_path: Path) -> Features:
    """Features of a teacher reference, computed once per process."""
    if not wav_path.is_file():
        raise FileNotFoundError(f"teacher reference not found: {wav_path}")
    return _reference_features(wav_path, wav_path.stat().st_mtime)


def spectral_scores(reference: Features, synthesized: Features) -> dict[str, float]:
    """MCD, log-F0 RMSE and voicing error on the DTW path between the cepstra (recipe in the module docstring)."""
    _, path = librosa.sequence.dtw(X=reference.cepstra, Y=synthesized.cepstra, metric="euclidean")
    ref_frames, syn_frames = path[::-1, 0], path[::-1, 1]
    diff = reference.cepstra[:, ref_frames] - synthesized.cepstra[:, syn_frames]
    scores = {"mcd_db": float(np.mean(MCD_CONSTANT * np.sqrt(np.sum(diff**2, axis=0))))}
    if reference.log_f0 is not None and synthesized.log_f0 is not None:
        ref_f0, syn_f0 = reference.log_f0[ref_frames], synthesized.log_f0[syn_frames]
        ref_voiced, syn_voiced = ~np.isnan(ref_f0), ~np.isnan(syn_f0)
        both = ref_voiced & syn_voiced
        scores["log_f0_rmse"] = float(np.sqrt(np.mean((ref_f0[both] - syn_f0[both]) ** 2))) if both.any() else math.nan
        scores["vuv_error"] = float(np.mean(ref_voiced != syn_voiced))
    return scores


# --- durations --------------------------------------------------------------------------------------------------


def phoneme_units(tokens: Sequence[str], frames: Sequence[float]) -> tuple[list[str], list[float]]:
    """Phonemes with the frames of the blanks that follow them; leading blanks and boundaries are dropped."""
    if len(tokens) != len(frames):
        raise ValueError(f"{len(tokens)} tokens but {len(frames)} durations")
    phonemes, unit_frames = [], []
    for token, count in zip(tokens, frames):
        if token in BOUNDARY_TOKENS:
            continue
        if token in BLANK_TOKENS:
            if phonemes:
                unit_frames[-1] += float(count)
            continue
        phonemes.append(token)
        unit_frames.append(float(count))
    return phonemes, unit_frames


def duration_scores(teacher: dict, tokens: Sequence[str], durations: Sequence[float], seconds_per_frame: float) -> dict:
    """Duration MAE (teacher frames of 256 samples at 22,050 Hz) over matched phoneme units, and the matched share.

    Args:
        teacher: A teacher durations file (`load_durations`).
        tokens: The model's tokens, blanks included.
        durations: The model's frames per token.
        seconds_per_frame: Seconds of one of the model's duration frames (hop length / sample rate).
    """
    teacher_frame = HOP_LENGTH / teacher["sample_rate"]
    ref_phonemes, ref_frames = phoneme_units(teacher["phonemes"], [n / HOP_LENGTH for n in teacher["samples"]])
    syn_phonemes, syn_frames = phoneme_units(tokens, [d * seconds_per_frame / teacher_frame for d in durations])
    matcher = difflib.SequenceMatcher(None, ref_phonemes, syn_phonemes, autojunk=False)
    errors = [
        abs(ref_frames[block.a + k] - syn_frames[block.b + k])
        for block in matcher.get_matching_blocks()
        for k in range(block.size)
    ]
    return {
        "duration_mae_frames": float(np.mean(errors)) if errors else math.nan,
        "duration_matched_fraction": len(errors) / max(len(ref_phonemes), 1),
    }


# --- ASR and DNSMOS ---------------------------------------------------------------------------------------------


def normalize_text(text: str) -> str:
    """Lowercase; letters, digits, apostrophes and single spaces only."""
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


def character_error_rate(reference: str, hypothesis: str) -> float:
    """Character edit distance / reference length, both normalized (`normalize_text`)."""
    import torchaudio.functional

    reference, hypothesis = normalize_text(reference), normalize_text(hypothesis)
    return torchaudio.functional.edit_distance(reference, hypothesis) / max(len(reference), 1)


@functools.cache
def _asr_decoder():
    try:
        from pocketsphinx import Decoder
    except ImportError as error:
        raise ImportError(INSTALL_HINT) from error
    return Decoder(samprate=ASR_SAMPLE_RATE, logfn=os.devnull)


def transcribe(audio_16k: np.ndarray) -> str:
    """pocketsphinx's US English transcript of a 16 kHz float waveform."""
    decoder = _asr_decoder()
    pcm = (np.clip(audio_16k, -1.0, 1.0) * 32767).astype(np.int16).tobytes()
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()
    hypothesis = decoder.hyp()
    return hypothesis.hypstr if hypothesis is not None else ""


@functools.cache
def _dnsmos_model():
    try:
        import onnxruntime
        from speechmos import dnsmos
    except ImportError as error:
        raise ImportError(INSTALL_HINT) from error

    class SingleThreadDnsmos(dnsmos.DNSMOS):
        """speechmos's DNSMOS with its two sessions on one thread (its own constructor uses every core)."""

        def __init__(self, primary_model_path: str, p808_model_path: str):
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            self.primary_model_path = primary_model_path
            self.onnx_sess = onnxruntime.InferenceSession(primary_model_path, options)
            self.p808_onnx_sess = onnxruntime.InferenceSession(p808_model_path, options)

    models = Path(dnsmos.__file__).parent / "dnsmos_models"
    return SingleThreadDnsmos(str(models / "sig_bak_ovr.onnx"), str(models / "model_v8.onnx"))


def dnsmos_scores(audio_16k: np.ndarray) -> dict[str, float]:
    """DNSMOS P.835 overall, signal and background scores of a 16 kHz float waveform."""
    result = _dnsmos_model()(np.clip(audio_16k, -1.0, 1.0).astype(np.float32), ASR_SAMPLE_RATE, False)
    return {f"dnsmos_{key}": float(result[f"{key}_mos"]) for key in ("ovrl", "sig", "bak")}


def perceptual_scores(waveform: np.ndarray, sample_rate: int, text: str, asr: bool, dnsmos: bool) -> dict:
    """CER against `text` and DNSMOS, both on the waveform resampled to 16 kHz."""
    if not (asr or dnsmos):
        return {}
    audio = np.nan_to_num(np.asarray(waveform, dtype=np.float32))
    audio_16k = librosa.resample(audio, orig_sr=sample_rate, target_sr=ASR_SAMPLE_RATE)
    # peak-normalized like the teacher's clips: pocketsphinx's transcripts change with the level
    peak = np.max(np.abs(audio_16k), initial=0.0)
    audio_16k = audio_16k / peak if peak > 0 else audio_16k
    scores = {}
    if asr:
        hypothesis = transcribe(audio_16k)
        scores.update(cer=character_error_rate(text, hypothesis), transcript=hypothesis)
    if dnsmos:
        scores.update(dnsmos_scores(audio_16k))
    return scores


# --- sentences --------------------------------------------------------------------------------------------------


def score_sentence(
    item: Synthesized, heldout_dir: Path, text: str, f0: bool = True, asr: bool = True, dnsmos: bool = True
) -> dict:
    """Every metric of one synthesized sentence against its teacher reference in `heldout_dir`."""
    start = time.perf_counter()
    reference = reference_features(heldout_dir / "wavs" / f"{item.id}.wav")
    synthesized = features(item.waveform, item.sample_rate, f0=f0)
    row = {"id": item.id, **spectral_scores(reference, synthesized)}
    row["length_ratio"] = synthesized.seconds / reference.seconds
    if item.tokens is not None and item.durations is not None:
        if not item.hop_length:
            raise ValueError(f"{item.id}: durations need the hop_length they are counted in")
        teacher = load_durations(heldout_dir / "durations" / f"{item.id}.json")
        row.update(duration_scores(teacher, item.tokens, item.durations, item.hop_length / item.sample_rate))
    row.update(perceptual_scores(item.waveform, item.sample_rate, text, asr, dnsmos))
    row["score_seconds"] = time.perf_counter() - start
    return row


def mean_scores(rows: list[dict]) -> dict[str, float]:
    """NaN-aware mean of every metric the rows have."""
    means = {}
    for metric in METRICS:
        values = [row[metric] for row in rows if metric in row and not math.isnan(row[metric])]
        if values:
            means[metric] = float(np.mean(values))
    return means


def score_sentences(
    items: Iterable[Synthesized | dict],
    heldout_dir: str | os.PathLike,
    f0: bool = True,
    asr: bool = True,
    dnsmos: bool = True,
) -> dict:
    """Score synthesized held-out sentences against the teacher's references.

    Args:
        items: `Synthesized` objects, or dicts with the same keys.
        heldout_dir: The corpus's `heldout/` folder (`metadata.csv`, `wavs/`, `durations/`).
        f0: Compute the log-F0 RMSE and voicing error (pyin: about half the scoring time without ASR/DNSMOS).
        asr: Compute the pocketsphinx CER.
        dnsmos: Compute DNSMOS.

    Returns:
        `{"rows": [per-sentence dicts: id, metrics, transcript, score_seconds], "means": {metric: mean},
        "num_sentences": n, "seconds": scoring time}`.
    """
    heldout_dir = Path(heldout_dir)
    if not heldout_dir.is_dir():
        raise FileNotFoundError(f"held-out folder not found: {heldout_dir}")
    texts = heldout_texts(heldout_dir)
    start, rows = time.perf_counter(), []
    for item in items:
        item = item if isinstance(item, Synthesized) else Synthesized(**item)
        if item.id not in texts:
            raise KeyError(f"{item.id} is not a held-out sentence of {heldout_dir / 'metadata.csv'}")
        rows.append(score_sentence(item, heldout_dir, texts[item.id], f0=f0, asr=asr, dnsmos=dnsmos))
    seconds = time.perf_counter() - start
    logger.info(" > scored %d sentences in %.1f s", len(rows), seconds)
    return {"rows": rows, "means": mean_scores(rows), "num_sentences": len(rows), "seconds": seconds}


# --- the teacher's own row --------------------------------------------------------------------------------------


def _teacher_row(heldout_dir: Path, clip_id: str, text: str) -> dict:
    reference, sample_rate = load_wav(heldout_dir / "wavs" / f"{clip_id}.wav")
    take = teacher_item(heldout_dir / "second_take", clip_id)
    row = score_sentence(take, heldout_dir, text)
    row["second_take_cer"], row["second_take_dnsmos_ovrl"] = row["cer"], row["dnsmos_ovrl"]
    # CER and DNSMOS of the references themselves: what the models are held to
    row.update(perceptual_scores(reference, sample_rate, text, asr=True, dnsmos=True))
    return row


def score_teacher(heldout_dir: str | os.PathLike, ids: Sequence[str] | None = None) -> dict:
    """The teacher's row: CER/DNSMOS of its references, other metrics of its second take (see the module docstring).

    Rows are cached per sentence in `<corpus_dir>/teacher_scores.json` (beside `heldout/`); only the sentences not
    cached yet are scored.

    Args:
        heldout_dir: The corpus's `heldout/` folder.
        ids: Held-out ids to include (default: all of them).

    Returns:
        The same dict as `score_sentences`, over `ids`.
    """
    heldout_dir = Path(heldout_dir)
    texts = heldout_texts(heldout_dir)
    ids = list(texts) if ids is None else list(ids)
    unknown = [clip_id for clip_id in ids if clip_id not in texts]
    if unknown:
        raise KeyError(f"not held-out sentences of {heldout_dir / 'metadata.csv'}: {unknown}")
    cache_path = heldout_dir.parent / TEACHER_SCORES
    cache = {}
    if cache_path.is_file():
        cached = json.loads(cache_path.read_text(encoding="utf-8"))
        if cached.get("version") == SCORING_VERSION:
            cache = cached["rows"]
    missing = [clip_id for clip_id in ids if clip_id not in cache]
    start = time.perf_counter()
    for clip_id in missing:
        cache[clip_id] = _teacher_row(heldout_dir, clip_id, texts[clip_id])
    if missing:
        tmp = cache_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"version": SCORING_VERSION, "rows": cache}, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, cache_path)
        logger.info(" > teacher: scored %d sentences in %.1f s", len(missing), time.perf_counter() - start)
    rows = [cache[clip_id] for clip_id in ids]
    return {
        "rows": rows,
        "means": mean_scores(rows),
        "num_sentences": len(rows),
        "seconds": time.perf_counter() - start,
    }


def main(argv: list[str] | None = None) -> None:
    """Score the teacher's row on the first `--num-sentences` held-out sentences and print the means."""
    import argparse

    from corpus import default_corpus_dir

    parser = argparse.ArgumentParser(description="The teacher's scores on the held-out sentences of a corpus.")
    parser.add_argument("--corpus-dir", type=Path, default=default_corpus_dir())
    parser.add_argument("--num-sentences", type=int, default=40)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    heldout_dir = args.corpus_dir / "heldout"
    ids = list(heldout_texts(heldout_dir))[: args.num_sentences]
    result = score_teacher(heldout_dir, ids)
    seconds = [row["score_seconds"] for row in result["rows"]]
    print(json.dumps({"num_sentences": result["num_sentences"], "means": result["means"]}, indent=1))
    print(f"second-take scoring time per sentence (a model's cost): {np.mean(seconds):.2f} s (max {max(seconds):.2f})")


if __name__ == "__main__":
    main()
