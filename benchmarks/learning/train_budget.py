"""Train one run of the learning benchmark for a CPU-time budget, saving a checkpoint at every budget mark; resumable.

    python benchmarks/learning/train_budget.py --run naturalspeech --minutes 60 [--corpus-dir ...] [--threads 2]

The run trains through the LJSpeech recipe's `train()` (the toolkit's Trainer) on `<corpus_dir>/train`, in a
subprocess of this command. A later call with a larger `--minutes` continues the run from its latest checkpoint
(`TrainerArgs(continue_path=...)`) until the new budget; a call whose budget is already reached does nothing.

Budget clock: the CPU time (user + sys, `getrusage(RUSAGE_SELF)`) of the training process from its first training
step on, divided by the number of torch threads, summed over sessions. On a shared machine wall time would shorten a
run whenever other jobs take its cores; CPU time counts only the work the run did, and dividing by the threads makes
one budget minute about one minute of an idle machine running the same threads. Data loading runs inside the
training process (no loader workers) and counts; start-up (imports, building the model, phonemizing the corpus,
loading a checkpoint) does not. Wall time from the first step is recorded too.

At each budget mark M (default 15, 30, 60, 120, 240 CPU-minutes, those up to `--minutes`, plus `--minutes` itself)
the run folder `$NATURALSPEECH_BENCH_DIR/runs/<run>/` gets:

- `budget_<M>min.pth`: the model weights without the discriminators or optimizer state, loadable with
  `model.load_checkpoint(config, path, eval=True)` where `config` is `config.json` of the same folder (the training
  config with `init_discriminator=False`);
- a line `{run, budget_minutes, cpu_minutes, wall_minutes, step, git_commit, ...}` in `budgets.jsonl`.

The last mark stops training by raising `KeyboardInterrupt` in the Trainer's `on_train_step_end` callback: the
Trainer then saves a checkpoint (`save_on_interrupt`) and exits the process with status 130 (`Trainer.fit` ends in
`os._exit(130)`, which is why training runs in a subprocess; this command itself exits 0). The Trainer's folder
`<run>-<date>-<commit>/` inside the run folder keeps the last 2 `checkpoint_<step>.pth` (saved every
`--save-every-minutes` CPU-minutes and at every mark) for resuming, `trainer_0_log.txt` with the training losses and
the tensorboard events. `state.json` holds the cumulative CPU and wall seconds and the step of the last checkpoint.
(The Trainer resumes at the checkpoint's step + 1, so the recorded steps skip one number per session.)

`--run pretrain-encoder` trains the mixed-phoneme pre-training of the matched phoneme encoder the same way (the
recipe `pretrain_phoneme_encoder.py`, on the LJSpeech transcripts without LJ050); its `budget_<M>min.pth` is the
`--pretrained-encoder` of the `ns-pretrained-encoder` run.
"""

import argparse
import copy
import datetime
import json
import logging
import os
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import models  # first: puts `benchmarks/` (common) and the recipe folder on sys.path
from common import environment
from corpus import bench_dir, default_corpus_dir, is_complete

logger = logging.getLogger(__name__)

DEFAULT_MARKS = (15.0, 30.0, 60.0, 120.0, 240.0)
DEFAULT_THREADS = 2
DEFAULT_SAVE_EVERY_MINUTES = 10.0
INTERRUPT_EXIT_STATUS = 130  # `Trainer.fit` after a KeyboardInterrupt
STATE_FILE = "state.json"
BUDGETS_FILE = "budgets.jsonl"
CONFIG_FILE = "config.json"


def run_dir_of(run: str, bench: str | Path | None = None) -> Path:
    return Path(bench or bench_dir()) / "runs" / run


def budget_checkpoint_path(run_dir: Path, minutes: float) -> Path:
    return Path(run_dir) / f"budget_{minutes:g}min.pth"


def check_corpus(corpus_dir: str | Path) -> Path:
    """The corpus folder if it is complete (`COMPLETE` marker, `train/metadata.csv`), else a FileNotFoundError."""
    corpus_dir = Path(corpus_dir)
    missing = [] if is_complete(corpus_dir) else ["the COMPLETE marker"]
    missing += [name for name in ("train/metadata.csv", "heldout/metadata.csv") if not (corpus_dir / name).is_file()]
    if missing:
        msg = (
            f"No complete benchmark corpus at {corpus_dir} (missing {', '.join(missing)}): build it with "
            "`python benchmarks/learning/run.py` (or corpus.py), or pass --corpus-dir."
        )
        raise FileNotFoundError(msg)
    return corpus_dir


