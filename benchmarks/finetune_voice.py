"""Fine-tuning vs training from scratch on a new voice, for the same CPU budget: MCD and CER on held-back clips.

The source is the learning benchmark's trained NaturalSpeech (`$NATURALSPEECH_BENCH_DIR/runs/naturalspeech`, size
"medium", 60 CPU-minutes on the teacher corpus: a male Piper voice reading LJSpeech sentences). The new voice is the
32 real LJSpeech clips of `../shared/data/ljspeech` (one female speaker, ~4.5 minutes): 28 train, the 4 of
`HELD_BACK` are held back. Two runs train on the 28 clips for the same budget, each in its own subprocess:

- `finetune`: the recipe `recipes/ljspeech/naturalspeech/finetune_naturalspeech.py` (`make_finetune_config`): the
  source's weights, discriminator included, warm-up skipped, the memory bank fitted again by k-means on the new
  voice's posterior latents at the first step (charged to the budget), nothing frozen unless `--freeze`;
- `scratch`: the same config (the source run's sizes, batch size, learning rate and warm-up schedule) from random
  weights. With the source's `warmup_steps`, a short budget ends inside warm-up: that is what training from scratch
  for that budget gives.

Budget: CPU time of the training process / threads from its first step, as `learning/train_budget.py` counts it
(`BudgetClock`, `BudgetCallback`); a run stops at the mark and leaves `budget_<M>min.pth`. Runs resume: a second call
with the same `--minutes` scores the finished runs without training again.

Rows: `recordings` (the real held-back clips: their CER; MCD 0 by definition), `source` (the source checkpoint as it
is: the old voice), `finetune`, `scratch`. Scores (`learning/scoring.py`) on the 4 held-back texts, synthesized from
text with predicted durations and a fixed seed (`learning/synthesize.py`): MCD after DTW against the real recordings
(dB), log-F0 RMSE, voicing error, length ratio and pocketsphinx CER (and DNSMOS with `--dnsmos`).

    python benchmarks/finetune_voice.py --minutes 10 --threads 1

Writes `benchmarks/results/finetune/finetune_voice_<M>min.json` and `.csv`, and prints the table.
"""

import argparse
import json
import logging
import math
import os
import subprocess
import sys
import time
from pathlib import Path

LEARNING_DIR = Path(__file__).resolve().parent / "learning"
sys.path.insert(0, str(LEARNING_DIR))

import models  # noqa: E402  (first: puts `benchmarks/` and the recipe folder on sys.path, imports from this checkout)
from common import RESULTS_DIR, environment, markdown_table, write_csv, write_json  # noqa: E402
from corpus import bench_dir  # noqa: E402

logger = logging.getLogger(__name__)

