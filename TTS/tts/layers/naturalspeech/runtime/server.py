"""`naturalspeech-server`: an HTTP server for a NaturalSpeech run that streams audio and keeps its resources bounded.

The toolkit's `tts-server` cannot be extended (one module-level Flask app, a fixed `host="::"`), and it has no limit
on text, time or memory: a probe with 100 KB of text held its global lock for 130 s while RSS grew from 1.6 to
7.3 GB. This server is a Flask app (the toolkit's `server` extra) run by Waitress, a threaded production WSGI server:

    naturalspeech-server --model_path run/best_model.pth --config_path run/config.json   # http://127.0.0.1:5003/

Endpoints (GET with a query string, POST with a form or a JSON object; fields `text`, optional `noise_scale` (0 is
deterministic), `length_scale` and, for a multi-speaker model, `speaker_id`):

- `GET /`: a web page that plays the stream as it arrives (`web/index.html`).
- `/api/tts`: the whole 16-bit WAV; its word timings in the `X-Timings` header (JSON, ASCII).
- `/api/tts/stream`: the same audio as a stream: a WAV header whose sizes say "unknown length" (0xFFFFFFFF), then
  16-bit PCM chunk by chunk as the decoder produces it (chunked transfer encoding; `X-Sample-Rate` too). The joined
  body is the same audio as `/api/tts` (to one least significant bit, float rounding of the windowed decoding).
  With `timings=1` the word timings of the whole text come first, in the `X-Timings` header (computed from the
  durations of every sentence before the first chunk: a later first chunk for a long text).
- `/api/timings`: phoneme and word timings as JSON, from the durations only (no decoding); the durations do not
  depend on the sampling noise, so they are the timings of either audio endpoint.
- `GET /api/info`: sample rate, backend (`torch` or `onnxruntime`, `--onnx_dir`), speakers and limits.

Speakers (`speaker_choice.py`): a multi-speaker model (learned speaker ids) speaks with the speaker of the field
`speaker_id`, the toolkit `tts-server`'s name (`speaker` is the same field; the toolkit's `speaker-id` header too): a
speaker name, or an id (a number, or a string of digits that is not a name). Without one it uses `--speaker_idx`,
or answers 400. An unknown name or an id out of range is a 400 listing the speakers (`/api/info` lists them too).
A single-speaker model ignores a speaker, as the toolkit's server does.

Limits: text longer than `--max_text_length` is refused (413); the text is cut into sentences of at most
`--max_sentence_length` characters (`text_segments.py`) synthesized one after another, so memory follows one sentence,
not the text; `--max_concurrent` requests synthesize at once, `--max_queue` wait, more get 503 with Retry-After
(`admission.py`); every request stops after `--request_timeout` seconds (a stream then ends early, a whole WAV gets
503); a whole WAV longer than `--max_wav_seconds` is refused (413: use the stream). Bad input is a 4xx JSON
`{"error": message}`, never a 500. `python -m TTS.tts.layers.naturalspeech.runtime.server` is the same command.
"""

import argparse
import io
import json
import logging
import math
import struct
import sys
import threading
import time
import wave
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from TTS.tts.layers.naturalspeech.runtime.admission import Admission, DeadlineExceeded, QueueFull
from TTS.tts.layers.naturalspeech.runtime.speaker_choice import SpeakerChoice
from TTS.tts.layers.naturalspeech.runtime.streaming import DEFAULT_CHUNK_FRAMES, SynthesisStream
from TTS.tts.layers.naturalspeech.runtime.text_input import strip_control_characters
from TTS.tts.layers.naturalspeech.runtime.text_segments import DEFAULT_MAX_SENTENCE_CHARS, text_segments
from TTS.tts.layers.naturalspeech.runtime.timings import shift_timings

logger = logging.getLogger(__name__)

PAGE_PATH = Path(__file__).parent / "web" / "index.html"
UNKNOWN_LENGTH = 0xFFFFFFFF  # the WAV size fields of a stream: "until the end of the data"
TIMINGS_HEADER_MAX_BYTES = 64 * 1024  # larger headers are refused by common proxies; use /api/timings then
RETRY_AFTER_S = 5


