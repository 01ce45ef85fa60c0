"""`naturalspeech-tts`: synthesize with a NaturalSpeech run, optionally streaming, and write its timings.

The toolkit's `tts` command writes a WAV only and has no hook for more; this command loads the model the same way
(`--model_path`/`--config_path`, through the toolkit's `Synthesizer`) and adds what NaturalSpeech's explicit
durations give:

    naturalspeech-tts --model_path run/best_model.pth --config_path run/config.json --text "Hello world." \\
        --out_path hello.wav --timings_json hello.json --timings_srt hello.srt
    naturalspeech-tts ... --stream --out_path - | aplay     # audio starts before the sentence is synthesized

The text is split into sentences as `tts` splits it (pySBD); the sentences are joined without extra silence (each
ends with its own punctuation pause) and the timings run across them. The WAV is 16-bit PCM of the model's waveform
as it is (`tts` rescales every file to full scale; a stream cannot know its peak in advance). With `--stream` the
latents of every sentence are computed first (so the WAV header has the exact length), then the decoder output is
written chunk by chunk as it is decoded. `python -m TTS.tts.layers.naturalspeech.runtime.cli` is the same command.
"""

import argparse
import contextlib
import logging
import sys
import time
import wave
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from TTS.tts.layers.naturalspeech.runtime.streaming import DEFAULT_CHUNK_FRAMES
from TTS.tts.layers.naturalspeech.runtime.text_input import strip_control_characters
from TTS.tts.layers.naturalspeech.runtime.timings import shift_timings, to_srt, write_json

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="naturalspeech-tts",
        description="Synthesize speech with a NaturalSpeech model; optionally stream it and write phoneme and word "
        "timings (JSON, SRT).",
    )
    parser.add_argument("--text", required=True, help="Text to speak.")
    parser.add_argument("--model_path", required=True, help="Checkpoint of the run (e.g. run/best_model.pth).")
    parser.add_argument("--config_path", required=True, help="config.json of the run.")
    parser.add_argument("--out_path", default="tts_output.wav", help="WAV file to write; '-' for standard output.")
    parser.add_argument("--timings_json", help="Write phoneme and word start/end times (seconds, samples) as JSON.")
    parser.add_argument("--timings_srt", help="Write the words as SubRip subtitles, one cue per word.")
    parser.add_argument("--stream", action="store_true", help="Write the audio chunk by chunk as it is decoded.")
    parser.add_argument(
        "--chunk_frames",
        type=int,
        default=DEFAULT_CHUNK_FRAMES,
        help="Latent frames per streamed chunk (hop_length samples each). Default: %(default)s.",
    )
    parser.add_argument("--noise_scale", type=float, help="Prior sampling temperature; default: the model's.")
    parser.add_argument("--length_scale", type=float, help="Factor on the durations (larger is slower).")
    parser.add_argument("--no_split_sentences", action="store_true", help="Synthesize the text as one utterance.")
    parser.add_argument("--use_cuda", action="store_true", help="Run on the GPU.")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (0 on success, 2 for bad arguments or input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    text = strip_control_characters(args.text)
    if not text.strip():
        parser.error("--text is empty or only whitespace: nothing to say")
    if args.chunk_frames < 1:
        parser.error(f"--chunk_frames must be at least 1, got {args.chunk_frames}")
    for option in ("model_path", "config_path"):
        if not Path(getattr(args, option)).is_file():
            parser.error(f"--{option} {getattr(args, option)} not found")

    from TTS.utils.synthesizer import Synthesizer

    synthesizer = Synthesizer(tts_checkpoint=args.model_path, tts_config_path=args.config_path, use_cuda=args.use_cuda)
    model = synthesizer.tts_model
    if not hasattr(model, "inference_stream"):
        parser.error(f"{args.model_path} is a {type(model).__name__} model, not NaturalSpeech")
    sentences = [text] if args.no_split_sentences else synthesizer.split_into_sentences(text)
    sentences = [s for s in sentences if s.strip()]
    # without --stream a sentence is one decoder window: the plain, whole decoding
    chunk_frames = args.chunk_frames if args.stream else sys.maxsize
    started = time.perf_counter()
    try:
        # the latents of every sentence first: the total length (WAV header) and all timings are known up front
        streams = [
            model.inference_stream(
                sentence, chunk_frames=chunk_frames, noise_scale=args.noise_scale, length_scale=args.length_scale
            )
            for sentence in sentences
        ]
    except ValueError as error:  # nothing speakable in the text
        parser.error(str(error))
    sample_rate = model.config.audio.sample_rate
    num_samples = sum(stream.num_samples for stream in streams)

    first_chunk = None
    with _open_output(args.out_path) as output, wave.open(output, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.setnframes(num_samples)  # exact, so a pipe needs no header rewrite at the end
        for chunk in (chunk for stream in streams for chunk in stream):
            wav.writeframesraw(_pcm16(chunk))  # `writeframes` rewrites the header (a seek) until the end
            if args.stream:
                output.flush()
            first_chunk = first_chunk or time.perf_counter() - started
    elapsed = time.perf_counter() - started
    # after the audio, so they never delay it (matching text words may phonemize words one by one)
    timings = _joined_timings(streams, sample_rate) if args.timings_json or args.timings_srt else None
    if args.timings_json:
        write_json(timings, args.timings_json, sample_rate)
    if args.timings_srt:
        Path(args.timings_srt).write_text(to_srt(timings["words"]), encoding="utf-8")
    seconds = num_samples / sample_rate
    logger.info(
        "Wrote %s: %.2f s of audio in %.2f s (real-time factor %.3f; first audio after %.2f s)%s",
        "standard output" if args.out_path == "-" else args.out_path,
        seconds,
        elapsed,
        elapsed / seconds,
        first_chunk,
        f"; {len(timings['words'])} words timed" if timings else "",
    )
    return 0


def _joined_timings(streams: Sequence[Any], sample_rate: int) -> dict[str, list[dict[str, Any]]]:
    """The timings of consecutive sentences on one time line."""
    joined: dict[str, list[dict[str, Any]]] = {"phonemes": [], "words": []}
    offset = 0
    for stream in streams:
        for key, entries in shift_timings(stream.timings(), offset, sample_rate).items():
            joined[key].extend(entries)
        offset += stream.num_samples
    return joined


def _pcm16(chunk: np.ndarray) -> bytes:
    return (np.clip(chunk, -1.0, 1.0) * 32767).round().astype("<i2").tobytes()


@contextlib.contextmanager
def _open_output(path: str) -> Iterator[BinaryIO]:
    if path == "-":
        yield sys.stdout.buffer
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as file:
        yield file


if __name__ == "__main__":
    sys.exit(main())
