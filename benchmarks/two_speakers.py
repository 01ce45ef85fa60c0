"""Two speakers on CPU: a NaturalSpeech trained on two voices speaks each of them, and they can be told apart.

    python benchmarks/two_speakers.py --minutes 20 --check-interfaces     # the committed results

1. Data (`build_dataset`, cached in `$NATURALSPEECH_BENCH_DIR/two_speakers/data/`, never committed): the 32 real
   LJSpeech clips of `../shared/data/ljspeech` (a woman) as speaker `lj`, symlinked, and the same 32 sentences spoken
   by the learning benchmark's teacher (`corpus.Teacher`: the `joe` Piper voice, a man) as speaker `joe`;
   `train/metadata.csv` is in the toolkit's `coqui` format (`audio_file|text|speaker_name`), so training reads the
   speakers through the normal dataset path. `heldout/metadata.csv` lists the benchmark's held-out LJ050-* sentences
   (text only: neither voice has them in training).
2. Training (`train_budget.py`, run `two-speakers` of `learning/models.py`: the run `naturalspeech` with
   `use_speaker_embedding=True` and `speakers = ["lj", "joe"]`) to `--minutes` CPU-minutes, resumable, in
   `$NATURALSPEECH_BENCH_DIR/two_speakers/runs/two-speakers/`. The defaults are the learning benchmark's (size
   medium, batch 4, lr 1e-3, warm-up 300 steps, 1 thread): at ~7 budget-seconds per step, 20 minutes (~170 steps)
   stay inside warm-up.
3. Evaluation: the first `--num-sentences` held-out sentences synthesized from text with each speaker id
   (`synthesize.synthesize_sentence`, fixed seed). Per utterance, on the grid of `scoring.features` (pyin F0 and
   mel-cepstra c1..c24, hop 256 at 22,050 Hz):

   - median F0 (Hz) of its voiced frames; per voice, the median over all its voiced frames, against each real
     voice's reference median over its training clips;
   - a statistics vector: the mean mel-cepstrum c1..c24 over the voiced frames (over all frames when fewer than
     `MIN_VOICED_FRAMES` are voiced: an untrained model may not voice anything). Silences are left out because
     the real recordings and the teacher differ in their pauses, not in who speaks. A voice's centroid is the mean
     of its utterances' vectors; distances are in dB, the MCD formula `10 / ln 10 * sqrt(2 * sum (c - c')^2)`
     applied to two such vectors.

   Reported: the distance between the two synthesized voices' centroids next to that between the two real voices',
   and the fraction of synthesized utterances whose vector is nearer to their own speaker's real centroid than to
   the other's (nearest centroid), with the same for their median F0 (nearer in log F0).
4. `--check-interfaces`: the trained checkpoint speaks both voices through the `tts` program (a subprocess with
   `--speaker_idx`), `TTS.api` (`speaker=`) and the exported ONNX graph (input `sid`, noise 0); each output gets
   its median F0, the real voice it is nearest to, and whether the two speakers' outputs differ.

Writes `two_speakers.json`, `two_speakers.csv` (one row per synthesized utterance) and one WAV per speaker (the
first sentence) to `benchmarks/results/two_speakers/` (`--out-dir`), and prints a table.
"""

import argparse
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LEARNING_DIR = ROOT / "benchmarks" / "learning"
if str(LEARNING_DIR) not in sys.path:
    sys.path.insert(0, str(LEARNING_DIR))

import models  # noqa: E402  first: puts `benchmarks/` (common) and the recipe folder on sys.path
import synthesize  # noqa: E402
import train_budget  # noqa: E402
from common import RESULTS_DIR, run_record, write_csv, write_json  # noqa: E402
from corpus import (  # noqa: E402
    HELDOUT_MAX_CHARS,
    HELDOUT_PREFIX,
    SHARED_DATA,
    Teacher,
    bench_dir,
    read_metadata,
    read_transcripts,
    render,
)

logger = logging.getLogger(__name__)

