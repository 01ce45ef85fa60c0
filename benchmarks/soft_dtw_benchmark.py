"""Benchmark: frame-pair Gaussian KL cost + soft-DTW forward + backward on CPU (NaturalSpeech, paper Section 3.3).

Compares, at the training shape B = 16, N = M = 800, D = 192 (γ = 0.01, warp 0.07·D):

- `ours`: `gaussian_kl_matrix` (batched matmuls) + `TTS.tts.layers.naturalspeech.soft_dtw` (numba, float64 table);
- `naive`: the same cost + a PyTorch soft-DTW over anti-diagonals with autograd (float64);
- `pysdtw`: the same cost + `pysdtw`'s numba CPU soft-DTW (no warp penalty, so run with warp 0), if installed.

Each method runs in a fresh subprocess: wall time is the median (and the minimum, least disturbed by other load)
over `--reps` runs after a warm-up on a tiny shape (numba compilation is not counted); peak extra memory is the
RSS high-water mark of the first timed run above the RSS after the inputs were built (a 1 ms psutil sampler plus
`getrusage` maxrss). The naive method is also run at a smaller size (`--small-n`) where every method fits, and
ratios are reported there; `--naive-max-n` skips it at sizes where it takes minutes and gigabytes.

Usage: python benchmarks/soft_dtw_benchmark.py [--out results.json]
"""

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from common import PeakRssSampler, header, install_source_finder

METHODS = ("ours", "naive", "pysdtw")
TARGET_SECONDS = 1.5
TARGET_BYTES = 1 << 30


def expanded_kl_matrix(sample, log_std_sample, mean_target, log_std_target) -> torch.Tensor:
    """Fallback cost builder: Σ_c [lt_m - ls_n - 1/2 + 1/2 (x_n - μ_m)² e^{-2 lt_m}] as two batched matmuls."""
    precision = torch.exp(-2.0 * log_std_target)  # [B, D, M]
    target_term = (log_std_target + 0.5 * mean_target.square() * precision).sum(1)  # [B, M]
    sample_term = (log_std_sample + 0.5).sum(1)  # [B, N]
    cross = 0.5 * sample.square().transpose(1, 2) @ precision - sample.transpose(1, 2) @ (mean_target * precision)
    return cross + target_term[:, None, :] - sample_term[:, :, None]  # [B, N, M]


def cost_builder():
    try:
        from TTS.tts.layers.naturalspeech.gaussian_kl import gaussian_kl_matrix

        return gaussian_kl_matrix, "gaussian_kl.gaussian_kl_matrix"
    except ImportError:
        return expanded_kl_matrix, "benchmark's expanded_kl_matrix"


def naive_soft_dtw(cost: torch.Tensor, gamma: float, warp: float) -> torch.Tensor:
    """Reference soft-DTW in PyTorch: one autograd step per anti-diagonal, full lengths, float64.

    diagonal_d[i] holds R[i, d - i]; unreachable cells hold a large finite number (inf would give nan gradients
    through logsumexp).
    """
    cost = cost.double()
    batch, n, m = cost.shape
    big = 1e30
    rows = torch.arange(n + 1)
    before = torch.full((batch, n + 1), big, dtype=torch.float64)
    before[:, 0] = 0.0  # diagonal 0: R[0, 0]
    last = torch.full((batch, n + 1), big, dtype=torch.float64)  # diagonal 1: R[0, 1], R[1, 0]
    for d in range(2, n + m + 1):
        cols = d - rows[1:]
        valid = (cols >= 1) & (cols <= m)
        step = cost[:, rows[1:] - 1, (cols - 1).clamp(0, m - 1)]  # C[i, d - i], [B, N]
        options = torch.stack([before[:, :-1], last[:, :-1] + warp, last[:, 1:] + warp])  # [3, B, N]
        smooth = -gamma * torch.logsumexp(-options / gamma, dim=0)
        inner = torch.where(valid, step + smooth, torch.full_like(smooth, big))
        before, last = last, torch.cat([torch.full((batch, 1), big, dtype=torch.float64), inner], dim=1)
    return last[:, n]


def run_once(method: str, builder, inputs, gamma: float, warp: float) -> dict[str, float]:
    """Cost build + soft-DTW forward + backward to the KL inputs; returns the phase times in seconds."""
    start = time.perf_counter()
    cost = builder(*inputs)  # [B, N, M]
    built = time.perf_counter()
    lengths = torch.full((cost.shape[0],), cost.shape[1]), torch.full((cost.shape[0],), cost.shape[2])
    if method == "ours":
        from TTS.tts.layers.naturalspeech.soft_dtw import soft_dtw

        values = soft_dtw(cost, *lengths, gamma=gamma, warp=warp)
    elif method == "naive":
        values = naive_soft_dtw(cost, gamma, warp)
    else:
        from pysdtw.sdtw_cpu import SoftDTWcpu

        values = SoftDTWcpu.apply(cost, torch.stack(lengths, dim=1), gamma, 0)
    forward = time.perf_counter()
    values.sum().backward()
    end = time.perf_counter()
    for x in inputs:
        x.grad = None
    return {"build_s": built - start, "forward_s": forward - built, "backward_s": end - forward, "total_s": end - start}


