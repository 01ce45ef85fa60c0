"""Streaming synthesis on CPU: time to the first audio chunk and total time, as ratios to whole-sentence synthesis.

For each backend the whole synthesis (`Naturalspeech.inference`; ONNX: the latents graph then one decoder call) and
the stream (`Naturalspeech.inference_stream`; ONNX: `OnnxStreamingSynthesizer.stream`) alternate repetition by
repetition on the same token ids (random weights, random ids, `--length-scale` to give a few seconds of audio; noise
scale 0). Reported: `first_chunk / whole` (how much sooner audio starts) and `stream_total / whole` (the cost of the
decoder's context, decoded twice at window edges), medians over repetitions. The decoder's receptive field at paper
size is 13 latent frames on each side (`streaming.decoder_context`).

    python benchmarks/streaming_latency.py --size paper --tokens 120 --chunk-frames 32 64 --threads 1 --reps 3
"""

import argparse
import tempfile
import time

import torch
from common import (
    add_common_arguments,
    build_configs,
    header,
    install_source_finder,
    markdown_table,
    median,
    run_record,
    write_csv,
    write_json,
)

COLUMNS = [
    "size",
    "backend",
    "threads",
    "tokens",
    "audio_s",
    "chunk_frames",
    "context_frames",
    "whole_s",
    "first_chunk_s",
    "stream_total_s",
    "first_chunk_ratio",
    "stream_total_ratio",
]


def _timed_stream(make_stream) -> tuple[float, float]:
    start = time.perf_counter()
    stream = make_stream()
    next(stream)
    first = time.perf_counter() - start
    for _ in stream:
        pass
    return first, time.perf_counter() - start


def _measure(whole, make_stream, reps: int) -> dict:
    whole(), _timed_stream(make_stream)  # warm-up
    whole_times, firsts, totals = [], [], []
    for rep in range(reps):
        for step in ("whole", "stream") if rep % 2 == 0 else ("stream", "whole"):
            if step == "whole":
                start = time.perf_counter()
                whole()
                whole_times.append(time.perf_counter() - start)
            else:
                first, total = _timed_stream(make_stream)
                firsts.append(first)
                totals.append(total)
    return {
        "whole_s": median(whole_times),
        "first_chunk_s": median(firsts),
        "stream_total_s": median(totals),
        "first_chunk_ratio": median(f / w for f, w in zip(firsts, whole_times)),
        "stream_total_ratio": median(t / w for t, w in zip(totals, whole_times)),
    }


def main() -> None:
    install_source_finder()  # this checkout's add-on, whatever the environment's editable install points at
    from TTS.tts.layers.naturalspeech.runtime.onnx_streaming import OnnxStreamingSynthesizer, export_streaming_onnx
    from TTS.tts.layers.naturalspeech.runtime.streaming import SynthesisStream
    from TTS.tts.models.naturalspeech import Naturalspeech

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="paper", choices=["paper", "medium", "small", "tiny"])
    parser.add_argument("--tokens", type=int, default=120)
    parser.add_argument("--length-scale", type=float, default=4.0, help="stretches the untrained durations")
    parser.add_argument("--chunk-frames", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--no-onnx", action="store_true")
    add_common_arguments(parser)
    args = parser.parse_args()
    if args.quick:
        args.size, args.tokens, args.chunk_frames, args.reps = "tiny", 20, [8], 1
    print(header("streaming latency"))

    config, _ = build_configs(args.size)
    torch.manual_seed(0)
    model = Naturalspeech(config).eval()
    model.memory_initialized.fill_(True)
    model.disc = None
    ids = torch.randint(1, model.args.num_chars, (args.tokens,)).tolist()
    tokens = torch.tensor([ids])
    aux = {"noise_scale": 0.0, "length_scale": args.length_scale}
    audio_s = model.inference(tokens, aux)["model_outputs"].shape[-1] / config.audio.sample_rate
    context = model.decoder_context
    synth = None
    workdir = tempfile.TemporaryDirectory(prefix="ns_stream_bench_")
    if not args.no_onnx:
        export_streaming_onnx(model, workdir.name, quantize=True, calibration_texts=["The birch canoe slid on."])

    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        backends = {"torch": None}
        if not args.no_onnx:
            backends["onnxruntime-int8"] = OnnxStreamingSynthesizer.from_dir(workdir.name, int8=True, threads=threads)
        for backend, synth in backends.items():
            for chunk_frames in args.chunk_frames:
                if synth is None:

                    def whole():
                        return model.inference(tokens, aux)

                    def make_stream(chunk_frames=chunk_frames):
                        return SynthesisStream(model, ids, chunk_frames, 0.0, args.length_scale)

                else:

                    def whole(synth=synth):
                        return synth.decode(synth.latents(ids, 0.0, args.length_scale)[0])

                    def make_stream(synth=synth, chunk_frames=chunk_frames):
                        scale = args.length_scale
                        return synth.stream(ids, chunk_frames=chunk_frames, noise_scale=0.0, length_scale=scale)

                row = {
                    "size": args.size,
                    "backend": backend,
                    "threads": threads,
                    "tokens": args.tokens,
                    "audio_s": audio_s,
                    "chunk_frames": chunk_frames,
                    "context_frames": f"{context.left}+{context.right}",
                    **_measure(whole, make_stream, args.reps),
                }
                rows.append(row)
                print(markdown_table([row], COLUMNS).splitlines()[-1], flush=True)
    workdir.cleanup()
    print(markdown_table(rows, COLUMNS))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_json(args.out_dir / "streaming_latency.json", {**run_record(args), "rows": rows})
    write_csv(args.out_dir / "streaming_latency.csv", rows, COLUMNS)


if __name__ == "__main__":
    main()