RUN = "two-speakers"
SPEAKERS = models.SPEAKER_RUNS[RUN]
REAL_SPEAKER, TEACHER_SPEAKER = SPEAKERS  # "lj": the real clips, "joe": the teacher's renderings
REAL_CLIPS = SHARED_DATA / "ljspeech"
OUT_DIR = RESULTS_DIR / "two_speakers"
DEFAULT_MINUTES = 20.0
DEFAULT_NUM_SENTENCES = 10
NUM_HELDOUT = 100  # the learning benchmark corpus' held-out set: the evaluation takes its first sentences
MIN_VOICED_FRAMES = 10
CHECK_TEXT = "The two voices of this model read the same sentence."
COMPLETE = "COMPLETE"
MCD_FACTOR = 10.0 / math.log(10.0) * math.sqrt(2.0)


def experiment_dir(bench: str | Path | None = None) -> Path:
    """`$NATURALSPEECH_BENCH_DIR/two_speakers`: the dataset (`data/`) and the run (`runs/two-speakers/`)."""
    return Path(bench or bench_dir()) / "two_speakers"


##########################
# data
##########################


def heldout_pool(limit: int = NUM_HELDOUT) -> list[tuple[str, str]]:
    """The learning benchmark's held-out sentences (`corpus.select_sentences`): the first LJ050-* lines of at most
    140 characters, by id."""
    pool = sorted(p for p in read_transcripts() if p[0].startswith(HELDOUT_PREFIX) and len(p[1]) <= HELDOUT_MAX_CHARS)
    return pool[:limit]


