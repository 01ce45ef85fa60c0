"""Shared helpers of the NaturalSpeech benchmarks: environment header, alternating timing loop, peak RSS, output files.

Every benchmark compares NaturalSpeech with the toolkit's `Vits` measured in the same run, the two systems
alternating repetition by repetition, and reports medians and ratios: absolute times on a shared 2-core machine are
noise, ratios measured side by side are not.

The scripts import this module as `common` (their own folder is first on `sys.path` when run as a script).
"""

import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def install_source_finder() -> None:
    """Make `TTS.tts.layers.naturalspeech` importable from this checkout (as `tests/conftest.py` does)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "naturalspeech_source_finder", ROOT / "build_backend/source_finder.py"
    )
    finder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(finder)
    finder.install(ROOT)


def environment() -> dict:
    """Machine and library versions recorded with every result file."""
    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = None
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit = ""
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    return {
        "cpu_cores": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "onnxruntime": ort_version,
        "python": platform.python_version(),
        "git_commit": commit,
        "load_average_1min": load,
    }


def run_record(args) -> dict:
    """The `environment` and `settings` (command-line arguments) every result file starts with."""
    return {
        "environment": environment(),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }


def header(title: str) -> str:
    """One line naming the benchmark, the cores, torch version and threads, and the current load."""
    env = environment()
    load = f", load {env['load_average_1min']:.1f}" if env["load_average_1min"] is not None else ""
    return (
        f"{title}: {env['cpu_cores']} CPU cores ({env['cpu']}), torch {env['torch']} ({env['torch_threads']} threads), "
        f"python {env['python']}{load}"
    )


def alternate(functions: dict[str, Callable[[], object]], reps: int, warmup: int = 1) -> dict[str, list[float]]:
    """Wall time of every function, the functions taking turns within each repetition.

    Each repetition runs every function once; the order is reversed every other repetition so that neither system
    always runs right after the other. Returns the `reps` times (seconds) of each function, in repetition order, so
    per-repetition ratios can be formed.
    """
    names = list(functions)
    for _ in range(warmup):
        for name in names:
            functions[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        for name in names if rep % 2 == 0 else reversed(names):
            start = time.perf_counter()
            functions[name]()
            times[name].append(time.perf_counter() - start)
    return times


def median(values: Iterable[float]) -> float:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def median_ratio(numerators: list[float], denominators: list[float]) -> float:
    """Median over repetitions of the per-repetition ratio (robust to load that changes between repetitions)."""
    return median(n / d for n, d in zip(numerators, denominators, strict=True) if d)


class PeakRssSampler:
    """Track the peak resident set size of this process in a background thread (a context manager).

    `interval` is the sampling period in seconds; on exit the high-water mark also takes the kernel's
    `getrusage` maxrss into account when it rose while sampling (it catches peaks shorter than the period).
    """

    def __init__(self, interval: float = 0.02):
        import psutil

        self.interval = interval
        self.process = psutil.Process()
        self.baseline = self.rss()
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        return self.process.memory_info().rss

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.interval)

    def __enter__(self) -> "PeakRssSampler":
        self._maxrss_before = max_rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())
        maxrss_after = max_rss_bytes()
        if maxrss_after > self._maxrss_before:
            self.peak = max(self.peak, maxrss_after)

    @property
    def peak_extra(self) -> int:
        """Peak RSS above the RSS when the sampler was created."""
        return self.peak - self.baseline


def max_rss_bytes() -> int:
    """High-water mark of this process' resident memory since it started (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_json_worker(command: list[str], timeout: float) -> dict:
    """Run a worker subprocess that prints one JSON object on its last stdout line; errors become `{"error": ...}`."""
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout} s"}
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        return {"error": (result.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(lines[-1])


def write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")


def write_csv(path: Path, rows: list[dict], columns: list[str] | None = None) -> None:
    """Rows as CSV; `columns` fixes the order (default: the keys of all rows in first-seen order)."""
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: _csv_value(row.get(key)) for key in columns})


def _csv_value(value):
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return value


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    """A GitHub markdown table of `columns` (floats with 3 significant digits)."""

    def cell(value) -> str:
        if value is None:
            return ""
        if isinstance(value, float):
            return f"{value:.3g}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


