"""Why NaturalSpeech's utterances come out short: predicted vs aligned durations of a budget checkpoint.

On training sentences of the corpus, the checkpoint's own alignment search (MAS, as in training) gives the durations
the duration loss targets; the duration predictor gives `exp(log d)`. The script prints the ratio of their totals, for
blanks and phonemes apart, with the geometric/arithmetic mean ratio of the aligned durations: a regression on log
durations predicts E[log d], so when it has learned little more than a mean, its total is about that ratio short.

With `--write-corrected DIR --variance V` it also writes a copy of the run into `DIR/runs/<run>` whose checkpoint
predicts mean-corrected durations (`mean_corrected_durations`, tracked variance V, e.g. the run's last duration losses
divided by `duration_loss_alpha`), which `run.py --skip-training --bench-dir DIR --label " mean-corrected"` scores.

    python benchmarks/learning/duration_bias.py --run naturalspeech --minutes 60 [--num-sentences 30]
"""

import argparse
import json
import logging
import shutil
from pathlib import Path

import models  # first: puts `benchmarks/` (common) and the recipe folder on sys.path
import soundfile
import torch
from corpus import default_corpus_dir, read_metadata
from synthesize import load_budget_model
from train_budget import BUDGETS_FILE, CONFIG_FILE, budget_checkpoint_path, read_budgets, run_dir_of

logger = logging.getLogger(__name__)


def aligned_and_predicted(model, corpus_dir: Path, num_sentences: int) -> list[dict]:
    """Per training sentence: tokens' blank flags, MAS durations and predicted log durations (eval mode)."""
    from TTS.tts.models.vits import wav_to_spec

    audio = model.config.audio
    blank = model.tokenizer.characters.blank
    items = []
    with torch.no_grad():
        for clip_id, text in read_metadata(corpus_dir / "train")[:num_sentences]:
            waveform, _ = soundfile.read(corpus_dir / "train" / "wavs" / f"{clip_id}.wav", dtype="float32")
            ids = model.tokenizer.text_to_ids(text)
            tokens, token_lengths = torch.tensor([ids]), torch.tensor([len(ids)])
            waveform = torch.from_numpy(waveform)[None]
            spec = wav_to_spec(waveform, audio.fft_size, audio.hop_length, audio.win_length, center=False)
            h, x_mask = model.encode_phonemes(tokens, token_lengths)
            z, _, logs_q, y_mask = model.posterior_encoder(spec, torch.tensor([spec.shape[2]]))
            aligned, _ = model.alignment_prior.align(
                h, x_mask, model.flow(z, y_mask), logs_q, y_mask, model.prior_posterior_kl
            )
            prior = model.durator(h, x_mask)
            items.append(
                {
                    "is_blank": torch.tensor([model.tokenizer.characters.id_to_char(i) == blank for i in ids]),
                    "aligned": aligned[0].float(),
                    "predicted": prior.durations[0],
                    "log_predicted": prior.log_durations[0, 0],
                }
            )
    return items


def summarize(items: list[dict]) -> dict[str, dict[str, float]]:
    """Predicted/aligned total, geometric/arithmetic mean of the aligned durations, mean log durations: all tokens,
    blanks, phonemes."""
    summary = {}
    for name, pick in (("all", lambda b: torch.ones_like(b)), ("blanks", lambda b: b), ("phonemes", lambda b: ~b)):
        aligned = torch.cat([item["aligned"][pick(item["is_blank"])] for item in items])
        predicted = torch.cat([item["predicted"][pick(item["is_blank"])] for item in items])
        log_predicted = torch.cat([item["log_predicted"][pick(item["is_blank"])] for item in items])
        log_aligned = aligned.clamp(min=1e-6).log()
        summary[name] = {
            "tokens": len(aligned),
            "predicted_over_aligned_total": float(predicted.sum() / aligned.sum()),
            "aligned_geometric_over_arithmetic_mean": float(log_aligned.mean().exp() / aligned.mean()),
            "mean_log_predicted": float(log_predicted.mean()),
            "mean_log_aligned": float(log_aligned.mean()),
            "log_residual_variance": float((log_predicted - log_aligned).square().mean()),
        }
    return summary


def write_corrected_copy(run_dir: Path, minutes: float, variance: float, bench_dir: Path) -> Path:
    """A copy of the run's `minutes` checkpoint that predicts mean-corrected durations with the given variance."""
    out_dir = run_dir_of(run_dir.name, bench_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = json.loads((run_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    config["model_args"]["mean_corrected_durations"] = True
    (out_dir / CONFIG_FILE).write_text(json.dumps(config, indent=1), encoding="utf-8")
    checkpoint = budget_checkpoint_path(run_dir, minutes)
    state = torch.load(checkpoint, weights_only=False)
    state["model"]["durator.log_duration_variance"] = torch.tensor(float(variance))
    state["config"]["model_args"]["mean_corrected_durations"] = True
    torch.save(state, out_dir / checkpoint.name)
    records = [r for r in read_budgets(run_dir) if r["budget_minutes"] == minutes]
    (out_dir / BUDGETS_FILE).write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    if (run_dir / "phoneme_cache").is_dir():
        shutil.copytree(run_dir / "phoneme_cache", out_dir / "phoneme_cache", dirs_exist_ok=True)
    return out_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="naturalspeech", help="a NaturalSpeech run of the benchmark")
    parser.add_argument("--minutes", type=float, required=True, help="budget mark of the checkpoint")
    parser.add_argument("--bench-dir", type=Path, help="default: $NATURALSPEECH_BENCH_DIR (../bench_runs)")
    parser.add_argument("--corpus-dir", type=Path, help="default: $NATURALSPEECH_BENCH_DIR/corpus")
    parser.add_argument("--num-sentences", type=int, default=30, help="training sentences to align")
    parser.add_argument("--write-corrected", type=Path, help="bench folder for a mean-corrected copy of the run")
    parser.add_argument("--variance", type=float, help="tracked log-duration variance of the corrected copy")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if (args.write_corrected is None) != (args.variance is None):
        parser.error("--write-corrected and --variance go together")
    if args.run not in models.RUNS or args.run == "vits":
        parser.error(f"--run must be a NaturalSpeech run of {models.RUNS}, got {args.run!r}")
    torch.set_num_threads(1)
    run_dir = run_dir_of(args.run, args.bench_dir)
    model = load_budget_model(run_dir, args.minutes)
    summary = summarize(aligned_and_predicted(model, args.corpus_dir or default_corpus_dir(), args.num_sentences))
    print(
        json.dumps({"run": args.run, "minutes": args.minutes, "num_sentences": args.num_sentences, **summary}, indent=1)
    )
    if args.write_corrected is not None:
        print(f"wrote {write_corrected_copy(run_dir, args.minutes, args.variance, args.write_corrected)}")


if __name__ == "__main__":
    main()
