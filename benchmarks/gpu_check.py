"""GPU readiness check: every CUDA question about NaturalSpeech answered in one short run (issue #17).

On a CUDA machine, in four steps, each in its own subprocess with its own time limit (a step that fails or runs out of
time is reported and the others still run):

1. `soft_dtw`: the add-on's numba.cuda soft-DTW kernel against its CPU backend at B=16, N=M=800 and 1,500 (unequal
   lengths per item, γ=0.01, warp 0.07·192): values and gradients must agree to 1e-6 (relative to the largest
   magnitude), in float64 and float32; time of both backends and of the model's full KL path (cost matrix +
   soft-DTW forward and backward) with its peak CUDA memory.
2. `train_fp32`, `train_bf16`: the paper-size model trained on the 32 shared LJSpeech clips (characters, not
   phonemes: no espeak-ng; audio read with soundfile: no FFmpeg), up to `--steps` steps per stage within the step's
   time share — warm-up, memory-bank initialisation, main (memory bank, L_fwd, predicted durations under soft-DTW),
   tuning — and the toolkit's VITS at the same batch as the reference, in float32 and under bfloat16 autocast:
   non-finite losses, step time, ratio to VITS, peak CUDA memory per stage.
3. `rtf`: synthesis real-time factor at paper size for 20/80/200 tokens, NaturalSpeech vs VITS (fixed durations,
   as `synthesis_rtf.py`; the paper: 0.013 vs 0.014 on a V100).

Writes `gpu_check.json` and `gpu_check.md` (one Markdown table, also printed) to `--out-dir`. Packages the GPU
machine lacks come from `gpu_bundle/wheels` (`make gpu-bundle`, listed in `benchmarks/gpu_bundle.txt`), installed
into a temporary folder with `pip install --no-index --no-deps --target`; the clips from `gpu_bundle/ljspeech`.
Without CUDA it says so in one line and exits 0; `--dry-run` runs every step on CPU at tiny sizes (the soft-DTW
kernel under numba's CUDA simulator), which is how CI tests this script.

    make gpu-bundle                                   # here, with network access: wheels + clips, < 50 MiB
    python3 benchmarks/gpu_check.py                   # on the GPU machine (`make gpu-check`), ~7 minutes
    python3 benchmarks/gpu_check.py --dry-run --out-dir /tmp/gpu_check   # CPU, tiny sizes
"""

import argparse
import contextlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BUNDLE_LIST = HERE / "gpu_bundle.txt"
DEFAULT_BUNDLE = ROOT / "gpu_bundle"
STEPS = ("soft_dtw", "train_fp32", "train_bf16", "rtf")
# Seconds per step on the GPU machine: with the bundle install (~20 s) the whole run stays under 8 minutes.
TIME_LIMITS = {"soft_dtw": 75.0, "train_fp32": 165.0, "train_bf16": 165.0, "rtf": 45.0}
# On CPU the dry run's steps take seconds to a minute; the limits only catch a hang.
DRY_RUN_TIME_LIMIT = 600.0
# what a training step spends before its first stage: imports, CUDA context, models, batches on the device
TRAIN_SETUP_SECONDS = 45.0
TOLERANCE = 1e-6
ROW_MARK = "GPU_CHECK_ROW "
PAPER_RTF = {"naturalspeech": 0.013, "vits": 0.014}  # paper, Table 3 (V100)
COLUMNS = ["step", "case", "status", "steps", "time_s", "peak_mib", "vs_reference", "detail"]


##########################
# the bundle
##########################


def bundle_distributions(path: Path = BUNDLE_LIST) -> list[str]:
    """Distribution names in the bundle list (requirement lines `name==version  # why`)."""
    names = []
    for line in path.read_text(encoding="utf-8").splitlines():
        requirement = line.split("#", 1)[0].strip()
        if requirement:
            names.append(re.split(r"[=<>!~\[; ]", requirement, maxsplit=1)[0])
    return names


def missing_distributions(names: list[str]) -> list[str]:
    missing = []
    for name in names:
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    return missing


