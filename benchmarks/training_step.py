"""Training step time and peak memory of NaturalSpeech per stage vs the toolkit's VITS at matched sizes (CPU).

A step is what the Trainer does with two optimizers: discriminator step then generator step, each `zero_grad`,
`train_step`, `backward`, gradient clipping at `config.grad_clip`, `optimizer.step()`. Both models train on the
same real batch (`--batch-size` shortest clips of the shared LJSpeech folder, phonemized with espeak-ng) through
their own `get_data_loader`/`format_batch_on_device`. NaturalSpeech stages are set with `model.step.fill_(n)` and
`model.memory_initialized.fill_(True)`:

- `warmup`: step 0 (alignment search durations, L_bwd, no memory bank);
- `main`: step = warmup_steps, memory bank on, L_fwd, predicted durations with soft-DTW KL;
- `main_no_sdtw`: the same with `use_predicted_durations=False` (aligned durations, no soft-DTW);
- `tuning`: step = tuning_start_step (adds L_e2e through the decoder).

Every (system, stage) runs in a fresh subprocess, so its peak RSS (`getrusage` maxrss, and the psutil-sampled peak
above the RSS before the first step) is its own; one untimed step first, then `--steps` timed steps (median).
Repetitions cycle through all configurations, the order reversed every other repetition; ratios to VITS are formed
within each repetition and the median is reported, and so is the ratio of the fastest steps of all repetitions
(`min_step_ratio_vs_vits`), which is the more robust one when other jobs load the machine for minutes at a time.

    python benchmarks/training_step.py --size medium --reps 2 --steps 2
"""

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import (
    ROOT,
    SIZES,
    PeakRssSampler,
    add_common_arguments,
    alternate,
    build_configs,
    header,
    markdown_table,
    max_rss_bytes,
    median,
    median_ratio,
    run_json_worker,
    run_record,
    write_csv,
    write_json,
)

CONFIGURATIONS = ("vits", "warmup", "main", "main_no_sdtw", "tuning")
TARGETS = {"warmup": 1.2, "main": 2.0}
COLUMNS = [
    "configuration",
    "size",
    "batch_size",
    "reps",
    "step_s",
    "step_ratio_vs_vits",
    "min_step_s",
    "min_step_ratio_vs_vits",
    "peak_rss_mb",
    "peak_rss_ratio_vs_vits",
    "step_peak_extra_mb",
    "step_peak_extra_ratio_vs_vits",
    "target_ratio",
    "target_met",
]


def shortest_clips(data_dir: Path, count: int) -> list[str]:
    wavs = sorted((data_dir / "wavs").glob("*.wav"), key=lambda p: p.stat().st_size)
    return [p.stem for p in wavs[:count]]


def prepare_config(config, data_dir: Path, output_path: Path, batch_size: int):
    """The dataset and phonemizer settings of the recipes (as `tests.make_ljspeech_config`), for either model."""
    from TTS.tts.configs.shared_configs import BaseDatasetConfig

    config.datasets = [BaseDatasetConfig(formatter="ljspeech", path=str(data_dir), meta_file_train="metadata.csv")]
    config.use_phonemes = True
    config.phonemizer = "espeak"
    config.phoneme_language = "en-us"
    config.text_cleaner = "english_cleaners"
    config.phoneme_cache_path = str(output_path / "phoneme_cache")
    config.output_path = str(output_path)
    config.batch_size = config.eval_batch_size = batch_size
    config.num_loader_workers = config.num_eval_loader_workers = 0
    return config


def load_batch(config, model, clip_ids: list[str]) -> dict:
    from TTS.tts.datasets import load_tts_samples

    samples, _ = load_tts_samples(config, eval_split=False)
    samples = [s for s in samples if Path(s["audio_file"]).stem in clip_ids]
    loader = model.get_data_loader(config, samples=samples, verbose=False)
    return model.format_batch_on_device(model.format_batch(next(iter(loader))))


