"""Mixed-phoneme pre-training of the NaturalSpeech phoneme encoder on the LJSpeech transcripts (paper, Section 3.1).

Usage::

    python recipes/ljspeech/naturalspeech/pretrain_phoneme_encoder.py [--corpus_path ...] [--output_path ...]

1. reads the corpus (default: the 13,100 LJSpeech transcripts, without the LJ050 test chapter),
2. phonemizes it with the NaturalSpeech tokenizer (espeak, en-us, english_cleaners, blanks) into a cache under
   `<output_path>/phoneme_cache` (later runs read the cache in a second),
3. learns 2000 sup-phonemes (BPE, a few seconds),
4. trains the masked-LM with the Trainer; checkpoints land in `<output_path>/<run_name>-<date>/`.

Measured on a shared 2-core CPU: espeak phonemizes ~50 sentences/s per worker, so the 12,822 sentences take ~4 min
with one worker (less with two). The default model (encoder 6.2M parameters, as NaturalSpeech's; 7.1M with the
sup-phoneme embedding and heads) takes ~9 s per step of 32 sentences there, ~400 steps an epoch: train on a GPU.

The paper pre-trains on a large news corpus; LJSpeech's ~190k words are enough to exercise the pipeline and give a
useful initialisation, and a larger corpus is one `--corpus_path` (plain text, one sentence per line) away.

Point a NaturalSpeech run at the result through its model arguments::

    NaturalspeechArgs(pretrained_encoder_path="<run folder>/best_model.pth")

Every checkpoint carries the sup-phoneme BPE (the `sup_phoneme_bpe` buffer) next to the sup-phoneme embedding, so
the NaturalSpeech encoder reads sup-phonemes too (`use_sup_phonemes`) and no BPE file has to travel with it.

The encoder shape below must match the NaturalSpeech model (the defaults of both configs do).
"""

import argparse
import os
from pathlib import Path

from trainer import Trainer, TrainerArgs

from TTS.tts.configs.naturalspeech_config import NaturalspeechConfig
from TTS.tts.layers.naturalspeech.pretraining.config import MixedPhonemePretrainingConfig
from TTS.tts.layers.naturalspeech.pretraining.corpus import prepare_pretraining_data
from TTS.tts.layers.naturalspeech.pretraining.model import MixedPhonemePretraining

RECIPE_DIR = Path(__file__).resolve().parent
DEFAULT_CORPUS = (
    Path(os.environ.get("NATURALSPEECH_SHARED_DATA", RECIPE_DIR.parents[2].parent / "shared" / "data"))
    / "ljspeech_transcripts.txt"
)


def make_config(output_path: str | Path, corpus_path: str | Path, **overrides) -> MixedPhonemePretrainingConfig:
    """The pre-training config, with the text settings of the NaturalSpeech LJSpeech recipe."""
    tts_config = NaturalspeechConfig(
        text_cleaner="english_cleaners", use_phonemes=True, phoneme_language="en-us", phonemizer="espeak"
    )
    values = {
        "run_name": "naturalspeech_phoneme_pretraining",
        "output_path": str(output_path),
        "corpus_path": str(corpus_path),
        "phoneme_cache_path": str(Path(output_path) / "phoneme_cache"),
        "batch_size": 32,
        "eval_batch_size": 32,
        "epochs": 300,
        "print_step": 50,
        "save_step": 5000,
        "print_eval": False,
        "mixed_precision": False,
    }
    return MixedPhonemePretrainingConfig.from_naturalspeech_config(tts_config, **(values | overrides))


def run(
    config: MixedPhonemePretrainingConfig, trainer_args: TrainerArgs | None = None, **trainer_options
) -> MixedPhonemePretraining:
    """Prepare the data, train with the Trainer and return the trained model.

    Args:
        config: The pre-training config.
        trainer_args: `TrainerArgs`, e.g. `continue_path` to resume a run; None starts a new run.
        **trainer_options: More `Trainer` arguments (e.g. `callbacks`, `parse_command_line_args=False`).
    """
    data = prepare_pretraining_data(config)
    model = MixedPhonemePretraining(config, data.sup_phonemes, pad_id=data.tokenizer.pad_id)
    trainer = Trainer(
        trainer_args or TrainerArgs(),
        config,
        config.output_path,
        model=model,
        train_samples=data.train_samples,
        eval_samples=data.eval_samples,
        **trainer_options,
    )
    trainer.fit()
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus_path", default=str(DEFAULT_CORPUS))
    parser.add_argument("--output_path", default=str(RECIPE_DIR / "pretraining_output"))
    args = parser.parse_args()
    run(make_config(args.output_path, args.corpus_path))


if __name__ == "__main__":
    main()
