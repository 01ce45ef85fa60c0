"""Does the text path carry phoneme structure yet? Token variation of the text encoders of budget checkpoints.

For each (run, budget mark), over held-out sentences: the standard deviation over the tokens of the phoneme/text
encoder output `h`, and of the phoneme-level prior mean (VITS: `m_p`; NaturalSpeech: the mean of the alignment prior
MAS scores with), divided by their mean absolute value and averaged over channels and sentences. An encoder that
has learned nothing about the text gives nearly the same vector for every token (a flat, buzzing prior); the values
grow as the encoder tells phonemes apart. No audio is synthesized, so it takes seconds per checkpoint.

With `--durations N`, also on the first N training clips: how token-dependent the alignment-search durations are
(`token_lookup_r2`: the share of the variance of the log MAS durations that the mean per token id, fitted on the same
clips, explains) and, for NaturalSpeech, how much of it the duration predictor explains (`predictor_r2`, what
`main_stage_min_duration_r2` gates on).

    python benchmarks/learning/text_structure.py --checkpoints naturalspeech:15,30,60 vits:15,30,60 \\
        [--bench-dir DIR] [--label NAME] [--durations 16] [--out results.json]
"""

import argparse
import json
import logging
from pathlib import Path

import models  # first: puts `benchmarks/` (common) and the recipe folder on sys.path
import torch
from corpus import default_corpus_dir, read_metadata
from scoring import load_wav
from synthesize import heldout_sentences, load_budget_model
from train_budget import run_dir_of

from TTS.utils.audio.torch_transforms import wav_to_spec

logger = logging.getLogger(__name__)


def token_variation(x: torch.Tensor) -> float:
    """`mean_c std_t(x) / mean |x|` of one item: 0 when every token has the same vector. `[1, C, T_text]`."""
    return float(x.std(dim=2).mean() / x.abs().mean().clamp(min=1e-12))


