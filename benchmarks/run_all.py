"""Run every NaturalSpeech benchmark and write `benchmarks/results/*.json|csv`, `rtf_vs_length.png` and `summary.md`.

Each benchmark runs as its own subprocess (fresh memory, its own torch threads):

1. `parameter_count.py` — inference parameters of the paper-size model vs the paper's 28.7M;
2. `synthesis_rtf.py` — paper-size NaturalSpeech vs VITS at 20, 80 and 200 tokens (all cores and 1 thread, eager,
   ONNX Runtime float32 and with the int8 decoder), then the `medium` matched size at 20/80/200 tokens (the length
   sweep of the figure);
3. `training_step.py` — step time and peak memory per stage vs VITS, `medium` size, batch 8;
4. `soft_dtw_benchmark.py` — B=16, N=M=800, D=192 (the naive DP only at N=200);
5. `memory_init_benchmark.py` — k-means memory-bank initialisation over 1M x 192 latents;
6. `onnx_int8_quality.py` — only with `--trained-run DIR`: int8 vs float32 ONNX quality and speed on that checkpoint.

    python benchmarks/run_all.py            # the full run (~30 min on 2 shared cores)
    python benchmarks/run_all.py --only int8_quality --trained-run demo_output/runs/<run>
    python benchmarks/run_all.py --quick    # tiny settings, seconds to a few minutes: checks the plumbing only
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import RESULTS_DIR, environment, header, markdown_table, write_csv, write_json

HERE = Path(__file__).resolve().parent
STEPS = ("parameters", "rtf_paper", "rtf_sweep", "training", "soft_dtw", "memory_init", "int8_quality")


def commands(out_dir: Path, quick: bool, reps: int, trained_run: Path | None = None) -> dict[str, list[str]]:
    steps = _commands(out_dir, quick, reps)
    if trained_run:
        sentences = ["--sentences", "2", "--threads", "1", "--reps", "1"] if quick else []
        steps["int8_quality"] = [
            "onnx_int8_quality.py",
            "--run-dir",
            str(trained_run),
            *sentences,
            "--out-dir",
            str(out_dir),
        ]
    return steps


def _commands(out_dir: Path, quick: bool, reps: int) -> dict[str, list[str]]:
    cores = str(os.cpu_count())
    out = ["--out-dir", str(out_dir)]
    if quick:
        return {
            "parameters": ["parameter_count.py", "--quick", *out],
            "rtf_paper": ["synthesis_rtf.py", "--quick", "--tag", "paper", *out],
            "rtf_sweep": ["synthesis_rtf.py", "--quick", "--no-onnx", "--tag", "sweep", *out],
            "training": ["training_step.py", "--quick", *out],
            "soft_dtw": [
                *("soft_dtw_benchmark.py", "--batch", "2", "--n", "48", "--m", "40", "--channels", "16"),
                *("--small-n", "24", "--reps", "1", "--methods", "ours", "naive"),
                *("--out", str(out_dir / "soft_dtw.json")),
            ],
            "memory_init": [
                *("memory_init_benchmark.py", "--num-frames", "20000", "--channels", "16", "--bank-size", "32"),
                *("--max-frames", "5000", "--batch-size", "512", "--out", str(out_dir / "memory_init.json")),
            ],
        }
    return {
        "parameters": ["parameter_count.py", *out],
        "rtf_paper": [
            *("synthesis_rtf.py", "--size", "paper", "--lengths", "20", "80", "200", "--threads", cores, "1"),
            *("--reps", str(reps), "--tag", "paper", *out),
        ],
        "rtf_sweep": [
            *("synthesis_rtf.py", "--size", "medium", "--lengths", "20", "80", "200", "--threads", cores, "1"),
            *("--reps", str(reps), "--tag", "sweep", *out),
        ],
        "training": ["training_step.py", "--size", "medium", "--batch-size", "8", "--reps", "2", "--steps", "2", *out],
        "soft_dtw": ["soft_dtw_benchmark.py", "--naive-max-n", "200", "--out", str(out_dir / "soft_dtw.json")],
        "memory_init": ["memory_init_benchmark.py", "--out", str(out_dir / "memory_init.json")],
    }


def tables(out_dir: Path) -> str:
    """Markdown tables of every result file present in `out_dir`."""
    parts = []

    def load(name: str) -> dict | None:
        path = out_dir / name
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    if params := load("parameter_count.json"):
        parts.append(
            f"### Inference parameters ({params['size']} size)\n\n"
            f"NaturalSpeech {params['naturalspeech_inference_params'] / 1e6:.2f}M vs paper 28.7M "
            f"({params['naturalspeech_deviation_from_paper']:+.1%}, target ±5%: "
            f"{'met' if params['target_met'] else 'missed'}); VITS {params['vits_inference_params'] / 1e6:.2f}M "
            f"(ratio {params['naturalspeech_to_vits_ratio']:.3f}).\n\n"
            + markdown_table(
                [r for r in params["breakdown"] if "." not in r["module"]],
                ["system", "module", "params", "inference", "inference_params"],
            )
        )
    for tag in ("paper", "sweep"):
        if rtf := load(f"synthesis_rtf_{tag}.json"):
            from synthesis_rtf import COLUMNS

            notes = "; ".join(f"{k}: {v}" for k, v in rtf["onnx_notes"].items()) or "none"
            parts.append(
                f"### Synthesis RTF ({rtf['settings']['size']} size, {rtf['settings']['reps']} reps, "
                f"{rtf['settings']['frames_per_token']} frames/token)\n\nONNX notes: {notes}\n\n"
                + markdown_table(rtf["results"], COLUMNS[:-1])
            )
    if training := load("training_step.json"):
        from training_step import COLUMNS

        settings = training["settings"]
        parts.append(
            f"### Training step ({settings['size']} size, batch {settings['batch_size']}, {settings['reps']} fresh "
            f"processes x {settings['steps']} timed steps)\n\n" + markdown_table(training["results"], COLUMNS)
        )
    if sdtw := load("soft_dtw.json"):
        columns = ["method", "batch", "n", "m", "channels", "total_s", "min_total_s", "peak_extra_bytes", "error"]
        parts.append(
            f"### Soft-DTW (cost + forward + backward)\n\nmeets targets: {sdtw['ours_meets_targets']}; "
            f"ratios vs ours: {json.dumps(sdtw['ratios_vs_ours'])}\n\n" + markdown_table(sdtw["results"], columns)
        )
    if quality := load("onnx_int8_quality.json"):
        from onnx_int8_quality import COLUMNS

        parts.append(
            f"### Int8 ONNX decoder on a trained checkpoint ({quality['settings']['run_dir']})\n\n"
            + markdown_table(quality["results"], COLUMNS)
        )
    if memory := load("memory_init.json"):
        columns = ["num_frames", "channels", "bank_size", "max_frames", "seconds", "peak_rss_gb", "latents_gb"]
        columns += ["nearest_bank_row_median", "planted_centres_recovered_within_0.5"]
        parts.append("### Memory-bank initialisation\n\n" + markdown_table([memory], columns))
    return "\n\n".join(parts) + "\n"


def flat_csvs(out_dir: Path) -> None:
    """CSV companions of the JSON files the two older benchmarks write."""
    if (path := out_dir / "soft_dtw.json").is_file():
        write_csv(out_dir / "soft_dtw.csv", json.loads(path.read_text(encoding="utf-8"))["results"])
    if (path := out_dir / "memory_init.json").is_file():
        write_csv(out_dir / "memory_init.csv", [json.loads(path.read_text(encoding="utf-8"))])


def plot(out_dir: Path) -> None:
    from synthesis_rtf import plot as plot_rtf

    rows = []
    for tag in ("paper", "sweep"):
        if (path := out_dir / f"synthesis_rtf_{tag}.json").is_file():
            rows += json.loads(path.read_text(encoding="utf-8"))["results"]
    if rows:
        plot_rtf(rows, out_dir / "rtf_vs_length.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings for the smoke test")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--only", nargs="+", choices=STEPS, default=list(STEPS))
    parser.add_argument("--reps", type=int, default=3, help="synthesis repetitions")
    parser.add_argument("--trained-run", type=Path, help="a training run folder for the int8 quality step")
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    print(header("run_all"), flush=True)
    status = {}
    for name, command in commands(args.out_dir, args.quick, args.reps, args.trained_run).items():
        if name not in args.only:
            continue
        print(f"\n=== {name}: {' '.join(command)}", flush=True)
        start = time.perf_counter()
        result = subprocess.run([sys.executable, str(HERE / command[0]), *command[1:]], cwd=HERE, check=False)
        status[name] = {
            "command": "python benchmarks/" + " ".join(command),
            "returncode": result.returncode,
            "seconds": round(time.perf_counter() - start, 1),
        }
        print(f"=== {name}: exit {result.returncode} in {status[name]['seconds']} s", flush=True)
    flat_csvs(args.out_dir)
    plot(args.out_dir)
    previous = args.out_dir / "run_all.json"
    if previous.is_file() and set(args.only) != set(STEPS):  # a partial rerun keeps the other steps' records
        status = {**json.loads(previous.read_text(encoding="utf-8")).get("steps", {}), **status}
    write_json(previous, {"environment": environment(), "quick": args.quick, "steps": status})
    (args.out_dir / "summary.md").write_text(tables(args.out_dir), encoding="utf-8")
    print(f"\nwrote {args.out_dir}/ (summary.md, rtf_vs_length.png, *.json, *.csv)")
    failed = [name for name, s in status.items() if s["returncode"] != 0]
    if failed:
        print(f"failed: {failed}")
        sys.exit(1)


if __name__ == "__main__":
    main()