def read_budgets(run_dir: str | Path) -> list[dict]:
    """The budget marks a run has reached (`budgets.jsonl`), in order."""
    path = Path(run_dir) / BUDGETS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def wanted_marks(minutes: float, marks: list[float] | tuple[float, ...] = DEFAULT_MARKS) -> list[float]:
    """The marks up to `minutes`, and `minutes` itself, ascending."""
    if minutes <= 0:
        msg = f"The budget must be positive, got {minutes} minutes."
        raise ValueError(msg)
    return sorted({float(m) for m in marks if 0 < m <= minutes} | {float(minutes)})


def pending_marks(run_dir: str | Path, minutes: float, marks=DEFAULT_MARKS) -> list[float]:
    """The wanted marks not yet in `budgets.jsonl`."""
    done = {record["budget_minutes"] for record in read_budgets(run_dir)}
    return [m for m in wanted_marks(minutes, marks) if m not in done]


@dataclass
class RunState:
    """What survives between training sessions of a run (`state.json`), as of its last saved checkpoint."""

    run: str
    trainer_dir: str | None = None  # the Trainer's folder, relative to the run folder
    step: int = 0
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0
    sessions: int = 0

    @classmethod
    def load(cls, run_dir: Path, run: str) -> "RunState":
        path = run_dir / STATE_FILE
        return cls(**json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else cls(run=run)

    def save(self, run_dir: Path) -> None:
        # write then rename: a crash mid-write never leaves a truncated state behind
        tmp = run_dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        tmp.replace(run_dir / STATE_FILE)


def process_cpu_seconds() -> float:
    """User + system CPU time of this process, all its threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class BudgetClock:
    """Budget time of a run: earlier sessions' seconds plus this process' CPU time since `start()` / threads."""

    def __init__(self, threads: int, cpu_seconds: float = 0.0, wall_seconds: float = 0.0):
        self.threads = threads
        self.cpu_offset = cpu_seconds
        self.wall_offset = wall_seconds
        self._cpu_start: float | None = None
        self._wall_start = 0.0

    def start(self) -> None:
        """Start counting (once; later calls do nothing)."""
        if self._cpu_start is None:
            self._cpu_start = process_cpu_seconds()
            self._wall_start = time.perf_counter()

    @property
    def cpu_seconds(self) -> float:
        if self._cpu_start is None:
            return self.cpu_offset
        return self.cpu_offset + (process_cpu_seconds() - self._cpu_start) / self.threads

    @property
    def wall_seconds(self) -> float:
        if self._cpu_start is None:
            return self.wall_offset
        return self.wall_offset + time.perf_counter() - self._wall_start


def inference_config(config):
    """A copy of a training config that builds the model without discriminators (what the budget files hold)."""
    config = copy.deepcopy(config)
    if hasattr(getattr(config, "model_args", None), "init_discriminator"):
        config.model_args.init_discriminator = False
    return config


def save_budget_checkpoint(model, config, path: Path, record: dict) -> None:
    """The model's weights without the discriminators, with the inference config and the budget record."""
    import torch

    weights = {k: v for k, v in model.state_dict().items() if not k.startswith("disc.")}
    state = {"model": weights, "config": inference_config(config).to_dict(), "step": record["step"], "budget": record}
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


class BudgetCallback:
    """Trainer callbacks that checkpoint a run at its budget marks and stop it at the last one.

    Args:
        run_dir: The run folder.
        state: The run's state; updated and saved with every checkpoint.
        marks: Budget marks still to reach, in CPU-minutes, ascending; the last one stops training.
        clock: The budget clock (its offsets are the state's seconds).
        save_every_minutes: CPU-minutes between rolling checkpoints.
        git_commit: Recorded with every mark.
    """

    def __init__(
        self,
        run_dir: Path,
        state: RunState,
        marks: list[float],
        clock: BudgetClock,
        save_every_minutes: float = DEFAULT_SAVE_EVERY_MINUTES,
        git_commit: str = "",
    ):
        self.run_dir = run_dir
        self.state = state
        self.marks = list(marks)
        self.clock = clock
        self.save_every_seconds = save_every_minutes * 60
        self.git_commit = git_commit
        self.stopping_at: list[float] = []  # the marks reached by the step that ends training
        self._last_save_seconds = clock.cpu_seconds

    def trainer_callbacks(self) -> dict:
        return {
            "on_init_end": self.on_init_end,
            "on_train_step_start": self.on_train_step_start,
            "on_train_step_end": self.on_train_step_end,
            "on_keyboard_interrupt": self.on_keyboard_interrupt,
        }

    def on_init_end(self, trainer) -> None:
        self.state.trainer_dir = Path(trainer.output_path).name
        self.state.sessions += 1
        inference_config(trainer.config).save_json(str(self.run_dir / CONFIG_FILE))

    def on_train_step_start(self, trainer) -> None:
        self.clock.start()

    def on_train_step_end(self, trainer) -> None:
        minutes = self.clock.cpu_seconds / 60
        reached = [mark for mark in self.marks if minutes >= mark]
        if reached:
            self.marks = self.marks[len(reached) :]
            if not self.marks:
                # the Trainer saves the checkpoint (`save_on_interrupt`), then calls `on_keyboard_interrupt`
                self.stopping_at = reached
                raise KeyboardInterrupt
            self.save(trainer)
            for mark in reached:
                self.record_mark(trainer, mark)
        elif self.clock.cpu_seconds - self._last_save_seconds >= self.save_every_seconds:
            self.save(trainer)

    def on_keyboard_interrupt(self, trainer) -> None:
        if not trainer.config.save_on_interrupt:
            trainer.save_checkpoint()
        self.remember_checkpoint(trainer)
        for mark in self.stopping_at:
            self.record_mark(trainer, mark)
        if not self.stopping_at:
            logger.warning("Training of %s interrupted at step %d.", self.state.run, trainer.total_steps_done)
        # `Trainer.fit` ends the process with `os._exit`, which flushes nothing
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stdout.flush()
        sys.stderr.flush()

    def save(self, trainer) -> None:
        """A rolling checkpoint of the Trainer (it keeps the last `save_n_checkpoints`) and the state with it."""
        trainer.save_checkpoint()
        self.remember_checkpoint(trainer)

    def remember_checkpoint(self, trainer) -> None:
        self.state.step = trainer.total_steps_done
        self.state.cpu_seconds = self.clock.cpu_seconds
        self.state.wall_seconds = self.clock.wall_seconds
        self.state.save(self.run_dir)
        self._last_save_seconds = self.state.cpu_seconds

    def record_mark(self, trainer, mark: float) -> dict:
        path = budget_checkpoint_path(self.run_dir, mark)
        record = {
            "run": self.state.run,
            "budget_minutes": mark,
            "cpu_minutes": self.clock.cpu_seconds / 60,
            "wall_minutes": self.clock.wall_seconds / 60,
            "step": trainer.total_steps_done,
            "epoch": trainer.epochs_done,
            "threads": self.clock.threads,
            "checkpoint": path.name,
            "git_commit": self.git_commit,
            "time": datetime.datetime.now().isoformat(timespec="seconds"),
        }
        save_budget_checkpoint(trainer.model, trainer.config, path, record)
        with (self.run_dir / BUDGETS_FILE).open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        logger.info(
            "%s reached %g CPU-minutes at step %d (%.1f wall minutes): %s",
            self.state.run,
            mark,
            record["step"],
            record["wall_minutes"],
            path,
        )
        return record


def resume_path(run_dir: Path, state: RunState) -> Path | None:
    """The Trainer folder to continue, None for a new run; a RuntimeError if the state has no checkpoint."""
    if state.trainer_dir is None or state.step == 0:
        return None
    trainer_dir = run_dir / state.trainer_dir
    if not any(trainer_dir.glob("checkpoint_*.pth")):
        msg = f"{run_dir / STATE_FILE} says step {state.step}, but {trainer_dir} has no checkpoint to continue from."
        raise RuntimeError(msg)
    return trainer_dir


def train_samples(config) -> list[dict]:
    """The corpus' training clips (any held-out `LJ050-*` clip is dropped, loudly)."""
    from train_naturalspeech import HELD_OUT_PREFIX

    from TTS.tts.datasets import load_tts_samples

    samples, _ = load_tts_samples(config, eval_split=False)
    kept = [s for s in samples if not Path(s["audio_file"]).name.startswith(HELD_OUT_PREFIX)]
    if len(kept) < len(samples):
        logger.warning(
            "Dropped %d held-out %s* clips from the training set.", len(samples) - len(kept), HELD_OUT_PREFIX
        )
    if len(kept) < config.batch_size:
        msg = f"The corpus has {len(kept)} training clips, fewer than the batch size {config.batch_size}."
        raise ValueError(msg)
    return kept


def run_worker(args: argparse.Namespace) -> int:
    """Train in this process until the last pending mark (the Trainer then ends the process). Returns 0 when there
    is nothing to train."""
    import torch
    from train_naturalspeech import train
    from trainer import TrainerArgs

    torch.set_num_threads(args.threads)
    models.check_run(args.run)
    corpus_dir = args.corpus_dir or default_corpus_dir()
    if args.run != models.PRETRAINING_RUN:  # pre-training reads the LJSpeech transcripts, not the corpus
        check_corpus(corpus_dir)
    run_dir = run_dir_of(args.run, args.bench_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    state = RunState.load(run_dir, args.run)
    marks = pending_marks(run_dir, args.minutes, args.marks)
    passed = [m for m in marks if m * 60 < state.cpu_seconds]
    if passed:
        logger.warning("%s is past %s CPU-minutes already: those marks cannot be recorded.", args.run, passed)
        marks = [m for m in marks if m not in passed]
    if not marks:
        logger.info("%s has reached %g CPU-minutes already: nothing to train.", args.run, args.minutes)
        return 0
    continue_path = resume_path(run_dir, state)
    config = models.make_config(
        args.run,
        corpus_dir,
        run_dir,
        size=args.size,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        tuning_start_step=args.tuning_start_step,
        pretrained_encoder_path=args.pretrained_encoder,
    )
    if continue_path is not None:
        # the Trainer reads the run's saved config.json: a resumed run keeps the settings it started with
        config.load_json(str(continue_path / "config.json"))
        logger.info("Continuing %s from step %d, %.2f CPU-minutes.", args.run, state.step, state.cpu_seconds / 60)
    clock = BudgetClock(args.threads, state.cpu_seconds, state.wall_seconds)
    callback = BudgetCallback(run_dir, state, marks, clock, args.save_every_minutes, environment()["git_commit"])
    options = {
        "trainer_args": TrainerArgs(continue_path=str(continue_path) if continue_path else ""),
        "parse_command_line_args": False,
        "callbacks": callback.trainer_callbacks(),
    }
    if args.run == models.PRETRAINING_RUN:
        from pretrain_phoneme_encoder import run as pretrain

        pretrain(config, **options)
    else:
        train(config, (train_samples(config), []), model=models.build_model(config), **options)
    msg = f"{args.run}: training ended at {config.epochs} epochs before the {marks[-1]} CPU-minute budget."
    raise RuntimeError(msg)


def worker_environment(threads: int) -> dict:
    """The subprocess' environment: every thread pool (OpenMP, MKL, numba's soft-DTW) at `threads`, and OpenMP
    threads that sleep when idle: spinning threads burn CPU time, so the budget would pay for other jobs' load."""
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[name] = str(threads)
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    env.setdefault("PYTHONWARNINGS", "ignore")
    return env


def train_budget(
    run: str,
    minutes: float,
    *,
    corpus_dir: str | Path | None = None,
    bench_dir: str | Path | None = None,
    marks: list[float] | tuple[float, ...] = DEFAULT_MARKS,
    threads: int = DEFAULT_THREADS,
    size: str = models.DEFAULT_SIZE,
    batch_size: int = models.DEFAULT_BATCH_SIZE,
    lr: float = models.DEFAULT_LR,
    warmup_steps: int = models.DEFAULT_WARMUP_STEPS,
    tuning_start_step: int | None = None,
    pretrained_encoder: str | Path | None = None,
    save_every_minutes: float = DEFAULT_SAVE_EVERY_MINUTES,
    log_path: str | Path | None = None,
    timeout: float | None = None,
) -> list[dict]:
    """Train `run` until `minutes` CPU-minutes in a subprocess, checkpointing at `marks`.

    Args:
        run: A run of `models.RUNS`.
        minutes: The budget in CPU-minutes (CPU time / threads), cumulative over calls.
        corpus_dir: The corpus; default `$NATURALSPEECH_BENCH_DIR/corpus`.
        bench_dir: Holds `runs/<run>/`; default `$NATURALSPEECH_BENCH_DIR`.
        marks: Budget marks to checkpoint at (those up to `minutes`; `minutes` is always one).
        threads: Torch threads of the training process.
        size, batch_size, lr, warmup_steps, tuning_start_step, pretrained_encoder: Settings of a new run
            (`models.make_config`); a resumed run keeps its saved config.
        save_every_minutes: CPU-minutes between rolling checkpoints.
        log_path: File for the subprocess' output; None passes it through to this process' output.
        timeout: Wall seconds after which the subprocess is killed (`subprocess.TimeoutExpired`); None waits.

    Returns:
        The run's `budgets.jsonl` records.

    Raises:
        ValueError: Unknown run or a bad budget.
        FileNotFoundError: No complete corpus.
        RuntimeError: Training failed or stopped before the budget.
    """
    models.check_run(run)
    wanted_marks(minutes, marks)  # a bad budget fails here, not in the subprocess
    if run != models.PRETRAINING_RUN:
        check_corpus(corpus_dir or default_corpus_dir())
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--run", run, "--minutes", str(minutes)]
    command += ["--marks", *map(str, marks), "--threads", str(threads), "--size", size]
    command += ["--batch-size", str(batch_size), "--lr", str(lr), "--warmup-steps", str(warmup_steps)]
    command += ["--save-every-minutes", str(save_every_minutes)]
    for flag, value in (
        ("--corpus-dir", corpus_dir),
        ("--bench-dir", bench_dir),
        ("--tuning-start-step", tuning_start_step),
        ("--pretrained-encoder", pretrained_encoder),
    ):
        if value is not None:
            command += [flag, str(value)]
    run_dir = run_dir_of(run, bench_dir)
    if not pending_marks(run_dir, minutes, marks):
        logger.info("%s has reached %g CPU-minutes already: nothing to train.", run, minutes)
        return read_budgets(run_dir)
    logger.info("Training %s to %g CPU-minutes (%d threads) in %s", run, minutes, threads, run_dir)
    if log_path is None:
        status = subprocess.run(command, env=worker_environment(threads), timeout=timeout, check=False).returncode
    else:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        with Path(log_path).open("a", encoding="utf-8") as log:
            status = subprocess.run(
                command,
                env=worker_environment(threads),
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            ).returncode
    records = read_budgets(run_dir)
    if status not in (0, INTERRUPT_EXIT_STATUS) or not any(r["budget_minutes"] == float(minutes) for r in records):
        where = f"; see {log_path}" if log_path else ""
        msg = f"Training {run} to {minutes:g} CPU-minutes failed (exit status {status}){where}."
        raise RuntimeError(msg)
    return records


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help=f"one of: {', '.join(models.RUNS)}")
    p.add_argument("--minutes", type=float, required=True, help="budget in CPU-minutes (CPU time / threads)")
    p.add_argument("--marks", type=float, nargs="+", default=list(DEFAULT_MARKS), help="budget marks (CPU-minutes)")
    p.add_argument("--corpus-dir", type=Path, help="default: $NATURALSPEECH_BENCH_DIR/corpus")
    p.add_argument("--bench-dir", type=Path, help="default: $NATURALSPEECH_BENCH_DIR (../bench_runs)")
    p.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    p.add_argument("--size", default=models.DEFAULT_SIZE, choices=list(models.SIZES))
    p.add_argument("--batch-size", type=int, default=models.DEFAULT_BATCH_SIZE)
    p.add_argument("--lr", type=float, default=models.DEFAULT_LR)
    p.add_argument("--warmup-steps", type=int, default=models.DEFAULT_WARMUP_STEPS)
    p.add_argument("--tuning-start-step", type=int, help="default: the model's")
    p.add_argument("--pretrained-encoder", help="pre-training checkpoint (run ns-pretrained-encoder)")
    p.add_argument("--save-every-minutes", type=float, default=DEFAULT_SAVE_EVERY_MINUTES)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return p


def main() -> None:
    args = parser().parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.worker:
        sys.exit(run_worker(args))
    options = {k: v for k, v in vars(args).items() if k not in ("worker", "run", "minutes")}
    try:
        records = train_budget(args.run, args.minutes, **options)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        sys.exit(f"error: {error}")
    for record in records:
        print(json.dumps(record))


if __name__ == "__main__":
    main()
