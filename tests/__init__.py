"""Shared helpers of the NaturalSpeech test suite.

Importing this package first makes the add-on import from this checkout (pytest imports it before `conftest.py`),
in this process and, through `tests/_site/sitecustomize.py`, in the interpreters the tests start.
"""

import importlib.util
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _import_addon_from_this_checkout() -> None:
    spec = importlib.util.spec_from_file_location(
        "naturalspeech_source_finder", REPO_ROOT / "build_backend/source_finder.py"
    )
    source_finder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(source_finder)
    source_finder.install(REPO_ROOT)
    os.environ["NATURALSPEECH_SOURCE_ROOT"] = str(REPO_ROOT)
    site_dir = str(REPO_ROOT / "tests" / "_site")
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if site_dir not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [site_dir, *paths]))


_import_addon_from_this_checkout()

from TTS.tts.configs.naturalspeech_config import NaturalspeechArgs, NaturalspeechConfig  # noqa: E402

SHARED_DATA = Path(os.environ.get("NATURALSPEECH_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
LJSPEECH_DIR = SHARED_DATA / "ljspeech"


def make_tiny_args(**overrides) -> NaturalspeechArgs:
    """Model arguments small enough to train a few steps on 2 CPU cores in seconds."""
    args = NaturalspeechArgs(
        hidden_channels=16,
        hidden_channels_ffn_phoneme_encoder=32,
        num_heads_phoneme_encoder=2,
        num_layers_phoneme_encoder=1,
        hidden_channels_durator=16,
        num_layers_posterior_encoder=2,
        num_flows=2,
        num_layers_flow=1,
        memory_bank_size=16,
        memory_init_max_frames=2000,
        memory_init_batch_size=256,
        resblock_kernel_sizes_decoder=[3],
        resblock_dilation_sizes_decoder=[[1, 3, 5]],
        upsample_initial_channel_decoder=32,
        periods_multi_period_discriminator=[2, 3],
        spec_segment_size=8,
    )
    for key, value in overrides.items():
        if not hasattr(args, key):
            msg = f"NaturalspeechArgs has no field '{key}'"
            raise AttributeError(msg)
        setattr(args, key, value)
    return args


def make_tiny_config(model_args: dict | None = None, **overrides) -> NaturalspeechConfig:
    """A tiny NaturalSpeech config; `model_args` overrides model arguments, keywords override config fields."""
    config = NaturalspeechConfig(
        model_args=make_tiny_args(**(model_args or {})),
        batch_size=2,
        eval_batch_size=2,
        num_loader_workers=0,
        num_eval_loader_workers=0,
        warmup_steps=2,
        tuning_start_step=4,
        print_step=1,
        test_sentences=[["Be a voice, not an echo."]],
    )
    for key, value in overrides.items():
        if not hasattr(config, key):
            msg = f"NaturalspeechConfig has no field '{key}'"
            raise AttributeError(msg)
        setattr(config, key, value)
    return config


def make_phonemizing_tiny_config(model_args: dict | None = None, **overrides) -> NaturalspeechConfig:
    """`make_tiny_config` phonemizing English with espeak-ng, as user text is read; skips without espeak-ng."""
    import shutil

    import pytest

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (make setup installs it)")
    english = {"phonemizer": "espeak", "phoneme_language": "en-us", "text_cleaner": "english_cleaners"}
    return make_tiny_config(model_args, use_phonemes=True, **{**english, **overrides})


def make_ljspeech_config(data_path, output_path, model_args: dict | None = None, **overrides) -> NaturalspeechConfig:
    """A tiny config that reads an LJSpeech-format folder and phonemizes with espeak-ng, as the recipes do."""
    from TTS.tts.configs.shared_configs import BaseDatasetConfig

    config = make_tiny_config(model_args=model_args)
    config.datasets = [BaseDatasetConfig(formatter="ljspeech", path=str(data_path), meta_file_train="metadata.csv")]
    config.use_phonemes = True
    config.phonemizer = "espeak"
    config.phoneme_language = "en-us"
    config.text_cleaner = "english_cleaners"
    config.phoneme_cache_path = str(Path(output_path) / "phoneme_cache")
    config.output_path = str(output_path)
    for key, value in overrides.items():
        if not hasattr(config, key):
            msg = f"NaturalspeechConfig has no field '{key}'"
            raise AttributeError(msg)
        setattr(config, key, value)
    return config


def load_samples(config: NaturalspeechConfig, clip_ids: list[str]) -> list[dict]:
    """The dataset samples of the given clip ids (file stems)."""
    from TTS.tts.datasets import load_tts_samples

    samples, _ = load_tts_samples(config, eval_split=False)
    return [s for s in samples if Path(s["audio_file"]).stem in clip_ids]


def load_batch(config: NaturalspeechConfig, model, clip_ids: list[str]) -> dict:
    """One formatted training batch of the given clips, through the model's own data loader."""
    loader = model.get_data_loader(config, samples=load_samples(config, clip_ids))
    batch = next(iter(loader))
    return model.format_batch_on_device(model.format_batch(batch))


def load_run_model(run_dir, checkpoint: str = "best_model.pth"):
    """The `Naturalspeech` model of a training run folder (its `config.json` and `checkpoint`), in eval mode."""
    from TTS.config import load_config
    from TTS.tts.models.naturalspeech import Naturalspeech

    config = load_config(str(Path(run_dir) / "config.json"))
    model = Naturalspeech.init_from_config(config)
    model.load_checkpoint(config, str(Path(run_dir) / checkpoint), eval=True)
    return model


def stop_process(process) -> None:
    """Terminate a server started by a test; kill it if it has not exited after 30 s."""
    import subprocess

    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
