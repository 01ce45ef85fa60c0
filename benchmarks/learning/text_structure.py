"""Does the text path carry phoneme structure yet? Token variation of the text encoders of budget checkpoints.

For each (run, budget mark), over held-out sentences: the standard deviation over the tokens of the phoneme/text
encoder output `h`, and of the phoneme-level prior mean (VITS: `m_p`; NaturalSpeech: the mean of the alignment prior
MAS scores with), divided by their mean absolute value and averaged over channels and sentences. An encoder that
has learned nothing about the text gives nearly the same vector for every token (a flat, buzzing prior); the values
grow as the encoder tells phonemes apart. No audio is synthesized, so it takes seconds per checkpoint.

    python benchmarks/learning/text_structure.py --checkpoints naturalspeech:15,30,60 vits:15,30,60 \\
        [--bench-dir DIR] [--label NAME] [--out results.json]
"""

import argparse
import json
import logging
from pathlib import Path

import models  # first: puts `benchmarks/` (common) and the recipe folder on sys.path
import torch
from corpus import default_corpus_dir
from synthesize import heldout_sentences, load_budget_model
from train_budget import run_dir_of

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
    parser.add_argument("--out", type=Path, help="JSON file to add the rows to")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    try:
        checkpoints = parse_checkpoints(args.checkpoints)
    except ValueError as error:
        parser.error(str(error))
    torch.set_num_threads(1)
    sentences = [text for _, text in heldout_sentences(args.corpus_dir or default_corpus_dir(), args.num_sentences)]
    rows = json.loads(args.out.read_text(encoding="utf-8")) if args.out and args.out.is_file() else []
    for run, marks in checkpoints:
        for minutes in marks:
            row = {
                "run": run + args.label,
                "cpu_minutes": minutes,
                **measure(run_dir_of(run, args.bench_dir), minutes, sentences),
            }
            print(json.dumps(row))
            rows = [r for r in rows if (r["run"], r["cpu_minutes"]) != (row["run"], minutes)] + [row]
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