def build_dataset(
    data_dir: str | Path, real_dir: str | Path = REAL_CLIPS, num_clips: int | None = None, threads: int = 1
) -> Path:
    """The two-speaker dataset in `data_dir`, or reuse it when it is complete with the same clips.

    Args:
        data_dir: Output folder; `train/lj/wavs/` (symlinks to the real clips), `train/joe/{wavs,durations}/` (the
            teacher's renderings, `corpus.render`), `train/metadata.csv` (`coqui` format), `heldout/metadata.csv`.
        real_dir: The real clips in LJSpeech format (`metadata.csv`, `wavs/`).
        num_clips: The first clips of `real_dir` to use; None for all.
        threads: ONNX Runtime threads of the teacher.

    Returns:
        `data_dir`.
    """
    data_dir, real_dir = Path(data_dir), Path(real_dir)
    sentences = read_metadata(real_dir)[:num_clips]
    selection = {"real_dir": str(real_dir), "clips": [clip_id for clip_id, _ in sentences]}
    info_path = data_dir / "dataset.json"
    if (data_dir / COMPLETE).is_file():
        info = json.loads(info_path.read_text(encoding="utf-8"))
        if info["selection"] != selection:
            msg = f"{data_dir} holds another selection of clips ({len(info['selection']['clips'])}): delete it first."
            raise ValueError(msg)
        return data_dir
    train = data_dir / "train"
    (train / REAL_SPEAKER / "wavs").mkdir(parents=True, exist_ok=True)
    for clip_id, _ in sentences:
        link = train / REAL_SPEAKER / "wavs" / f"{clip_id}.wav"
        if not link.is_symlink():
            link.symlink_to((real_dir / "wavs" / f"{clip_id}.wav").resolve())
    teacher = Teacher(threads=threads)
    render(teacher, sentences, train / TEACHER_SPEAKER)
    rows = ["audio_file|text|speaker_name"]
    for speaker in SPEAKERS:
        rows += [f"{speaker}/wavs/{clip_id}.wav|{text}|{speaker}" for clip_id, text in sentences]
    (train / "metadata.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (data_dir / "heldout").mkdir(exist_ok=True)
    lines = [f"{clip_id}|{text}|{text}" for clip_id, text in heldout_pool()]
    (data_dir / "heldout" / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    info = {"speakers": list(SPEAKERS), "selection": selection, "teacher": teacher.settings()}
    info_path.write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    (data_dir / COMPLETE).write_text("", encoding="utf-8")  # `train_budget.check_corpus` looks for it
    logger.info("Two-speaker dataset in %s: %d clips per speaker", data_dir, len(sentences))
    return data_dir


def training_clips(data_dir: str | Path) -> dict[str, list[Path]]:
    """Speaker -> its training WAVs, from `train/metadata.csv`."""
    train = Path(data_dir) / "train"
    clips = {speaker: [] for speaker in SPEAKERS}
    for line in (train / "metadata.csv").read_text(encoding="utf-8").splitlines()[1:]:
        audio_file, _, speaker = line.split("|")
        clips[speaker].append(train / audio_file)
    return clips


##########################
# voice statistics
##########################


@dataclass
class VoiceStats:
    """What tells voices apart in one utterance.

    Args:
        f0_hz: F0 of the voiced frames `[T_voiced]`.
        cepstral_mean: Mean mel-cepstrum c1..c24 over the voiced frames (all frames if too few are voiced) `[24]`.
        frames: Analysis frames of the utterance.
    """

    f0_hz: np.ndarray
    cepstral_mean: np.ndarray
    frames: int

    @property
    def median_f0_hz(self) -> float:
        return float(np.median(self.f0_hz)) if self.f0_hz.size else float("nan")


def voice_stats(waveform: np.ndarray, sample_rate: int) -> VoiceStats:
    """F0 and mean mel-cepstrum of one utterance (`scoring.features`: pyin F0, c1..c24, one frame grid)."""
    from scoring import features

    feats = features(waveform, sample_rate)
    voiced = np.isfinite(feats.log_f0)
    cepstra = feats.cepstra[:, : voiced.size]
    frames = voiced if voiced.sum() >= MIN_VOICED_FRAMES else np.ones_like(voiced)
    return VoiceStats(np.exp(feats.log_f0[voiced]), cepstra[:, frames].mean(axis=1), int(voiced.size))


def file_stats(path: Path) -> VoiceStats:
    from scoring import load_wav

    return voice_stats(*load_wav(path))


def cepstral_distance_db(a: np.ndarray, b: np.ndarray) -> float:
    """The MCD formula on two mean mel-cepstra (dB)."""
    return float(MCD_FACTOR * np.sqrt(np.sum((np.asarray(a) - np.asarray(b)) ** 2)))


def pooled_median_f0(stats: list[VoiceStats]) -> float:
    """Median F0 over the voiced frames of all the utterances (NaN if none is voiced)."""
    f0 = np.concatenate([s.f0_hz for s in stats]) if stats else np.empty(0)
    return float(np.median(f0)) if f0.size else float("nan")


def centroid(stats: list[VoiceStats]) -> np.ndarray:
    return np.mean([s.cepstral_mean for s in stats], axis=0)


@dataclass
class Reference:
    """A real voice: the median F0 and the centroid of its training clips."""

    median_f0_hz: float
    centroid: np.ndarray
    clips: int


def nearest(stats: VoiceStats, references: dict[str, Reference]) -> tuple[str, str | None]:
    """The reference voice nearest to an utterance by its cepstral mean, and by its median F0 (None if unvoiced)."""
    by_cepstra = min(references, key=lambda s: cepstral_distance_db(stats.cepstral_mean, references[s].centroid))
    f0 = stats.median_f0_hz
    by_f0 = None
    if math.isfinite(f0):
        by_f0 = min(references, key=lambda s: abs(math.log(f0 / references[s].median_f0_hz)))
    return by_cepstra, by_f0


def compare_voices(synthesized: dict[str, list[VoiceStats]], references: dict[str, Reference]) -> dict:
    """Per synthesized voice its median F0 and nearest-centroid fractions; the distances between the voices."""
    voices = {}
    for speaker, stats in synthesized.items():
        nearest_pairs = [nearest(s, references) for s in stats]
        voiced = [f0 for _, f0 in nearest_pairs if f0 is not None]
        voices[speaker] = {
            "utterances": len(stats),
            "median_f0_hz": pooled_median_f0(stats),
            "reference_median_f0_hz": {name: ref.median_f0_hz for name, ref in references.items()},
            "cepstral_distance_to_reference_db": {
                name: cepstral_distance_db(centroid(stats), ref.centroid) for name, ref in references.items()
            },
            "nearest_centroid_accuracy": float(np.mean([c == speaker for c, _ in nearest_pairs])),
            "nearest_f0_accuracy": float(np.mean([f0 == speaker for f0 in voiced])) if voiced else float("nan"),
            "voiced_utterances": len(voiced),
        }
    a, b = SPEAKERS
    all_pairs = [(speaker, nearest(s, references)) for speaker, stats in synthesized.items() for s in stats]
    return {
        "voices": voices,
        "cepstral_distance_db": {
            "real": cepstral_distance_db(references[a].centroid, references[b].centroid),
            "synthesized": cepstral_distance_db(centroid(synthesized[a]), centroid(synthesized[b])),
        },
        "nearest_centroid_accuracy": float(np.mean([c == speaker for speaker, (c, _) in all_pairs])),
    }


def reference_voices(data_dir: Path) -> dict[str, Reference]:
    references = {}
    for speaker, paths in training_clips(data_dir).items():
        stats = [file_stats(path) for path in paths]
        references[speaker] = Reference(pooled_median_f0(stats), centroid(stats), len(stats))
    return references


##########################
# interfaces: the tts program, TTS.api, ONNX
##########################


def child_environment() -> dict:
    """The environment of the `tts` program: it imports the add-on from this checkout, as this script does
    (`common.install_source_finder`), not from wherever the virtual environment's editable install points."""
    env = dict(os.environ)
    site = str(ROOT / "tests" / "_site")  # its `sitecustomize` installs the finder for NATURALSPEECH_SOURCE_ROOT
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [site, env.get("PYTHONPATH", "")]))
    env["NATURALSPEECH_SOURCE_ROOT"] = str(ROOT)
    return env


