"""A CPU-sized NaturalSpeech: every component and all four training stages, small enough for 2 cores.

It will not speak well after minutes of training; it exists to run the whole pipeline on a laptop or in CI, and as
the starting point for experiments on small hardware. Usage::

    LJSPEECH_PATH=/data/LJSpeech-1.1 python recipes/ljspeech/naturalspeech/train_naturalspeech_cpu.py
"""

import os
from pathlib import Path

from train_naturalspeech import (  # this folder is on sys.path when a script here runs
    DEFAULT_DATA_PATH,
    ljspeech_phonemes,
    train,
)

from TTS.tts.configs.naturalspeech_config import NaturalspeechArgs, NaturalspeechConfig

RECIPE_DIR = Path(__file__).resolve().parent


def make_cpu_config(
    data_path: str | os.PathLike,
    output_path: str | os.PathLike,
    epochs: int = 40,
    steps_per_epoch: int = 4,
) -> NaturalspeechConfig:
    """A small model (about 1M parameters) whose stages split `epochs` into 30% warm-up, 50% main, 20% tuning."""
    total_steps = epochs * steps_per_epoch
    model_args = NaturalspeechArgs(
        hidden_channels=64,
        hidden_channels_ffn_phoneme_encoder=128,
        num_layers_phoneme_encoder=2,
        hidden_channels_durator=64,
        num_layers_posterior_encoder=4,
        num_flows=2,
        num_layers_flow=2,
        memory_bank_size=64,
        memory_init_max_frames=20_000,
        memory_init_batch_size=1024,
        resblock_kernel_sizes_decoder=[3, 7],
        resblock_dilation_sizes_decoder=[[1, 3, 5], [1, 3, 5]],
        upsample_initial_channel_decoder=64,
        periods_multi_period_discriminator=[2, 3, 5],
        spec_segment_size=16,
    )
    return NaturalspeechConfig(
        run_name="naturalspeech_cpu",
        model_args=model_args,
        **ljspeech_phonemes(data_path, output_path),
        batch_size=8,
        eval_batch_size=4,
        eval_split_size=2,
        num_loader_workers=0,
        num_eval_loader_workers=0,
        epochs=epochs,
        warmup_steps=int(0.3 * total_steps),
        tuning_start_step=int(0.8 * total_steps),
        lr_gen=1e-3,
        lr_disc=1e-3,
        run_eval=True,
        test_delay_epochs=epochs,  # synthesis is checked once, by the caller, after training
        print_step=steps_per_epoch,
        save_step=10_000_000,  # the Trainer still saves at the end of every epoch
        mixed_precision=False,
    )


def main() -> None:
    train(make_cpu_config(os.environ.get("LJSPEECH_PATH", str(DEFAULT_DATA_PATH)), RECIPE_DIR / "runs"))


if __name__ == "__main__":
    main()
