"""The wheel ships only the add-on's files; the source tree resolves the add-on modules to its own files."""

import importlib
import importlib.metadata
import json
import os
import subprocess
import sys
import urllib.parse
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
    for subpackage in ("runtime", "pretraining"):
        assert f"TTS/tts/layers/naturalspeech/{subpackage}/__init__.py" in payload
    assert "TTS/tts/layers/naturalspeech/runtime/web/index.html" in payload  # the server's page
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


def _entry_points(wheel: Path) -> str:
    names = zipfile.ZipFile(wheel).namelist()
    return zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()


@pytest.mark.parametrize(
    "script",
    [
        "naturalspeech-tts = TTS.tts.layers.naturalspeech.runtime.cli:main",
        "naturalspeech-server = TTS.tts.layers.naturalspeech.runtime.server:main",
    ],
)
def test_wheels_install_the_naturalspeech_commands(wheel_path, tmp_path, script):
    assert "[console_scripts]" in _entry_points(wheel_path) and script in _entry_points(wheel_path)
    # the editable wheel of the in-tree backend (what `make setup` installs) keeps the entry points too
    code = "import sys; sys.path.insert(0, 'build_backend'); import backend; print(backend.build_editable(sys.argv[1]))"
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], check=True, capture_output=True, text=True, cwd=REPO_ROOT
    )
    assert script in _entry_points(tmp_path / out.stdout.strip().splitlines()[-1])


def _editable_checkout() -> Path | None:
    """The checkout the environment's editable install points at, or None (not installed, or not editable)."""
    # Every match, not the first: the wheel build above leaves an `.egg-info` in the checkout, which is on sys.path.
    for distribution in importlib.metadata.distributions(name="coqui-tts-naturalspeech"):
        info = json.loads(distribution.read_text("direct_url.json") or "{}")
        if info.get("dir_info", {}).get("editable"):
            return Path(urllib.parse.urlparse(info["url"]).path).resolve()
    return None


def test_addon_modules_resolve_to_this_checkout_and_toolkit_stays_installed():
    checkout = _editable_checkout()
    if checkout is None:
        pytest.skip("the add-on is not installed in editable mode in this environment")
    if checkout != REPO_ROOT:
        pytest.skip(f"the environment's editable install is of {checkout}, not of this checkout (a git worktree?)")
    code = (
        "import TTS, TTS.tts.configs.naturalspeech_config as c, TTS.tts.layers.naturalspeech as l;"
        "print(TTS.__file__); print(c.__file__); print(l.__file__)"
    )
    # A fresh interpreter: the editable install's .pth hook must do this without the test-suite's conftest (whose
    # hook for child interpreters, tests/_site/sitecustomize.py, is left out here).
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NATURALSPEECH_SOURCE_ROOT")}
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd="/", env=env)
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


ADDON_FILES = {
    "TTS.tts.models.naturalspeech": "TTS/tts/models/naturalspeech.py",
    "TTS.tts.configs.naturalspeech_config": "TTS/tts/configs/naturalspeech_config.py",
    "TTS.tts.layers.naturalspeech": "TTS/tts/layers/naturalspeech/__init__.py",
}


def test_tests_and_their_child_processes_import_the_addon_from_this_checkout():
    for name, relative in ADDON_FILES.items():
        module = importlib.import_module(name)
        assert Path(module.__file__).resolve() == REPO_ROOT / relative, name
    code = "import importlib, sys; print(*(importlib.import_module(n).__file__ for n in sys.argv[1:]))"
    out = subprocess.run(
        [sys.executable, "-c", code, *ADDON_FILES], check=True, capture_output=True, text=True, cwd="/"
    )
    assert [Path(f).resolve() for f in out.stdout.split()] == [REPO_ROOT / r for r in ADDON_FILES.values()]
