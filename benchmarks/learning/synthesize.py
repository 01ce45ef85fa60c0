"""Synthesize the held-out sentences with a budget checkpoint of a learning-benchmark run (NaturalSpeech or VITS).

Synthesis is from text with the model's own predicted durations (never teacher-forced), through the toolkit's API
as a user calls it: `load_config` + `setup_model` + `model.load_checkpoint(config, path, eval=True)` +
`model.synthesize(text)`, with the noise scales of the run's config (0.667 for the prior of both models, 0.8 for
VITS's stochastic duration predictor) and a fixed seed before every sentence, so a sentence's output does not depend
on which sentences came before it.

Per sentence it returns the waveform, the model's input tokens (phoneme strings from its tokenizer; blanks are the
tokenizer's blank symbol `<BLNK>`) and the frames of `hop_length` samples each token lasts: VITS's rounded-up
durations, or NaturalSpeech's real-valued durations rounded on their cumulative sum (so that they add up to the
frames the model decoded).

    python benchmarks/learning/synthesize.py --run naturalspeech --minutes 15 [--limit 2] [--out-dir DIR]
"""

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import models  # first: puts `benchmarks/` (common) and the recipe folder on sys.path
import numpy as np
from corpus import default_corpus_dir, read_metadata
from train_budget import CONFIG_FILE, budget_checkpoint_path, run_dir_of

logger = logging.getLogger(__name__)

DEFAULT_SEED = 1234


@dataclass
class SynthesizedSentence:
    """One held-out sentence spoken by a model.

    Args:
        id: Held-out clip id.
        text: The text synthesized.
        waveform: `[T_wav]` float32.
        sample_rate: Of the waveform.
        tokens: The model's input tokens, blanks included.
        durations: Frames per token; `sum(durations) * hop_length == len(waveform)`.
        hop_length: Samples per frame.
        blank: The tokenizer's blank symbol.
    """

    id: str
    text: str
    waveform: np.ndarray
    sample_rate: int
    tokens: list[str]
    durations: list[int]
    hop_length: int
    blank: str | None = None

    @property
    def is_blank(self) -> list[bool]:
        return [token == self.blank for token in self.tokens]

    def scoring_item(self) -> dict:
        """The fields `scoring.Synthesized` takes."""
        return {
            "id": self.id,
            "waveform": self.waveform,
            "sample_rate": self.sample_rate,
            "tokens": self.tokens,
            "durations": self.durations,
            "hop_length": self.hop_length,
        }


def load_budget_model(run_dir: str | Path, minutes: float):
    """The model of `run_dir` with the weights of its `minutes` budget mark, in eval mode."""
    from TTS.config import load_config

    run_dir = Path(run_dir)
    checkpoint = budget_checkpoint_path(run_dir, minutes)
    if not checkpoint.is_file():
        msg = f"No {minutes:g}-minute checkpoint in {run_dir}: train it with train_budget.py --minutes {minutes:g}."
        raise FileNotFoundError(msg)
    config = load_config(str(run_dir / CONFIG_FILE))
    model = models.build_model(config)
    model.load_checkpoint(config, str(checkpoint), eval=True)
    return model


def heldout_sentences(corpus_dir: str | Path, limit: int | None = None) -> list[tuple[str, str]]:
    """`(id, text)` of the corpus' held-out sentences, the first `limit` of them."""
    sentences = read_metadata(Path(corpus_dir) / "heldout")
    return sentences[:limit] if limit is not None else sentences


def frame_durations(durations) -> list[int]:
    """Whole frames per token whose sum is the rounded sum of `durations`: each token ends at the rounded end of
    its real-valued span (integer durations come back unchanged). `[*, T_text]` with one item -> `[T_text]`."""
    import torch

    ends = torch.round(torch.cumsum(durations.detach().reshape(-1).double(), dim=0)).long()
    return torch.diff(ends, prepend=ends.new_zeros(1)).tolist()


def synthesize_sentence(
    model, clip_id: str, text: str, seed: int = DEFAULT_SEED, speaker: str | None = None
) -> SynthesizedSentence:
    """Speak `text` with `model` (predicted durations, the config's noise scales), as `speaker` for a
    multi-speaker model."""
    import torch

    torch.manual_seed(seed)
    with torch.inference_mode():
        output = model.synthesize(text, speaker=speaker) if speaker is not None else model.synthesize(text)
    characters = model.tokenizer.characters
    ids = output["text_inputs"][0].tolist()
    hop_length = model.config.audio.hop_length
    sentence = SynthesizedSentence(
        id=clip_id,
        text=text,
        waveform=np.asarray(output["wav"], dtype=np.float32).reshape(-1),
        sample_rate=model.config.audio.sample_rate,
        tokens=[characters.id_to_char(i) for i in ids],
        durations=frame_durations(output["outputs"]["durations"]),
        hop_length=hop_length,
        blank=characters.blank,
    )
    if len(sentence.durations) != len(sentence.tokens) or sum(sentence.durations) * hop_length != len(
        sentence.waveform
    ):
        logger.warning(
            "%s: %d durations summing to %d frames for %d tokens and %d samples (a max_inference_len cut?)",
            clip_id,
            len(sentence.durations),
            sum(sentence.durations),
            len(sentence.tokens),
            len(sentence.waveform),
        )
    return sentence


def synthesize_budget(
    run_dir: str | Path, minutes: float, sentences: list[tuple[str, str]], seed: int = DEFAULT_SEED
) -> list[SynthesizedSentence]:
    """Every sentence `(id, text)` spoken by the `minutes` checkpoint of `run_dir`."""
    model = load_budget_model(run_dir, minutes)
    return [synthesize_sentence(model, clip_id, text, seed) for clip_id, text in sentences]


def write_wav(path: Path, sentence: SynthesizedSentence) -> None:
    """16-bit PCM; samples beyond [-1, 1] are clipped."""
    import soundfile

    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, np.clip(sentence.waveform, -1.0, 1.0), sentence.sample_rate, subtype="PCM_16")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help=f"one of: {', '.join(models.RUNS)}")
    parser.add_argument("--minutes", type=float, required=True, help="the budget mark to load")
    parser.add_argument("--corpus-dir", type=Path, default=None, help="default: $NATURALSPEECH_BENCH_DIR/corpus")
    parser.add_argument("--bench-dir", type=Path, default=None, help="default: $NATURALSPEECH_BENCH_DIR")
    parser.add_argument("--limit", type=int, default=2, help="first held-out sentences to speak")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out-dir", type=Path, default=Path("."), help="where the WAVs and durations go")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import torch

    torch.set_num_threads(args.threads)
    try:
        models.check_run(args.run)
        sentences = heldout_sentences(args.corpus_dir or default_corpus_dir(), args.limit)
        spoken = synthesize_budget(run_dir_of(args.run, args.bench_dir), args.minutes, sentences, args.seed)
    except (ValueError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")
    for sentence in spoken:
        stem = f"{args.run}_{args.minutes:g}min_{sentence.id}"
        write_wav(args.out_dir / f"{stem}.wav", sentence)
        (args.out_dir / f"{stem}.json").write_text(
            json.dumps({"text": sentence.text, "tokens": sentence.tokens, "durations": sentence.durations}) + "\n",
            encoding="utf-8",
        )
        seconds = len(sentence.waveform) / sentence.sample_rate
        print(f"{args.out_dir / stem}.wav: {seconds:.2f} s, {len(sentence.tokens)} tokens")


if __name__ == "__main__":
    main()
