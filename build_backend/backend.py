"""PEP 517 build backend: setuptools, except for editable installs.

A regular wheel (setuptools) holds only the add-on's files under `TTS/`; pip installs them into the installed
`TTS` package and uninstalls exactly those. setuptools' own editable mode maps whole top-level packages, which
for `TTS` would mean either shadowing the installed toolkit or not finding our files. So `build_editable` writes
a small wheel of its own: a `.pth` file that installs `source_finder.NaturalspeechSourceFinder`, which maps
exactly the three add-on module names to this checkout.
"""

import base64
import hashlib
import tempfile
import zipfile
from pathlib import Path

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403  (re-export the standard hooks)

ROOT = Path(__file__).resolve().parent.parent
HOOK_MODULE = "_coqui_tts_naturalspeech_editable"


def get_requires_for_build_editable(config_settings=None):
    return _setuptools.get_requires_for_build_wheel(config_settings)


def prepare_metadata_for_build_editable(metadata_directory, config_settings=None):
    return _setuptools.prepare_metadata_for_build_wheel(metadata_directory, config_settings)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    with tempfile.TemporaryDirectory() as tmp:
        dist_info_name = _setuptools.prepare_metadata_for_build_wheel(tmp, config_settings)
        dist_info = Path(tmp) / dist_info_name
        name, version = dist_info_name.removesuffix(".dist-info").split("-", 1)
        files = {
            f"{HOOK_MODULE}.pth": f"import {HOOK_MODULE}\n",
            f"{HOOK_MODULE}.py": _hook_source(),
            f"{dist_info_name}/WHEEL": "Wheel-Version: 1.0\nGenerator: build_backend\nRoot-Is-Purelib: true\n"
            "Tag: py3-none-any\n",
        }
        for path in dist_info.rglob("*"):
            if path.is_file() and path.name not in ("RECORD", "WHEEL"):
                files[f"{dist_info_name}/{path.relative_to(dist_info).as_posix()}"] = path.read_text(encoding="utf-8")
        wheel_name = f"{name}-{version}-0.editable-py3-none-any.whl"
        _write_wheel(Path(wheel_directory) / wheel_name, files, f"{dist_info_name}/RECORD")
    return wheel_name


def _hook_source() -> str:
    finder_path = ROOT / "build_backend" / "source_finder.py"
    return (
        '"""Editable install of coqui-tts-naturalspeech: import the add-on from its checkout."""\n'
        "import importlib.util\n\n"
        f"_spec = importlib.util.spec_from_file_location('naturalspeech_source_finder', {str(finder_path)!r})\n"
        "_module = importlib.util.module_from_spec(_spec)\n"
        "_spec.loader.exec_module(_module)\n"
        f"_module.install({str(ROOT)!r})\n"
    )


def _write_wheel(path: Path, files: dict[str, str], record_name: str) -> None:
    records = []
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as wheel:
        for arcname, text in files.items():
            data = text.encode("utf-8")
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            wheel.writestr(arcname, data)
            records.append(f"{arcname},sha256={digest},{len(data)}")
        records.append(f"{record_name},,")
        wheel.writestr(record_name, "\n".join(records) + "\n")