def build(configuration: str, size: str, data_dir: Path, output_path: Path, batch_size: int):
    import torch

    ns_overrides = {"use_predicted_durations": False} if configuration == "main_no_sdtw" else {}
    ns_config, vits_config = build_configs(size, **ns_overrides)
    torch.manual_seed(0)
    if configuration == "vits":
        from TTS.tts.models.vits import Vits

        config = prepare_config(vits_config, data_dir, output_path, batch_size)
        model = Vits.init_from_config(config)
    else:
        from TTS.tts.models.naturalspeech import Naturalspeech

        config = prepare_config(ns_config, data_dir, output_path, batch_size)
        model = Naturalspeech(config)
        step = {"warmup": 0, "tuning": config.tuning_start_step}.get(configuration, config.warmup_steps)
        model.step.fill_(step)
        model.memory_initialized.fill_(configuration != "warmup")
    return config, model.train()


def training_step(model, batch, criteria, optimizers, grad_clip) -> None:
    """Discriminator then generator step, as the Trainer does with two optimizers."""
    import torch

    for index, optimizer in enumerate(optimizers):
        optimizer.zero_grad(set_to_none=True)
        _, loss_dict = model.train_step(batch, criteria[index], index)
        loss_dict["loss"].backward()
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(parameters, grad_clip[index])
        optimizer.step()


def worker(args) -> None:
    """One configuration in this fresh process; prints one JSON line."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    logging.disable(logging.WARNING)
    config, model = build(args.worker, args.size, args.data_dir, args.work_dir, args.batch_size)
    batch = load_batch(config, model, shortest_clips(args.data_dir, args.batch_size))
    criteria, optimizers = model.get_criterion(), model.get_optimizer()
    grad_clip = config.grad_clip if isinstance(config.grad_clip, list) else [config.grad_clip] * 2
    with PeakRssSampler(interval=0.005) as sampler:
        start = time.perf_counter()
        training_step(model, batch, criteria, optimizers, grad_clip)  # first step: allocator and caches warm up
        first = time.perf_counter() - start
        times = []
        for _ in range(args.steps):
            start = time.perf_counter()
            training_step(model, batch, criteria, optimizers, grad_clip)
            times.append(time.perf_counter() - start)
    result = {
        "configuration": args.worker,
        "step_s": statistics.median(times),
        "min_step_s": min(times),
        "step_times_s": times,
        "first_step_s": first,
        "peak_rss_mb": max_rss_bytes() / 2**20,
        "step_peak_extra_mb": sampler.peak_extra / 2**20,
        "tokens": list(batch["tokens"].shape),
        "spec_frames": int(batch["spec"].shape[2]),
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(result))


def with_target(row: dict) -> dict:
    """`row` with its configuration's target step ratio to VITS and whether it is met (no target: unchanged)."""
    if row["configuration"] in TARGETS:
        row["target_ratio"] = TARGETS[row["configuration"]]
        row["target_met"] = row["step_ratio_vs_vits"] <= row["target_ratio"]
    return row


