"""The GPU readiness check (`benchmarks/gpu_check.py`, `make gpu-bundle`; issue #17).

Without CUDA the check says so in one line. Its dry run goes through every step on CPU at tiny sizes (the soft-DTW
kernel under numba's CUDA simulator). The bundle tests need PyPI and are skipped, with the reason, when it cannot be
reached: `make gpu-bundle` fetches the GPU machine's CPython 3.12 wheels under the size limit; and the same package
list, fetched for this interpreter (it cannot import cp312 wheels), is installed by the check into a fresh folder
and the check runs from it in an interpreter that sees nothing but the GPU machine's packages (`python -S`).
"""

import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement
from packaging.tags import compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename

from tests import REPO_ROOT

CHECK = REPO_ROOT / "benchmarks" / "gpu_check.py"
STEPS = ["soft_dtw", "train_fp32", "train_bf16", "rtf"]
# The GPU machine's packages (issue #17); their own dependencies come with them (`gpu_machine_site`). numba-cuda is
# not installed here: numba's own `numba.cuda` (simulator) stands in for it.
GPU_MACHINE_PACKAGES = [
    *("torch", "torchaudio", "numba", "numba-cuda", "onnxruntime", "numpy", "scipy", "scikit-learn"),
    *("matplotlib", "tqdm", "tokenizers", "pip"),
]
BUNDLE_MAX_MIB = 50
# CPython 3.12 on x86-64 Linux with glibc >= 2.28 (any recent distribution)
GPU_PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(28, 4, -1)] + ["manylinux2014_x86_64"]
GPU_TAGS = {
    *cpython_tags((3, 12), abis=["cp312", "abi3", "none"], platforms=GPU_PLATFORMS),
    *compatible_tags((3, 12), "cp312", GPU_PLATFORMS),
}