# Matched model sizes: the fields both `NaturalspeechArgs` and `VitsArgs` have take the same values, so the
# text encoder, posterior encoder, flow and HiFi-GAN decoder have the same shapes in both models. Keys are
# `VitsArgs` names; `matched_args` gives NaturalSpeech's phoneme encoder its own names (`VITS_TO_NATURALSPEECH`).
SIZES = {
    # the paper's configuration: `NaturalspeechConfig()` / `VitsConfig()` defaults (HiFi-GAN V1 decoder)
    "paper": {},
    # half the hidden size, a quarter of the decoder channels: for length sweeps and training steps on 2 cores
    "medium": {
        "hidden_channels": 96,
        "hidden_channels_ffn_text_encoder": 384,
        "num_layers_text_encoder": 4,
        "num_layers_posterior_encoder": 8,
        "num_layers_flow": 2,
        "upsample_initial_channel_decoder": 128,
    },
    # Piper "x-low"-like voice (about 6M inference parameters): hidden 96, 4 encoder layers, a 256-channel HiFi-GAN
    # V1 decoder upsampling 8·8·4 = hop 256; the size the learning benchmark trains on CPU budgets
    "small": {
        "hidden_channels": 96,
        "hidden_channels_ffn_text_encoder": 384,
        "num_layers_text_encoder": 4,
        "num_layers_posterior_encoder": 8,
        "num_layers_flow": 2,
        "upsample_initial_channel_decoder": 256,
        "upsample_rates_decoder": [8, 8, 4],
        "upsample_kernel_sizes_decoder": [16, 16, 8],
    },
    # smoke-test size (`--quick`)
    "tiny": {
        "hidden_channels": 16,
        "hidden_channels_ffn_text_encoder": 32,
        "num_layers_text_encoder": 1,
        "num_layers_posterior_encoder": 2,
        "num_layers_flow": 1,
        "upsample_initial_channel_decoder": 32,
        "resblock_kernel_sizes_decoder": [3],
        "resblock_dilation_sizes_decoder": [[1, 3, 5]],
        "periods_multi_period_discriminator": [2, 3],
        "spec_segment_size": 8,
    },
}
# the same text encoder field under another name: `VitsArgs` name -> `NaturalspeechArgs` name
VITS_TO_NATURALSPEECH = {
    "hidden_channels_ffn_text_encoder": "hidden_channels_ffn_phoneme_encoder",
    "num_heads_text_encoder": "num_heads_phoneme_encoder",
    "num_layers_text_encoder": "num_layers_phoneme_encoder",
    "kernel_size_text_encoder": "kernel_size_phoneme_encoder",
    "dropout_p_text_encoder": "dropout_p_phoneme_encoder",
}
# NaturalSpeech-only fields scaled with the size (the durator and the memory bank have no VITS counterpart)
NATURALSPEECH_ONLY = {
    "paper": {},
    "medium": {"hidden_channels_durator": 128},
    "small": {},  # the durator keeps its default 256 channels: NaturalSpeech's counterpart of VITS's duration model
    "tiny": {"hidden_channels_durator": 16, "memory_bank_size": 16, "memory_init_max_frames": 2000},
}


def matched_args(size: str) -> tuple[dict, dict]:
    """Keyword overrides of (`NaturalspeechArgs`, `VitsArgs`) for a named size."""
    shared = SIZES[size]
    naturalspeech = {VITS_TO_NATURALSPEECH.get(name, name): value for name, value in shared.items()}
    return {**naturalspeech, **NATURALSPEECH_ONLY[size]}, dict(shared)


def build_configs(size: str, **naturalspeech_overrides):
    """`NaturalspeechConfig` and `VitsConfig` of a matched size; extra keywords override `NaturalspeechArgs`."""
    from TTS.tts.configs.naturalspeech_config import NaturalspeechArgs, NaturalspeechConfig
    from TTS.tts.configs.vits_config import VitsArgs, VitsConfig

    ns_kwargs, vits_kwargs = matched_args(size)
    ns_args = NaturalspeechArgs(**{**ns_kwargs, **naturalspeech_overrides})
    vits_args = VitsArgs(**vits_kwargs)
    return NaturalspeechConfig(model_args=ns_args), VitsConfig(model_args=vits_args)


def parameter_count(module: torch.nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def add_common_arguments(parser) -> None:
    parser.add_argument("--quick", action="store_true", help="tiny setting for the smoke test")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR, help="where the JSON/CSV results go")


def python() -> str:
    return sys.executable