def alternate_in_process(args) -> None:
    """All configurations built in this one process, their steps alternating (`common.alternate`).

    Load from other jobs drifts over minutes; steps taken turn by turn within seconds of each other see the same
    load, so the per-round ratios to VITS are far less noisy than ratios between separate processes. No memory figure
    (all models share the process).
    """
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    logging.disable(logging.WARNING)
    work_dir = Path(tempfile.mkdtemp(prefix="train_step_"))
    steps = {}
    for configuration in args.configurations:
        config, model = build(configuration, args.size, args.data_dir, work_dir, args.batch_size)
        batch = load_batch(config, model, shortest_clips(args.data_dir, args.batch_size))
        criteria, optimizers = model.get_criterion(), model.get_optimizer()
        grad_clip = config.grad_clip if isinstance(config.grad_clip, list) else [config.grad_clip] * 2
        steps[configuration] = lambda m=model, b=batch, c=criteria, o=optimizers, g=grad_clip: training_step(
            m, b, c, o, g
        )
    times = alternate(steps, args.reps, warmup=1)
    rows = []
    for configuration in args.configurations:
        row = {"configuration": configuration, "size": args.size, "batch_size": args.batch_size, "reps": args.reps}
        row["step_s"] = median(times[configuration])
        row["step_ratio_vs_vits"] = median_ratio(times[configuration], times["vits"])
        row["min_step_s"] = min(times[configuration])
        row["min_step_ratio_vs_vits"] = row["min_step_s"] / min(times["vits"])
        rows.append(with_target(row))
    summary = {
        **run_record(args),
        "targets_step_ratio_vs_vits": TARGETS,
        "results": rows,
        "times": times,
    }
    write_json(args.out_dir / "training_step_in_process.json", summary)
    write_csv(args.out_dir / "training_step_in_process.csv", rows, [c for c in COLUMNS if "rss" not in c])
    print(markdown_table(rows, [c for c in COLUMNS if "rss" not in c]))
    print(f"wrote {args.out_dir / 'training_step_in_process'}.json|csv")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="medium", choices=list(SIZES))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--reps", type=int, default=2, help="fresh-process runs of every configuration")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per run (after one untimed step)")
    parser.add_argument("--configurations", nargs="+", default=list(CONFIGURATIONS), choices=CONFIGURATIONS)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "ljspeech")
    parser.add_argument("--threads", type=int, default=0, help="torch threads in the workers (0: torch's default)")
    parser.add_argument("--timeout", type=float, default=1200.0)
    parser.add_argument(
        "--in-process", action="store_true", help="time all configurations alternating in one process (no memory)"
    )
    parser.add_argument("--worker", choices=CONFIGURATIONS, help=argparse.SUPPRESS)
    parser.add_argument("--work-dir", type=Path, help=argparse.SUPPRESS)
    add_common_arguments(parser)
    args = parser.parse_args()
    if args.quick:
        args.size, args.batch_size, args.reps, args.steps = "tiny", 2, 1, 1
        args.configurations = ["vits", "warmup", "main"]
    if args.worker:
        worker(args)
        return
    if "vits" not in args.configurations:
        args.configurations.insert(0, "vits")
    if args.in_process:
        print(header("training step (in-process, alternating)"), flush=True)
        alternate_in_process(args)
        return

    print(header("training step"))
    print(f"size {args.size}, batch {args.batch_size}, {args.reps} reps x {args.steps} timed steps\n", flush=True)
    work_dir = Path(tempfile.mkdtemp(prefix="train_step_"))
    runs: dict[str, list[dict]] = {c: [] for c in args.configurations}
    for rep in range(args.reps):
        order = args.configurations if rep % 2 == 0 else list(reversed(args.configurations))
        for configuration in order:
            command = [sys.executable, __file__, "--worker", configuration, "--size", args.size]
            command += ["--batch-size", str(args.batch_size), "--steps", str(args.steps)]
            command += ["--data-dir", str(args.data_dir), "--work-dir", str(work_dir), "--threads", str(args.threads)]
            result = run_json_worker(command, args.timeout)
            result["rep"] = rep
            runs[configuration].append(result)
            print(f"rep {rep} {configuration}: {json.dumps(result)}", flush=True)

    def values(configuration: str, key: str) -> list[float]:
        return [r.get(key) for r in runs[configuration]]

    rows = []
    for configuration in args.configurations:
        ok = all("error" not in r for r in runs[configuration] + runs["vits"])
        row = {"configuration": configuration, "size": args.size, "batch_size": args.batch_size, "reps": args.reps}
        if not ok:
            row["error"] = next(r["error"] for r in runs[configuration] + runs["vits"] if "error" in r)
            rows.append(row)
            continue
        for key in ("step_s", "peak_rss_mb", "step_peak_extra_mb"):
            row[key] = median(values(configuration, key))
            ratio_key = "step_ratio_vs_vits" if key == "step_s" else f"{key[:-3]}_ratio_vs_vits"
            row[ratio_key] = median_ratio(values(configuration, key), values("vits", key))
        # the least disturbed step of all runs: robust when other jobs load the machine for minutes at a time
        row["min_step_s"] = min(values(configuration, "min_step_s"))
        row["min_step_ratio_vs_vits"] = row["min_step_s"] / min(values("vits", "min_step_s"))
        rows.append(with_target(row))
    summary = {
        **run_record(args),
        "targets_step_ratio_vs_vits": TARGETS,
        "results": rows,
        "runs": runs,
    }
    write_json(args.out_dir / "training_step.json", summary)
    write_csv(args.out_dir / "training_step.csv", rows, [*COLUMNS, "error"])
    print(markdown_table(rows, COLUMNS))
    print(f"wrote {args.out_dir / 'training_step'}.json|csv")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
