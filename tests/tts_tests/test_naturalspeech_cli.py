"""`naturalspeech-tts`: the WAV, the timings (JSON, SRT) and the streamed output, run as a program.

The checkpoint is a tiny randomly initialised model saved as a training run saves it (`config.json` + weights):
what the command does with durations and audio does not depend on training. The command runs as
`python -m TTS.tts.layers.naturalspeech.runtime.cli`, which is what the `naturalspeech-tts` script calls; the script
itself exists once the package is (re)installed (`make setup`).
"""

import io
import itertools
import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from tests import REPO_ROOT, load_run_model, make_phonemizing_tiny_config

MODULE = "TTS.tts.layers.naturalspeech.runtime.cli"
SCRIPT = Path(sys.executable).parent / "naturalspeech-tts"
TEXT = "Be a voice, not an echo. In the beginning, they paid; then they left!"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from TTS.tts.models.naturalspeech import Naturalspeech

    root = tmp_path_factory.mktemp("cli_run")
    config = make_phonemizing_tiny_config()
    model = Naturalspeech.init_from_config(config)
    config.save_json(str(root / "config.json"))
    torch.save({"model": model.state_dict()}, root / "best_model.pth")
    return root


@pytest.fixture(scope="module")
def model(run_dir):
    return load_run_model(run_dir)


def run_cli(run_dir, *args, stdout_binary=False):
    command = [sys.executable, "-m", MODULE, "--model_path", run_dir / "best_model.pth"]
    command += ["--config_path", run_dir / "config.json", *args]
    return subprocess.run(command, capture_output=True, text=not stdout_binary, timeout=600, check=False)


def read_wav(source) -> tuple[np.ndarray, int]:
    with wave.open(source if isinstance(source, str) else io.BytesIO(source), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
        frames = wav.readframes(wav.getnframes())
        return np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32767, wav.getframerate()


@pytest.fixture(scope="module")
def written(run_dir, tmp_path_factory):
    """WAV, JSON and SRT of `TEXT`, deterministic (noise scale 0)."""
    out = tmp_path_factory.mktemp("cli_out")
    paths = {"wav": out / "speech.wav", "json": out / "timings.json", "srt": out / "words.srt"}
    result = run_cli(
        run_dir,
        *("--text", TEXT, "--noise_scale", "0", "--out_path", paths["wav"]),
        *("--timings_json", paths["json"], "--timings_srt", paths["srt"]),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "s of audio" in result.stderr and "words timed" in result.stderr
    return paths


def _sentence_audio(model, sentence):
    ids = torch.tensor([model.tokenizer.text_to_ids(sentence)])
    return model.inference(ids, {"noise_scale": 0.0})["model_outputs"][0, 0].numpy()


def test_wav_is_the_models_waveform_sentence_by_sentence(model, written):
    audio, sample_rate = read_wav(str(written["wav"]))
    assert sample_rate == model.config.audio.sample_rate
    # the toolkit's sentence splitting, then the sentences back to back
    expected = np.concatenate([_sentence_audio(model, s) for s in ["Be a voice, not an echo.", TEXT[25:]]])
    assert audio.shape == expected.shape
    np.testing.assert_allclose(audio, np.clip(expected, -1, 1), rtol=0, atol=1.5 / 32767)  # 16-bit rounding


def test_timings_cover_the_wav_across_sentences(model, written):
    audio, sample_rate = read_wav(str(written["wav"]))
    timings = json.loads(written["json"].read_text(encoding="utf-8"))
    assert timings["sample_rate"] == sample_rate
    phonemes, words = timings["phonemes"], timings["words"]
    assert phonemes[0]["start_sample"] == 0 and phonemes[-1]["end_sample"] == len(audio)
    assert all(a["end_sample"] == b["start_sample"] for a, b in itertools.pairwise(phonemes))
    assert all(a["end_sample"] <= b["start_sample"] for a, b in itertools.pairwise(words))
    # the phonemizer's words of both sentences ("in the" is one of them)
    tokenizer = model.tokenizer
    punctuation = tokenizer.characters.punctuations
    expected = []
    for sentence in ["Be a voice, not an echo.", TEXT[25:]]:
        phonemized = tokenizer.phonemizer.phonemize(tokenizer.text_cleaner(sentence, lang=None), separator="")
        expected += [w for w in (w.strip(punctuation) for w in phonemized.split()) if w]
    assert [w["phonemes"] for w in words] == expected
    assert "in the" in [w["text"] for w in words]


def test_srt_has_one_cue_per_word(written):
    words = json.loads(written["json"].read_text(encoding="utf-8"))["words"]
    cues = written["srt"].read_text(encoding="utf-8").strip().split("\n\n")
    assert len(cues) == len(words)
    assert cues[1].splitlines()[2] == words[1]["text"] == "a"


def test_stream_to_stdout_equals_the_file(run_dir, written):
    result = run_cli(
        run_dir,
        *("--text", TEXT, "--noise_scale", "0", "--stream", "--chunk_frames", "8", "--out_path", "-"),
        stdout_binary=True,
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    streamed, _ = read_wav(result.stdout)
    whole, _ = read_wav(str(written["wav"]))
    assert streamed.shape == whole.shape
    np.testing.assert_allclose(streamed, whole, rtol=0, atol=1.5 / 32767)
    assert b"first audio after" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--text", "   "], "empty or only whitespace"),
        (["--text", "-"], "no speakable characters"),
        (["--text", "Hi.", "--chunk_frames", "0"], "--chunk_frames must be at least 1"),
    ],
)
def test_bad_input_is_a_usage_error(run_dir, tmp_path, args, message):
    result = run_cli(run_dir, *args, "--out_path", tmp_path / "x.wav")
    assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "x.wav").exists()


def test_missing_checkpoint_is_named(tmp_path):
    result = run_cli(tmp_path, "--text", "Hi.")
    assert result.returncode == 2 and f"{tmp_path / 'best_model.pth'} not found" in result.stderr


def test_console_script_is_declared_and_installed():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert scripts["naturalspeech-tts"] == f"{MODULE}:main"
    if not SCRIPT.exists():
        pytest.skip(f"{SCRIPT} not installed yet: `make setup` reinstalls the package with its console script")
    result = subprocess.run([SCRIPT, "--help"], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0 and "--timings_srt" in result.stdout
