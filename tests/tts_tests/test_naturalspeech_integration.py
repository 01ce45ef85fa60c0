"""NaturalSpeech through the toolkit's own entry points: `tts`, `TTS.api.TTS`, `tts-server` and the model zoo.

Every test uses the checkpoint of the `trained_model_dir` fixture (a tiny model trained through all stages by
`train_tts`). Nothing here touches the network: the server binds 127.0.0.1 only and the model zoo tests resolve a
model already on disk (downloads are patched to fail).

Bad input, as coqui-tts 0.28 and NaturalSpeech handle it today (see each test):

| input | `tts` CLI | `TTS.api` | `tts-server` `/api/tts` |
| --- | --- | --- | --- |
| empty | help text, exit 0, no file | toolkit `ValueError` | 400 |
| whitespace only | toolkit `ZeroDivisionError` | toolkit `ZeroDivisionError`¹ | 400 |
| punctuation only | speech (pause tokens) | speech | 200 WAV |
| emoji / Chinese | speech (espeak-ng names them) | speech | 200 WAV |
| nothing speakable after cleaning (`-`) | model `ValueError`, exit 1 | model `ValueError` | 500 with the message |
| NUL or other control characters | (no NUL in `argv`) | whole text spoken, controls removed (warning) | 200 WAV |
| 2,000-character paragraph | speech, split into sentences | speech | 200 WAV |

¹ With `split_sentences=False` the text reaches the model: `ValueError: text is empty or only whitespace`.
"""

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from tests import stop_process

SAMPLE_RATE = 22050
TEXT = "Be a voice, not an echo."
PARAGRAPH_SENTENCE = "The quick brown fox jumps over the lazy dog, and then it runs away into the forest."
PARAGRAPH = " ".join([PARAGRAPH_SENTENCE] * 24)[:2000]
BIN = Path(sys.executable).parent
MODEL_NAME = "tts_models/en/ljspeech/naturalspeech"


@pytest.fixture(scope="module")
def run_files(trained_model_dir) -> tuple[Path, Path]:
    return trained_model_dir / "best_model.pth", trained_model_dir / "config.json"


@pytest.fixture(scope="module")
def api(run_files):
    from TTS.api import TTS

    model_path, config_path = run_files
    return TTS(model_path=str(model_path), config_path=str(config_path))


def _token_count(api, text: str) -> int:
    return len(api.synthesizer.tts_model.tokenizer.text_to_ids(text))


def _spoken_token_count(api, text: str) -> int:
    """Tokens of every sentence the synthesizer speaks (it splits the text and phonemizes sentence by sentence)."""
    return sum(_token_count(api, sentence) for sentence in api.synthesizer.split_into_sentences(text))


def check_wav(path_or_bytes, num_tokens: int, max_duration_frames: float = 100.0, num_sentences: int = 1) -> float:
    """Assert a 22050 Hz mono, non-silent WAV whose length the durator's bounds allow for `num_tokens`; seconds."""
    source = path_or_bytes if isinstance(path_or_bytes, Path) else io.BytesIO(path_or_bytes)
    audio, sample_rate = soundfile.read(source)
    assert sample_rate == SAMPLE_RATE
    assert audio.ndim == 1, f"expected mono, got shape {audio.shape}"
    assert np.isfinite(audio).all()
    assert np.abs(audio).max() > 1e-3, "silent output"
    seconds = len(audio) / sample_rate
    hop_seconds = 256 / SAMPLE_RATE
    # Every token lasts at most `max_duration_frames`, and the toolkit adds 10000 samples of silence after each
    # sentence. It also trims each sentence's leading/trailing silence (audio.do_trim_silence), which for a
    # barely trained model can remove most of it: no lower bound follows from the durations.
    padding = num_sentences * 10000 / SAMPLE_RATE
    assert 0 < seconds <= num_tokens * max_duration_frames * hop_seconds + padding
    return seconds


