"""Fine-tune a trained NaturalSpeech run on a new voice: a few minutes of speech in LJSpeech format.

Usage::

    python recipes/ljspeech/naturalspeech/finetune_naturalspeech.py --checkpoint <trained run folder or .pth> \\
        --data <folder with metadata.csv and wavs/> --output <folder> [--epochs 100] [--freeze phoneme_encoder]
    # resume an interrupted fine-tune (frozen parts, fitted memory bank and optimizers as they were)
    python recipes/ljspeech/naturalspeech/finetune_naturalspeech.py --continue_path <fine-tune run folder>

The fine-tune is the trained run's config with the new data, built through the toolkit's Trainer like the other
recipes (`train_naturalspeech.train`). It starts at step 0 with fresh optimizers, from the checkpoint's weights
(`NaturalspeechArgs.finetune_checkpoint_path`; a Trainer checkpoint carries the discriminator too). It skips warm-up
(`warmup_steps=0`): the durator and the memory bank exist already, so the run trains in the main stage from its first
step, which begins by fitting the memory bank again by k-means on the new voice's posterior latents. The phoneme set
may differ from the checkpoint's (`--phoneme-language`, or another `characters` config through `make_finetune_config`):
embedding rows are matched by symbol, and `finetune_report.json` in the run folder lists what was kept.
"""

import argparse
import logging
import os
import sys
from pathlib import Path

from train_naturalspeech import train  # this folder is on sys.path when a script here runs
from trainer import TrainerArgs

from TTS.tts.configs.naturalspeech_config import NaturalspeechConfig
from TTS.tts.configs.shared_configs import BaseDatasetConfig
from TTS.tts.datasets import load_tts_samples
from TTS.tts.layers.naturalspeech.runtime.finetuning import read_checkpoint
from TTS.utils.generic_utils import ConsoleFormatter, setup_logger

