"""The learning benchmark in one command: corpus, training to CPU budgets, synthesis, scores, plots.

    python benchmarks/learning/run.py --ablation-minutes 20 --pretrain-minutes 5    # the committed results

1. makes the teacher corpus (`corpus.build_corpus`) or reuses it;
2. trains the main runs (`--runs`, default NaturalSpeech and VITS) to every budget of `--minutes`, one run at a time
   (`train_budget.py`: a longer budget continues a shorter run);
3. synthesizes the first `--num-sentences` held-out sentences from text with each budget checkpoint
   (`synthesize.py`) and scores them against the teacher's references (`scoring.score_sentences`); (run, budget)
   pairs already in `results.json` are not scored again;
4. writes `results.csv` and `results.json`, the learning curves (`plots.py`), and for the first `--num-wavs`
   held-out sentences of each (run, budget) a 16-bit WAV and its mel spectrogram above the teacher's, into
   `benchmarks/results/learning/`;
5. with `--ablation-minutes`, does 2-4 for the ablations (`--ablations`) and a baseline NaturalSpeech of their own
   settings (warm-up `--ablation-warmup-steps`) in the `ablations/` sub-folders of the bench and results folders,
   with bar charts per budget.

Everything is resumable: rerun the command after an interruption, or with larger budgets. The run
`ns-pretrained-encoder` needs a mixed-phoneme pre-training checkpoint of the matched encoder shape: give one
(`--pretrained-encoder`) or let the `pretrain-encoder` run make it (`--pretrain-minutes`, on the LJSpeech transcripts
without LJ050; about 4 CPU-seconds per step of 32 sentences, one epoch ~27 CPU-minutes, plus phonemizing the
12,822 sentences once); without either it is skipped.
"""

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import models  # first: puts `benchmarks/` (common) and the recipe folder on sys.path
import synthesize
import train_budget
from common import RESULTS_DIR, run_record, write_json
from corpus import bench_dir, default_corpus_dir, is_complete

logger = logging.getLogger(__name__)

OUT_DIR = RESULTS_DIR / "learning"
DEFAULT_MINUTES = (15.0, 20.0, 30.0, 60.0)
ABLATIONS = "ablations"  # sub-folder of the bench and results folders for the ablations


def ensure_corpus(corpus_dir: Path, num_train: int, num_heldout: int) -> None:
    """Build the teacher corpus, or resume a partial one, or check that a complete one has these sizes."""
    from corpus import build_corpus

    if not is_complete(corpus_dir):
        logger.info(
            "Building the corpus in %s (%d training, %d held-out sentences)", corpus_dir, num_train, num_heldout
        )
    build_corpus(corpus_dir, num_train, num_heldout)


def training_plan(args: argparse.Namespace) -> list[tuple[str, list[float]]]:
    """`(run, budget marks)` of the main runs to train and score, in order."""
    return [(run, sorted(set(args.minutes))) for run in args.runs]


def ablation_phase(args: argparse.Namespace) -> tuple[argparse.Namespace, list[tuple[str, list[float]]]]:
    """The settings and plan of the ablations: a baseline `naturalspeech` and each ablation to `--ablation-minutes`,
    with `--ablation-warmup-steps`, in `<bench dir>/ablations`, scored into `<out dir>/ablations`. Their baseline is
    a run of its own: the main pair's `naturalspeech` has another warm-up."""
    ablation_args = argparse.Namespace(
        **{
            **vars(args),
            "bench_dir": (args.bench_dir or bench_dir()) / ABLATIONS,
            "out_dir": args.out_dir / ABLATIONS,
            "warmup_steps": args.ablation_warmup_steps,
            "label": "",
            "bar_charts": True,
        }
    )
    plan = [("naturalspeech", [args.ablation_minutes])]
    for run in args.ablations:
        if run == models.PRETRAINED_ENCODER_RUN and not (args.pretrained_encoder or args.pretrain_minutes):
            logger.warning("Skipping %s: neither --pretrained-encoder nor --pretrain-minutes given.", run)
            continue
        plan.append((run, [args.ablation_minutes]))
    return ablation_args, plan


