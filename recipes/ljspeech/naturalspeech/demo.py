"""The README's main job (`make demo`): train a CPU-sized NaturalSpeech end to end, then synthesize with `tts`.

1. corpus: the 32 real LJSpeech clips of `../shared/data/ljspeech` (real speech teaches more than espeak-ng's; if
   they are missing, espeak-ng speaks LJSpeech transcripts instead, LJ050-* excluded);
2. training: the CPU recipe through all four stages (warm-up, memory-bank initialisation, main, tuning) with the
   toolkit's Trainer and a progress bar, a few minutes on 2 cores;
3. synthesis: the toolkit's `tts` command line on the trained checkpoint;
4. a PNG with the mel spectrogram of the result and the predicted phoneme durations.

Everything runs offline. Usage: `python recipes/ljspeech/naturalspeech/demo.py [--epochs N] [--out DIR]`.
"""

import argparse
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile
import torch
import train_naturalspeech  # this folder is on sys.path when a script here runs
from tqdm import tqdm
from train_naturalspeech_cpu import make_cpu_config

from TTS.config import load_config
from TTS.tts.models.naturalspeech import Naturalspeech

RECIPE_DIR = Path(__file__).resolve().parent
REPO_ROOT = RECIPE_DIR.parents[2]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
DEMO_TEXT = "Printing, in the only sense with which we are at present concerned."


def build_corpus(out_dir: Path, num_sentences: int = 200) -> Path:
    """The real clips when present, else an espeak-ng corpus of LJSpeech transcripts (LJ050-* excluded)."""
    real = SHARED_DATA / "ljspeech"
    if (real / "metadata.csv").is_file():
        print(f"Corpus: the real LJSpeech clips in {real}")
        return real
    corpus = out_dir / "espeak_corpus"
    (corpus / "wavs").mkdir(parents=True, exist_ok=True)
    transcripts = (SHARED_DATA / "ljspeech_transcripts.txt").read_text(encoding="utf-8").splitlines()
    lines = [line for line in transcripts if line and not line.startswith("LJ050-")][:num_sentences]
    print(f"Corpus: espeak-ng speaking {len(lines)} LJSpeech transcripts into {corpus}")
    metadata = []
    for line in tqdm(lines, desc="espeak-ng"):
        clip_id, text = line.split("|", 1)
        subprocess.run(["espeak-ng", "-w", str(corpus / "wavs" / f"{clip_id}.wav"), text], check=True)
        metadata.append(f"{clip_id}|{text}|{text}")
    (corpus / "metadata.csv").write_text("\n".join(metadata) + "\n", encoding="utf-8")
    return corpus


def train(corpus: Path, out_dir: Path, epochs: int) -> Path:
    """Train the CPU recipe's model with the toolkit's Trainer; returns the run folder."""
    probe = make_cpu_config(corpus, out_dir / "runs", epochs=epochs)
    train_samples, eval_samples = train_naturalspeech.load_samples(probe)
    steps_per_epoch = math.ceil(len(train_samples) / probe.batch_size)
    config = make_cpu_config(corpus, out_dir / "runs", epochs=epochs, steps_per_epoch=steps_per_epoch)
    print(
        f"Training {epochs} epochs x {steps_per_epoch} steps: warm-up until step {config.warmup_steps}, "
        f"tuning from step {config.tuning_start_step}."
    )
    bar = tqdm(total=epochs * steps_per_epoch, desc="NaturalSpeech training", unit="step")
    run_dir = train_naturalspeech.train(
        config,
        (train_samples, eval_samples),
        parse_command_line_args=False,
        callbacks={"on_train_step_end": lambda _trainer: bar.update(1)},
    )
    bar.close()
    return run_dir


def synthesize(run_dir: Path, out_dir: Path) -> Path:
    """Synthesize `DEMO_TEXT` with the toolkit's `tts` command line."""
    wav_path = out_dir / "naturalspeech_demo.wav"
    tts = Path(sys.executable).with_name("tts")
    command = [
        str(tts) if tts.exists() else "tts",
        "--model_path",
        str(run_dir / "best_model.pth"),
        "--config_path",
        str(run_dir / "config.json"),
        "--text",
        DEMO_TEXT,
        "--out_path",
        str(wav_path),
    ]
    print("Running:", " ".join(command))
    subprocess.run(command, check=True)
    return wav_path


def plot(run_dir: Path, wav_path: Path, out_dir: Path) -> Path:
    """Mel spectrogram of the synthesized wav above the predicted phoneme durations."""
    from matplotlib import pyplot as plt

    config = load_config(str(run_dir / "config.json"))
    model = Naturalspeech(config)
    model.load_checkpoint(config, str(run_dir / "best_model.pth"), eval=True)
    tokens = torch.tensor([model.tokenizer.text_to_ids(DEMO_TEXT)])
    durations = model.inference(tokens, aux_input={"noise_scale": 0.0})["durations"][0].numpy()
    symbols = [model.tokenizer.characters.id_to_char(int(t)) for t in tokens[0]]
    wav, _ = soundfile.read(wav_path)
    mel = model.ap.melspectrogram(wav.astype(np.float32))

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(14, 7), height_ratios=[3, 2])
    top.imshow(mel, aspect="auto", origin="lower", interpolation="none")
    top.set_title(f"NaturalSpeech (CPU demo) mel spectrogram: {DEMO_TEXT!r}")
    top.set_ylabel("mel band")
    blank = model.tokenizer.characters.blank
    colors = ["lightgray" if s == blank else "tab:blue" for s in symbols]
    bottom.bar(range(len(durations)), durations, color=colors)
    labels = ["" if s == blank else (s if s.strip() else "␣") for s in symbols]
    bottom.set_xticks(range(len(symbols)), labels, fontsize=8)
    bottom.set_ylabel("frames")
    bottom.set_title("predicted durations (blue: phonemes, gray: blank tokens between them)")
    fig.tight_layout()
    png_path = out_dir / "naturalspeech_demo.png"
    fig.savefig(png_path, dpi=100)
    return png_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100, help="training epochs (about 8 s each on 2 idle cores)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "demo_output", help="where results are written")
    args = parser.parse_args()
    shutil.rmtree(args.out / "runs", ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    corpus = build_corpus(args.out)
    run_dir = train(corpus, args.out, args.epochs)
    wav_path = synthesize(run_dir, args.out)
    png_path = plot(run_dir, wav_path, args.out)
    audio, sample_rate = soundfile.read(wav_path)
    print(f"\nDone in {(time.time() - start) / 60:.1f} min.")
    print(f"  checkpoint: {run_dir / 'best_model.pth'}")
    print(f"  audio:      {wav_path} ({len(audio) / sample_rate:.2f} s at {sample_rate} Hz)")
    print(f"  figure:     {png_path}")


if __name__ == "__main__":
    main()