SHARED_DATA = Path(os.environ.get("NATURALSPEECH_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
DATA_DIR = SHARED_DATA / "ljspeech"
HELD_BACK = ("LJ001-0008", "LJ001-0016", "LJ001-0024", "LJ001-0032")  # every 8th clip: short and long ones
RUNS = ("finetune", "scratch")
SOURCE_RUN = "naturalspeech"
SOURCE_MINUTES = 60.0
DEFAULT_MINUTES = 10.0
TABLE_COLUMNS = ["run", "steps", "cpu_minutes", "mcd_db", "cer", "log_f0_rmse", "vuv_error", "length_ratio"]
INTERRUPT_EXIT_STATUS = 130  # `Trainer.fit` after the budget's KeyboardInterrupt


##########################
# data and source
##########################


def split_clips(data_dir: Path, work_dir: Path, held_back: tuple[str, ...] = HELD_BACK) -> tuple[Path, Path]:
    """LJSpeech-format `train/` (every clip but `held_back`) and `heldback/` folders of `data_dir`'s clips.

    The WAVs are linked, not copied. Returns the two folders.

    Raises:
        FileNotFoundError: No `metadata.csv` in `data_dir`, or a held-back id is not one of its clips.
    """
    metadata = data_dir / "metadata.csv"
    if not metadata.is_file():
        msg = f"No clips at {data_dir} (metadata.csv missing): pass --data-dir."
        raise FileNotFoundError(msg)
    lines = [line for line in metadata.read_text(encoding="utf-8").splitlines() if line.strip()]
    ids = [line.split("|")[0] for line in lines]
    missing = [clip for clip in held_back if clip not in ids]
    if missing:
        msg = f"Held-back clips {missing} are not in {metadata}."
        raise FileNotFoundError(msg)
    folders = {}
    for name, keep in (("train", lambda i: i not in held_back), ("heldback", lambda i: i in held_back)):
        folder = work_dir / "data" / name
        (folder / "wavs").mkdir(parents=True, exist_ok=True)
        chosen = [line for line, clip in zip(lines, ids) if keep(clip)]
        for clip in (line.split("|")[0] for line in chosen):
            link = folder / "wavs" / f"{clip}.wav"
            if not link.exists():
                os.symlink((data_dir / "wavs" / f"{clip}.wav").resolve(), link)
        (folder / "metadata.csv").write_text("\n".join(chosen) + "\n", encoding="utf-8")
        folders[name] = folder
    return folders["train"], folders["heldback"]


def source_checkpoint(run_dir: Path, minutes: float, work_dir: Path) -> Path:
    """The source run's weights at its `minutes` mark, with the discriminator when the run still has it.

    The Trainer checkpoint of the mark's step (`<trainer dir>/checkpoint_<step>.pth`, discriminator and optimizer
    state) is copied once to `<work_dir>/source.pth` without the optimizer state (the run keeps only its last two
    checkpoints; the copy survives them), with the run's `config.json` (field names of the current code, where the
    Trainer checkpoint of an older run has the old ones). Without it, the budget file (no discriminator) is the source.

    Raises:
        FileNotFoundError: The run has no such mark.
    """
    import torch
    from train_budget import CONFIG_FILE, RunState, budget_checkpoint_path, read_budgets

    snapshot = work_dir / "source.pth"
    if snapshot.is_file():
        return snapshot
    record = next((r for r in read_budgets(run_dir) if r["budget_minutes"] == minutes), None)
    budget_file = budget_checkpoint_path(run_dir, minutes)
    if record is None or not budget_file.is_file():
        msg = f"{run_dir} has no {minutes:g}-minute mark: train it with learning/train_budget.py first."
        raise FileNotFoundError(msg)
    state = RunState.load(run_dir, SOURCE_RUN)
    trainer_checkpoint = run_dir / (state.trainer_dir or "-") / f"checkpoint_{record['step']}.pth"
    if not trainer_checkpoint.is_file():
        logger.warning("%s is gone: fine-tuning from %s (no discriminator).", trainer_checkpoint, budget_file)
        return budget_file
    full = torch.load(trainer_checkpoint, map_location="cpu", weights_only=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    config = json.loads((run_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    slim = {"model": full["model"], "config": config, "step": full["step"], "source": str(trainer_checkpoint)}
    torch.save(slim, snapshot.with_suffix(".tmp"))
    snapshot.with_suffix(".tmp").replace(snapshot)
    return snapshot


##########################
# training (worker subprocess)
##########################


def run_config(run: str, checkpoint: Path, train_dir: Path, run_dir: Path, freeze: list[str]):
    """The training config of `run`: both are the source run's config on the new clips; `finetune` starts from it."""
    from finetune_naturalspeech import make_finetune_config, source_config

    from TTS.tts.configs.shared_configs import BaseDatasetConfig

    if run == "finetune":
        config = make_finetune_config(checkpoint, train_dir, run_dir, freeze_modules=freeze)
    else:
        config = source_config(checkpoint)
        config.model_args.init_discriminator = True
        config.model_args.pretrained_encoder_path = None
        config.datasets = [BaseDatasetConfig(formatter="ljspeech", meta_file_train="metadata.csv", path=str(train_dir))]
        config.output_path = str(run_dir)
        config.phoneme_cache_path = str(run_dir / "phoneme_cache")
    config.run_name = run
    for key, value in models.training_settings(config.batch_size, config.lr_gen).items():
        setattr(config, key, value)
    return config


def run_worker(args: argparse.Namespace) -> int:
    """Train one run in this process until its budget (the Trainer then ends the process); 0 if already there."""
    import torch
    from finetune_naturalspeech import training_samples
    from train_budget import BudgetCallback, BudgetClock, RunState, pending_marks, resume_path
    from train_naturalspeech import train
    from trainer import TrainerArgs

    from TTS.tts.models.naturalspeech import Naturalspeech

    torch.set_num_threads(args.threads)
    run_dir = args.work_dir / "runs" / args.run
    run_dir.mkdir(parents=True, exist_ok=True)
    marks = pending_marks(run_dir, args.minutes, ())
    if not marks:
        return 0
    state = RunState.load(run_dir, args.run)
    continue_path = resume_path(run_dir, state)
    config = run_config(args.run, args.checkpoint, args.train_dir, run_dir, args.freeze)
    if continue_path is not None:
        config.load_json(str(continue_path / "config.json"))
    clock = BudgetClock(args.threads, state.cpu_seconds, state.wall_seconds)
    callback = BudgetCallback(
        run_dir, state, marks, clock, save_every_minutes=5.0, git_commit=environment()["git_commit"]
    )
    model = Naturalspeech(config)
    fit_bank = model.init_memory_bank

    def charged_fit(data_loader) -> None:  # the fine-tune's k-means runs before its first step: charge it too
        clock.start()
        fit_bank(data_loader)

    model.init_memory_bank = charged_fit
    train(
        config,
        (training_samples(config), []),
        model=model,
        trainer_args=TrainerArgs(continue_path=str(continue_path) if continue_path else ""),
        parse_command_line_args=False,
        callbacks=callback.trainer_callbacks(),
    )
    msg = f"{args.run}: training ended before the {args.minutes:g} CPU-minute budget."
    raise RuntimeError(msg)


def train_run(run: str, args: argparse.Namespace, checkpoint: Path, train_dir: Path) -> dict:
    """Train `run` to the budget in a subprocess (unless done); returns its budget record."""
    from train_budget import budget_checkpoint_path, read_budgets, worker_environment

    run_dir = args.work_dir / "runs" / run
    if not budget_checkpoint_path(run_dir, args.minutes).is_file():
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--run", run]
        command += ["--minutes", str(args.minutes), "--threads", str(args.threads), "--work-dir", str(args.work_dir)]
        command += ["--checkpoint", str(checkpoint), "--train-dir", str(train_dir)]
        if args.freeze:
            command += ["--freeze", *args.freeze]
        log_path = args.work_dir / f"{run}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        logger.info("Training %s for %g CPU-minutes (%d threads); log: %s", run, args.minutes, args.threads, log_path)
        with log_path.open("a", encoding="utf-8") as log:
            status = subprocess.run(
                command, env=worker_environment(args.threads), stdout=log, stderr=subprocess.STDOUT, check=False
            ).returncode
        if status not in (0, INTERRUPT_EXIT_STATUS) or not budget_checkpoint_path(run_dir, args.minutes).is_file():
            msg = f"Training {run} failed (exit status {status}); see {log_path}."
            raise RuntimeError(msg)
    return next(r for r in read_budgets(run_dir) if r["budget_minutes"] == float(args.minutes))


##########################
# synthesis and scores
##########################


def load_source_model(checkpoint: Path):
    """The source checkpoint as a synthesis model (no discriminator)."""
    from finetune_naturalspeech import source_config

    config = source_config(checkpoint)
    config.model_args.init_discriminator = False
    model = models.build_model(config)
    model.load_checkpoint(config, str(checkpoint), eval=True)
    return model


def score_model(model, sentences: list[tuple[str, str]], heldback_dir: Path, dnsmos: bool) -> dict:
    """Speak the held-back texts with `model` and score them against the real recordings."""
    import scoring
    from synthesize import synthesize_sentence

    items = []
    for clip_id, text in sentences:
        spoken = synthesize_sentence(model, clip_id, text)
        items.append({"id": spoken.id, "waveform": spoken.waveform, "sample_rate": spoken.sample_rate})
    return scoring.score_sentences(items, heldback_dir, f0=True, asr=True, dnsmos=dnsmos)


def score_recordings(sentences: list[tuple[str, str]], heldback_dir: Path, dnsmos: bool) -> dict:
    """CER (and DNSMOS) of the real held-back recordings themselves: the floor of the table."""
    import scoring

    rows = []
    for clip_id, text in sentences:
        waveform, sample_rate = scoring.load_wav(heldback_dir / "wavs" / f"{clip_id}.wav")
        rows.append(
            {"id": clip_id, "mcd_db": 0.0, **scoring.perceptual_scores(waveform, sample_rate, text, True, dnsmos)}
        )
    return {"rows": rows, "means": scoring.mean_scores(rows), "num_sentences": len(rows)}


def measure(args: argparse.Namespace) -> dict:
    """Train both runs (or reuse them), then score every row; returns the result written to the JSON file."""
    import torch
    from corpus import read_metadata
    from synthesize import load_budget_model

    torch.set_num_threads(args.threads)
    train_dir, heldback_dir = split_clips(args.data_dir, args.work_dir)
    checkpoint = args.checkpoint or source_checkpoint(args.source_run_dir, args.source_minutes, args.work_dir)
    sentences = read_metadata(heldback_dir)
    start = time.perf_counter()
    records = {run: train_run(run, args, checkpoint, train_dir) for run in RUNS}
    training_wall = time.perf_counter() - start
    scored = {"recordings": score_recordings(sentences, heldback_dir, args.dnsmos)}
    scored["source"] = score_model(load_source_model(checkpoint), sentences, heldback_dir, args.dnsmos)
    for run in RUNS:
        model = load_budget_model(args.work_dir / "runs" / run, args.minutes)
        scored[run] = score_model(model, sentences, heldback_dir, args.dnsmos)
    table = []
    for run, result in scored.items():
        record = records.get(run, {})
        row = {"run": run, "steps": record.get("step"), "cpu_minutes": record.get("cpu_minutes")}
        row["wall_minutes"] = record.get("wall_minutes")
        table.append(row | result["means"])
    return {
        "environment": environment(),
        "settings": {
            "minutes": args.minutes,
            "threads": args.threads,
            "source_checkpoint": str(checkpoint),
            "freeze": args.freeze,
            "train_clips": len(read_metadata(train_dir)),
            "held_back": [clip for clip, _ in sentences],
            "data_dir": str(args.data_dir),
            "work_dir": str(args.work_dir),
        },
        "training_wall_seconds": training_wall,
        "table": table,
        "sentences": {run: result["rows"] for run, result in scored.items()},
    }


def write_results(result: dict, out_dir: Path, minutes: float) -> Path:
    stem = out_dir / f"finetune_voice_{minutes:g}min"  # no `with_suffix`: "0.3min" would lose ".3min"
    write_json(Path(f"{stem}.json"), result)
    write_csv(Path(f"{stem}.csv"), result["table"])
    return stem


def print_table(result: dict) -> None:
    rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in result["table"]]
    settings = result["settings"]
    print(
        f"Fine-tune vs scratch, {settings['minutes']:g} CPU-minutes at {settings['threads']} thread(s), "
        f"{settings['train_clips']} training clips, scored on {', '.join(settings['held_back'])}:"
    )
    print(markdown_table(rows, TABLE_COLUMNS))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=DEFAULT_MINUTES, help="CPU-minute budget of each run")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-dir", type=Path, default=DATA_DIR, help="the new voice's clips (LJSpeech format)")
    p.add_argument("--source-run-dir", type=Path, help="default: $NATURALSPEECH_BENCH_DIR/runs/naturalspeech")
    p.add_argument("--source-minutes", type=float, default=SOURCE_MINUTES, help="the source run's budget mark")
    p.add_argument("--checkpoint", type=Path, help="fine-tune from this checkpoint instead of the source run's mark")
    p.add_argument("--freeze", nargs="*", default=[], help="parts the fine-tune keeps frozen (freeze_modules)")
    p.add_argument("--work-dir", type=Path, help="runs and data links; default: $NATURALSPEECH_BENCH_DIR/finetune")
    p.add_argument("--out-dir", type=Path, default=RESULTS_DIR / "finetune", help="where the JSON/CSV go")
    p.add_argument("--dnsmos", action="store_true", help="also score DNSMOS")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--run", choices=RUNS, help=argparse.SUPPRESS)
    p.add_argument("--train-dir", type=Path, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args.work_dir = (args.work_dir or bench_dir() / "finetune").resolve()
    if args.minutes <= 0:
        sys.exit(f"error: the budget must be positive, got {args.minutes} minutes")
    if args.worker:
        sys.exit(run_worker(args))
    args.source_run_dir = args.source_run_dir or bench_dir() / "runs" / SOURCE_RUN
    try:
        result = measure(args)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        sys.exit(f"error: {error}")
    stem = write_results(result, args.out_dir, args.minutes)
    print_table(result)
    print(f"wrote {stem}.json and {stem}.csv")


if __name__ == "__main__":
    main()