##########################
# the three entry points
##########################


def test_tts_cli_writes_wav(run_files, api, tmp_path):
    model_path, config_path = run_files
    out = tmp_path / "cli.wav"
    result = subprocess.run(
        [BIN / "tts", "--model_path", model_path, "--config_path", config_path, "--text", TEXT, "--out_path", out],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    check_wav(out, _token_count(api, TEXT))


def test_api_tts_to_file(api, tmp_path):
    out = tmp_path / "api.wav"
    api.tts_to_file(text=TEXT, file_path=str(out))
    check_wav(out, _token_count(api, TEXT))


@pytest.fixture(scope="module")
def server(run_files, tmp_path_factory):
    """The toolkit's `tts-server` app in a subprocess on a free port of 127.0.0.1; yields its base URL.

    `TTS/server/server.py` hard-codes `app.run(host="::")` (every interface); the launcher below runs the unchanged
    server module with Flask's `run` pinned to 127.0.0.1.
    """
    model_path, config_path = run_files
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    launcher = (
        "import sys, flask\n"
        "_run = flask.Flask.run\n"
        "flask.Flask.run = lambda self, *a, **k: _run(self, *a, **{**k, 'host': '127.0.0.1'})\n"
        f"sys.argv = ['tts-server', '--model_path', {str(model_path)!r}, '--config_path', {str(config_path)!r},"
        f" '--port', '{port}']\n"
        "from TTS.server.server import main\n"
        "main()\n"
    )
    # The server logs every request: its output goes to a file, since an unread pipe fills up and blocks it.
    log_path = tmp_path_factory.mktemp("tts_server") / "server.log"
    log_file = log_path.open("wb")
    process = subprocess.Popen([sys.executable, "-c", launcher], stdout=log_file, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                pytest.fail(f"tts-server exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url + "/", timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail("tts-server did not answer within 180 s")
            time.sleep(0.5)
        yield url
    finally:
        stop_process(process)
        log_file.close()


def _get_tts(url: str, text: str) -> tuple[int, bytes, str]:
    query = urllib.parse.urlencode({"text": text})
    try:
        with urllib.request.urlopen(f"{url}/api/tts?{query}", timeout=300) as response:
            return response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as error:
        return error.code, error.read(), error.headers.get("Content-Type", "")


def test_server_synthesizes(server, api):
    status, body, content_type = _get_tts(server, TEXT)
    assert status == 200, body[:500]
    assert content_type == "audio/wav"
    assert body[:4] == b"RIFF" and body[8:12] == b"WAVE"
    check_wav(body, _token_count(api, TEXT))


def test_server_post(server, api):
    data = urllib.parse.urlencode({"text": TEXT}).encode()
    with urllib.request.urlopen(urllib.request.Request(f"{server}/api/tts", data=data), timeout=300) as response:
        assert response.status == 200
        check_wav(response.read(), _token_count(api, TEXT))


##########################
# bad input
##########################


@pytest.mark.parametrize("text", ["", "   \t"])
def test_server_rejects_empty_text(server, text):
    status, body, _ = _get_tts(server, text)
    assert status == 400
    assert json.loads(body) == {"error": "Text parameter is required"}


@pytest.mark.parametrize("text", ["?!... ,;", "😀 😀", "你好世界", "Hello 😀 world, 你好."])
def test_server_speaks_odd_characters(server, api, text):
    # espeak-ng names emoji ("grinning face") and CJK characters ("chinese letter"); punctuation gives pause tokens
    status, body, _ = _get_tts(server, text)
    assert status == 200, body[:500]
    check_wav(body, _spoken_token_count(api, text), num_sentences=4)


def test_server_reports_unspeakable_text(server):
    # The model's ValueError reaches the client with its message, but coqui-tts 0.28 answers 500 for any exception.
    status, body, _ = _get_tts(server, "-")
    assert status == 500
    assert "text has no speakable characters after cleaning: '-'" in json.loads(body)["error"]


def test_server_long_paragraph(server, api):
    status, body, _ = _get_tts(server, PARAGRAPH)
    assert status == 200, body[:500]
    check_wav(body, _token_count(api, PARAGRAPH_SENTENCE) * 23, num_sentences=24)


def test_cli_empty_text_prints_help(run_files, tmp_path):
    # coqui-tts 0.28 treats `--text ""` as "no action given": it prints the help and exits 0, writing no file.
    model_path, config_path = run_files
    out = tmp_path / "empty.wav"
    result = subprocess.run(
        [BIN / "tts", "--model_path", model_path, "--config_path", config_path, "--text", "", "--out_path", out],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0
    assert "usage:" in result.stdout
    assert not out.exists()


def test_cli_unspeakable_text_fails_clearly(run_files, tmp_path):
    model_path, config_path = run_files
    out = tmp_path / "dash.wav"
    result = subprocess.run(
        [BIN / "tts", "--model_path", model_path, "--config_path", config_path, "--text", "-", "--out_path", out],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode != 0
    assert "ValueError: text has no speakable characters after cleaning: '-'" in result.stderr
    assert not out.exists()


def test_api_empty_text(api):
    with pytest.raises(ValueError, match="You need to define at least either `text`"):
        api.tts("")


def test_api_whitespace_only_is_a_toolkit_error(api):
    # The sentence splitter returns no sentence, and coqui-tts 0.28's Synthesizer.tts then divides by the zero
    # audio length before the model sees any text. Not NaturalSpeech's code (docs/troubleshooting.md says so): if the
    # toolkit fixes it, this test tells us.
    with pytest.raises(ZeroDivisionError):
        api.tts("   \n\t")


def test_api_whitespace_only_without_sentence_splitting_is_the_model_error(api):
    with pytest.raises(ValueError, match=r"^text is empty or only whitespace: '   \\n\\t'$"):
        api.tts("   \n\t", split_sentences=False)


def test_api_speaks_the_text_after_a_nul(api):
    # espeak-ng stops reading at a NUL; the model removes control characters before phonemizing (with a warning)
    torch.manual_seed(0)
    with_nul = api.tts("Hello\x00 world, how are you?")
    torch.manual_seed(0)
    assert np.array_equal(with_nul, api.tts("Hello world, how are you?"))


@pytest.mark.parametrize("text", ["-", "'"])
def test_api_unspeakable_text(api, text):
    with pytest.raises(ValueError, match="text has no speakable characters after cleaning"):
        api.tts(text)


@pytest.mark.parametrize("text", ["?!... ,;", "😀😀", "你好世界"])
def test_api_speaks_odd_characters(api, text, tmp_path):
    out = tmp_path / "odd.wav"
    api.tts_to_file(text=text, file_path=str(out))
    check_wav(out, _spoken_token_count(api, text), num_sentences=4)


def test_api_long_paragraph_is_split(api, tmp_path):
    out = tmp_path / "paragraph.wav"
    api.tts_to_file(text=PARAGRAPH, file_path=str(out))
    assert len(api.synthesizer.split_into_sentences(PARAGRAPH)) == 24
    check_wav(out, _token_count(api, PARAGRAPH_SENTENCE) * 23, num_sentences=24)


def test_model_rejects_zero_tokens(api):
    model = api.synthesizer.tts_model
    with pytest.raises(ValueError, match="at least one token"):
        model.inference(torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="at least one token"):
        model.inference(torch.ones(2, 5, dtype=torch.long), {"x_lengths": torch.tensor([5, 0])})


##########################
# model zoo
##########################


def publish_model(run_dir: Path, zoo_root: Path) -> Path:
    """Lay out a trained run as a released model folder under `<zoo_root>/tts/<model full name>` (docs/model_zoo.md).

    Returns the local models file that lists it.
    """
    folder = zoo_root / "tts" / MODEL_NAME.replace("/", "--")
    folder.mkdir(parents=True)
    state = torch.load(run_dir / "best_model.pth", map_location="cpu", weights_only=True)
    # a release holds the generator weights only: no optimizer, scaler or discriminator
    weights = {k: v for k, v in state["model"].items() if not k.startswith("disc.")}
    torch.save({"model": weights}, folder / "model.pth")
    shutil.copy(run_dir / "config.json", folder / "config.json")
    models_file = zoo_root / "models.json"
    entry = {
        "description": "NaturalSpeech (arXiv 2205.04421) trained on LJSpeech with phonemes.",
        "github_rls_url": "https://invalid.example/tts_models--en--ljspeech--naturalspeech.zip",
        "default_vocoder": None,
        "author": "test",
        "license": "apache 2.0",
        "commit": None,
    }
    models_file.write_text(json.dumps({"tts_models": {"en": {"ljspeech": {"naturalspeech": entry}}}}))
    return models_file


@pytest.fixture
def zoo(trained_model_dir, tmp_path, monkeypatch) -> tuple[Path, Path]:
    from TTS.utils.manage import ModelManager

    def no_download(*args, **kwargs):
        raise AssertionError("the model is on disk: ModelManager must not download")

    monkeypatch.setattr(ModelManager, "create_dir_and_download_model", no_download)
    return publish_model(trained_model_dir, tmp_path / "zoo"), tmp_path / "zoo"


def test_model_manager_resolves_local_model(zoo, tmp_path):
    from TTS.api import TTS
    from TTS.utils.manage import ModelManager

    models_file, prefix = zoo
    manager = ModelManager(models_file=models_file, output_prefix=prefix, progress_bar=False)
    assert MODEL_NAME in manager.list_tts_models()
    model_path, config_path, item = manager.download_model(MODEL_NAME)
    assert model_path.name == "model.pth"
    assert config_path == prefix / "tts" / "tts_models--en--ljspeech--naturalspeech" / "config.json"
    assert item["default_vocoder"] is None

    api = TTS()  # no model yet; load by name through the local models file, as for a released VITS
    api.manager = manager
    api.load_tts_model_by_name(MODEL_NAME)
    assert type(api.synthesizer.tts_model).__name__ == "Naturalspeech"
    assert api.synthesizer.tts_model.disc is None
    out = tmp_path / "zoo.wav"
    api.tts_to_file(text=TEXT, file_path=str(out))
    check_wav(out, _token_count(api, TEXT))


def test_tts_cli_model_name_from_local_models_file(zoo, tmp_path):
    """`tts --model_name ...` with the models file swapped for a local one and TTS_HOME at the zoo folder.

    The `tts` CLI has no option for a models file (it reads the packaged `.models.json`), so the launcher gives
    `ModelManager` the local file by default; downloads are made to fail, so only the model on disk can be used.
    """
    models_file, prefix = zoo
    out = tmp_path / "cli_zoo.wav"
    launcher = (
        "import sys\n"
        "from TTS.utils import manage\n"
        "_init = manage.ModelManager.__init__\n"
        f"_local = {{'models_file': {str(models_file)!r}}}\n"
        "manage.ModelManager.__init__ = lambda self, *a, **k: _init(self, *a, **{**_local, **k})\n"
        "def _no_download(*a, **k):\n"
        "    raise SystemExit('download attempted')\n"
        "manage.ModelManager.create_dir_and_download_model = _no_download\n"
        "from TTS.bin.synthesize import main\n"
        f"main(['--model_name', {MODEL_NAME!r}, '--text', {TEXT!r}, '--out_path', {str(out)!r}])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", launcher],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "TTS_HOME": str(prefix)},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "already downloaded" in result.stdout + result.stderr
    audio, sample_rate = soundfile.read(out)
    assert sample_rate == SAMPLE_RATE and audio.ndim == 1 and np.abs(audio).max() > 1e-3
