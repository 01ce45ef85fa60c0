"""`naturalspeech-server` over real HTTP on 127.0.0.1: streaming, equal audio, user errors, limits, bounded memory.

The server runs as a program (`python -m TTS.tts.layers.naturalspeech.runtime.server`, what the
`naturalspeech-server` script calls) on a free port, with the tiny random checkpoint of `test_naturalspeech_cli.py`
(what the server does with text, time and memory does not depend on training). Its log goes to a file: an unread pipe
fills up and blocks a server. No test has a timed threshold: the stream is compared with the whole request for the
same text, and the short request during a long one with the long one; only the server's own `--request_timeout` is a
number, and it is the feature under test.
"""

import concurrent.futures
import http.client
import io
import json
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
import wave
from pathlib import Path

import numpy as np
import psutil
import pytest

from tests import REPO_ROOT, load_run_model, stop_process
from tests.tts_tests.test_naturalspeech_cli import run_dir  # noqa: F401  (fixture used by name)

MODULE = "TTS.tts.layers.naturalspeech.runtime.server"
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Be a voice, not an echo!",
    "In the beginning, they paid; then they left.",
    "Is this the right road to the old mill?",
]
LONG_TEXT = " ".join(SENTENCES * 12)  # 48 sentences, about 2,000 characters
MAX_TEXT_LENGTH = 120_000  # above the 100 KB request, so that one is synthesized (and cut by the time limit)
REQUEST_TIMEOUT_S = 10
RSS_MARGIN_LONG = 500 * 2**20  # the 100 KB request, on top of a ~1 GB server with a tiny model
RSS_MARGIN_MIXED = 300 * 2**20  # 200 mixed requests after a warm-up


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_server(run_dir: Path, log_path: Path, *options: str) -> tuple[subprocess.Popen, str]:  # noqa: F811
    port = _free_port()
    command = [sys.executable, "-m", MODULE, "--model_path", str(run_dir / "best_model.pth")]
    command += ["--config_path", str(run_dir / "config.json"), "--port", str(port), *options]
    log_file = log_path.open("wb")
    process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
    log_file.close()  # the child has its own descriptor
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        if process.poll() is not None:
            pytest.fail(f"naturalspeech-server exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            status, _, _ = _request(url, "/api/info", method="GET", timeout=5)
            if status == 200:
                return process, url
        except OSError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"naturalspeech-server did not answer within 180 s:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def server(run_dir, tmp_path_factory):  # noqa: F811
    """The server with the default host, a text limit above 100 KB and a short time limit; yields (url, pid)."""
    log_path = tmp_path_factory.mktemp("ns_server") / "server.log"
    options = ["--max_text_length", str(MAX_TEXT_LENGTH), "--request_timeout", str(REQUEST_TIMEOUT_S)]
    process, url = _start_server(run_dir, log_path, *options)
    try:
        yield url, process.pid
    finally:
        stop_process(process)
    assert "Traceback" not in log_path.read_text(), log_path.read_text()[-5000:]


def _request(
    url: str,
    path: str,
    fields: dict | None = None,
    *,
    method: str = "POST",
    json_body=None,
    timeout: float = 300,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes, http.client.HTTPMessage]:
    """One HTTP request (with extra `headers`); (status, body, headers) for every status."""
    parsed = urllib.parse.urlparse(url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=timeout)
    extra_headers = headers or {}
    try:
        headers, body = {}, None
        if json_body is not None:
            body, headers = json.dumps(json_body).encode(), {"Content-Type": "application/json"}
        elif fields is not None and method == "POST":
            body = urllib.parse.urlencode(fields).encode()
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
        elif fields is not None:
            path += "?" + urllib.parse.urlencode(fields)
        connection.request(method, path, body=body, headers={**headers, **extra_headers})
        response = connection.getresponse()
        return response.status, response.read(), response.headers
    finally:
        connection.close()


def _wav_pcm(body: bytes) -> tuple[np.ndarray, int]:
    with wave.open(io.BytesIO(body), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2"), wav.getframerate()


def _stream_pcm(body: bytes) -> tuple[np.ndarray, int]:
    """The streamed body: a 44-byte WAV header with "unknown" sizes, then 16-bit PCM."""
    assert body[:4] == b"RIFF" and body[8:16] == b"WAVEfmt " and body[36:40] == b"data", body[:44]
    assert struct.unpack("<I", body[4:8])[0] == 0xFFFFFFFF == struct.unpack("<I", body[40:44])[0]
    channels, sample_rate, bits = struct.unpack("<H", body[22:24])[0], *struct.unpack("<I", body[24:28]), body[34]
    assert (channels, bits) == (1, 16)
    assert len(body[44:]) % 2 == 0
    return np.frombuffer(body[44:], dtype="<i2"), sample_rate


def _rss(pid: int) -> int:
    """VmRSS of the server process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class _RssSampler(threading.Thread):
    """The largest VmRSS seen while it runs."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self._stop_event = pid, 0, threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, _rss(self.pid))
            time.sleep(0.1)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return self.peak


def _error(body: bytes) -> str:
    message = json.loads(body)["error"]
    assert isinstance(message, str) and message
    return message


##########################
# host, audio, timings
##########################


def test_console_script_is_declared():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert scripts["naturalspeech-server"] == f"{MODULE}:main"
    # the toolkit's command names stay the toolkit's
    assert not {"tts", "tts-server"} & set(scripts)
    script = Path(sys.executable).parent / "naturalspeech-server"
    if not script.exists():
        pytest.skip(f"{script} not installed yet: `make setup` reinstalls the package with its console scripts")
    result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0 and "--max_text_length" in result.stdout


def test_listens_on_loopback_by_default(server):
    _, pid = server
    listening = [c for c in psutil.Process(pid).net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert listening, "the server listens on no socket"
    assert {c.laddr.ip for c in listening} == {"127.0.0.1"}


def test_serves_the_page(server):
    status, body, headers = _request(server[0], "/", method="GET")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert b"/api/tts/stream" in body


def test_single_speaker_model_ignores_a_speaker_as_the_toolkit_server_does(server):
    """`tts-server` drops `speaker_id` for a single-speaker model; so does this server (see speaker_choice.py)."""
    url, _ = server
    info = json.loads(_request(url, "/api/info", method="GET")[1])
    assert info["speakers"] == [] and info["default_speaker"] is None
    fields = {"text": "Be a voice.", "noise_scale": "0"}
    status, plain, _ = _request(url, "/api/tts", fields)
    assert status == 200, plain[:500]
    status, with_speaker, _ = _request(url, "/api/tts", {**fields, "speaker_id": "p225", "speaker": "p225"})
    assert status == 200, with_speaker[:500]
    assert with_speaker == plain


@pytest.mark.slow
def test_stream_joins_to_the_whole_wav(server):
    url, _ = server
    fields = {"text": " ".join(SENTENCES), "noise_scale": "0"}
    status, whole_body, headers = _request(url, "/api/tts", fields, method="GET")
    assert status == 200, whole_body[:500]
    assert headers["Content-Type"] == "audio/wav"
    whole, sample_rate = _wav_pcm(whole_body)
    status, stream_body, stream_headers = _request(url, "/api/tts/stream", fields)
    assert status == 200, stream_body[:500]
    assert stream_headers["Transfer-Encoding"] == "chunked"
    streamed, stream_rate = _stream_pcm(stream_body)
    assert stream_rate == sample_rate == int(stream_headers["X-Sample-Rate"])
    assert streamed.size == whole.size > 0
    # windowed decoding equals the whole decoding to float rounding: at most one step of 16-bit rounding apart
    assert np.abs(streamed.astype(np.int32) - whole.astype(np.int32)).max() <= 1
    assert np.abs(whole).max() > 0

    timings = json.loads(headers["X-Timings"])
    assert timings["sample_rate"] == sample_rate
    assert timings["words"][-1]["end_sample"] <= whole.size
    assert [w["text"] for w in timings["words"]][:3] == ["the", "quick", "brown"]
    status, body, _ = _request(url, "/api/timings", json_body={"text": " ".join(SENTENCES)})
    assert status == 200, body[:500]
    document = json.loads(body)
    assert document["num_samples"] == whole.size
    assert document["words"] == timings["words"]
    assert document["phonemes"][-1]["end_sample"] == whole.size
    # on request the stream carries the same word timings in a header, before its first chunk
    status, body, stream_headers = _request(url, "/api/tts/stream", {**fields, "timings": "1"})
    assert status == 200, body[:500]
    assert json.loads(stream_headers["X-Timings"]) == timings
    assert "X-Timings" not in _request(url, "/api/tts/stream", fields)[2]


@pytest.mark.slow
def test_first_bytes_arrive_before_the_whole_synthesis(server):
    url, _ = server
    fields = {"text": LONG_TEXT, "noise_scale": "0"}
    start = time.monotonic()
    status, whole_body, _ = _request(url, "/api/tts", fields)
    whole_s = time.monotonic() - start
    assert status == 200, whole_body[:500]

    parsed = urllib.parse.urlparse(url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=300)
    try:
        start = time.monotonic()
        connection.request(
            "POST",
            "/api/tts/stream",
            body=urllib.parse.urlencode(fields).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        response = connection.getresponse()
        first = response.read1(65536)
        first_s = time.monotonic() - start
        rest = response.read()
        stream_s = time.monotonic() - start
    finally:
        connection.close()
    assert response.status == 200
    assert len(first) > 44, "the first bytes hold no audio"
    print(f"whole {whole_s:.2f} s, stream: first bytes {first_s:.3f} s, all {stream_s:.2f} s")
    # 48 sentences: the first chunk needs one sentence's latents and one decoder window, the whole WAV all of them
    assert first_s < whole_s / 4, f"first bytes after {first_s:.2f} s, the whole WAV took {whole_s:.2f} s"
    streamed, _ = _stream_pcm(first + rest)
    assert streamed.size == _wav_pcm(whole_body)[0].size


##########################
# user errors
##########################


@pytest.mark.parametrize(
    ("fields", "json_body", "expected"),
    [
        ({}, None, "missing field 'text'"),
        ({"text": ""}, None, "empty or only whitespace"),
        ({"text": " \t\n"}, None, "empty or only whitespace"),
        ({"text": "-"}, None, "no speakable characters"),
        ({"text": "Hello.", "noise_scale": "loud"}, None, "'noise_scale' must be a number"),
        ({"text": "Hello.", "length_scale": "0"}, None, "'length_scale' must be between"),
        ({"text": "Hello.", "noise_scale": "nan"}, None, "'noise_scale' must be between"),
        ({"text": "Hello.", "timings": "maybe"}, None, "'timings' must be true/false"),
        (None, ["Hello."], "must be an object"),
        (None, {"text": 42}, "'text' must be a string"),
    ],
)
@pytest.mark.parametrize("path", ["/api/tts", "/api/tts/stream", "/api/timings"])
def test_bad_input_is_a_400_with_a_message(server, path, fields, json_body, expected):
    url, _ = server
    status, body, headers = _request(url, path, fields, json_body=json_body)
    assert status == 400, body[:500]
    assert headers["Content-Type"] == "application/json"
    assert expected in _error(body)


def test_unknown_path_is_a_404_with_a_message(server):
    status, body, _ = _request(server[0], "/api/nothing", method="GET")
    assert status == 404
    assert _error(body)


@pytest.mark.parametrize("path", ["/api/tts", "/api/tts/stream"])
def test_too_long_text_is_a_413(server, path):
    status, body, _ = _request(server[0], path, {"text": "a" * (MAX_TEXT_LENGTH + 1)})
    assert status == 413
    assert f"at most {MAX_TEXT_LENGTH}" in _error(body)


##########################
# load and limits
##########################


def _speak(url: str, index: int) -> None:
    text = SENTENCES[index % len(SENTENCES)]
    if index % 2:
        status, body, _ = _request(url, "/api/tts/stream", {"text": text})
        assert status == 200, body[:500]
        samples, _ = _stream_pcm(body)
    else:
        status, body, _ = _request(url, "/api/tts", {"text": text}, method="GET")
        assert status == 200, body[:500]
        samples, _ = _wav_pcm(body)
    assert samples.size > 0


@pytest.mark.slow
def test_20_concurrent_clients_all_complete(server):
    url, _ = server
    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        for future in [pool.submit(_speak, url, index) for index in range(20)]:
            future.result(timeout=600)


@pytest.mark.slow
def test_100_kb_text_is_bounded_and_does_not_block_a_short_request(server):
    url, pid = server
    text = " ".join(SENTENCES * 1000)[:100_000]
    rss_before = _rss(pid)
    sampler = _RssSampler(pid)
    sampler.start()
    long_result: dict = {}

    def long_request() -> None:
        start = time.monotonic()
        long_result["status"], body, _ = _request(url, "/api/tts/stream", {"text": text})
        long_result["seconds"], long_result["bytes"] = time.monotonic() - start, len(body)

    try:
        long_thread = threading.Thread(target=long_request)
        long_thread.start()
        time.sleep(1.0)  # let the long request start synthesizing
        start = time.monotonic()
        status, body, _ = _request(url, "/api/tts", {"text": "A short one."})
        short_s = time.monotonic() - start
        assert status == 200, body[:500]
        long_thread.join(timeout=REQUEST_TIMEOUT_S + 120)
        assert not long_thread.is_alive(), "the 100 KB stream did not end after the time limit"
        # the same text for a whole WAV: refused by the audio or the time limit, a 4xx/503 with a message
        status, body, _ = _request(url, "/api/tts", {"text": text})
        assert status in (413, 503), body[:500]
        assert "/api/tts/stream" in _error(body)
    finally:
        peak = sampler.stop()
    print(
        f"100 KB stream: {long_result}; short request {short_s:.2f} s; RSS {rss_before / 2**20:.0f} MB, "
        f"peak {peak / 2**20:.0f} MB"
    )
    assert long_result["status"] == 200 and long_result["bytes"] > 44
    # a free synthesis slot serves it beside the long one (with one slot it would wait for the long one's time limit)
    assert short_s < long_result["seconds"] / 2, "the short request waited for the long one"
    assert short_s < REQUEST_TIMEOUT_S
    assert long_result["seconds"] < REQUEST_TIMEOUT_S + 30, "the stream went on past the time limit"
    assert peak - rss_before < RSS_MARGIN_LONG, f"RSS grew {(peak - rss_before) / 2**20:.0f} MB"


@pytest.mark.slow
def test_200_mixed_requests_keep_memory_bounded(server):
    url, pid = server

    def mixed(index: int) -> None:
        kind = index % 5
        if kind < 2:
            _speak(url, index)
        elif kind == 2:
            status, body, _ = _request(url, "/api/timings", {"text": SENTENCES[index % 4]})
            assert status == 200, body[:500]
        elif kind == 3:
            status, body, _ = _request(url, "/api/tts", {"text": "-"})
            assert status == 400
        else:
            status, body, _ = _request(url, "/api/tts/stream", {"text": "x" * (MAX_TEXT_LENGTH + 1)})
            assert status == 413

    for index in range(10):  # warm-up: caches, thread arenas
        mixed(index)
    rss_before = _rss(pid)
    sampler = _RssSampler(pid)
    sampler.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            for future in [pool.submit(mixed, index) for index in range(200)]:
                future.result(timeout=600)
    finally:
        peak = sampler.stop()
    print(f"200 mixed requests: RSS {rss_before / 2**20:.0f} MB, peak {peak / 2**20:.0f} MB")
    assert peak - rss_before < RSS_MARGIN_MIXED, f"RSS grew {(peak - rss_before) / 2**20:.0f} MB"


@pytest.mark.slow
def test_full_queue_is_a_503_with_retry_after(run_dir, tmp_path):  # noqa: F811
    process, url = _start_server(
        run_dir,
        tmp_path / "server.log",
        "--max_concurrent",
        "1",
        "--max_queue",
        "0",
        "--request_timeout",
        "30",
        "--max_text_length",
        str(MAX_TEXT_LENGTH),
    )
    try:
        parsed = urllib.parse.urlparse(url)
        busy = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=300)
        busy.request(
            "POST",
            "/api/tts/stream",
            body=urllib.parse.urlencode({"text": LONG_TEXT * 50}).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        response = busy.getresponse()
        assert response.status == 200
        response.read1(65536)  # the stream holds the only slot now; it is read no further
        status, body, headers = _request(url, "/api/tts", {"text": "Hello."})
        assert status == 503
        assert "server busy" in _error(body)
        assert int(headers["Retry-After"]) > 0
        busy.close()
    finally:
        stop_process(process)


@pytest.mark.slow
def test_onnx_backend_serves_the_same_audio(server, run_dir, tmp_path):  # noqa: F811
    """`--onnx_dir`: the streaming graphs of the same checkpoint through ONNX Runtime, stream and whole alike."""
    pytest.importorskip("onnxruntime")
    from TTS.tts.layers.naturalspeech.runtime.onnx_streaming import export_streaming_onnx

    export_streaming_onnx(load_run_model(run_dir), tmp_path / "onnx")
    status, body, _ = _start_server_and_check_missing_graphs(run_dir, tmp_path)
    assert status != 0 and "lacks decoder_int8.onnx" in body

    fields = {"text": " ".join(SENTENCES[:2]), "noise_scale": "0"}
    status, torch_body, _ = _request(server[0], "/api/tts", fields)
    assert status == 200
    process, url = _start_server(run_dir, tmp_path / "onnx_server.log", "--onnx_dir", str(tmp_path / "onnx"))
    try:
        assert json.loads(_request(url, "/api/info", method="GET")[1])["backend"] == "onnxruntime"
        status, whole_body, headers = _request(url, "/api/tts", fields)
        assert status == 200, whole_body[:500]
        status, stream_body, _ = _request(url, "/api/tts/stream", fields)
        assert status == 200, stream_body[:500]
    finally:
        stop_process(process)
    torch_pcm, onnx_pcm = _wav_pcm(torch_body)[0].astype(np.int32), _wav_pcm(whole_body)[0].astype(np.int32)
    streamed = _stream_pcm(stream_body)[0].astype(np.int32)
    assert onnx_pcm.size == torch_pcm.size == streamed.size
    assert np.abs(streamed - onnx_pcm).max() <= 1
    print(f"ONNX vs PyTorch: max |difference| {np.abs(onnx_pcm - torch_pcm).max()} LSB")
    assert np.abs(onnx_pcm - torch_pcm).max() <= 16  # float32 graphs: rounding differences only
    assert "X-Timings" in headers


def _start_server_and_check_missing_graphs(run_dir: Path, tmp_path: Path) -> tuple[int, str, None]:  # noqa: F811
    """`--onnx_int8` on an export without the int8 decoder stops at once with a message naming the file."""
    command = [sys.executable, "-m", MODULE, "--model_path", str(run_dir / "best_model.pth")]
    command += ["--config_path", str(run_dir / "config.json"), "--onnx_dir", str(tmp_path / "onnx"), "--onnx_int8"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    return result.returncode, result.stderr, None
