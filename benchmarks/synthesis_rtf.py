"""Synthesis real-time factor on CPU: NaturalSpeech vs the toolkit's VITS at matched sizes (target: RTF ratio ≤ 1).

Both models get the same random token ids and the same fixed durations (`--frames-per-token` frames for every
token, passed as `aux_input["durations"]`, which both `inference()` methods accept), so both synthesize exactly
the same number of frames whatever their untrained duration predictors would say; both still run their duration
models (NaturalSpeech's durator always predicts; VITS's stochastic duration predictor is run by a hook, see
`_VitsDurationPredictorToo`); the noise seed is reset before
every call. RTF = synthesis time / audio duration. The systems alternate within every repetition; the table reports
median times and the median of the per-repetition ratios NaturalSpeech/VITS.

The ONNX Runtime rows export each model once (VITS: a wrapper around `Vits.inference` with durations as an input,
weight-norm parametrizations removed as in `Vits.export_onnx`; NaturalSpeech: its `export_onnx` if the model has
one) and time `InferenceSession.run` with `intra_op_num_threads` = torch threads, alternating with eager. The
"onnxruntime-int8" rows run copies of those graphs whose HiFi-GAN convolutions are static int8
(`runtime.onnx_quantization.quantize_decoder`, what `export_onnx(quantize=True)` does), calibrated on the benchmark
inputs.

    python benchmarks/synthesis_rtf.py --size paper --lengths 20 80 --threads 2 1 --reps 3
    python benchmarks/synthesis_rtf.py --size medium --lengths 20 80 200 --no-onnx --tag sweep
"""

import argparse
import copy
import logging
import os
import tempfile
from pathlib import Path

import torch
from common import (
    add_common_arguments,
    alternate,
    build_configs,
    header,
    markdown_table,
    median,
    median_ratio,
    run_record,
    write_csv,
    write_json,
)

from TTS.tts.layers.naturalspeech.runtime.onnx_export import export_copy, load_onnx

COLUMNS = [
    "size",
    "backend",
    "threads",
    "tokens",
    "frames",
    "audio_s",
    "reps",
    "naturalspeech_s",
    "vits_s",
    "naturalspeech_rtf",
    "vits_rtf",
    "rtf_ratio",
    "naturalspeech_onnx_speedup",
    "vits_onnx_speedup",
    "note",
]
TARGET_RTF_RATIO = 1.0
TARGET_ONNX_SPEEDUP = 1.5


def build_models(size: str):
    from TTS.tts.models.naturalspeech import Naturalspeech
    from TTS.tts.models.vits import Vits

    ns_config, vits_config = build_configs(size)
    torch.manual_seed(0)
    naturalspeech = Naturalspeech(ns_config).eval()
    naturalspeech.memory_initialized.fill_(True)  # a trained model reads the fitted memory bank at inference
    naturalspeech.disc = None
    torch.manual_seed(0)
    vits = Vits(vits_config).eval()
    vits.disc = None
    vits.text_encoder.register_forward_hook(_VitsDurationPredictorToo(vits))
    return naturalspeech, vits


class _VitsDurationPredictorToo:
    """Forward hook on VITS's text encoder that runs its duration predictor as `Vits.inference` would.

    Given `durations`, `Vits.inference` skips its stochastic duration predictor, while NaturalSpeech's durator predicts
    durations anyway; the target compares the durator and memory attention with that predictor, so VITS must pay for
    it too. The prediction is added to the prior mean times zero (an exact no-op) so that ONNX tracing keeps it.
    """

    def __init__(self, vits):
        self.vits = vits

    def __call__(self, text_encoder, inputs, outputs):
        x, m_p, logs_p, x_mask = outputs
        vits = self.vits
        if vits.args.use_sdp:
            logw = vits.duration_predictor(x, x_mask, reverse=True, noise_scale=vits.inference_noise_scale_dp)
        else:
            logw = vits.duration_predictor(x, x_mask)
        return x, m_p + 0 * logw.sum(), logs_p, x_mask