@dataclass
class ServerSettings:
    """Limits of the server (the command-line options of the same names).

    Args:
        max_text_length: Longest text in characters; longer gets 413.
        max_sentence_length: Longest piece synthesized at once; longer sentences are cut (bounds memory).
        max_concurrent: Requests synthesizing at the same time.
        max_queue: Requests waiting for a synthesis slot; more get 503.
        request_timeout: Seconds a request may take, waiting included.
        max_wav_seconds: Longest audio `/api/tts` returns whole (held in memory); longer gets 413.
        chunk_frames: Latent frames per streamed chunk.
    """

    max_text_length: int = 5000
    max_sentence_length: int = DEFAULT_MAX_SENTENCE_CHARS
    max_concurrent: int = 2
    max_queue: int = 32
    request_timeout: float = 60.0
    max_wav_seconds: float = 600.0
    chunk_frames: int = DEFAULT_CHUNK_FRAMES


class UserError(Exception):
    """Bad input: answered with `status` and the message."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class SynthesisRequest:
    text: str
    noise_scale: float | None
    length_scale: float | None
    deadline: float
    timings: bool = False  # the stream's word timings in a header (computed before the first chunk)
    speaker_id: int | None = None  # None for a single-speaker model


class SpeechService:
    """The model and what requests share: a lock for the text front end, the sentence splitter, the limits.

    With `onnx` (an `OnnxStreamingSynthesizer`), synthesis runs through ONNX Runtime; the PyTorch model then only
    turns text into ids and names the tokens of the timings, and the speakers are those stored in the export.

    Threads share the model (synthesis only reads it); the phonemizer (espeak-ng through ctypes) has global state,
    so turning text into ids, and timings (which may phonemize words), happen under one lock — a small part of the
    time of a request.

    Raises:
        ValueError: `default_speaker` (a name or an id) is not a speaker of the model, or the model is conditioned on
            d-vectors (the server chooses speakers by id).
    """

    def __init__(
        self,
        model: Any,
        split_sentences: Callable[[str], list[str]] | None,
        settings: ServerSettings,
        onnx: Any = None,
        default_speaker: str | int | None = None,
    ):
        self.model, self.settings, self.onnx = model, settings, onnx
        if onnx is None:
            self.speakers = SpeakerChoice.of_model(model, default_speaker)
        else:
            self.speakers = SpeakerChoice.of_names(onnx.speakers, default_speaker)
        self.sample_rate = int(model.config.audio.sample_rate)
        self._split_sentences = split_sentences
        self._frontend_lock = threading.Lock()
        self.admission = Admission(settings.max_concurrent, settings.max_queue)

    def streams(self, request: SynthesisRequest, chunk_frames: int) -> Iterator[SynthesisStream]:
        """One stream per speakable piece of the text, made when the previous one is used up.

        Pieces with nothing to speak (a lone dash) are skipped; :func:`first_stream` reports a text with none.

        Raises:
            DeadlineExceeded: The request's time limit passed.
        """
        max_chars = self.settings.max_sentence_length
        for segment in text_segments(request.text, self._locked_split, max_chars):
            _check_deadline(request.deadline)
            try:
                with self._frontend_lock:
                    ids = self.model.speakable_ids(segment)
            except ValueError:
                logger.debug("Nothing to speak in %r", segment)
                continue
            if self.onnx is None:
                yield SynthesisStream(
                    self.model,
                    ids,
                    chunk_frames,
                    request.noise_scale,
                    request.length_scale,
                    text=segment,
                    speaker_id=request.speaker_id,
                )
            else:  # the same windows through ONNX Runtime (sessions may run from several threads at once)
                yield self.onnx.stream(
                    ids,
                    chunk_frames=chunk_frames,
                    noise_scale=request.noise_scale,
                    length_scale=request.length_scale,
                    tokenizer=self.model.tokenizer,
                    text=segment,
                    sid=request.speaker_id,
                )

    def timings(self, stream: SynthesisStream) -> dict[str, list[dict[str, Any]]]:
        with self._frontend_lock:
            return stream.timings()

    def joined_timings(self, request: SynthesisRequest) -> tuple[dict[str, list[dict[str, Any]]], int]:
        """The timings of the whole text on one time line, and its length in samples, without decoding any audio.

        The durations do not depend on the sampling noise, so they are the timings of any synthesis of the text.
        """
        streams = self.streams(request, sys.maxsize)
        joined: dict[str, list[dict[str, Any]]] = {"phonemes": [], "words": []}
        offset = 0
        for stream in _chain(first_stream(streams, request.text), streams):
            for key, entries in shift_timings(self.timings(stream), offset, self.sample_rate).items():
                joined[key].extend(entries)
            offset += stream.num_samples
        return joined, offset

    def _locked_split(self, block: str) -> list[str]:
        if self._split_sentences is None:
            return [block]
        with self._frontend_lock:
            return self._split_sentences(block)


def first_stream(streams: Iterator[SynthesisStream], text: str) -> SynthesisStream:
    """The first stream, or a 400 when the text has nothing to speak."""
    stream = next(streams, None)
    if stream is None:
        raise UserError(f"text has no speakable characters after cleaning: {_shorten(text)!r}")
    return stream


def pcm16(chunk: np.ndarray) -> bytes:
    """Float audio in [-1, 1] as 16-bit little-endian PCM (as `naturalspeech-tts` writes it)."""
    return (np.clip(chunk, -1.0, 1.0) * 32767).round().astype("<i2").tobytes()


def streaming_wav_header(sample_rate: int) -> bytes:
    """A 44-byte mono 16-bit PCM WAV header with the RIFF and data sizes set to "unknown" (0xFFFFFFFF)."""
    fmt = struct.pack("<HHIIHH", 1, 1, sample_rate, sample_rate * 2, 2, 16)  # PCM, mono, byte rate, align, bits
    return (
        b"RIFF"
        + struct.pack("<I", UNKNOWN_LENGTH)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", 16)
        + fmt
        + (b"data" + struct.pack("<I", UNKNOWN_LENGTH))
    )


def _check_deadline(deadline: float) -> None:
    if time.monotonic() > deadline:
        raise DeadlineExceeded("the request's time limit passed")


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def create_app(service: SpeechService):
    """The Flask app of the server (run it with any WSGI server; `main` uses Waitress)."""
    import flask
    from werkzeug.exceptions import HTTPException

    settings = service.settings
    app = flask.Flask(__name__, static_folder=None)
    # a body can hold the longest text even percent-encoded (up to 12 bytes per character) with other fields
    app.config["MAX_CONTENT_LENGTH"] = 12 * settings.max_text_length + 64 * 1024

    def error(message: str, status: int, headers: dict[str, str] | None = None) -> flask.Response:
        response = flask.jsonify({"error": message})
        response.status_code = status
        response.headers.update(headers or {})
        return response

    @app.errorhandler(UserError)
    def user_error(exc: UserError):
        return error(str(exc), exc.status)

    @app.errorhandler(QueueFull)
    def queue_full(exc: QueueFull):
        return error(f"server busy: {exc}; retry later", 503, {"Retry-After": str(RETRY_AFTER_S)})

    @app.errorhandler(DeadlineExceeded)
    def deadline_exceeded(exc: DeadlineExceeded):
        message = (
            f"{exc} ({settings.request_timeout:g} s): send a shorter text, or use /api/tts/stream, which sends the "
            "audio as it is made"
        )
        return error(message, 503, {"Retry-After": str(RETRY_AFTER_S)})

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if exc.code == 413:
            return error(f"request body too large (over {app.config['MAX_CONTENT_LENGTH']} bytes)", 413)
        return error(exc.description or exc.name, exc.code or 500)

    @app.errorhandler(Exception)
    def internal_error(exc: Exception):  # a bug of the server, not of the request
        logger.exception("Internal error")
        return error(f"internal error: {type(exc).__name__}", 500)

    @app.get("/")
    def page():
        return flask.Response(PAGE_PATH.read_bytes(), mimetype="text/html")

    @app.get("/api/info")
    def info():
        return flask.jsonify(
            {
                "sample_rate": service.sample_rate,
                "backend": "torch" if service.onnx is None else "onnxruntime",
                "speakers": service.speakers.info(),
                "default_speaker": service.speakers.default,  # the id of `--speaker_idx`, or null
                "max_text_length": settings.max_text_length,
                "max_concurrent": settings.max_concurrent,
                "max_queue": settings.max_queue,
                "request_timeout": settings.request_timeout,
                "max_wav_seconds": settings.max_wav_seconds,
            }
        )

    @app.route("/api/tts", methods=["GET", "POST"])
    def tts():
        request = _parse_request(settings, service.speakers)
        release = service.admission.acquire(request.deadline)
        try:
            streams = service.streams(request, sys.maxsize)  # a sentence is one decoder window: the whole decoding
            first = first_stream(streams, request.text)
            max_samples = settings.max_wav_seconds * service.sample_rate
            pcm, words, offset = [], [], 0
            for stream in _chain(first, streams):
                offset += stream.num_samples
                if offset > max_samples:
                    raise UserError(
                        f"the audio is longer than max_wav_seconds ({settings.max_wav_seconds:g} s): use "
                        "/api/tts/stream, which does not hold the whole audio",
                        413,
                    )
                pcm.extend(pcm16(chunk) for chunk in stream)
                timed = shift_timings(service.timings(stream), offset - stream.num_samples, service.sample_rate)
                words.extend(timed["words"])
                _check_deadline(request.deadline)
        finally:
            release()
        body = io.BytesIO()
        with wave.open(body, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(service.sample_rate)
            wav.writeframes(b"".join(pcm))
        response = flask.Response(body.getvalue(), mimetype="audio/wav")
        _set_timings_header(response, service.sample_rate, words)
        response.headers["X-Sample-Rate"] = str(service.sample_rate)
        return response

    @app.route("/api/tts/stream", methods=["GET", "POST"])
    def tts_stream():
        request = _parse_request(settings, service.speakers)
        release = service.admission.acquire(request.deadline)
        try:
            # on request, the timings of the whole text first (durations only): they go in a header, before audio
            timed = service.joined_timings(request)[0]["words"] if request.timings else None
            streams = service.streams(request, settings.chunk_frames)
            stream = first_stream(streams, request.text)
            first_chunk = streaming_wav_header(service.sample_rate) + pcm16(next(stream))
        except BaseException:
            release()
            raise

        def body() -> Iterator[bytes]:
            try:
                yield first_chunk
                for chunk in (chunk for s in _chain(stream, streams) for chunk in s):
                    yield pcm16(chunk)
                    _check_deadline(request.deadline)
            except DeadlineExceeded:
                logger.warning(
                    "Stream of a %d-character text cut at the time limit (%g s)",
                    len(request.text),
                    settings.request_timeout,
                )
            finally:
                release()

        response = flask.Response(body(), mimetype="audio/wav")
        response.call_on_close(release)  # also when the client leaves before the body started
        if timed is not None:
            _set_timings_header(response, service.sample_rate, timed)
        response.headers.update(
            {"X-Sample-Rate": str(service.sample_rate), "X-Audio-Format": "pcm_s16le", "Cache-Control": "no-store"}
        )
        return response

    @app.route("/api/timings", methods=["GET", "POST"])
    def timings():
        request = _parse_request(settings, service.speakers)
        release = service.admission.acquire(request.deadline)
        try:
            joined, num_samples = service.joined_timings(request)
        finally:
            release()
        return flask.jsonify({"sample_rate": service.sample_rate, "num_samples": num_samples, **joined})

    return app


def _set_timings_header(response: Any, sample_rate: int, words: list[dict[str, Any]]) -> None:
    timings = json.dumps({"sample_rate": sample_rate, "words": words}, separators=(",", ":"))
    if len(timings) <= TIMINGS_HEADER_MAX_BYTES:
        response.headers["X-Timings"] = timings  # ASCII: json.dumps escapes IPA symbols
    else:
        response.headers["X-Timings-Omitted"] = "too large for a header: POST the text to /api/timings"


def _chain(first: SynthesisStream, rest: Iterator[SynthesisStream]) -> Iterator[SynthesisStream]:
    yield first
    yield from rest


def _parse_request(settings: ServerSettings, speakers: SpeakerChoice) -> SynthesisRequest:
    """The fields of the current request, checked; a UserError (400 or 413) names what is wrong."""
    import flask

    deadline = time.monotonic() + settings.request_timeout
    request = flask.request
    if request.is_json:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            raise UserError('the JSON body must be an object such as {"text": "Hello."}')
    else:
        data = request.values
    text = data.get("text")
    if text is None:
        raise UserError("missing field 'text' (the text to speak)")
    if not isinstance(text, str):
        raise UserError(f"field 'text' must be a string, got {type(text).__name__}")
    if len(text) > settings.max_text_length:
        raise UserError(
            f"text is {len(text)} characters long; this server accepts at most {settings.max_text_length}", 413
        )
    text = strip_control_characters(text)
    if not text.strip():
        raise UserError("text is empty or only whitespace: nothing to say")
    return SynthesisRequest(
        text,
        _scale(data, "noise_scale", 0.0, 10.0),
        _scale(data, "length_scale", 0.1, 10.0),
        deadline,
        _flag(data, "timings"),
        _speaker(data, request.headers, speakers),
    )


def _speaker(data: Any, headers: Any, speakers: SpeakerChoice) -> int | None:
    """The speaker id of the request: field `speaker_id` (or `speaker`), else the toolkit's header `speaker-id`."""
    value, other = data.get("speaker_id"), data.get("speaker")
    if value in (None, ""):
        value = other
    elif other not in (None, "") and other != value:
        raise UserError(f"fields 'speaker_id' ({value!r}) and 'speaker' ({other!r}) differ: give one speaker")
    if value in (None, ""):
        value = headers.get("speaker-id")
    try:
        return speakers.resolve(value)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _flag(data: Any, name: str) -> bool:
    value = data.get(name)
    if value in (None, "", False, "0", "false", 0):
        return False
    if value in (True, "1", "true", 1):
        return True
    raise UserError(f"field '{name}' must be true/false or 1/0, got {value!r}")