def install_wheels(wheel_dir: Path, target: Path) -> str:
    """Install every wheel of `wheel_dir` into `target` without network or dependency resolution; returns how.

    pip (`--no-index --no-deps --target`) when this interpreter has it; otherwise the wheels are unpacked, which is
    what pip does for these wheels (no scripts or headers are needed from them).
    """
    wheels = sorted(wheel_dir.glob("*.whl"))
    if not wheels:
        msg = f"no wheels in {wheel_dir}: run `make gpu-bundle` on a machine with network access and copy the folder"
        raise FileNotFoundError(msg)
    try:
        import pip  # noqa: F401
    except ImportError:
        for wheel in wheels:
            _unpack_wheel(wheel, target)
        return "unpacked (no pip in this interpreter)"
    command = [sys.executable, *_interpreter_flags(), "-m", "pip", "install", "--no-index", "--no-deps"]
    command += ["--disable-pip-version-check", "--quiet", "--target", str(target), *map(str, wheels)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        msg = f"pip install of the bundle failed: {(result.stderr.strip().splitlines() or ['?'])[-1]}"
        raise RuntimeError(msg)
    return "pip install --no-index --no-deps --target"


def _unpack_wheel(wheel: Path, target: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    for data in target.glob("*.data"):
        for scheme in ("purelib", "platlib"):
            for item in (data / scheme).glob("*") if (data / scheme).is_dir() else []:
                shutil.move(str(item), target / item.name)
        shutil.rmtree(data)


def _interpreter_flags() -> list[str]:
    """The flags this interpreter was started with that its child interpreters must share (`python -S`)."""
    return ["-S"] if sys.flags.no_site else []


def prepare_packages(args) -> dict:
    """Install the bundle into a temporary folder when a listed package is missing; returns what was done."""
    missing = missing_distributions(bundle_distributions())
    info = {"missing_before": missing, "installed": False}
    if not missing:
        return info
    start = time.perf_counter()
    site = Path(tempfile.mkdtemp(prefix="gpu_check_site_"))
    info["method"] = install_wheels(args.bundle / "wheels", site)
    sys.path.insert(0, str(site))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    importlib.invalidate_caches()
    info |= {"installed": True, "site": str(site), "seconds": time.perf_counter() - start}
    info["wheels"] = sorted(p.name for p in (args.bundle / "wheels").glob("*.whl"))
    info["still_missing"] = missing_distributions(bundle_distributions())
    return info


##########################
# running the steps
##########################


def run_step(name: str, args, limit: float) -> dict:
    """Run one step in a worker subprocess; its rows are kept even when it fails or runs out of time."""
    command = [sys.executable, *_interpreter_flags(), str(Path(__file__).resolve()), "--worker", name]
    command += ["--data-dir", str(args.data_dir), "--steps", str(args.steps), "--batch-size", str(args.batch_size)]
    command += ["--stage-seconds", str(stage_seconds(limit, args))]
    if args.dry_run:
        command.append("--dry-run")
    env = dict(os.environ)
    if args.dry_run and name == "soft_dtw":
        env["NUMBA_ENABLE_CUDASIM"] = "1"  # the add-on's CUDA kernel, run by numba's simulator on CPU
    rows: list[dict] = []
    stderr: list[str] = []
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    def read_rows():
        for line in process.stdout:
            if line.startswith(ROW_MARK):
                rows.append(json.loads(line[len(ROW_MARK) :]))
                print(f"  {format_row(rows[-1])}", flush=True)

    def read_stderr():
        for line in process.stderr:
            stderr.append(line.rstrip())
            del stderr[:-60]

    readers = [threading.Thread(target=read_rows, daemon=True), threading.Thread(target=read_stderr, daemon=True)]
    for reader in readers:
        reader.start()
    try:
        returncode = process.wait(timeout=limit)
        status, error = ("ok", None) if returncode == 0 else ("failed", _error_line(stderr, returncode))
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        status, error = "timeout", f"killed after its time limit of {limit:g} s"
    for reader in readers:
        reader.join(timeout=10)
    result = {"status": status, "seconds": time.perf_counter() - start, "time_limit_s": limit, "rows": rows}
    if error:
        result |= {"error": error, "stderr_tail": stderr[-30:]}
    return result


def stage_seconds(limit: float, args) -> float:
    """Time share of each training stage (VITS, warm-up, main, tuning, plus half a share for the memory init)."""
    if args.dry_run:
        return 1e9  # tiny sizes: the step counts decide
    return max(5.0, (limit - TRAIN_SETUP_SECONDS) / 4.5)


def _error_line(stderr: list[str], returncode: int) -> str:
    """The exception of a worker's traceback with its message (which may span lines), else its last line."""
    lines = [line.strip() for line in stderr if line.strip()]
    for index in range(len(lines) - 1, -1, -1):
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b", lines[index]):
            return " ".join(lines[index:])[:500]
    return (lines[-1] if lines else f"exit status {returncode}")[:500]


def format_row(row: dict) -> str:
    parts = [f"{row.get('step')}: {row.get('case')}: {row.get('status')}"]
    for key, unit in (("steps", " steps"), ("time_s", " s"), ("peak_mib", " MiB")):
        if row.get(key) is not None:
            parts.append(f"{_cell(row[key])}{unit}")
    if row.get("vs_reference") is not None:
        parts.append(f"x{_cell(row['vs_reference'])} vs reference")
    if row.get("detail"):
        parts.append(str(row["detail"]))
    return ", ".join(parts)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def markdown(results: dict) -> str:
    """The rows of every step as one table; a step that failed or timed out ends with a row giving the reason."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for name, step in results["steps"].items():
        rows = list(step["rows"])
        if step["status"] != "ok" or not rows:
            rows.append({"step": name, "case": "(step)", "status": step["status"], "detail": step.get("error")})
        for row in rows:
            lines.append("| " + " | ".join(_cell(row.get(c)).replace("|", "/") for c in COLUMNS) + " |")
    notes = [
        "",
        "`vs_reference`: soft_dtw = CUDA time / CPU time of the soft-DTW forward+backward; train = step time / VITS "
        "step time (same batch, same precision); rtf = NaturalSpeech RTF / VITS RTF. `peak_mib`: peak CUDA memory "
        "allocated in that stage (dry run: the process's peak RSS).",
    ]
    return "\n".join(lines + notes)


def environment_info(args, packages: dict) -> dict:
    import torch
    from common import environment

    info = environment()
    info["cuda_available"] = torch.cuda.is_available()
    if info["cuda_available"]:
        props = torch.cuda.get_device_properties(0)
        info |= {
            "gpu": props.name,
            "gpu_memory_gib": props.total_memory / 2**30,
            "compute_capability": f"{props.major}.{props.minor}",
            "cuda_runtime": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            # fp32 rows run with these defaults: cuDNN convolutions in TF32, matmuls in full fp32
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        }
    bundled_commit = args.bundle / "COMMIT"  # the tree may travel without its .git folder
    if not info.get("git_commit") and bundled_commit.is_file() and bundled_commit.read_text(encoding="utf-8").strip():
        info["git_commit"] = bundled_commit.read_text(encoding="utf-8").strip() + " (when the bundle was made)"
    with contextlib.suppress(Exception):
        import numba

        info["numba"] = numba.__version__
        if info["cuda_available"]:
            from numba import cuda

            info["numba_cuda_available"] = cuda.is_available()
    toolkit = importlib.util.find_spec("TTS")
    info["toolkit_location"] = toolkit.origin if toolkit else None  # the bundle's copy or this environment's
    info["packages"] = packages
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="every step on CPU at tiny sizes (tests the script)")
    parser.add_argument("--only", nargs="+", choices=STEPS, default=list(STEPS), help="run only these steps")
    parser.add_argument("--out-dir", type=Path, help="results folder (default: benchmarks/results)")
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE, help="folder `make gpu-bundle` wrote")
    parser.add_argument("--data-dir", type=Path, help="LJSpeech-format clips (default: the bundle's, else shared)")
    parser.add_argument("--steps", type=int, help="timed training steps per stage (default 100; dry run 1)")
    parser.add_argument("--batch-size", type=int, help="training batch (default 16; dry run 2)")
    parser.add_argument("--stage-seconds", type=float, help=argparse.SUPPRESS)
    parser.add_argument(
        "--time-limit", action="append", default=[], metavar="STEP=SECONDS", help="override a step's time limit"
    )
    parser.add_argument("--worker", choices=STEPS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.steps = args.steps or (1 if args.dry_run else 100)
    args.batch_size = args.batch_size or (2 if args.dry_run else 16)
    if args.data_dir is None:
        bundled = args.bundle / "ljspeech"
        args.data_dir = bundled if bundled.is_dir() else ROOT.parent / "shared" / "data" / "ljspeech"
    if args.worker:
        WORKERS[args.worker](args)
        return 0

    try:
        import torch
    except ImportError:
        print("gpu_check: torch is not installed here: nothing to check.")
        return 0
    if not args.dry_run and not torch.cuda.is_available():
        print(
            f"gpu_check: no CUDA device (torch {torch.__version__}): nothing to measure here; run it on a GPU machine "
            "(`--dry-run` tests the script on CPU)."
        )
        return 0

    limits = {name: (DRY_RUN_TIME_LIMIT if args.dry_run else TIME_LIMITS[name]) for name in STEPS}
    for item in args.time_limit:
        name, _, seconds = item.partition("=")
        if name not in limits:
            parser.error(f"--time-limit: unknown step {name!r} (one of {', '.join(STEPS)})")
        limits[name] = float(seconds)
    start = time.perf_counter()
    print(f"gpu_check{' (dry run: CPU, tiny sizes)' if args.dry_run else ''}: steps {', '.join(args.only)}", flush=True)
    try:
        packages = prepare_packages(args)
    except (OSError, RuntimeError) as error:
        print(f"gpu_check: cannot install the packages this machine lacks: {error}")
        return 1
    if packages["installed"]:
        print(f"installed {len(packages['wheels'])} bundled wheels in {packages['seconds']:.0f} s", flush=True)
    sys.path.insert(0, str(HERE))
    results = {"environment": environment_info(args, packages), "settings": _settings(args, limits), "steps": {}}
    for name in args.only:
        print(f"[{name}] (time limit {limits[name]:g} s)", flush=True)
        results["steps"][name] = run_step(name, args, limits[name])
        step = results["steps"][name]
        print(f"[{name}] {step['status']} in {step['seconds']:.0f} s {step.get('error') or ''}", flush=True)
    results["total_seconds"] = time.perf_counter() - start
    if packages.get("site"):
        shutil.rmtree(packages["site"], ignore_errors=True)

    steps = results["steps"].values()
    # a step passes when it ran to its end and every row it wrote is "ok" (no FAIL: mismatch, non-finite loss)
    results["passed"] = all(step["status"] == "ok" and all(r["status"] == "ok" for r in step["rows"]) for step in steps)
    stem = "gpu_check_dry_run" if args.dry_run else "gpu_check"
    out_dir = args.out_dir or HERE / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.json").write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    table = markdown(results)
    env = results["environment"]
    title = f"GPU check on {env.get('gpu', 'CPU (dry run)')}, torch {env['torch']}, {results['total_seconds']:.0f} s"
    (out_dir / f"{stem}.md").write_text(f"# {title}\n\n{table}\n", encoding="utf-8")
    print(f"\n{title}\n\n{table}\n\nwrote {out_dir / stem}.json|md")
    return 0 if results["passed"] else 1


def _settings(args, limits: dict) -> dict:
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "worker"}
    return settings | {"time_limits_s": limits}


##########################
# workers (one step each, in a fresh process; every result is one `emit`ted row)
##########################


def emit(**row) -> None:
    print(ROW_MARK + json.dumps(row, default=float), flush=True)


def _worker_setup(args):
    """Import path of the add-on (this checkout), the device, and a synchronising clock."""
    import logging

    import torch
    from common import install_source_finder

    install_source_finder()
    logging.disable(logging.WARNING)
    device = torch.device("cpu" if args.dry_run else "cuda")

    def clock() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    return torch, device, clock


def _peak_mib(torch, device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    from common import max_rss_bytes

    return max_rss_bytes() / 2**20


def _reset_peak(torch, device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _relative_error(value, reference) -> float:
    """max |value - reference| / max |reference| (0 when both are all zeros)."""
    scale = float(reference.abs().max())
    difference = float((value.double() - reference.double()).abs().max())
    return difference / scale if scale > 0 else difference


def worker_soft_dtw(args) -> None:
    torch, device, clock = _worker_setup(args)
    from soft_dtw_benchmark import make_inputs

    from TTS.tts.layers.naturalspeech.gaussian_kl import gaussian_kl_matrix
    from TTS.tts.layers.naturalspeech.soft_dtw import soft_dtw

    # the simulator runs every CUDA thread in Python: tiny shapes there
    if args.dry_run:
        shapes, channels, reps = [(2, 12, 12), (2, 20, 20)], 8, 1
    else:
        shapes, channels, reps = [(16, 800, 800), (16, 1500, 1500)], 192, 3
    gamma, warp = 0.01, 0.07 * channels  # the paper's γ and per-channel warp, summed over the KL's channels
    generator = torch.Generator().manual_seed(0)

    def soft_dtw_and_gradient(cost, lengths_n, lengths_m, weights, backend):
        """Values, d(Σ weights·values)/d cost and the time of both, on one backend."""
        cost = cost.detach().requires_grad_(True)
        start = clock()
        values = soft_dtw(cost, lengths_n, lengths_m, gamma=gamma, warp=warp, backend=backend)
        (values * weights).sum().backward()
        return values.detach(), cost.grad, clock() - start

    start = clock()
    tiny_cost = gaussian_kl_matrix(*[x.to(device) for x in make_inputs(2, 6, 5, channels)]).detach()
    ones = torch.ones(2, dtype=torch.long)
    soft_dtw_and_gradient(tiny_cost, ones * 6, ones * 5, torch.ones(2, device=device), "cuda")  # numba compiles
    emit(step="soft_dtw", case="kernel compile + first call", status="ok", time_s=clock() - start)

    for batch, n, m in shapes:
        # unequal lengths: each item its own N_b and M_b, the longest at the full size in each direction
        lengths_n = torch.randint(n // 2, n + 1, (batch,), generator=generator)
        lengths_m = torch.randint(m // 2, m + 1, (batch,), generator=generator)
        lengths_n[0], lengths_m[1] = n, m
        weights = torch.rand(batch, generator=generator) + 0.5  # a non-uniform upstream gradient
        inputs = make_inputs(batch, n, m, channels)
        errors, times = {}, {}
        for dtype in (torch.float64, torch.float32):
            name = str(dtype).removeprefix("torch.")
            cost = gaussian_kl_matrix(*[x.detach().to(device, dtype) for x in inputs]).detach()  # [B, N, M]
            on_gpu = soft_dtw_and_gradient(cost, lengths_n, lengths_m, weights.to(device, dtype), "cuda")
            on_cpu = soft_dtw_and_gradient(cost.cpu(), lengths_n, lengths_m, weights.to(dtype), "cpu")
            errors[f"value_{name}"] = _relative_error(on_gpu[0].cpu(), on_cpu[0])
            errors[f"grad_{name}"] = _relative_error(on_gpu[1].cpu(), on_cpu[1])
            times[f"cuda_{name}"], times[f"cpu_{name}"] = on_gpu[2], on_cpu[2]
            del cost, on_gpu, on_cpu
        path_s, path_peak_mib = _time_kl_path(torch, device, clock, inputs, lengths_n, lengths_m, gamma, warp, reps)
        worst = max(errors.values())
        emit(
            step="soft_dtw",
            case=f"B={batch} N={n} M={m} (N_b {int(lengths_n.min())}-{n}, M_b {int(lengths_m.min())}-{m})",
            status="ok" if worst <= TOLERANCE else f"FAIL: relative error {worst:.2g} > {TOLERANCE:g}",
            time_s=path_s,
            peak_mib=path_peak_mib,
            vs_reference=times["cuda_float32"] / times["cpu_float32"],
            detail="CUDA vs CPU max relative error: "
            + ", ".join(f"{key} {value:.1e}" for key, value in errors.items())
            + f"; soft-DTW fwd+bwd (float32) CUDA {times['cuda_float32']:.3g} s, CPU {times['cpu_float32']:.3g} s"
            + "; time_s/peak_mib: float32 KL cost + soft-DTW fwd+bwd",
            errors=errors,
            backend_times_s=times,
            lengths_n=lengths_n.tolist(),
            lengths_m=lengths_m.tolist(),
        )


def _time_kl_path(torch, device, clock, inputs, lengths_n, lengths_m, gamma, warp, reps) -> tuple[float, float]:
    """Median time and peak extra memory of the model's path: float32 KL cost matrix + soft-DTW forward/backward."""
    from TTS.tts.layers.naturalspeech.gaussian_kl import gaussian_kl_matrix
    from TTS.tts.layers.naturalspeech.soft_dtw import soft_dtw

    leaves = [x.detach().to(device).requires_grad_(True) for x in inputs]
    lengths_n, lengths_m = lengths_n.to(device), lengths_m.to(device)

    def once() -> float:
        start = clock()
        cost = gaussian_kl_matrix(*leaves)  # [B, N, M]
        soft_dtw(cost, lengths_n, lengths_m, gamma=gamma, warp=warp).sum().backward()
        for leaf in leaves:
            leaf.grad = None
        return clock() - start

    once()
    _reset_peak(torch, device)
    before = torch.cuda.memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0
    times = [once() for _ in range(reps)]
    return statistics.median(times), _peak_mib(torch, device) - before


def _character_config(config, data_dir: Path, batch_size: int):
    """Characters instead of phonemes (no espeak-ng); the LJSpeech formatter over `data_dir`."""
    from TTS.tts.configs.shared_configs import BaseDatasetConfig

    config.datasets = [BaseDatasetConfig(formatter="ljspeech", path=str(data_dir), meta_file_train="metadata.csv")]
    config.use_phonemes = False
    config.phoneme_cache_path = None
    config.text_cleaner = "english_cleaners"
    config.batch_size = config.eval_batch_size = batch_size
    config.num_loader_workers = config.num_eval_loader_workers = 0
    return config


def _soundfile_batches(model, config, samples: list[dict], batch_size: int) -> list[dict]:
    """Raw batches of `samples` tokenized by `model`'s tokenizer, audio read by the add-on's dataset (soundfile).

    The toolkit's `VitsDataset` reads audio with `torchaudio.load`, i.e. torchcodec and FFmpeg; the add-on's
    `NaturalspeechDataset` is that dataset with soundfile reading, so VITS gets its batches from it too.
    """
    from torch.utils.data import DataLoader

    from TTS.tts.layers.naturalspeech.runtime.dataset import NaturalspeechDataset

    dataset = NaturalspeechDataset(
        model_args=model.args,
        samples=samples,
        batch_group_size=0,
        min_text_len=config.min_text_len,
        max_text_len=config.max_text_len,
        min_audio_len=config.min_audio_len,
        max_audio_len=config.max_audio_len,
        phoneme_cache_path=None,
        tokenizer=model.tokenizer,
        sample_rate=config.audio.sample_rate,
    )
    dataset.preprocess_samples()
    return list(DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=dataset.collate_fn))


def _on_device(model, batch: dict, device) -> dict:
    """What the Trainer does with a raw batch: `format_batch`, move tensors, `format_batch_on_device`."""
    batch = model.format_batch(dict(batch))
    batch = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
    return model.format_batch_on_device(batch)


def worker_train(args, precision: str) -> None:
    """VITS, then NaturalSpeech through its four stages, in this one process (models of the same size)."""
    torch, device, clock = _worker_setup(args)
    from common import build_configs

    from TTS.tts.datasets import load_tts_samples
    from TTS.tts.models.naturalspeech import Naturalspeech
    from TTS.tts.models.vits import Vits

    if not (args.data_dir / "metadata.csv").is_file():
        msg = f"no LJSpeech-format clips at {args.data_dir} (metadata.csv): pass --data-dir or run `make gpu-bundle`"
        raise FileNotFoundError(msg)
    size = "tiny" if args.dry_run else "paper"
    ns_config, vits_config = build_configs(size)
    for config in (ns_config, vits_config):
        _character_config(config, args.data_dir, args.batch_size)
        if args.dry_run:  # the multi-period discriminator's 2-D convolutions are most of a tiny model's CPU step
            config.model_args.periods_multi_period_discriminator = []
    samples, _ = load_tts_samples(ns_config, eval_split=False)
    if args.dry_run:  # two batches of the shortest clips
        samples = sorted(samples, key=lambda s: Path(s["audio_file"]).stat().st_size)[: 2 * args.batch_size]
    trainer = _StageTrainer(torch, device, clock, args, precision, size)

    torch.manual_seed(0)
    vits = Vits(vits_config).to(device).train()
    batches = [_on_device(vits, b, device) for b in _soundfile_batches(vits, vits_config, samples, args.batch_size)]
    trainer.run("VITS (reference)", vits, vits_config, batches)
    trainer.reference_step_s = trainer.last_step_s
    del vits, batches
    if device.type == "cuda":
        torch.cuda.empty_cache()

    model = Naturalspeech(ns_config).to(device).train()
    raw_batches = list(model.get_data_loader(ns_config, samples=samples, verbose=False))
    batches = [_on_device(model, b, device) for b in raw_batches]
    model.step.fill_(0)
    trainer.run("NaturalSpeech warm-up", model, ns_config, batches)

    model.step.fill_(ns_config.warmup_steps)
    _reset_peak(torch, device)
    start = clock()
    model.init_memory_bank(raw_batches)  # k-means over the posterior latents of the warmed-up model
    emit(
        step=f"train_{precision}",
        case=f"NaturalSpeech memory-bank init ({len(samples)} clips)",
        status="ok" if bool(model.memory_initialized) else "FAIL: memory bank not initialised",
        time_s=clock() - start,
        peak_mib=_peak_mib(torch, device),
    )
    trainer.run("NaturalSpeech main (soft-DTW)", model, ns_config, batches)
    model.step.fill_(ns_config.tuning_start_step)
    trainer.run("NaturalSpeech tuning", model, ns_config, batches)


class _StageTrainer:
    """Trains a model for one stage as the Trainer would and emits its row: steps, step time, memory, finiteness."""

    def __init__(self, torch, device, clock, args, precision: str, size: str):
        self.torch, self.device, self.clock, self.args = torch, device, clock, args
        self.precision, self.size = precision, size
        self.untimed = 1 if args.dry_run else 2  # allocator, cuDNN algorithm search, numba compilation
        self.reference_step_s: float | None = None
        self.last_step_s: float | None = None

    def run(self, name: str, model, config, batches: list[dict]) -> None:
        torch, args = self.torch, self.args
        criteria, optimizers = model.get_criterion(), model.get_optimizer()
        clip = config.grad_clip if isinstance(config.grad_clip, list) else [config.grad_clip] * 2
        autocast = torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")
        _reset_peak(torch, self.device)
        times, non_finite, losses = [], 0, []
        deadline = time.perf_counter() + args.stage_seconds
        for index in range(self.untimed + args.steps):
            start = self.clock()
            batch = batches[index % len(batches)]
            finite, loss = _training_step(torch, model, batch, criteria, optimizers, clip, autocast)
            elapsed = self.clock() - start
            non_finite += not finite
            losses += [loss] if loss is not None else []
            if index >= self.untimed:
                times.append(elapsed)
                if time.perf_counter() > deadline:
                    break
        self.last_step_s = step_s = statistics.median(times) if times else None
        reference = self.reference_step_s
        emit(
            step=f"train_{self.precision}",
            case=f"{name} ({self.size} size, batch {args.batch_size}, {self.precision})",
            status="ok" if non_finite == 0 else f"FAIL: {non_finite} steps with a non-finite loss",
            steps=len(times),
            time_s=step_s,
            peak_mib=_peak_mib(torch, self.device),
            vs_reference=step_s / reference if step_s and reference else None,
            detail=f"generator loss {losses[0]:.4g} -> {losses[-1]:.4g}" if losses else "no finite loss",
            non_finite_steps=non_finite,
            untimed_steps=self.untimed,
            step_times_s=times,
            skipped_by_model=getattr(model, "num_skipped_steps", None),
        )


def _training_step(torch, model, batch, criteria, optimizers, grad_clip, autocast) -> tuple[bool, float | None]:
    """Discriminator then generator step, as the Trainer does them; (all losses finite, generator loss)."""
    finite, generator_loss = True, None
    for index, optimizer in enumerate(optimizers):
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            _, loss_dict = model.train_step(batch, criteria[index], index)
        loss = loss_dict.get("loss")  # NaturalSpeech returns {} for a non-finite loss (the Trainer then skips)
        if loss is None or not bool(torch.isfinite(loss).all()):
            finite = False
            continue
        loss.backward()
        if hasattr(model, "before_gradient_clipping"):
            model.before_gradient_clipping()
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(parameters, grad_clip[index])
        optimizer.step()
        if index == 1:
            generator_loss = float(loss.detach())
    return finite, generator_loss


def worker_rtf(args) -> None:
    torch, device, clock = _worker_setup(args)
    from synthesis_rtf import build_models

    size, lengths, reps = ("tiny", [8, 16], 1) if args.dry_run else ("paper", [20, 80, 200], 10)
    naturalspeech, vits = build_models(size)
    naturalspeech, vits = naturalspeech.to(device), vits.to(device)
    hop, sample_rate = naturalspeech.config.audio.hop_length, naturalspeech.config.audio.sample_rate
    vocab = min(naturalspeech.phoneme_encoder.emb.num_embeddings, vits.text_encoder.emb.num_embeddings)
    generator = torch.Generator().manual_seed(0)
    frames_per_token = 4
    for length in lengths:
        tokens = torch.randint(1, vocab, (1, length), generator=generator).to(device)
        durations = torch.full((1, length), float(frames_per_token), device=device)
        audio_s = length * frames_per_token * hop / sample_rate

        def synthesize(model, tokens=tokens, durations=durations) -> float:
            torch.manual_seed(1234)
            start = clock()
            with torch.inference_mode():
                model.inference(tokens, aux_input={"durations": durations})
            return clock() - start

        times = {"naturalspeech": [], "vits": []}
        for _ in range(2):  # warm-up: cuDNN algorithm search, allocator
            synthesize(naturalspeech), synthesize(vits)
        _reset_peak(torch, device)
        for rep in range(reps):  # the systems take turns, the order reversed every other repetition
            for name in ("naturalspeech", "vits") if rep % 2 == 0 else ("vits", "naturalspeech"):
                times[name].append(synthesize(naturalspeech if name == "naturalspeech" else vits))
        rtf = {name: statistics.median(values) / audio_s for name, values in times.items()}
        emit(
            step="rtf",
            case=f"{length} tokens, {length * frames_per_token} frames ({audio_s:.2f} s audio), {size} size",
            status="ok",
            steps=reps,
            time_s=statistics.median(times["naturalspeech"]),
            peak_mib=_peak_mib(torch, device),
            vs_reference=rtf["naturalspeech"] / rtf["vits"],
            detail=f"RTF NaturalSpeech {rtf['naturalspeech']:.3g}, VITS {rtf['vits']:.3g} "
            f"(paper, V100: {PAPER_RTF['naturalspeech']} vs {PAPER_RTF['vits']})",
            rtf=rtf,
            times_s=times,
        )


WORKERS = {
    "soft_dtw": worker_soft_dtw,
    "train_fp32": lambda args: worker_train(args, "fp32"),
    "train_bf16": lambda args: worker_train(args, "bf16"),
    "rtf": worker_rtf,
}


if __name__ == "__main__":
    sys.exit(main())