class _VitsFixedDurations(torch.nn.Module):
    """`Vits.inference` with the durations as a graph input, for the ONNX export."""

    def __init__(self, vits):
        super().__init__()
        self.vits = vits

    def forward(self, tokens, token_lengths, durations):
        aux_input = {"x_lengths": token_lengths, "durations": durations, "d_vectors": None, "speaker_ids": None}
        return self.vits.inference(tokens, aux_input=aux_input)["model_outputs"]


def export_vits_onnx(vits, path: Path, tokens: torch.Tensor, durations: torch.Tensor) -> None:
    wrapper = _VitsFixedDurations(export_copy(vits))
    lengths = torch.tensor([tokens.size(1)])
    torch.onnx.export(
        wrapper,
        (tokens, lengths, durations),
        str(path),
        opset_version=18,
        input_names=["input", "input_lengths", "durations"],
        output_names=["output"],
        dynamic_axes={"input": {1: "phonemes"}, "durations": {1: "phonemes"}, "output": {2: "samples"}},
        dynamo=False,
    )


def constant_duration_copy(naturalspeech, frames_per_token: int):
    """A copy whose duration predictor outputs log(`frames_per_token`) for every token.

    `Naturalspeech.export_onnx` exports the predicted-duration path (no durations input); with this copy the graph
    synthesizes the same number of frames as eager inference with `aux_input["durations"]`.
    """
    import math

    model = copy.deepcopy(naturalspeech)
    proj = model.durator.duration_predictor.proj
    with torch.no_grad():
        proj.weight.zero_()
        proj.bias.fill_(math.log(frames_per_token))
    return model


def export_naturalspeech_onnx(naturalspeech, path: Path, frames_per_token: int) -> str | None:
    """Export with the model's own `export_onnx`; returns why not when it does not exist (yet) or fails."""
    if not hasattr(type(naturalspeech), "export_onnx"):
        return "not available yet (Naturalspeech has no export_onnx)"
    try:
        constant_duration_copy(naturalspeech, frames_per_token).export_onnx(str(path))
    except Exception as error:
        return f"export_onnx failed: {type(error).__name__}: {str(error).splitlines()[0][:200]}"
    return None


def onnx_feed(session, tokens, durations, noise_scale: float, length_scale: float) -> dict:
    """Inputs for an exported graph, matched by name (token ids, lengths, durations, scales)."""
    import numpy as np

    feed = {}
    for arg in session.get_inputs():
        name = arg.name.lower()
        if "dur" in name:
            feed[arg.name] = durations.numpy().astype(np.float32 if "float" in arg.type else np.int64)
        elif "len" in name:
            feed[arg.name] = np.array([tokens.size(1)], dtype=np.int64)
        elif "scale" in name:
            feed[arg.name] = np.array([noise_scale, length_scale, 1.0][: arg.shape[0] or 3], dtype=np.float32)
        else:
            feed[arg.name] = tokens.numpy()
    return feed


def quantize_exports(exports: dict, inputs: dict, naturalspeech, workdir: Path, notes: dict) -> dict:
    """Int8-decoder copies of the float exports (the product's `quantize_decoder`), calibrated on the inputs."""
    from TTS.tts.layers.naturalspeech.runtime.onnx_quantization import quantize_decoder

    quantized = {}
    for name, path in exports.items():
        session = load_onnx(path, threads=1)
        noise_scale = naturalspeech.config.model_args.inference_noise_scale
        feeds = [onnx_feed(session, tokens, durations, noise_scale, 1.0) for tokens, durations in inputs.values()]
        try:
            quantized[name] = quantize_decoder(path, workdir / f"{name}_int8.onnx", feeds)
        except Exception as error:
            notes[f"{name}_int8"] = f"quantization failed: {type(error).__name__}: {str(error).splitlines()[0][:200]}"
    return quantized


def onnx_row(eager_row: dict, backend: str, suffix: str, times: dict, notes: dict) -> dict:
    """The ONNX Runtime row matching an eager row: times, RTFs, speed-up over eager, NaturalSpeech/VITS ratio."""
    row = {k: eager_row[k] for k in ("size", "threads", "tokens", "frames", "audio_s", "reps")}
    row["backend"] = backend
    for name in ("naturalspeech", "vits"):
        if f"{name}{suffix}" in times:
            row[f"{name}_s"] = median(times[f"{name}{suffix}"])
            row[f"{name}_rtf"] = row[f"{name}_s"] / eager_row["audio_s"]
            row[f"{name}_onnx_speedup"] = median_ratio(times[name], times[f"{name}{suffix}"])
    if f"naturalspeech{suffix}" in times and f"vits{suffix}" in times:
        row["rtf_ratio"] = median_ratio(times[f"naturalspeech{suffix}"], times[f"vits{suffix}"])
    row["note"] = "; ".join(f"{k}: {v}" for k, v in notes.items())
    return row