def _load_check():
    spec = importlib.util.spec_from_file_location("gpu_check", CHECK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpu_check = _load_check()
BUNDLED = [canonicalize_name(name) for name in gpu_check.bundle_distributions()]


def run_check(*args: str, timeout: float = 1200, python_flags: tuple[str, ...] = (), env=None, cwd=None):
    return subprocess.run(
        [sys.executable, *python_flags, str(CHECK), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
        cwd=cwd,
    )


def rows_of(results: dict, step: str) -> dict[str, dict]:
    return {row["case"]: row for row in results["steps"][step]["rows"]}


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the check would measure it")
def test_without_cuda_it_says_so_in_one_line_and_exits_0(tmp_path):
    result = run_check("--out-dir", str(tmp_path), timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    assert "no CUDA device" in lines[0]
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory, ljspeech_dir):
    """The whole check on CPU at tiny sizes (about 1-2 minutes on 2 CPU cores)."""
    out_dir = tmp_path_factory.mktemp("gpu_check")
    result = run_check("--dry-run", "--data-dir", str(ljspeech_dir), "--out-dir", str(out_dir))
    return result, out_dir


@pytest.mark.slow
def test_dry_run_goes_through_every_step(dry_run):
    result, out_dir = dry_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads((out_dir / "gpu_check_dry_run.json").read_text(encoding="utf-8"))
    assert list(results["steps"]) == STEPS
    assert results["passed"] is True
    assert {name: step["status"] for name, step in results["steps"].items()} == dict.fromkeys(STEPS, "ok")

    # the add-on's CUDA kernel (simulated) against the CPU backend, unequal lengths, float64 and float32
    shapes = [row for case, row in rows_of(results, "soft_dtw").items() if case.startswith("B=")]
    assert len(shapes) == 2
    for row in shapes:
        assert set(row["errors"]) == {"value_float64", "grad_float64", "value_float32", "grad_float32"}
        assert max(row["errors"].values()) <= 1e-6, row
        assert row["lengths_n"] != row["lengths_m"]
        assert row["status"] == "ok"

    for precision in ("fp32", "bf16"):
        rows = rows_of(results, f"train_{precision}")
        names = [case.split(" (")[0] for case in rows]
        assert names == [
            "VITS",
            "NaturalSpeech warm-up",
            "NaturalSpeech memory-bank init",
            "NaturalSpeech main",
            "NaturalSpeech tuning",
        ]
        for case, row in rows.items():
            assert row["status"] == "ok", row
            if "memory-bank" not in case:
                assert row["steps"] >= 1 and row["non_finite_steps"] == 0 and row["time_s"] > 0
            if case.startswith("NaturalSpeech") and "memory-bank" not in case:
                assert row["vs_reference"] > 0

    rtf = rows_of(results, "rtf")
    assert [case.split(" tokens")[0] for case in rtf] == ["8", "16"]
    assert all(row["rtf"]["naturalspeech"] > 0 and row["rtf"]["vits"] > 0 for row in rtf.values())

    table = (out_dir / "gpu_check_dry_run.md").read_text(encoding="utf-8")
    assert "| step | case | status |" in table
    assert sum(line.startswith("| train_bf16 |") for line in table.splitlines()) == 5
    assert table.split("\n", 2)[2].strip() in result.stdout  # the table is printed too


@pytest.mark.slow
def test_failed_steps_are_reported_and_the_other_steps_still_run(tmp_path):
    missing = tmp_path / "no_clips_here"
    result = run_check(
        *("--dry-run", "--only", "soft_dtw", "train_fp32", "rtf", "--time-limit", "soft_dtw=1"),
        *("--data-dir", str(missing), "--out-dir", str(tmp_path)),
    )
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads((tmp_path / "gpu_check_dry_run.json").read_text(encoding="utf-8"))
    steps = results["steps"]
    assert results["passed"] is False
    assert steps["soft_dtw"]["status"] == "timeout"
    assert steps["train_fp32"]["status"] == "failed"
    assert str(missing) in steps["train_fp32"]["error"]
    assert steps["rtf"]["status"] == "ok" and len(steps["rtf"]["rows"]) == 2
    table = (tmp_path / "gpu_check_dry_run.md").read_text(encoding="utf-8")
    assert "| soft_dtw | (step) | timeout |" in table
    assert "| train_fp32 | (step) | failed |" in table


##########################
# the bundle (needs PyPI)
##########################


@pytest.fixture(scope="module")
def pypi():
    try:
        urllib.request.urlopen("https://pypi.org/simple/six/", timeout=20).close()
    except OSError as error:
        pytest.skip(f"PyPI is not reachable ({error}): the bundle tests download wheels")


@pytest.mark.slow
def test_make_gpu_bundle_fetches_a_cp312_wheel_per_package_under_the_size_limit(pypi, tmp_path, ljspeech_dir):
    bundle = tmp_path / "bundle"
    command = ["make", "-s", "-C", str(REPO_ROOT), "gpu-bundle", f"GPU_BUNDLE={bundle}", f"GPU_DATA={ljspeech_dir}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    wheels = sorted((bundle / "wheels").glob("*.whl"))
    names = [parse_wheel_filename(wheel.name)[0] for wheel in wheels]
    assert sorted(names) == sorted(BUNDLED)
    for wheel in wheels:
        assert parse_wheel_filename(wheel.name)[3] & GPU_TAGS, f"{wheel.name} does not install on CPython 3.12"
    compiled = [w.name for w in wheels if any(tag.interpreter == "cp312" for tag in parse_wheel_filename(w.name)[3])]
    assert len(compiled) >= 4, compiled  # monotonic-alignment-search, cffi, msgpack, torchcodec
    assert len(list((bundle / "ljspeech" / "wavs").glob("*.wav"))) == 32
    size = sum(path.stat().st_size for path in bundle.rglob("*") if path.is_file())
    assert size <= BUNDLE_MAX_MIB * 2**20, f"{size / 2**20:.1f} MiB"

    too_small = [*command[:-2], f"GPU_BUNDLE={tmp_path / 'again'}", f"GPU_DATA={ljspeech_dir}", "GPU_BUNDLE_MAX_MIB=1"]
    result = subprocess.run(too_small, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode != 0
    assert "larger than 1 MiB" in result.stderr


def gpu_machine_site(folder: Path) -> set[str]:
    """A folder of links to the GPU machine's packages and their dependencies, from this environment; their names."""
    folder.mkdir()
    found: dict[str, importlib.metadata.Distribution] = {}
    todo = [(name, frozenset()) for name in GPU_MACHINE_PACKAGES]
    seen = set()
    while todo:
        name, extras = todo.pop()
        if (canonicalize_name(name), extras) in seen:
            continue
        seen.add((canonicalize_name(name), extras))
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        found[canonicalize_name(name)] = distribution
        for line in distribution.requires or []:
            requirement = Requirement(line)
            environments = [{"extra": extra} for extra in ("", *extras)]
            if requirement.marker is None or any(requirement.marker.evaluate(e) for e in environments):
                todo.append((requirement.name, frozenset(requirement.extras)))
    for distribution in found.values():
        tops = {file.parts[0] for file in distribution.files or []}
        for top in tops - {"..", "__pycache__"}:
            source = Path(distribution.locate_file(top))
            if not top.endswith(".pth") and source.exists() and not (folder / top).exists():
                (folder / top).symlink_to(source)
    return set(found)


@pytest.fixture(scope="module")
def local_bundle(pypi, tmp_path_factory) -> Path:
    """The same package list as `make gpu-bundle`, fetched for this interpreter (it cannot import cp312 wheels)."""
    bundle = tmp_path_factory.mktemp("local_bundle")
    download = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--no-deps"]
    download += ["-d", str(bundle / "wheels"), "-r", str(gpu_check.BUNDLE_LIST)]
    result = subprocess.run(download, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return bundle


def test_without_pip_the_wheels_unpack_to_the_files_pip_installs(local_bundle, tmp_path):
    # An environment made by uv has no pip: the check then unpacks the wheels itself.
    wheels = sorted((local_bundle / "wheels").glob("*.whl"))
    unpacked, installed = tmp_path / "unpacked", tmp_path / "installed"
    for wheel in wheels:
        gpu_check._unpack_wheel(wheel, unpacked)
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile"]
    subprocess.run([*pip, "--target", str(installed), *map(str, wheels)], check=True, capture_output=True)

    def payload(root: Path) -> set[str]:  # pip adds its own records (INSTALLER, REQUESTED) and console scripts
        files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
        return {f for f in files if ".dist-info/" not in f and not f.startswith("bin/")}

    assert payload(unpacked) == payload(installed)
    assert {p.name for p in unpacked.glob("*.dist-info")} == {p.name for p in installed.glob("*.dist-info")}
    assert len(payload(unpacked)) > 500


@pytest.mark.slow
def test_the_bundle_installs_into_a_fresh_folder_and_the_check_runs_with_only_the_gpu_machine_packages(
    local_bundle, tmp_path, ljspeech_dir
):
    bundle = local_bundle
    gpu_machine = gpu_machine_site(tmp_path / "gpu_machine")
    assert {"torch", "numba", "scikit-learn", "tokenizers"} <= gpu_machine
    assert not set(BUNDLED) & gpu_machine, "the bundle holds a package the GPU machine has"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NATURALSPEECH_SOURCE_ROOT")}
    env["PYTHONPATH"] = str(tmp_path / "gpu_machine")

    def isolated_check(bundle_dir: Path, *steps: str):
        out_dir = tmp_path / f"out_{bundle_dir.name}"
        args = ["--dry-run", "--bundle", str(bundle_dir), "--data-dir", str(ljspeech_dir), "--out-dir", str(out_dir)]
        # -S: no site-packages, so nothing of this environment but the links above (and the standard library)
        result = run_check(*args, "--only", *steps, python_flags=("-S",), env=env, cwd=tmp_path)
        results = json.loads((out_dir / "gpu_check_dry_run.json").read_text(encoding="utf-8"))
        return result, results

    result, results = isolated_check(bundle, "soft_dtw", "train_fp32", "rtf")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    packages = results["environment"]["packages"]
    assert packages["installed"] and packages["method"] == "pip install --no-index --no-deps --target"
    assert sorted(canonicalize_name(n) for n in packages["missing_before"]) == sorted(BUNDLED)
    assert packages["still_missing"] == []
    assert "gpu_check_site_" in results["environment"]["toolkit_location"]  # the toolkit came from the bundle
    assert not Path(packages["site"]).exists()  # the temporary folder is removed at the end
    assert {name: step["status"] for name, step in results["steps"].items()} == dict.fromkeys(
        ["soft_dtw", "train_fp32", "rtf"], "ok"
    )

    # Without one needed wheel the check cannot train: the isolation is real, and the test would catch a gap.
    partial = tmp_path / "partial"
    (partial / "wheels").mkdir(parents=True)
    for wheel in (bundle / "wheels").glob("*.whl"):
        if parse_wheel_filename(wheel.name)[0] != "soundfile":
            shutil.copy(wheel, partial / "wheels")
    result, results = isolated_check(partial, "train_fp32")
    assert result.returncode == 1
    assert results["steps"]["train_fp32"]["status"] == "failed"
    assert "No module named 'soundfile'" in results["steps"]["train_fp32"]["error"]
