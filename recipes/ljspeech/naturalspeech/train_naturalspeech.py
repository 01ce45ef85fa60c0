"""Train NaturalSpeech on LJSpeech with the paper's settings (Tan et al., 2022, arXiv 2205.04421).

Usage::

    LJSPEECH_PATH=/data/LJSpeech-1.1 python recipes/ljspeech/naturalspeech/train_naturalspeech.py
    # several GPUs:
    LJSPEECH_PATH=... python -m trainer.distribute --script recipes/ljspeech/naturalspeech/train_naturalspeech.py \
        --gpus 0,1,2,3
    # resume / fine-tune:
    python recipes/ljspeech/naturalspeech/train_naturalspeech.py --continue_path <run folder>
    python recipes/ljspeech/naturalspeech/train_naturalspeech.py --restore_path <checkpoint.pth>

See README.md in this folder for hardware, time and memory per stage.
"""

import os
from pathlib import Path

from trainer import Trainer, TrainerArgs

from TTS.tts.configs.naturalspeech_config import NaturalspeechArgs, NaturalspeechConfig
from TTS.tts.configs.shared_configs import BaseDatasetConfig
from TTS.tts.datasets import load_tts_samples
from TTS.tts.models.base_tts import BaseTTS
from TTS.tts.models.naturalspeech import Naturalspeech

RECIPE_DIR = Path(__file__).resolve().parent
DEFAULT_DATA_PATH = RECIPE_DIR / "../LJSpeech-1.1"
HELD_OUT_PREFIX = "LJ050-"  # the paper's evaluation sentences: never trained on


def ljspeech_phonemes(data_path: str | os.PathLike, output_path: str | os.PathLike) -> dict:
    """Config fields shared by the recipes: one LJSpeech folder, phonemized with espeak-ng as the phoneme
    pre-training recipe does, the run and the phoneme cache under `output_path`."""
    return {
        "datasets": [BaseDatasetConfig(formatter="ljspeech", meta_file_train="metadata.csv", path=str(data_path))],
        "output_path": str(output_path),
        "text_cleaner": "english_cleaners",
        "use_phonemes": True,
        "phonemizer": "espeak",
        "phoneme_language": "en-us",
        "phoneme_cache_path": str(Path(output_path) / "phoneme_cache"),
    }


def make_config(data_path: str | os.PathLike, output_path: str | os.PathLike) -> NaturalspeechConfig:
    """The paper's configuration (Section 4.1) on one LJSpeech folder."""
    return NaturalspeechConfig(
        run_name="naturalspeech_ljspeech",
        model_args=NaturalspeechArgs(pretrained_encoder_path=os.environ.get("PRETRAINED_ENCODER")),
        **ljspeech_phonemes(data_path, output_path),
        compute_input_seq_cache=True,
        # paper: 8 V100s, dynamic batches of 8000 frames per GPU (~ 16 LJSpeech clips), 15k epochs
        batch_size=16,
        eval_batch_size=16,
        batch_group_size=5,
        num_loader_workers=8,
        num_eval_loader_workers=4,
        epochs=15_000,
        # stage boundaries in steps for 8 GPUs x 16 clips (~100 steps/epoch): warm-up 1k epochs, tuning last 2k
        warmup_steps=100_000,
        tuning_start_step=1_300_000,
        lr_gen=2e-4,
        lr_disc=2e-4,
        run_eval=True,
        test_delay_epochs=-1,
        print_step=50,
        print_eval=True,
        save_step=10_000,
        mixed_precision=True,
    )


def load_samples(config: NaturalspeechConfig) -> tuple[list, list]:
    """Train/eval split of LJSpeech with the held-out LJ050 sentences removed from both."""
    train_samples, eval_samples = load_tts_samples(
        config, eval_split=True, eval_split_max_size=config.eval_split_max_size, eval_split_size=config.eval_split_size
    )

    def keep(samples: list) -> list:
        return [s for s in samples if not Path(s["audio_file"]).name.startswith(HELD_OUT_PREFIX)]

    return keep(train_samples), keep(eval_samples)


def train(
    config: NaturalspeechConfig,
    samples: tuple[list, list] | None = None,
    *,
    model: BaseTTS | None = None,
    trainer_args: TrainerArgs | None = None,
    **trainer_options,
) -> Path:
    """Train `config` with the toolkit's Trainer; returns the run folder.

    Args:
        config: The recipe's config.
        samples: Train and eval samples; None loads them from the config's LJSpeech folder (`load_samples`).
        model: The model to train, built from `config`; None builds `Naturalspeech(config)`. Another toolkit model
            (e.g. `Vits`) trains the same way, which is how the learning benchmark trains its baseline.
        trainer_args: `TrainerArgs`, e.g. `continue_path` to resume a run; None starts a new run.
        **trainer_options: More `Trainer` arguments (e.g. `callbacks`); command-line Trainer arguments apply unless
            `parse_command_line_args=False`.
    """
    train_samples, eval_samples = samples or load_samples(config)
    if model is None:
        model = Naturalspeech(config)
    trainer = Trainer(
        trainer_args or TrainerArgs(),
        model.config,
        config.output_path,
        model=model,
        train_samples=train_samples,
        eval_samples=eval_samples,
        **trainer_options,
    )
    trainer.fit()
    return Path(trainer.output_path)


def main() -> None:
    train(make_config(os.environ.get("LJSPEECH_PATH", str(DEFAULT_DATA_PATH)), RECIPE_DIR))


if __name__ == "__main__":
    main()
