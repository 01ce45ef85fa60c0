"""Test set-up: fixtures for real and generated speech (`tests/__init__.py` imports the add-on from this checkout)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import LJSPEECH_DIR


@pytest.fixture(scope="session")
def ljspeech_dir() -> Path:
    """The 32 real LJSpeech clips of `../shared/data/ljspeech` (LJSpeech format: `wavs/` + `metadata.csv`)."""
    if not (LJSPEECH_DIR / "metadata.csv").is_file():
        pytest.skip(f"real LJSpeech clips not found at {LJSPEECH_DIR} (set NATURALSPEECH_SHARED_DATA)")
    return LJSPEECH_DIR


@pytest.fixture(scope="session")
def espeak_corpus(tmp_path_factory) -> Path:
    """A small single-speaker corpus in LJSpeech format, spoken by espeak-ng at 22050 Hz."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (make setup installs it)")
    root = tmp_path_factory.mktemp("espeak_corpus")
    (root / "wavs").mkdir()
    sentences = [
        "The quick brown fox jumps over the lazy dog.",
        "Printing, in the only sense with which we are at present concerned.",
        "A voice is a gift, and a gift is to be shared.",
        "She sells sea shells by the sea shore.",
        "Natural speech is the goal of this model.",
        "Every clip here was spoken by a machine.",
    ]
    lines = []
    for index, text in enumerate(sentences):
        clip_id = f"ESPK-{index:04d}"
        raw = root / "wavs" / f"{clip_id}.raw.wav"
        subprocess.run(["espeak-ng", "-w", str(raw), text], check=True)
        # espeak-ng speaks at 22050 Hz already; the re-encode fixes the header to plain 16-bit PCM mono.
        import soundfile

        audio, sample_rate = soundfile.read(raw)
        soundfile.write(root / "wavs" / f"{clip_id}.wav", audio, sample_rate, subtype="PCM_16")
        raw.unlink()
        lines.append(f"{clip_id}|{text}|{text}")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def pytest_report_header(config):
    return [f"python: {sys.executable}"]


@pytest.fixture(scope="session")
def trained_model_dir(tmp_path_factory, ljspeech_dir) -> Path:
    """A tiny NaturalSpeech trained a few steps through every stage by the toolkit's `train_tts` on real clips.

    Returns the run folder holding `config.json`, `best_model.pth` and the checkpoints, as a user's training run
    leaves it; the console output of the run is `train_tts.log` two folders up.
    """
    from tests import make_ljspeech_config

    root = tmp_path_factory.mktemp("trained")
    config = make_ljspeech_config(
        ljspeech_dir,
        root / "run",
        batch_size=4,
        eval_batch_size=2,
        epochs=1,
        warmup_steps=2,
        tuning_start_step=5,
        save_step=3,
        print_step=2,
        plot_step=2,
        run_eval=True,
        eval_split_size=2,
        test_delay_epochs=0,
    )
    config.save_json(str(root / "config.json"))
    result = subprocess.run(
        [sys.executable, "-m", "TTS.bin.train_tts", "--config_path", str(root / "config.json")],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    (root / "train_tts.log").write_text(result.stdout + result.stderr, encoding="utf-8")
    if result.returncode != 0:
        pytest.fail(f"train_tts failed:\n{(result.stdout + result.stderr)[-4000:]}")
    (run_dir,) = (root / "run").glob("run-*")
    return run_dir