def trained_marks(plan: list[tuple[str, list[float]]], bench_dir: Path | None) -> list[tuple[str, list[float]]]:
    """The plan restricted to the marks that have a checkpoint (`--skip-training`)."""
    trained = []
    for run, marks in plan:
        run_dir = train_budget.run_dir_of(run, bench_dir)
        trained.append((run, [m for m in marks if train_budget.budget_checkpoint_path(run_dir, m).is_file()]))
    return trained


def pretrained_encoder(args: argparse.Namespace) -> str:
    """`--pretrained-encoder`, else the `pretrain-encoder` run trained to `--pretrain-minutes` (not counted in the
    budget of `ns-pretrained-encoder`, as the paper's pre-training is not)."""
    if args.pretrained_encoder:
        return args.pretrained_encoder
    minutes = args.pretrain_minutes
    run_dir = train_budget.run_dir_of(models.PRETRAINING_RUN, args.bench_dir)
    train_budget.train_budget(
        models.PRETRAINING_RUN,
        minutes,
        bench_dir=args.bench_dir,
        marks=[minutes],
        threads=args.threads,
        size=args.size,
        log_path=run_dir / "train_budget.log",
    )
    return str(train_budget.budget_checkpoint_path(run_dir, minutes))


def train_all(plan: list[tuple[str, list[float]]], corpus_dir: Path, args: argparse.Namespace) -> None:
    """Train every run of the plan to its largest mark, one after the other."""
    for run, marks in plan:
        encoder = pretrained_encoder(args) if run == models.PRETRAINED_ENCODER_RUN else None
        train_budget.train_budget(
            run,
            max(marks),
            corpus_dir=corpus_dir,
            bench_dir=args.bench_dir,
            marks=marks,
            threads=args.threads,
            size=args.size,
            batch_size=args.batch_size,
            lr=args.lr,
            warmup_steps=args.warmup_steps,
            pretrained_encoder=encoder,
            log_path=train_budget.run_dir_of(run, args.bench_dir) / "train_budget.log",
        )


# --- adapters to scoring.py / plots.py (the benchmark's data/scoring half): keep every call to them here ---------


def score_items(items: list[synthesize.SynthesizedSentence], heldout_dir: Path, args: argparse.Namespace) -> dict:
    """ADAPTER: `scoring.score_sentences` -> `{"rows": per sentence, "means": per metric, "num_sentences": n}`."""
    import scoring

    return scoring.score_sentences(
        [item.scoring_item() for item in items], heldout_dir, f0=not args.no_f0, asr=not args.no_asr
    )


def teacher_means(heldout_dir: Path, ids: list[str]) -> dict:
    """ADAPTER: the teacher's own scores on the same sentences (`scoring.score_teacher`), for the plots."""
    import scoring

    return scoring.score_teacher(heldout_dir, ids=ids)["means"]


def training_stage(run_dir: Path, step: int) -> str:
    """NaturalSpeech's stage at `step` ("warmup", "main", "tuning"); "" for other models. An ablation of a main-stage
    component (memory bank, soft-DTW, L_fwd) whose checkpoint is still in warm-up has not switched anything off."""
    config = json.loads((run_dir / train_budget.CONFIG_FILE).read_text(encoding="utf-8"))
    if config.get("model") != "naturalspeech":
        return ""
    if step < config["warmup_steps"]:
        return "warmup"
    return "main" if step < config["tuning_start_step"] else "tuning"


def results_row(run: str, record: dict, scores: dict, params: dict) -> dict:
    """ADAPTER: one row of `results.csv` (`plots.results_row`) with the budget record's columns."""
    import plots

    return plots.results_row(
        run,
        record["cpu_minutes"],
        record["step"],
        scores,
        budget_minutes=record["budget_minutes"],
        wall_minutes=record["wall_minutes"],
        threads=record["threads"],
        train_commit=record["git_commit"],
        inference_params=params["inference_params"],
    )


