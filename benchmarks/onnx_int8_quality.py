"""What the int8 ONNX decoder and flow cost in quality and buy in speed, on a trained NaturalSpeech checkpoint.

Exports the checkpoint twice (`export_onnx()` float32 and `export_onnx(quantize=True)`, calibrated on the config's
test sentences), synthesizes held-out sentences (the LJSpeech transcripts of `--metadata`, none of them used for
calibration) with PyTorch eager, the float32 graph and the int8 graph, alternating, and reports per sentence:

- `snr_db`: waveform signal-to-noise ratio of int8 (decoder and flow, what `quantize=True` writes) against float32
  (noise scale 0, so the only difference is quantization); `snr_db_decoder_only`: the same for a graph with only the
  decoder int8 (the flow's share of the noise is the difference);
- `logmel_l1_int8`: mean |log-mel(int8) - log-mel(float32)|, next to `logmel_l1_resampling`: the same distance
  between two float32 syntheses that differ only in the prior sample (the model's own noise scale, two seeds), i.e.
  how much the model's output varies anyway from one synthesis to the next;
- eager / float32 ONNX / int8 ONNX times and the speed-ups over eager (1 thread and all cores).

    python benchmarks/onnx_int8_quality.py --run-dir demo_output/runs/<run> --sentences 8
"""

import argparse
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
import torchaudio
from common import (
    RESULTS_DIR,
    ROOT,
    alternate,
    header,
    markdown_table,
    median,
    median_ratio,
    run_record,
    write_csv,
    write_json,
)

from TTS.tts.layers.naturalspeech.runtime.onnx_export import calibration_feeds, inference_onnx, load_onnx
from TTS.tts.layers.naturalspeech.runtime.onnx_quantization import quantize_decoder

COLUMNS = [
    "threads",
    "sentence",
    "tokens",
    "audio_s",
    "snr_db",
    "snr_db_decoder_only",
    "logmel_l1_int8",
    "logmel_l1_resampling",
    "eager_s",
    "float_onnx_s",
    "int8_onnx_s",
    "float_onnx_speedup",
    "int8_onnx_speedup",
]


def load_model(run_dir: Path):
    from TTS.config import load_config
    from TTS.tts.models.naturalspeech import Naturalspeech

    config = load_config(str(run_dir / "config.json"))
    model = Naturalspeech.init_from_config(config)
    model.load_checkpoint(config, str(run_dir / "best_model.pth"), eval=True)
    return model


def held_out_texts(metadata: Path, count: int) -> list[str]:
    rows = [line.split("|") for line in metadata.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [row[-1] for row in rows[:count]]


class LogMel:
    """Log-mel spectrogram `[n_mels, frames]` at the model's audio settings (the distance is measured on it)."""

    def __init__(self, audio):
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=audio.sample_rate, n_fft=audio.fft_size, hop_length=audio.hop_length, n_mels=audio.num_mels
        )

    def __call__(self, wav: np.ndarray) -> torch.Tensor:
        return torch.log(self.mel(torch.as_tensor(wav, dtype=torch.float32).reshape(-1)).clamp_min(1e-5))

    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        mel_a, mel_b = self(a), self(b)
        frames = min(mel_a.size(-1), mel_b.size(-1))
        return float((mel_a[:, :frames] - mel_b[:, :frames]).abs().mean())


def snr_db(actual: np.ndarray, reference: np.ndarray) -> float:
    noise = np.sum((actual - reference) ** 2)
    return float(10 * np.log10(np.sum(reference**2) / noise)) if noise > 0 else float("inf")


def eager(model, ids: torch.Tensor, noise_scale: float, seed: int = 0) -> np.ndarray:
    torch.manual_seed(seed)
    with torch.inference_mode():
        return model.inference(ids, {"noise_scale": noise_scale})["model_outputs"].numpy()


def measure(model, texts: list[str], threads: list[int], reps: int) -> list[dict]:
    workdir = Path(tempfile.mkdtemp(prefix="int8_quality_"))
    model.export_onnx(str(workdir / "float32.onnx"))
    model.export_onnx(str(workdir / "int8.onnx"), quantize=True)
    quantize_decoder(workdir / "float32.onnx", workdir / "int8_decoder.onnx", calibration_feeds(model))
    log_mel = LogMel(model.config.audio)
    sample_rate = model.config.audio.sample_rate
    rows = []
    for thread_count in threads:
        torch.set_num_threads(thread_count)
        sessions = {name: load_onnx(workdir / f"{name}.onnx", threads=thread_count) for name in ("float32", "int8")}
        decoder_only = load_onnx(workdir / "int8_decoder.onnx", threads=thread_count)  # quality only, not timed
        for index, text in enumerate(texts):
            ids = torch.tensor([model.speakable_ids(text)])
            float_wav = inference_onnx(sessions["float32"], ids, noise_scale=0.0, length_scale=model.length_scale)
            int8_wav = inference_onnx(sessions["int8"], ids, noise_scale=0.0, length_scale=model.length_scale)
            decoder_int8_wav = inference_onnx(decoder_only, ids, noise_scale=0.0, length_scale=model.length_scale)
            times = alternate(
                {
                    "eager": lambda ids=ids: eager(model, ids, model.noise_scale),
                    **{
                        name: lambda s=session, ids=ids: inference_onnx(
                            s, ids, None, model.noise_scale, model.length_scale
                        )
                        for name, session in sessions.items()
                    },
                },
                reps,
            )
            rows.append(
                {
                    "threads": thread_count,
                    "sentence": index,
                    "tokens": ids.size(1),
                    "audio_s": float_wav.shape[-1] / sample_rate,
                    "snr_db": snr_db(int8_wav, float_wav),
                    "snr_db_decoder_only": snr_db(decoder_int8_wav, float_wav),
                    "logmel_l1_int8": log_mel.distance(int8_wav, float_wav),
                    "logmel_l1_resampling": log_mel.distance(
                        eager(model, ids, model.noise_scale, seed=1), eager(model, ids, model.noise_scale, seed=2)
                    ),
                    "eager_s": median(times["eager"]),
                    "float_onnx_s": median(times["float32"]),
                    "int8_onnx_s": median(times["int8"]),
                    "float_onnx_speedup": median_ratio(times["eager"], times["float32"]),
                    "int8_onnx_speedup": median_ratio(times["eager"], times["int8"]),
                }
            )
            print(markdown_table(rows[-1:], COLUMNS).split("\n", 2)[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="training run folder (config.json, best_model.pth)")
    parser.add_argument("--metadata", type=Path, default=ROOT.parent / "shared" / "data" / "ljspeech" / "metadata.csv")
    parser.add_argument("--sentences", type=int, default=8)
    parser.add_argument("--threads", type=int, nargs="+", default=[os.cpu_count(), 1])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(header("int8 ONNX decoder and flow: quality and speed"))
    model = load_model(args.run_dir)
    rows = measure(model, held_out_texts(args.metadata, args.sentences), args.threads, args.reps)
    summary = {
        **run_record(args),
        "medians": {
            f"{column}@{t}": median(r[column] for r in rows if r["threads"] == t)
            for t in args.threads
            for column in COLUMNS[4:]
        },
        "results": rows,
    }
    write_json(args.out_dir / "onnx_int8_quality.json", summary)
    write_csv(args.out_dir / "onnx_int8_quality.csv", rows, COLUMNS)
    print(markdown_table(rows, COLUMNS))
    print("medians:", {k: round(v, 4) for k, v in summary["medians"].items()})


if __name__ == "__main__":
    main()