def encode(model, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The text encoder output and the phoneme-level prior mean of one tokenized sentence."""
    lengths = torch.tensor([tokens.shape[1]])
    if hasattr(model, "encode_phonemes"):  # NaturalSpeech
        h, _ = model.encode_phonemes(tokens, lengths)
        prior_mean, _ = model.alignment_prior(h).chunk(2, dim=1)
        return h, prior_mean
    h, prior_mean, _, _ = model.text_encoder(tokens, lengths)  # VITS
    return h, prior_mean


def measure(run_dir: Path, minutes: float, sentences: list[str]) -> dict[str, float]:
    model = load_budget_model(run_dir, minutes)
    encoder, prior = [], []
    with torch.no_grad():
        for text in sentences:
            h, prior_mean = encode(model, torch.tensor([model.tokenizer.text_to_ids(text)]))
            encoder.append(token_variation(h))
            prior.append(token_variation(prior_mean))
    return {"encoder_token_variation": sum(encoder) / len(encoder), "prior_token_variation": sum(prior) / len(prior)}


def aligned_log_durations(model, tokens: torch.Tensor, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log alignment-search durations of one training clip `[T_text]`, and NaturalSpeech's predicted ones (else None).

    Shapes:
        - tokens: :math:`[1, T_text]`
        - wav: :math:`[1, T_wav]`
    """
    audio = model.config.audio
    spec = wav_to_spec(wav, audio.fft_size, audio.hop_length, audio.win_length, center=False)
    lengths, spec_lengths = torch.tensor([tokens.shape[1]]), torch.tensor([spec.shape[2]])
    if hasattr(model, "encode_phonemes"):  # NaturalSpeech: the search its training runs, then the predictor
        h, x_mask = model.encode_phonemes(tokens, lengths)
        z, _, logs_q, y_mask = model.posterior_encoder(spec, spec_lengths)
        durations, _ = model.alignment_prior.align(
            h, x_mask, model.flow(z, y_mask, None), logs_q, y_mask, model.prior_posterior_kl
        )
        return torch.log(durations[0].float()), model.durator(h, x_mask, durations=durations).log_durations[0, 0]
    path = model.forward(tokens, lengths, spec, spec_lengths, wav.unsqueeze(1))["alignments"][0]  # VITS
    durations = path.sum(dim=1) if path.shape[0] == tokens.shape[1] else path.sum(dim=0)
    return torch.log(durations.float()), None


def explained_share(target: torch.Tensor, prediction: torch.Tensor) -> float:
    """`1 - mean((target - prediction)^2) / var(target)`."""
    return float(1 - ((target - prediction) ** 2).mean() / target.var(unbiased=False))


def duration_structure(run_dir: Path, minutes: float, clips: list[tuple[str, str, Path]]) -> dict[str, float]:
    """`token_lookup_r2` (and NaturalSpeech's `predictor_r2`) over `(id, text, wav path)` training clips."""
    model = load_budget_model(run_dir, minutes)
    log_durations, predicted, token_ids = [], [], []
    with torch.no_grad():
        for _, text, path in clips:
            tokens = torch.tensor([model.tokenizer.text_to_ids(text)])
            wav, _ = load_wav(path)
            aligned, prediction = aligned_log_durations(model, tokens, torch.from_numpy(wav).float().unsqueeze(0))
            log_durations.append(aligned)
            token_ids.append(tokens[0])
            if prediction is not None:
                predicted.append(prediction)
    target, ids = torch.cat(log_durations), torch.cat(token_ids)
    sums = torch.zeros(int(ids.max()) + 1).index_add_(0, ids, target)
    counts = torch.zeros_like(sums).index_add_(0, ids, torch.ones_like(target))
    row = {"token_lookup_r2": explained_share(target, (sums / counts.clamp(min=1))[ids])}
    if predicted:
        row["predictor_r2"] = explained_share(target, torch.cat(predicted))
    return row


def parse_checkpoints(specs: list[str]) -> list[tuple[str, list[float]]]:
    """`run:15,30` -> `("run", [15.0, 30.0])`."""
    parsed = []
    for spec in specs:
        run, _, marks = spec.partition(":")
        if run not in models.RUNS or not marks:
            raise ValueError(f"expected <run>:<minutes>[,<minutes>...] with a run of {models.RUNS}, got {spec!r}")
        parsed.append((run, [float(m) for m in marks.split(",")]))
    return parsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", nargs="+", required=True, help="<run>:<minutes>[,<minutes>...]")
    parser.add_argument("--bench-dir", type=Path, help="default: $NATURALSPEECH_BENCH_DIR (../bench_runs)")
    parser.add_argument("--corpus-dir", type=Path, help="default: $NATURALSPEECH_BENCH_DIR/corpus")
    parser.add_argument("--num-sentences", type=int, default=5, help="held-out sentences")
    parser.add_argument("--label", default="", help="appended to the run names (e.g. ' warm-up only')")
    parser.add_argument("--durations", type=int, default=0, help="also the duration structure on N training clips")
    parser.add_argument("--out", type=Path, help="JSON file to add the rows to")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    try:
        checkpoints = parse_checkpoints(args.checkpoints)
    except ValueError as error:
        parser.error(str(error))
    torch.set_num_threads(1)
    corpus_dir = args.corpus_dir or default_corpus_dir()
    sentences = [text for _, text in heldout_sentences(corpus_dir, args.num_sentences)]
    train_dir = corpus_dir / "train"
    clips = [(i, text, train_dir / "wavs" / f"{i}.wav") for i, text in read_metadata(train_dir)[: args.durations]]
    rows = json.loads(args.out.read_text(encoding="utf-8")) if args.out and args.out.is_file() else []
    for run, marks in checkpoints:
        for minutes in marks:
            row = {
                "run": run + args.label,
                "cpu_minutes": minutes,
                **measure(run_dir_of(run, args.bench_dir), minutes, sentences),
            }
            if clips:
                row.update(duration_structure(run_dir_of(run, args.bench_dir), minutes, clips))
            print(json.dumps(row))
            rows = [r for r in rows if (r["run"], r["cpu_minutes"]) != (row["run"], minutes)] + [row]
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