def write_plots(
    rows: list[dict], teacher: dict | None, caption: str, out_dir: Path, bar_charts: bool = False
) -> list[Path]:
    """ADAPTER: `plots.save_results` (CSV), `plots.plot_learning_curves` and, with `bar_charts`, a bar chart of the
    runs at each budget more than one run has (`plots.ablation_figure`)."""
    import plots

    plots.save_results(rows, out_dir / "results.csv")
    paths = plots.plot_learning_curves(rows, out_dir, teacher, caption)
    budgets = [row["budget_minutes"] for row in rows if "budget_minutes" in row]
    if bar_charts:
        for budget in sorted(set(budgets)):
            if budgets.count(budget) > 1:
                path = out_dir / f"ablations_{budget:g}min.png"
                plots.ablation_figure(rows, budget, teacher, caption).savefig(path, dpi=100)
                paths.append(path)
    return paths


def caption(rows: list[dict], corpus_dir: Path, params: dict[str, int]) -> str:
    """ADAPTER: the setup line under every plot (`plots.describe_setup`)."""
    import plots

    info_path = corpus_dir / "teacher.json"
    totals = json.loads(info_path.read_text(encoding="utf-8"))["totals"]["train"] if info_path.is_file() else {}
    return plots.describe_setup(
        budget_minutes=max(row["budget_minutes"] for row in rows),
        model_params=params,
        num_sentences=totals.get("sentences", 0),
        hours=totals.get("hours", 0.0),
        commit=rows[-1].get("train_commit", ""),
    )


def save_examples(items: list[synthesize.SynthesizedSentence], stem: str, heldout_dir: Path, out_dir: Path) -> None:
    """ADAPTER: WAVs and mel spectrograms (above the teacher's, `plots.save_spectrogram`) of a few sentences."""
    import plots

    for item in items:
        wav_path = out_dir / "examples" / f"{stem}_{item.id}.wav"
        synthesize.write_wav(wav_path, item)
        plots.save_spectrogram(wav_path, reference_wav=heldout_dir / "wavs" / f"{item.id}.wav")


# --- scoring the checkpoints ------------------------------------------------------------------------------------


def load_previous(path: Path) -> list[dict]:
    """The rows of an earlier `results.json` (none if there is none)."""
    return json.loads(path.read_text(encoding="utf-8"))["rows"] if path.is_file() else []


def score_checkpoints(
    plan: list[tuple[str, list[float]]], corpus_dir: Path, rows: list[dict], args: argparse.Namespace
) -> tuple[list[dict], dict[str, int]]:
    """Synthesize and score every (run, mark) of the plan that is not in `rows` yet; returns all rows and the
    inference parameters per run."""
    import torch

    torch.set_num_threads(args.threads)
    heldout_dir = corpus_dir / "heldout"
    sentences = synthesize.heldout_sentences(corpus_dir, args.num_sentences)
    scored = {(row["run"], row["budget_minutes"]) for row in rows}
    params = {}
    for run, marks in plan:
        run_dir = train_budget.run_dir_of(run, args.bench_dir)
        records = {r["budget_minutes"]: r for r in train_budget.read_budgets(run_dir)}
        name = f"{run}{args.label}"
        for mark in marks:
            if (name, mark) in scored:
                continue
            start = time.perf_counter()
            model = synthesize.load_budget_model(run_dir, mark)
            params[name] = models.parameter_counts(model)["inference_params"]
            items = [synthesize.synthesize_sentence(model, clip_id, text, args.seed) for clip_id, text in sentences]
            synthesis_seconds = time.perf_counter() - start
            scores = score_items(items, heldout_dir, args)
            row = results_row(name, records[mark], scores, {"inference_params": params[name]})
            row["stage"] = training_stage(run_dir, records[mark]["step"])
            if row["stage"] == "warmup" and run in models.MAIN_STAGE_ABLATIONS:
                logger.warning("%s is still in warm-up at %g CPU-minutes: its switch has had no effect yet.", run, mark)
            row["synthesis_seconds"] = synthesis_seconds
            row["sentence_scores"] = scores["rows"]
            rows.append(row)
            save_examples(items[: args.num_wavs], f"{name}_{mark:g}min".replace(" ", "_"), heldout_dir, args.out_dir)
            write_results(rows, args)  # after every checkpoint: an interruption keeps what was scored
            logger.info("Scored %s at %g CPU-minutes: %s", name, mark, scores["means"])
    for row in rows:
        params.setdefault(row["run"], row.get("inference_params", 0))
    return rows, params


