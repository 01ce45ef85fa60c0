"""Train a multi-speaker NaturalSpeech on VCTK (paper-size model, the toolkit's VCTK VITS recipe settings).

NaturalSpeech (Tan et al., 2022, arXiv 2205.04421) is single-speaker; this recipe adds a learned speaker embedding
(`use_speaker_embedding`) as the toolkit's VITS does for VCTK. Not run yet: no hardware, time or results to report.

Usage::

    VCTK_PATH=/data/VCTK-Corpus-0.92 python recipes/vctk/naturalspeech/train_naturalspeech.py
    # several GPUs:
    VCTK_PATH=... python -m trainer.distribute --script recipes/vctk/naturalspeech/train_naturalspeech.py --gpus 0,1,2,3

VCTK 0.92 is 48 kHz FLAC; the model trains at 22.05 kHz. The data loader resamples each clip as it loads it (with one
warning per clip); resample the corpus once beforehand for speed.
"""

import os
from pathlib import Path

from trainer import Trainer, TrainerArgs

from TTS.tts.configs.naturalspeech_config import NaturalspeechArgs, NaturalspeechConfig
from TTS.tts.configs.shared_configs import BaseDatasetConfig
from TTS.tts.datasets import load_tts_samples
from TTS.tts.models.naturalspeech import Naturalspeech

RECIPE_DIR = Path(__file__).resolve().parent
DEFAULT_DATA_PATH = RECIPE_DIR / "../VCTK"


def make_config(data_path: str | os.PathLike, output_path: str | os.PathLike) -> NaturalspeechConfig:
    """Paper-size NaturalSpeech with a speaker embedding, batch and text limits of the toolkit's VCTK VITS recipe.

    The speakers are filled in from the data (`speakers_of`) before the model is built.
    """
    return NaturalspeechConfig(
        run_name="naturalspeech_vctk",
        model_args=NaturalspeechArgs(use_speaker_embedding=True, speaker_embedding_channels=256),
        datasets=[BaseDatasetConfig(formatter="vctk", path=str(data_path), meta_file_train="", language="en-us")],
        output_path=str(output_path),
        text_cleaner="english_cleaners",
        use_phonemes=True,
        phonemizer="espeak",
        phoneme_language="en-us",
        phoneme_cache_path=str(Path(output_path) / "phoneme_cache"),
        compute_input_seq_cache=True,
        batch_size=32,
        eval_batch_size=16,
        batch_group_size=5,
        num_loader_workers=4,
        num_eval_loader_workers=4,
        max_text_len=325,  # as the toolkit's VCTK VITS recipe, for 16 GB GPUs
        epochs=1000,
        # in steps, as the LJSpeech recipe: warm-up with alignment search, then main, then end-to-end tuning
        warmup_steps=100_000,
        tuning_start_step=1_300_000,
        lr_gen=2e-4,
        lr_disc=2e-4,
        run_eval=True,
        test_delay_epochs=-1,
        print_step=25,
        print_eval=False,
        save_step=10_000,
        mixed_precision=True,
    )


def speakers_of(samples: list[dict]) -> list[str]:
    """The speaker names of the samples, sorted: their index is the speaker id (saved in the run's config.json)."""
    return sorted({sample["speaker_name"] for sample in samples})


def main() -> None:
    config = make_config(os.environ.get("VCTK_PATH", str(DEFAULT_DATA_PATH)), RECIPE_DIR)
    train_samples, eval_samples = load_tts_samples(
        config, eval_split=True, eval_split_max_size=config.eval_split_max_size, eval_split_size=config.eval_split_size
    )
    config.speakers = speakers_of(train_samples + eval_samples)
    model = Naturalspeech(config)
    trainer = Trainer(
        TrainerArgs(),
        model.config,
        config.output_path,
        model=model,
        train_samples=train_samples,
        eval_samples=eval_samples,
    )
    trainer.fit()


if __name__ == "__main__":
    main()