def make_inputs(batch: int, n: int, m: int, channels: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    sample = torch.randn(batch, channels, n, generator=generator)
    log_std_sample = -0.5 + 0.2 * torch.randn(batch, channels, n, generator=generator)
    mean_target = torch.randn(batch, channels, m, generator=generator)
    log_std_target = -0.5 + 0.2 * torch.randn(batch, channels, m, generator=generator)
    return [x.requires_grad_(True) for x in (sample, log_std_sample, mean_target, log_std_target)]


def worker(args) -> None:
    """One method at one size, in this (fresh) process; prints one JSON line."""
    install_source_finder()
    builder, builder_name = cost_builder()
    warp = 0.0 if args.method == "pysdtw" else args.warp_per_channel * args.channels
    run_once(args.method, builder, make_inputs(2, 16, 12, args.channels), args.gamma, warp)  # compile / load caches
    inputs = make_inputs(args.batch, args.n, args.m, args.channels)
    gc.collect()
    with PeakRssSampler(interval=0.001) as sampler:  # 1 ms psutil sampling plus getrusage maxrss
        runs = [run_once(args.method, builder, inputs, args.gamma, warp)]
    runs += [run_once(args.method, builder, inputs, args.gamma, warp) for _ in range(args.reps - 1)]
    times = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    times["min_total_s"] = min(run["total_s"] for run in runs)  # least disturbed by other load on the machine
    print(json.dumps({"method": args.method, "warp": warp, "peak_extra_bytes": sampler.peak_extra, **times}))
    print(json.dumps({"cost_builder": builder_name}), file=sys.stderr)


def measure(method: str, size: tuple[int, int, int, int], args) -> dict:
    batch, n, m, channels = size
    command = [sys.executable, __file__, "--worker", method, "--batch", str(batch), "--n", str(n), "--m", str(m)]
    command += ["--channels", str(channels), "--reps", str(args.reps), "--gamma", str(args.gamma)]
    command += ["--warp-per-channel", str(args.warp_per_channel)]
    row = {"method": method, "batch": batch, "n": n, "m": m, "channels": channels}
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout, check=False)
    except subprocess.TimeoutExpired:
        return {**row, "error": f"timeout after {args.timeout} s"}
    if result.returncode != 0:
        return {**row, "error": (result.stderr.strip().splitlines() or ["failed"])[-1]}
    return {**row, **json.loads(result.stdout.strip().splitlines()[-1])}


def print_table(rows: list[dict]) -> None:
    header = (
        f"{'method':<8}{'B×N×M×D':>18}{'warp':>7}{'build s':>9}{'fwd s':>7}{'bwd s':>7}{'total s':>9}{'min s':>7}"
        f"{'peak MB':>9}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        shape = f"{row['batch']}×{row['n']}×{row['m']}×{row['channels']}"
        if "error" in row:
            print(f"{row['method']:<8}{shape:>18}  {row['error']}")
            continue
        times = f"{row['build_s']:>9.3f}{row['forward_s']:>7.3f}{row['backward_s']:>7.3f}"
        times += f"{row['total_s']:>9.3f}{row['min_total_s']:>7.3f}"
        print(f"{row['method']:<8}{shape:>18}{row['warp']:>7.1f}{times}{row['peak_extra_bytes'] / 2**20:>9.0f}")


def ratios(rows: list[dict], size: tuple[int, int, int, int]) -> dict[str, dict[str, float]]:
    """Time and memory of every method relative to `ours` at `size`, where all of them ran."""
    at_size = {r["method"]: r for r in rows if (r["batch"], r["n"], r["m"], r["channels"]) == size and "error" not in r}
    if "ours" not in at_size:
        return {}
    ours = at_size["ours"]
    return {
        method: {
            "time_ratio": row["total_s"] / ours["total_s"],
            "memory_ratio": row["peak_extra_bytes"] / max(ours["peak_extra_bytes"], 1),
        }
        for method, row in at_size.items()
        if method != "ours"
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--n", type=int, default=800)
    parser.add_argument("--m", type=int, default=800)
    parser.add_argument("--channels", type=int, default=192)
    parser.add_argument("--small-n", type=int, default=200, help="N = M of the size where every method runs")
    parser.add_argument("--gamma", type=float, default=0.01)
    parser.add_argument("--warp-per-channel", type=float, default=0.07)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per method and size")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--naive-max-n", type=int, help="skip the naive method above this N (it is very slow)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--worker", choices=METHODS, dest="method", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.method:
        worker(args)
        return

    print(header("soft-DTW benchmark"))
    print(f"γ = {args.gamma}, warp = {args.warp_per_channel}·D, reps = {args.reps} (median)\n")
    full = (args.batch, args.n, args.m, args.channels)
    small = (args.batch, args.small_n, args.small_n, args.channels)
    rows = [
        {"method": method, "batch": size[0], "n": size[1], "m": size[2], "channels": size[3], "error": "skipped"}
        if method == "naive" and args.naive_max_n is not None and size[1] > args.naive_max_n
        else measure(method, size, args)
        for size in (full, small)
        for method in args.methods
    ]
    print_table(rows)
    ours = next((r for r in rows if r["method"] == "ours" and "error" not in r), None)
    summary = {
        "cpu_cores": os.cpu_count(),
        "torch": torch.__version__,
        "gamma": args.gamma,
        "warp_per_channel": args.warp_per_channel,
        "targets": {"total_s": TARGET_SECONDS, "peak_extra_bytes": TARGET_BYTES},
        "ours_meets_targets": bool(
            ours and ours["total_s"] < TARGET_SECONDS and ours["peak_extra_bytes"] < TARGET_BYTES
        ),
        "ratios_vs_ours": {"full": ratios(rows, full), "small": ratios(rows, small)},
        "results": rows,
    }
    print(f"\nratios to ours (time, memory): {json.dumps(summary['ratios_vs_ours'])}")
    print(f"ours meets targets (< {TARGET_SECONDS} s, < 1 GB) at full size: {summary['ours_meets_targets']}")
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