def _differ(a: np.ndarray, b: np.ndarray) -> bool:
    return a.size != b.size or not np.allclose(a, b, atol=1e-4)


SERVER_MODULE = "TTS.tts.layers.naturalspeech.runtime.server"


def server_waves(checkpoint: Path, config_path: Path, text: str, work_dir: Path) -> dict[str, tuple[np.ndarray, int]]:
    """`text` as each speaker from `naturalspeech-server` over HTTP on 127.0.0.1 (`GET /api/tts?speaker_id=...`)."""
    import io
    import socket
    import urllib.parse
    import urllib.request

    import soundfile

    with socket.socket() as probe:  # a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", SERVER_MODULE, "--model_path", str(checkpoint), "--config_path", str(config_path)]
    command += ["--port", str(port)]
    log_path = work_dir / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=child_environment())
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None:
                msg = f"naturalspeech-server exited with {process.returncode}: {log_path.read_text()[-2000:]}"
                raise RuntimeError(msg)
            try:
                with urllib.request.urlopen(f"{url}/api/info", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"naturalspeech-server did not answer within 300 s: {log_path}") from None
                time.sleep(0.5)
        waves = {}
        for speaker in SPEAKERS:
            query = urllib.parse.urlencode({"text": text, "speaker_id": speaker, "noise_scale": 0.0})
            with urllib.request.urlopen(f"{url}/api/tts?{query}", timeout=600) as response:
                wav, rate = soundfile.read(io.BytesIO(response.read()), dtype="float32")
            waves[speaker] = (wav, rate)
        return waves
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def check_interfaces(
    run_dir: Path, minutes: float, references: dict[str, Reference], work_dir: Path, text: str = CHECK_TEXT
) -> dict[str, dict]:
    """Speak `text` as each speaker through the `tts` program, `TTS.api`, `naturalspeech-server` over HTTP and the ONNX
    graph of the checkpoint.

    Returns:
        Interface -> {"differ": the two speakers' waveforms differ, <speaker>: {seconds, median F0, nearest voice by
        cepstra and by F0}}; for "onnx" also "matches_pytorch": speaker -> the graph's output for the speaker's id
        equals the PyTorch model's for the speaker's name; the same for "server" (its 16-bit audio at noise 0).
    """
    import torch
    from scoring import load_wav

    from TTS.api import TTS
    from TTS.tts.layers.naturalspeech.runtime.onnx_export import inference_onnx, load_onnx

    checkpoint = train_budget.budget_checkpoint_path(run_dir, minutes)
    config_path = run_dir / train_budget.CONFIG_FILE
    program = Path(sys.executable).parent / "tts"
    waves: dict[str, dict[str, tuple[np.ndarray, int]]] = {"cli": {}, "api": {}, "server": {}, "onnx": {}}
    for speaker in SPEAKERS:
        out = work_dir / f"cli_{speaker}.wav"
        command = [str(program), "--model_path", str(checkpoint), "--config_path", str(config_path)]
        command += ["--text", text, "--speaker_idx", speaker, "--out_path", str(out)]
        done = subprocess.run(
            command, capture_output=True, text=True, env=child_environment(), timeout=1200, check=False
        )
        if done.returncode != 0:
            msg = f"`tts --speaker_idx {speaker}` failed (exit status {done.returncode}): {done.stderr[-2000:]}"
            raise RuntimeError(msg)
        waves["cli"][speaker] = load_wav(out)
    api = TTS(model_path=str(checkpoint), config_path=str(config_path))
    for speaker in SPEAKERS:
        torch.manual_seed(0)  # the same noise for both speakers: a difference is the speaker's
        wav = np.asarray(api.tts(text, speaker=speaker), dtype=np.float32)
        waves["api"][speaker] = (wav, api.synthesizer.output_sample_rate)
    waves["server"] = server_waves(checkpoint, config_path, text, work_dir)
    model = synthesize.load_budget_model(run_dir, minutes)
    onnx_path = work_dir / "two_speakers.onnx"
    model.export_onnx(str(onnx_path))
    session = load_onnx(onnx_path)
    ids = model.speakable_ids(text)
    onnx_matches, server_matches = {}, {}
    for speaker in SPEAKERS:
        # the toolkit's SpeakerManager numbers the speakers in sorted name order, not in the config's order
        sid = model.speaker_manager.name_to_id[speaker]
        wav = inference_onnx(session, ids, noise_scale=0.0, length_scale=model.length_scale, sid=sid)[0, 0]
        waves["onnx"][speaker] = (wav, model.config.audio.sample_rate)
        # the model itself speaking by name (noise 0): the graph's `sid` must mean the same speaker
        with torch.inference_mode():
            by_name = np.concatenate(list(model.inference_stream(text, speaker=speaker, noise_scale=0.0)))
        onnx_matches[speaker] = wav.size == by_name.size and bool(np.allclose(wav, by_name, atol=1e-3))
        served = waves["server"][speaker][0]  # 16-bit PCM
        server_matches[speaker] = served.size == by_name.size and bool(np.allclose(served, by_name, atol=1e-3))
    report = {}
    for interface, by_speaker in waves.items():
        a, b = (by_speaker[s][0] for s in SPEAKERS)
        report[interface] = {"differ": _differ(a, b)}
        if interface in ("onnx", "server"):
            report[interface]["matches_pytorch"] = onnx_matches if interface == "onnx" else server_matches
        for speaker, (wav, rate) in by_speaker.items():
            stats = voice_stats(wav, rate)
            by_cepstra, by_f0 = nearest(stats, references)
            report[interface][speaker] = {
                "seconds": len(wav) / rate,
                "median_f0_hz": stats.median_f0_hz,
                "nearest_voice": by_cepstra,
                "nearest_voice_by_f0": by_f0,
            }
    return report