NEVER = 10**9


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint of `path`: the file itself, or the latest `checkpoint_<step>.pth` of a Trainer run folder.

    Raises:
        FileNotFoundError: Nothing at `path`, or a folder without checkpoints.
    """
    from trainer.io import get_last_checkpoint

    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        msg = f"No checkpoint or run folder at {path}."
        raise FileNotFoundError(msg)
    try:
        last, _ = get_last_checkpoint(path)
    except ValueError as error:
        msg = f"{path} holds no checkpoint_<step>.pth or best_model.pth to fine-tune from."
        raise FileNotFoundError(msg) from error
    return Path(last)


def source_config(checkpoint: str | os.PathLike) -> NaturalspeechConfig:
    """The training config of the run that wrote `checkpoint` (`config.json` beside it, else the one stored in it).

    Raises:
        FileNotFoundError, CheckpointError: See `finetuning.read_checkpoint`.
        ValueError: The checkpoint has no config to fine-tune with.
    """
    _, config_dict, _ = read_checkpoint(checkpoint)
    if config_dict is None:
        msg = f"{checkpoint} carries no config and has no config.json beside it: the fine-tune needs the run's config."
        raise ValueError(msg)
    config = NaturalspeechConfig()
    config.from_dict(config_dict)
    return config


def make_finetune_config(
    checkpoint: str | os.PathLike,
    data_path: str | os.PathLike,
    output_path: str | os.PathLike,
    *,
    epochs: int = 100,
    freeze_modules: list[str] | None = None,
    refit_memory_bank: bool = True,
    warmup_steps: int = 0,
    batch_size: int | None = None,
    lr: float | None = None,
    **overrides,
) -> NaturalspeechConfig:
    """The trained run's config, set to fine-tune from `checkpoint` on the LJSpeech-format folder `data_path`.

    Args:
        checkpoint: A checkpoint of the trained run (Trainer checkpoint or weights file with its config).
        data_path: The new voice's clips: `metadata.csv` and `wavs/`.
        output_path: Where the fine-tune's run folder and phoneme cache go.
        epochs: Epochs over the new data.
        freeze_modules: Parts that keep the checkpoint's weights (`NaturalspeechArgs.freeze_modules`).
        refit_memory_bank: Fit the memory bank again on the new voice (`finetune_refit_memory_bank`).
        warmup_steps: 0 trains in the main stage from the first step (the memory bank is fitted then); more reruns
            warm-up (alignment-search durations, no memory bank) first.
        batch_size: Clips per step; default the run's.
        lr: Learning rate of both optimizers; default the run's.
        **overrides: More config fields (e.g. `phoneme_language`, `characters` for another phoneme set).
    """
    config = source_config(checkpoint)
    args = config.model_args
    args.finetune_checkpoint_path = str(checkpoint)
    args.finetune_refit_memory_bank = refit_memory_bank
    args.freeze_modules = list(freeze_modules or [])
    args.init_discriminator = True  # a weights-only file of a run is saved without it; the fine-tune trains one
    args.pretrained_encoder_path = None  # the trained encoder is the checkpoint's
    config.datasets = [BaseDatasetConfig(formatter="ljspeech", meta_file_train="metadata.csv", path=str(data_path))]
    config.output_path = str(output_path)
    config.phoneme_cache_path = str(Path(output_path) / "phoneme_cache")
    config.run_name = f"{config.run_name}_finetune"
    config.epochs = epochs
    config.warmup_steps = warmup_steps
    config.tuning_start_step = max(config.tuning_start_step, warmup_steps + 1)
    if batch_size is not None:
        config.batch_size = config.eval_batch_size = batch_size
    if lr is not None:
        config.lr_gen = config.lr_disc = lr
    # minutes of data: no evaluation split, no test sentences between epochs (synthesize from the run afterwards)
    config.run_eval = False
    config.test_delay_epochs = NEVER
    for key, value in overrides.items():
        if not hasattr(config, key):
            msg = f"NaturalspeechConfig has no field '{key}'"
            raise AttributeError(msg)
        setattr(config, key, value)
    return config


def training_samples(config: NaturalspeechConfig) -> list[dict]:
    """Every clip of the config's dataset, at least one batch of them.

    Raises:
        ValueError: Fewer clips than one batch.
    """
    samples, _ = load_tts_samples(config, eval_split=False)
    if len(samples) < config.batch_size:
        msg = f"{len(samples)} clips in {config.datasets[0].path}, fewer than the batch size {config.batch_size}."
        raise ValueError(msg)
    return samples


def finetune(config: NaturalspeechConfig, *, trainer_args: TrainerArgs | None = None, **trainer_options) -> Path:
    """Fine-tune with the toolkit's Trainer (`train_naturalspeech.train`); returns the run folder."""
    trainer_options.setdefault("parse_command_line_args", False)
    return train(config, (training_samples(config), []), trainer_args=trainer_args, **trainer_options)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", help="the trained run: a Trainer run folder or a checkpoint file")
    p.add_argument("--data", help="the new voice: an LJSpeech-format folder (metadata.csv, wavs/)")
    p.add_argument("--output", default="finetune_runs", help="where the run folder goes")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--freeze", nargs="*", default=[], help="parts that do not train, e.g. phoneme_encoder durator")
    p.add_argument("--keep-memory-bank", action="store_true", help="keep the checkpoint's bank (no k-means re-fit)")
    p.add_argument("--warmup-steps", type=int, default=0)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--phoneme-language", help="espeak language of the new data (default: the run's)")
    p.add_argument("--continue_path", help="resume this fine-tune run folder (the other options are not read)")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    # the toolkit's console logging, as `train_tts` sets it up: the warm-start report and the stages are shown
    setup_logger("TTS", level=logging.INFO, stream=sys.stdout, formatter=ConsoleFormatter())
    if args.continue_path:
        from TTS.config import load_config

        config = load_config(str(Path(args.continue_path) / "config.json"))
        finetune(config, trainer_args=TrainerArgs(continue_path=args.continue_path))
        return
    if not args.checkpoint or not args.data:
        parser().error("--checkpoint and --data are required (or --continue_path)")
    overrides = {"phoneme_language": args.phoneme_language} if args.phoneme_language else {}
    config = make_finetune_config(
        resolve_checkpoint(args.checkpoint),
        args.data,
        args.output,
        epochs=args.epochs,
        freeze_modules=args.freeze,
        refit_memory_bank=not args.keep_memory_bank,
        warmup_steps=args.warmup_steps,
        batch_size=args.batch_size,
        lr=args.lr,
        **overrides,
    )
    finetune(config)


if __name__ == "__main__":
    main()
