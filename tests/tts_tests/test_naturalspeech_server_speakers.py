"""`naturalspeech-server` with a two-speaker model over real HTTP on 127.0.0.1: the speaker of every endpoint.

The checkpoint is the random two-speaker model of `test_naturalspeech_speakers.py` (speakers "anna" and "ben"):
what matters is that a speaker id changes the audio and the durations, not what the voice sounds like. With
`noise_scale=0` synthesis is deterministic, so the server's audio is compared with the Python API's
(`Naturalspeech.inference_stream(text, speaker=...)`) to 16-bit rounding. The server helpers are those of
`test_naturalspeech_server.py`.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from tests import load_run_model, stop_process
from tests.tts_tests.test_naturalspeech_server import (
    MODULE,
    _error,
    _request,
    _start_server,
    _stream_pcm,
    _wav_pcm,
)
from tests.tts_tests.test_naturalspeech_speakers import SPEAKERS, TEXT, save_two_speaker_run

SPEAKER_LISTING = "0: anna, 1: ben"


@pytest.fixture(scope="module")
def two_speaker_run_dir(tmp_path_factory):
    """The random two-speaker checkpoint of `test_naturalspeech_speakers.py` (a name of its own: modules that
    import this one's server also import the single-speaker `run_dir`)."""
    return save_two_speaker_run(tmp_path_factory.mktemp("two_speaker_run"))


@pytest.fixture(scope="module")
def speaker_server(two_speaker_run_dir, tmp_path_factory):
    """The PyTorch server of the two-speaker checkpoint, without a default speaker; yields its URL."""
    log_path = tmp_path_factory.mktemp("ns_speaker_server") / "server.log"
    process, url = _start_server(two_speaker_run_dir, log_path)
    try:
        yield url
    finally:
        stop_process(process)
    assert "Traceback" not in log_path.read_text(), log_path.read_text()[-5000:]


@pytest.fixture(scope="module")
def two_speaker_model(two_speaker_run_dir):
    """The checkpoint the servers serve, loaded in this process."""
    return load_run_model(two_speaker_run_dir)


@pytest.fixture(scope="module")
def python_api_pcm(two_speaker_model):
    """The 16-bit audio of TEXT per speaker name from the Python API (`inference_stream`, noise_scale 0)."""
    from TTS.tts.layers.naturalspeech.runtime.server import pcm16

    model = two_speaker_model
    return {
        name: np.frombuffer(
            b"".join(pcm16(chunk) for chunk in model.inference_stream(TEXT, speaker=name, noise_scale=0.0)), "<i2"
        )
        for name in SPEAKERS
    }


def _audio(url: str, path: str, *, json_body=None, fields=None, headers=None) -> np.ndarray:
    status, body, _ = _request(url, path, fields, json_body=json_body, headers=headers)
    assert status == 200, body[:500]
    return (_wav_pcm(body) if path == "/api/tts" else _stream_pcm(body))[0].astype(np.int32)


def _differ(a: np.ndarray, b: np.ndarray) -> bool:
    return a.size != b.size or not np.array_equal(a, b)


def test_info_lists_the_speakers(speaker_server):
    status, body, _ = _request(speaker_server, "/api/info", method="GET")
    assert status == 200
    info = json.loads(body)
    assert info["speakers"] == [{"id": 0, "name": "anna"}, {"id": 1, "name": "ben"}]
    assert info["default_speaker"] is None


@pytest.mark.parametrize("path", ["/api/tts", "/api/tts/stream"])
def test_speaker_chooses_the_voice_by_name_or_id(speaker_server, python_api_pcm, path):
    url = speaker_server
    anna = _audio(url, path, json_body={"text": TEXT, "noise_scale": 0, "speaker_id": "anna"})
    anna_by_id = _audio(url, path, json_body={"text": TEXT, "noise_scale": 0, "speaker_id": 0})
    ben = _audio(url, path, fields={"text": TEXT, "noise_scale": "0", "speaker_id": "1"})  # a form: the id as text
    assert np.array_equal(anna, anna_by_id)
    assert _differ(anna, ben), "two speakers gave the same audio"
    # the same audio as the Python API with the same speaker and noise (windowed decoding: one LSB of rounding)
    for served, name in ((anna, "anna"), (ben, "ben")):
        expected = python_api_pcm[name].astype(np.int32)
        assert served.size == expected.size > 0
        assert np.abs(served - expected).max() <= 1, name
    # the other spellings: field `speaker`, and the toolkit's header `speaker-id`
    assert np.array_equal(_audio(url, path, json_body={"text": TEXT, "noise_scale": 0, "speaker": "ben"}), ben)
    header = _audio(url, path, fields={"text": TEXT, "noise_scale": "0"}, headers={"speaker-id": "ben"})
    assert np.array_equal(header, ben)


def test_timings_follow_the_speaker(speaker_server, python_api_pcm):
    # the random speakers speak the text at different lengths: the durations are the chosen speaker's
    assert python_api_pcm["anna"].size != python_api_pcm["ben"].size
    for name in SPEAKERS:
        status, body, _ = _request(speaker_server, "/api/timings", {"text": TEXT, "speaker_id": name})
        assert status == 200, body[:500]
        assert json.loads(body)["num_samples"] == python_api_pcm[name].size, name


@pytest.mark.parametrize(
    ("json_body", "expected"),
    [
        ({"text": TEXT}, "this model has several speakers: choose one by name or id (0: anna, 1: ben)"),
        ({"text": TEXT, "speaker_id": ""}, "choose one by name or id"),
        ({"text": TEXT, "speaker_id": "carol"}, "speaker 'carol' is not a speaker of this model"),
        ({"text": TEXT, "speaker_id": 2}, "speaker id 2 is out of range: this model has ids 0 to 1"),
        ({"text": TEXT, "speaker_id": "-1"}, "speaker id -1 is out of range"),
        ({"text": TEXT, "speaker_id": 1.5}, "a speaker is a name or an integer id, got 1.5"),
        ({"text": TEXT, "speaker_id": True}, "a speaker is a name or an integer id, got True"),
        ({"text": TEXT, "speaker_id": "anna", "speaker": "ben"}, "'speaker_id' ('anna') and 'speaker' ('ben') differ"),
    ],
)
@pytest.mark.parametrize("path", ["/api/tts", "/api/tts/stream", "/api/timings"])
def test_bad_speaker_is_a_400_listing_the_speakers(speaker_server, path, json_body, expected):
    status, body, headers = _request(speaker_server, path, json_body=json_body)
    assert status == 400, body[:500]
    assert headers["Content-Type"] == "application/json"
    message = _error(body)
    assert expected in message
    if "differ" not in expected:
        assert SPEAKER_LISTING in message


def test_unknown_default_speaker_stops_the_server(two_speaker_run_dir):
    run_dir = two_speaker_run_dir
    command = [sys.executable, "-m", MODULE, "--model_path", str(run_dir / "best_model.pth")]
    command += ["--config_path", str(run_dir / "config.json"), "--speaker_idx", "carol"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 2
    assert "--speaker_idx carol: speaker 'carol' is not a speaker of this model" in result.stderr
    assert SPEAKER_LISTING in result.stderr


@pytest.mark.slow
def test_onnx_backend_honours_the_speaker(python_api_pcm, two_speaker_model, two_speaker_run_dir, tmp_path):
    """`--onnx_dir` of the two-speaker model, with `--speaker_idx ben` as the default speaker."""
    pytest.importorskip("onnxruntime")
    from TTS.tts.layers.naturalspeech.runtime.onnx_streaming import export_streaming_onnx

    export_streaming_onnx(two_speaker_model, tmp_path / "onnx")
    log_path = tmp_path / "onnx_server.log"
    process, url = _start_server(
        two_speaker_run_dir, log_path, "--onnx_dir", str(tmp_path / "onnx"), "--speaker_idx", "ben"
    )
    try:
        info = json.loads(_request(url, "/api/info", method="GET")[1])
        assert info["backend"] == "onnxruntime"
        assert info["speakers"] == [{"id": 0, "name": "anna"}, {"id": 1, "name": "ben"}]
        assert info["default_speaker"] == 1
        audio = {}
        for path in ("/api/tts", "/api/tts/stream"):
            audio[path, "anna"] = _audio(url, path, json_body={"text": TEXT, "noise_scale": 0, "speaker_id": 0})
            audio[path, "ben"] = _audio(url, path, json_body={"text": TEXT, "noise_scale": 0, "speaker_id": "ben"})
            default = _audio(url, path, json_body={"text": TEXT, "noise_scale": 0})  # --speaker_idx ben
            assert np.array_equal(default, audio[path, "ben"])
        status, body, _ = _request(url, "/api/timings", {"text": TEXT, "speaker_id": "anna"})
        assert status == 200 and json.loads(body)["num_samples"] == python_api_pcm["anna"].size
        status, body, _ = _request(url, "/api/tts/stream", json_body={"text": TEXT, "speaker_id": 7})
        assert status == 400 and "speaker id 7 is out of range" in _error(body) and SPEAKER_LISTING in _error(body)
    finally:
        stop_process(process)
    assert "Traceback" not in log_path.read_text(), log_path.read_text()[-5000:]
    for name in SPEAKERS:
        expected = python_api_pcm[name].astype(np.int32)
        for path in ("/api/tts", "/api/tts/stream"):
            assert audio[path, name].size == expected.size
            difference = np.abs(audio[path, name] - expected).max()
            print(f"ONNX {path} {name} vs Python API: max |difference| {difference} LSB")
            # float32 graphs: rounding differences only (as test_onnx_backend_serves_the_same_audio)
            assert difference <= 16, (path, name)
    assert _differ(audio["/api/tts", "anna"], audio["/api/tts", "ben"])


def test_d_vector_models_are_refused_with_a_message():
    """The server chooses speakers by id; a model conditioned on d-vectors has none (the server stops at start)."""
    from tests import make_tiny_config
    from TTS.tts.layers.naturalspeech.runtime.speaker_choice import SpeakerChoice
    from TTS.tts.models.naturalspeech import Naturalspeech

    model = Naturalspeech(make_tiny_config(model_args={"use_d_vector_file": True, "d_vector_dim": 6}))
    with pytest.raises(ValueError, match="conditioned on d-vectors, not speaker ids"):
        SpeakerChoice.of_model(model)
    assert not SpeakerChoice.of_model(Naturalspeech(make_tiny_config())).multi_speaker