##########################
# the experiment
##########################


def evaluate(run_dir: Path, minutes: float, data_dir: Path, num_sentences: int, out_dir: Path, seed: int) -> tuple:
    """Synthesize the held-out sentences with each speaker; statistics per utterance, references per voice."""
    model = synthesize.load_budget_model(run_dir, minutes)
    sentences = synthesize.heldout_sentences(data_dir, num_sentences)
    rows, synthesized = [], {speaker: [] for speaker in SPEAKERS}
    for speaker in SPEAKERS:
        for index, (clip_id, text) in enumerate(sentences):
            spoken = synthesize.synthesize_sentence(model, clip_id, text, seed, speaker=speaker)
            stats = voice_stats(spoken.waveform, spoken.sample_rate)
            synthesized[speaker].append(stats)
            rows.append({"speaker": speaker, "id": clip_id, "seconds": len(spoken.waveform) / spoken.sample_rate})
            rows[-1].update(median_f0_hz=stats.median_f0_hz, voiced_frames=stats.f0_hz.size, frames=stats.frames)
            if index == 0:
                synthesize.write_wav(out_dir / f"{speaker}_{clip_id}.wav", spoken)
    references = reference_voices(data_dir)
    for row, stats in zip(rows, [s for speaker in SPEAKERS for s in synthesized[speaker]], strict=True):
        row["nearest_voice"], row["nearest_voice_by_f0"] = nearest(stats, references)
    return rows, synthesized, references