def measure(args) -> tuple[list[dict], dict]:
    naturalspeech, vits = build_models(args.size)
    hop, sample_rate = naturalspeech.config.audio.hop_length, naturalspeech.config.audio.sample_rate
    vocab = min(naturalspeech.phoneme_encoder.emb.num_embeddings, vits.text_encoder.emb.num_embeddings)
    generator = torch.Generator().manual_seed(0)
    inputs = {}
    for length in args.lengths:
        tokens = torch.randint(1, vocab, (1, length), generator=generator)
        inputs[length] = (tokens, torch.full((1, length), float(args.frames_per_token)))

    exports, exports_int8, notes = {}, {}, {}
    workdir = Path(tempfile.mkdtemp(prefix="rtf_onnx_"))
    if args.onnx:
        try:
            import onnxruntime  # noqa: F401

            tokens, durations = inputs[args.lengths[0]]
            export_vits_onnx(vits, workdir / "vits.onnx", tokens, durations)
            exports["vits"] = workdir / "vits.onnx"
        except Exception as error:
            notes["vits"] = f"export failed: {type(error).__name__}: {str(error).splitlines()[0][:200]}"
        reason = export_naturalspeech_onnx(naturalspeech, workdir / "naturalspeech.onnx", args.frames_per_token)
        if reason is None:
            exports["naturalspeech"] = workdir / "naturalspeech.onnx"
        else:
            notes["naturalspeech"] = reason
    if args.int8:
        exports_int8 = quantize_exports(exports, inputs, naturalspeech, workdir, notes)

    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        sessions = {f"{name}_onnx": load_onnx(path, threads=threads) for name, path in exports.items()}
        sessions |= {f"{name}_int8": load_onnx(path, threads=threads) for name, path in exports_int8.items()}
        for length in args.lengths:
            tokens, durations = inputs[length]
            frames = int(durations.sum())
            audio_s = frames * hop / sample_rate
            aux = {"durations": durations}

            def eager(model, aux=aux, tokens=tokens):
                torch.manual_seed(1234)
                with torch.inference_mode():
                    return model.inference(tokens, aux_input=dict(aux))

            functions = {
                "naturalspeech": lambda: eager(naturalspeech),
                "vits": lambda: eager(vits),
            }
            for key, session in sessions.items():
                model = naturalspeech if key.startswith("naturalspeech") else vits
                feed = onnx_feed(session, tokens, durations, model.config.model_args.inference_noise_scale, 1.0)
                functions[key] = lambda session=session, feed=feed: session.run(None, feed)
                samples = session.run(None, feed)[0].shape[-1]
                if samples != frames * hop:
                    notes[f"{key}_{length}"] = f"ONNX output {samples} samples, eager {frames * hop}"
            times = alternate(functions, args.reps, warmup=1)
            row = {
                "size": args.size,
                "backend": "eager",
                "threads": threads,
                "tokens": length,
                "frames": frames,
                "audio_s": audio_s,
                "reps": args.reps,
                "naturalspeech_s": median(times["naturalspeech"]),
                "vits_s": median(times["vits"]),
                "rtf_ratio": median_ratio(times["naturalspeech"], times["vits"]),
            }
            row["naturalspeech_rtf"] = row["naturalspeech_s"] / audio_s
            row["vits_rtf"] = row["vits_s"] / audio_s
            rows.append(row)
            for backend, suffix in (("onnxruntime", "_onnx"), ("onnxruntime-int8", "_int8")):
                if any(key.endswith(suffix) for key in sessions):
                    rows.append(onnx_row(row, backend, suffix, times, notes))
            print(markdown_table(rows[-1 - len(sessions) // 2 :], COLUMNS[:-1]).split("\n", 2)[-1], flush=True)
    return rows, notes


def plot(rows: list[dict], path: Path) -> None:
    """RTF vs input tokens: one panel per size; colour = system, line = backend, marker = threads (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r["size"] for r in rows})
    fig, axes = plt.subplots(1, len(sizes), figsize=(6 * len(sizes), 4.5), squeeze=False)
    colours = {"naturalspeech": "tab:blue", "vits": "tab:orange"}
    lines = {"eager": "-", "onnxruntime": ":", "onnxruntime-int8": "--"}
    markers = ["o", "s", "^", "d"]
    for ax, size in zip(axes[0], sizes, strict=True):
        at_size = [r for r in rows if r["size"] == size]
        threads = sorted({r["threads"] for r in at_size}, reverse=True)
        for backend in lines:
            for index, thread_count in enumerate(threads):
                group = sorted(
                    (r for r in at_size if r["backend"] == backend and r["threads"] == thread_count),
                    key=lambda r: r["tokens"],
                )
                for system in ("naturalspeech", "vits"):
                    points = [(r["tokens"], r[f"{system}_rtf"]) for r in group if r.get(f"{system}_rtf") is not None]
                    if not points:
                        continue
                    name = "NaturalSpeech" if system == "naturalspeech" else "VITS"
                    ax.plot(
                        *zip(*points, strict=True),
                        linestyle=lines[backend],
                        marker=markers[index % len(markers)],
                        color=colours[system],
                        label=f"{name} {backend} {thread_count} thread{'s' if thread_count > 1 else ''}",
                    )
        ax.set_yscale("log")
        ax.set_xlabel("input tokens (fixed durations: same frames for both models)")
        ax.set_ylabel("RTF = synthesis time / audio duration")
        ax.set_title(f"{size} size")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle("CPU synthesis RTF vs input length (shared 2-core machine: compare systems within a panel)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="paper", choices=["paper", "medium", "tiny"])
    parser.add_argument("--lengths", type=int, nargs="+", default=[20, 80, 200])
    parser.add_argument("--threads", type=int, nargs="+", default=[os.cpu_count(), 1])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--frames-per-token", type=int, default=4)
    parser.add_argument("--onnx", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--int8", action=argparse.BooleanOptionalAction, default=True, help="also ONNX with an int8 decoder"
    )
    parser.add_argument("--tag", default="", help="suffix of the output file names")
    parser.add_argument("--plot", type=Path, help="also draw RTF vs length here")
    add_common_arguments(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    args.int8 = args.int8 and args.onnx
    if args.quick:
        args.size, args.lengths, args.threads, args.reps = "tiny", [8, 16], [1], 1
    print(header("synthesis RTF"))
    rows, notes = measure(args)
    stem = f"synthesis_rtf{'_' + args.tag if args.tag else ''}"
    eager = [r for r in rows if r["backend"] == "eager"]
    onnx = [r for r in rows if r["backend"] == "onnxruntime"]
    int8 = [r for r in rows if r["backend"] == "onnxruntime-int8"]
    summary = {
        **run_record(args),
        "targets": {"rtf_ratio_max": TARGET_RTF_RATIO, "onnx_speedup_min": TARGET_ONNX_SPEEDUP},
        "rtf_ratio_met": all(r["rtf_ratio"] <= TARGET_RTF_RATIO for r in eager),
        "naturalspeech_onnx_speedup_met": (
            all(r.get("naturalspeech_onnx_speedup", 0) >= TARGET_ONNX_SPEEDUP for r in onnx) if onnx else None
        ),
        "naturalspeech_int8_speedup_met": (
            all(r.get("naturalspeech_onnx_speedup", 0) >= TARGET_ONNX_SPEEDUP for r in int8) if int8 else None
        ),
        "onnx_notes": notes,
        "results": rows,
    }
    write_json(args.out_dir / f"{stem}.json", summary)
    write_csv(args.out_dir / f"{stem}.csv", rows, COLUMNS)
    if args.plot:
        plot(rows, args.plot)
    print(markdown_table(rows, COLUMNS))
    print(f"wrote {args.out_dir / stem}.json|csv")


if __name__ == "__main__":
    main()