def write_results(rows: list[dict], args: argparse.Namespace) -> None:
    write_json(args.out_dir / "results.json", {**run_record(args), "rows": rows})


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, nargs="+", default=list(DEFAULT_MINUTES), help="budget marks (CPU-min)")
    p.add_argument("--runs", nargs="*", default=list(models.MAIN_RUNS), choices=list(models.RUNS))
    p.add_argument("--ablation-minutes", type=float, help="train and score the ablations to this budget")
    p.add_argument("--ablation-warmup-steps", type=int, default=models.ABLATION_WARMUP_STEPS)
    p.add_argument("--ablations", nargs="+", default=list(models.ABLATION_RUNS), choices=list(models.ABLATION_RUNS))
    p.add_argument("--pretrained-encoder", help="pre-training checkpoint for ns-pretrained-encoder")
    p.add_argument("--pretrain-minutes", type=float, help="pre-train the encoder of ns-pretrained-encoder (CPU-min)")
    p.add_argument("--corpus-dir", type=Path, help="default: $NATURALSPEECH_BENCH_DIR/corpus")
    p.add_argument("--bench-dir", type=Path, help="default: $NATURALSPEECH_BENCH_DIR (../bench_runs)")
    p.add_argument("--num-train", type=int, default=1200, help="training sentences of a new corpus")
    p.add_argument("--num-heldout", type=int, default=100, help="held-out sentences of a new corpus")
    p.add_argument("--num-sentences", type=int, default=20, help="held-out sentences to score (0: all)")
    p.add_argument("--num-wavs", type=int, default=2, help="example WAVs per (run, budget)")
    p.add_argument("--threads", type=int, default=1, help="per run (the committed results: 1)")
    p.add_argument("--size", default=models.DEFAULT_SIZE, choices=list(models.SIZES))
    p.add_argument("--batch-size", type=int, default=models.DEFAULT_BATCH_SIZE)
    p.add_argument("--lr", type=float, default=models.DEFAULT_LR)
    p.add_argument("--warmup-steps", type=int, default=models.DEFAULT_WARMUP_STEPS)
    p.add_argument("--seed", type=int, default=synthesize.DEFAULT_SEED)
    p.add_argument("--no-f0", action="store_true", help="skip the F0 metrics (half the scoring time)")
    p.add_argument("--no-asr", action="store_true", help="skip the ASR character error rate")
    p.add_argument("--skip-training", action="store_true", help="only score the checkpoints there are")
    p.add_argument("--out-dir", type=Path, default=OUT_DIR)
    p.add_argument("--label", default="", help="appended to the run names of the scored rows (e.g. ' lr=2e-4')")
    p.add_argument("--bar-charts", action="store_true", help="also a bar chart of the runs at each budget (ablations)")
    return p


def run_phase(args: argparse.Namespace, plan: list[tuple[str, list[float]]], corpus_dir: Path) -> None:
    """Train (unless `--skip-training`), score and plot one plan into `args.out_dir`."""
    if not args.skip_training:
        train_all(plan, corpus_dir, args)
    else:
        plan = trained_marks(plan, args.bench_dir)
    rows, params = score_checkpoints(plan, corpus_dir, load_previous(args.out_dir / "results.json"), args)
    if not rows:
        raise RuntimeError(f"nothing was scored into {args.out_dir}")
    ids = [clip_id for clip_id, _ in synthesize.heldout_sentences(corpus_dir, args.num_sentences)]
    teacher = teacher_means(corpus_dir / "heldout", ids)
    table = [{k: v for k, v in row.items() if k != "sentence_scores"} for row in rows]
    paths = write_plots(table, teacher, caption(table, corpus_dir, params), args.out_dir, args.bar_charts)
    write_json(args.out_dir / "results.json", {**run_record(args), "teacher": teacher, "rows": rows})
    print(f"wrote {args.out_dir / 'results.csv'}, results.json and {len(paths)} plots")


def main() -> None:
    args = parser().parse_args()
    args.num_sentences = args.num_sentences or None  # 0: all
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    corpus_dir = args.corpus_dir or default_corpus_dir()
    try:
        ensure_corpus(corpus_dir, args.num_train, args.num_heldout)
        if args.runs:
            run_phase(args, training_plan(args), corpus_dir)
        if args.ablation_minutes:
            run_phase(*ablation_phase(args), corpus_dir)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