def print_table(result: dict) -> None:
    comparison = result["comparison"]
    refs = comparison["voices"][SPEAKERS[0]]["reference_median_f0_hz"]
    print(f"\nTwo speakers after {result['budget']['budget_minutes']:g} CPU-minutes ({result['budget']['step']} steps)")
    print(f"{'voice':8} {'median F0 (Hz)':>15} {'real F0 (Hz)':>13} {'nearest centroid':>17} {'nearest F0':>11}")
    for speaker, voice in comparison["voices"].items():
        print(
            f"{speaker:8} {voice['median_f0_hz']:15.1f} {refs[speaker]:13.1f} "
            f"{voice['nearest_centroid_accuracy']:17.2f} {voice['nearest_f0_accuracy']:11.2f}"
        )
    distance = comparison["cepstral_distance_db"]
    synthesized, real = distance["synthesized"], distance["real"]
    print(f"cepstral distance between the voices: synthesized {synthesized:.2f} dB, real {real:.2f} dB")
    for interface, check in result.get("interfaces", {}).items():
        voices = ", ".join(f"{s} -> {check[s]['nearest_voice']} ({check[s]['median_f0_hz']:.0f} Hz)" for s in SPEAKERS)
        matches = f", matches PyTorch: {check['matches_pytorch']}" if "matches_pytorch" in check else ""
        print(f"{interface:5} differ={check['differ']}: {voices}{matches}")


def run(args: argparse.Namespace) -> dict:
    root = experiment_dir(args.bench_dir)
    data_dir = build_dataset(root / "data", args.real_dir, args.num_clips, args.threads)
    train_budget.train_budget(
        RUN,
        args.minutes,
        corpus_dir=data_dir,
        bench_dir=root,
        marks=[args.minutes],
        threads=args.threads,
        size=args.size,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        log_path=root / "train.log",
    )
    run_dir = train_budget.run_dir_of(RUN, root)
    budget = next(r for r in train_budget.read_budgets(run_dir) if r["budget_minutes"] == args.minutes)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rows, synthesized, references = evaluate(
        run_dir, args.minutes, data_dir, args.num_sentences, args.out_dir, args.seed
    )
    result = {
        **run_record(args),
        "budget": budget,
        "references": {s: {"median_f0_hz": r.median_f0_hz, "clips": r.clips} for s, r in references.items()},
        "comparison": compare_voices(synthesized, references),
        "sentences": sorted({row["id"] for row in rows}),
    }
    if args.check_interfaces:
        with tempfile.TemporaryDirectory() as work_dir:
            result["interfaces"] = check_interfaces(run_dir, args.minutes, references, Path(work_dir))
    result["evaluation_seconds"] = time.perf_counter() - start
    write_json(args.out_dir / "two_speakers.json", result)
    write_csv(args.out_dir / "two_speakers.csv", rows)
    print_table(result)
    return result


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=DEFAULT_MINUTES, help="training budget in CPU-minutes")
    p.add_argument("--num-sentences", type=int, default=DEFAULT_NUM_SENTENCES, help="held-out sentences per speaker")
    p.add_argument("--num-clips", type=int, help="first real clips to use (default: all 32)")
    p.add_argument("--real-dir", type=Path, default=REAL_CLIPS, help="the real speaker's clips (LJSpeech format)")
    p.add_argument("--bench-dir", type=Path, help="default: $NATURALSPEECH_BENCH_DIR (../bench_runs)")
    p.add_argument("--out-dir", type=Path, default=OUT_DIR)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--size", default=models.DEFAULT_SIZE, choices=list(models.SIZES))
    p.add_argument("--batch-size", type=int, default=models.DEFAULT_BATCH_SIZE)
    p.add_argument("--lr", type=float, default=models.DEFAULT_LR)
    p.add_argument("--warmup-steps", type=int, default=models.DEFAULT_WARMUP_STEPS)
    p.add_argument("--seed", type=int, default=synthesize.DEFAULT_SEED)
    p.add_argument("--check-interfaces", action="store_true", help="also speak both voices via tts, TTS.api, ONNX")
    return p


def main() -> None:
    args = parser().parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    try:
        run(args)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
