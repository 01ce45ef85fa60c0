"""The wheel ships only the add-on's files; the source tree resolves the add-on modules to its own files."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests import REPO_ROOT

ALLOWED_PREFIXES = (
    "TTS/tts/models/naturalspeech.py",
    "TTS/tts/configs/naturalspeech_config.py",
    "TTS/tts/layers/naturalspeech/",
)


@pytest.fixture(scope="module")
def wheel_path(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(REPO_ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("coqui_tts_naturalspeech-*.whl")
    return wheel


def test_wheel_holds_only_addon_files(wheel_path):
    names = zipfile.ZipFile(wheel_path).namelist()
    payload = [name for name in names if ".dist-info/" not in name]
    assert "TTS/tts/configs/naturalspeech_config.py" in payload
    assert "TTS/tts/layers/naturalspeech/__init__.py" in payload
    strays = [name for name in payload if not name.startswith(ALLOWED_PREFIXES)]
    assert strays == [], f"the wheel would overwrite or add files outside the add-on: {strays}"
    for coqui_init in ("TTS/__init__.py", "TTS/tts/__init__.py", "TTS/tts/models/__init__.py"):
        assert coqui_init not in names
    record = next(name for name in names if name.endswith(".dist-info/RECORD"))
    recorded = {line.split(",")[0] for line in zipfile.ZipFile(wheel_path).read(record).decode().splitlines()}
    assert set(payload) <= recorded  # pip uninstall removes exactly what RECORD lists


def test_wheel_declares_the_toolkit_as_a_dependency(wheel_path):
    names = zipfile.ZipFile(wheel_path).namelist()
    metadata = zipfile.ZipFile(wheel_path).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    for package in ("coqui-tts", "coqui-tts-trainer", "torchaudio", "torchcodec", "six", "monotonic-alignment-search"):
        assert any(r.startswith(package) for r in requires), package


def test_addon_modules_resolve_to_this_checkout_and_toolkit_stays_installed():
    code = (
        "import TTS, TTS.tts.configs.naturalspeech_config as c, TTS.tts.layers.naturalspeech as l;"
        "print(TTS.__file__); print(c.__file__); print(l.__file__)"
    )
    # A fresh interpreter: the editable install's .pth hook must do this without the test-suite's conftest.
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd="/")
    toolkit, config_file, layers_file = out.stdout.split()
    assert "site-packages" in toolkit
    assert Path(config_file).resolve() == REPO_ROOT / "TTS/tts/configs/naturalspeech_config.py"
    assert Path(layers_file).resolve() == REPO_ROOT / "TTS/tts/layers/naturalspeech/__init__.py"


def test_load_config_finds_the_config_class_by_model_name(tmp_path):
    code = (
        "import sys; from TTS.tts.configs.naturalspeech_config import NaturalspeechConfig as C;"
        "from TTS.config import load_config; p=sys.argv[1]; C().save_json(p);"
        "print(type(load_config(p)).__name__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "c.json")], check=True, capture_output=True, text=True, cwd="/"
    )
    assert out.stdout.strip() == "NaturalspeechConfig"