def _scale(data: Any, name: str, low: float, high: float) -> float | None:
    value = data.get(name)
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UserError(f"field '{name}' must be a number, got {value!r}") from None
    if not (math.isfinite(number) and low <= number <= high):
        raise UserError(f"field '{name}' must be between {low:g} and {high:g}, got {value!r}")
    return number


def build_parser() -> argparse.ArgumentParser:
    defaults = ServerSettings()
    parser = argparse.ArgumentParser(
        prog="naturalspeech-server",
        description="Serve a NaturalSpeech model over HTTP: whole WAVs with word timings, streamed audio, a web page. "
        "Requests to a multi-speaker model choose the speaker with `speaker_id` (a name or an id; GET /api/info lists "
        "them).",
    )
    parser.add_argument("--model_path", required=True, help="Checkpoint of the run (e.g. run/best_model.pth).")
    parser.add_argument("--config_path", required=True, help="config.json of the run.")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="Address to listen on; 0.0.0.0 for every interface. Default: %(default)s (this machine only).",
    )
    parser.add_argument("--port", type=int, default=5003, help="Port. Default: %(default)s.")
    parser.add_argument(
        "--speaker_idx",
        help="Speaker (name or id) of a multi-speaker model for requests without `speaker_id` (as tts-server's "
        "option); without it such requests get 400. /api/info lists the speakers.",
    )
    parser.add_argument(
        "--max_text_length",
        type=int,
        default=defaults.max_text_length,
        help="Longest text in characters (413 beyond). Default: %(default)s.",
    )
    parser.add_argument(
        "--max_sentence_length",
        type=int,
        default=defaults.max_sentence_length,
        help="Longest piece synthesized at once; longer sentences are cut. Default: %(default)s.",
    )
    parser.add_argument(
        "--max_concurrent",
        type=int,
        default=defaults.max_concurrent,
        help="Requests synthesizing at once. Default: %(default)s.",
    )
    parser.add_argument(
        "--max_queue",
        type=int,
        default=defaults.max_queue,
        help="Requests waiting for a slot (503 beyond). Default: %(default)s.",
    )
    parser.add_argument(
        "--request_timeout",
        type=float,
        default=defaults.request_timeout,
        help="Seconds a request may take, waiting included. Default: %(default)s.",
    )
    parser.add_argument(
        "--max_wav_seconds",
        type=float,
        default=defaults.max_wav_seconds,
        help="Longest audio /api/tts returns whole (413 beyond). Default: %(default)s.",
    )
    parser.add_argument(
        "--chunk_frames",
        type=int,
        default=defaults.chunk_frames,
        help="Latent frames per streamed chunk. Default: %(default)s.",
    )
    parser.add_argument(
        "--no_split_sentences",
        action="store_true",
        help="Do not split with pySBD (pieces are still cut at --max_sentence_length).",
    )
    parser.add_argument(
        "--onnx_dir",
        help="Synthesize with ONNX Runtime: a folder written by export_streaming_onnx (latents.onnx, decoder.onnx); "
        "the checkpoint still gives the text front end.",
    )
    parser.add_argument(
        "--onnx_int8",
        action="store_true",
        help="With --onnx_dir: use the int8 graphs (decoder_int8.onnx, and latents_int8.onnx when the export has it).",
    )
    parser.add_argument("--onnx_threads", type=int, help="With --onnx_dir: CPU threads per session (default all).")
    parser.add_argument("--use_cuda", action="store_true", help="Run on the GPU.")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Load the model and serve until interrupted."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    for option in ("model_path", "config_path"):
        if not Path(getattr(args, option)).is_file():
            parser.error(f"--{option} {getattr(args, option)} not found")
    if args.onnx_dir:
        decoder = "decoder_int8.onnx" if args.onnx_int8 else "decoder.onnx"
        missing = [name for name in ("latents.onnx", decoder) if not (Path(args.onnx_dir) / name).is_file()]
        if missing:
            parser.error(f"--onnx_dir {args.onnx_dir} lacks {', '.join(missing)}: export with export_streaming_onnx")
    positive = ("max_text_length", "max_sentence_length", "max_concurrent", "chunk_frames")
    for option in positive:
        if getattr(args, option) < 1:
            parser.error(f"--{option} must be at least 1, got {getattr(args, option)}")
    if args.max_queue < 0 or args.request_timeout <= 0 or args.max_wav_seconds <= 0:
        parser.error("--max_queue must be >= 0, --request_timeout and --max_wav_seconds > 0")
    settings = ServerSettings(
        max_text_length=args.max_text_length,
        max_sentence_length=args.max_sentence_length,
        max_concurrent=args.max_concurrent,
        max_queue=args.max_queue,
        request_timeout=args.request_timeout,
        max_wav_seconds=args.max_wav_seconds,
        chunk_frames=args.chunk_frames,
    )

    import waitress

    from TTS.utils.synthesizer import Synthesizer

    synthesizer = Synthesizer(tts_checkpoint=args.model_path, tts_config_path=args.config_path, use_cuda=args.use_cuda)
    model = synthesizer.tts_model
    if not hasattr(model, "inference_stream"):
        parser.error(f"{args.model_path} is a {type(model).__name__} model, not NaturalSpeech")
    onnx = None
    if args.onnx_dir:
        from TTS.tts.layers.naturalspeech.runtime.onnx_streaming import OnnxStreamingSynthesizer

        onnx = OnnxStreamingSynthesizer.from_dir(
            args.onnx_dir, int8=args.onnx_int8, threads=args.onnx_threads, cuda=args.use_cuda
        )
    split = None if args.no_split_sentences else synthesizer.split_into_sentences
    try:
        service = SpeechService(model, split, settings, onnx, default_speaker=args.speaker_idx)
    except ValueError as exc:
        parser.error(f"--speaker_idx {args.speaker_idx}: {exc}" if args.speaker_idx else str(exc))
    if service.speakers.multi_speaker:
        logger.info("Speakers: %s", service.speakers.listing())
    app = create_app(service)
    logger.info("Serving NaturalSpeech on http://%s:%d/", args.host, args.port)
    # a thread per synthesizing or waiting request, and a few for the page and refusals; Waitress blocks a writer
    # whose client reads slowly once 16 MB are buffered, so a slow reader cannot grow the memory either
    waitress.serve(
        app,
        host=args.host,
        port=args.port,
        threads=settings.max_concurrent + settings.max_queue + 4,
        ident="naturalspeech-server",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
