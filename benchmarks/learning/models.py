"""The runs of the learning benchmark: NaturalSpeech, the toolkit's VITS and NaturalSpeech ablations at one size.

Every run is a config built through the public config classes (`NaturalspeechConfig`, `VitsConfig`) with:

- the matched model shapes of `benchmarks/common.py` (`SIZES`, default "medium": hidden 96, a 128-channel HiFi-GAN,
  about 3.3M inference parameters; the fields both models have take the same values);
- the text settings of the LJSpeech recipe (`ljspeech_phonemes`: espeak-ng `en-us`, `english_cleaners`, the
  toolkit's default IPA characters, blanks between tokens), reading `<corpus_dir>/train`;
- the same batch size, learning rates, segment size and audio settings (22,050 Hz, hop 256) for every run;
- no evaluation loop, no test-sentence synthesis, no best-model copies (they cost CPU time the budget should
  spend on training); `train_budget.py` saves the checkpoints.

NaturalSpeech's stage boundaries are steps (`warmup_steps`, `tuning_start_step`) while the budgets are CPU time, so
both are parameters: warm-up ends after `warmup_steps` (default 300, ~40 CPU-minutes at the default settings; 100
for the ablations, so that they spend about a third of a 20-minute budget in the main stage), tuning starts at the
model's default (far beyond any budget here) unless given. The ablations of main-stage components
(`MAIN_STAGE_ABLATIONS`) only differ from `naturalspeech` after warm-up. Measured with `train_budget.py` (1,200
clips, 1 thread, shared 2-core machine) in budget seconds (CPU seconds / threads) per step:

    size, batch         VITS   NaturalSpeech warm-up   NaturalSpeech main (memory bank, soft-DTW, L_fwd, L_e2e)
    "small", 16         26.7   26.3                    43.9
    "medium", 4          7.4    7.0                    12.0

    python benchmarks/learning/models.py            # parameter counts of every run
"""

import argparse
import logging
import sys
from pathlib import Path

BENCHMARKS_DIR = Path(__file__).resolve().parents[1]
RECIPE_DIR = BENCHMARKS_DIR.parent / "recipes" / "ljspeech" / "naturalspeech"
for _path in (BENCHMARKS_DIR, RECIPE_DIR):  # `common`, `parameter_count` and the recipe's `train_naturalspeech`
    if str(_path) not in sys.path:
        sys.path.insert(1, str(_path))

from common import SIZES, install_source_finder, matched_args, parameter_count  # noqa: E402

install_source_finder()

logger = logging.getLogger(__name__)

# run name -> (model, NaturalspeechArgs switches); each ablation switches off one component of the paper and keeps
# the paper's name for it ("no soft-DTW": MAS durations and frame-aligned KL terms after warm-up)
RUNS: dict[str, tuple[str, dict]] = {
    "naturalspeech": ("naturalspeech", {}),
    "vits": ("vits", {}),
    "ns-no-memory-bank": ("naturalspeech", {"use_memory_bank": False}),
    "ns-no-soft-dtw": ("naturalspeech", {"use_predicted_durations": False}),
    "ns-no-forward-kl": ("naturalspeech", {"use_forward_kl": False}),
    "ns-no-learnable-upsampling": ("naturalspeech", {"use_learnable_upsampling": False}),
    "ns-pretrained-encoder": ("naturalspeech", {}),  # + `pretrained_encoder_path`
    # not a paper component but a departure under test: the KL terms do not train the predicted durations
    # (`benchmarks/README.md` section 8: on the synthetic durator task their gradient unteaches durations)
    "ns-detached-durations": ("naturalspeech", {"detach_predicted_durations": True}),
    # VITS2's options (issue #16), each added to the paper's model: measured at the ablations' budget against their
    # baseline; the MAS noise follows VITS2's schedule (0.01, down by 2e-6 per step)
    "ns-duration-discriminator": ("naturalspeech", {"use_duration_discriminator": True}),
    "ns-transformer-flow": ("naturalspeech", {"use_transformer_flow": True}),
    "ns-mas-noise": ("naturalspeech", {"mas_noise_scale": 0.01, "mas_noise_decay_steps": 5000}),
    # `benchmarks/two_speakers.py`: a learned speaker embedding, trained on a corpus of two voices
    "two-speakers": ("naturalspeech", {"use_speaker_embedding": True}),
}
# multi-speaker runs -> their speaker names; their corpus' `train/metadata.csv` is in the toolkit's `coqui` format
# (`audio_file|text|speaker_name`, with that header) instead of LJSpeech's. The ids are the toolkit's SpeakerManager's:
# sorted by name (look them up in `model.speaker_manager.name_to_id`)
SPEAKER_RUNS: dict[str, tuple[str, ...]] = {"two-speakers": ("lj", "joe")}
MAIN_RUNS = ("naturalspeech", "vits")
ABLATION_RUNS = tuple(name for name in RUNS if name not in MAIN_RUNS and name not in SPEAKER_RUNS)
PRETRAINED_ENCODER_RUN = "ns-pretrained-encoder"
# these switch off components that start after warm-up: before `warmup_steps` they train exactly as `naturalspeech`
MAIN_STAGE_ABLATIONS = ("ns-no-memory-bank", "ns-no-soft-dtw", "ns-no-forward-kl", "ns-detached-durations")
# mixed-phoneme pre-training of the matched encoder on the LJSpeech transcripts without LJ050 (the recipe's corpus),
# for `ns-pretrained-encoder`; trained to a CPU budget like the TTS runs
PRETRAINING_RUN = "pretrain-encoder"

# the settings of the committed results (`benchmarks/README.md` section 7): size "small" at batch 16 gets ~140 steps
# in a CPU-hour (table above), "medium" at batch 4 ~450; the learning rate is 5x the paper's 2e-4 for so few steps
DEFAULT_SIZE = "medium"
DEFAULT_BATCH_SIZE = 4
DEFAULT_LR = 1e-3
DEFAULT_WARMUP_STEPS = 300  # the main pair: NaturalSpeech enters its main stage inside a 60-minute budget
ABLATION_WARMUP_STEPS = 100  # the ablations: ~100 main-stage steps inside their 20-minute budget
VITS_NOISE_SCALE_DP = 0.8  # Piper's noise_w; the toolkit's VITS default is 1.0
NEVER = 10**9  # a step/epoch count no budget reaches: switches a periodic Trainer action off


def check_run(run: str) -> None:
    """Raise a ValueError naming the known runs if `run` is not one of them."""
    if run not in RUNS and run != PRETRAINING_RUN:
        msg = f"Unknown run '{run}'; known runs: {', '.join(RUNS)}, {PRETRAINING_RUN}."
        raise ValueError(msg)


def make_config(
    run: str,
    corpus_dir: str | Path,
    output_path: str | Path,
    *,
    size: str = DEFAULT_SIZE,
    batch_size: int = DEFAULT_BATCH_SIZE,
    lr: float = DEFAULT_LR,
    warmup_steps: int = DEFAULT_WARMUP_STEPS,
    tuning_start_step: int | None = None,
    pretrained_encoder_path: str | Path | None = None,
):
    """The training config of one run.

    Args:
        run: A name of `RUNS`.
        corpus_dir: The benchmark corpus; training reads `<corpus_dir>/train` (LJSpeech format; the `coqui` format
            with a speaker column for the runs of `SPEAKER_RUNS`).
        output_path: Where the Trainer puts the run (and the phoneme cache).
        size: A size of `common.SIZES`.
        batch_size: Clips per training step (every run).
        lr: Learning rate of the generator and the discriminator (every run).
        warmup_steps: NaturalSpeech: the step at which warm-up ends (memory bank init, soft-DTW, L_fwd start).
        tuning_start_step: NaturalSpeech: the step at which L_e2e tuning starts; None keeps the model's default.
        pretrained_encoder_path: Mixed-phoneme pre-training checkpoint; required by (and only used for) the
            `ns-pretrained-encoder` run.

    Returns:
        A `NaturalspeechConfig` or `VitsConfig`.
    """
    from train_naturalspeech import ljspeech_phonemes

    from TTS.tts.configs.naturalspeech_config import NaturalspeechArgs, NaturalspeechConfig
    from TTS.tts.configs.shared_configs import BaseDatasetConfig
    from TTS.tts.configs.vits_config import VitsArgs, VitsConfig

    check_run(run)
    if size not in SIZES:
        msg = f"Unknown size '{size}'; known sizes: {', '.join(SIZES)}."
        raise ValueError(msg)
    if run == PRETRAINING_RUN:
        return make_pretraining_config(output_path, size=size)
    model, switches = RUNS[run]
    if run == PRETRAINED_ENCODER_RUN and not pretrained_encoder_path:
        msg = f"Run '{run}' needs pretrained_encoder_path (see pretrain_encoder.py)."
        raise ValueError(msg)
    ns_args, vits_args = matched_args(size)
    shared = {
        **ljspeech_phonemes(Path(corpus_dir) / "train", output_path),
        **training_settings(batch_size, lr),
        "run_name": run,
    }
    if model == "vits":
        return VitsConfig(model_args=VitsArgs(**vits_args, inference_noise_scale_dp=VITS_NOISE_SCALE_DP), **shared)
    if pretrained_encoder_path:
        switches = {**switches, "pretrained_encoder_path": str(pretrained_encoder_path)}
    if run in SPEAKER_RUNS:
        shared["datasets"] = [
            BaseDatasetConfig(formatter="coqui", meta_file_train="metadata.csv", path=str(Path(corpus_dir) / "train"))
        ]
    config = NaturalspeechConfig(model_args=NaturalspeechArgs(**ns_args, **switches), **shared)
    if run in SPEAKER_RUNS:
        config.speakers = list(SPEAKER_RUNS[run])
    config.warmup_steps = warmup_steps
    if tuning_start_step is not None:
        config.tuning_start_step = tuning_start_step
    if config.tuning_start_step <= config.warmup_steps:
        msg = f"tuning_start_step ({config.tuning_start_step}) must come after warmup_steps ({warmup_steps})."
        raise ValueError(msg)
    return config


def training_settings(batch_size: int, lr: float) -> dict:
    """Config fields every run shares: data loading in the training process, checkpoints by `train_budget.py`."""
    return {
        "batch_size": batch_size,
        "eval_batch_size": batch_size,
        "lr_gen": lr,
        "lr_disc": lr,
        "epochs": NEVER,  # the CPU budget ends the run
        "num_loader_workers": 0,  # data loading is part of the training cost the budget measures
        "num_eval_loader_workers": 0,
        "mixed_precision": False,
        "run_eval": False,
        "test_delay_epochs": NEVER,
        "print_step": 25,
        "plot_step": 25,
        "save_step": NEVER,  # rolling checkpoints are saved by CPU time, by the budget callback
        "log_model_step": NEVER,
        "save_n_checkpoints": 2,
        "save_best_after": NEVER,  # no best_model copies (no eval loss to pick them by)
        "save_on_interrupt": True,
    }


def make_pretraining_config(output_path: str | Path, size: str = DEFAULT_SIZE, **overrides):
    """The phoneme pre-training recipe's config with the encoder shape and text settings of the NaturalSpeech run.

    Args:
        output_path: Where the Trainer puts the run (and the phonemized corpus).
        size: A size of `common.SIZES`: the encoder of `make_config("naturalspeech", size=size)`.
        **overrides: More `MixedPhonemePretrainingConfig` fields (e.g. `max_sentences`).
    """
    from pretrain_phoneme_encoder import DEFAULT_CORPUS
    from pretrain_phoneme_encoder import make_config as recipe_config

    from TTS.tts.layers.naturalspeech.pretraining.config import ENCODER_FIELDS

    naturalspeech = make_config("naturalspeech", output_path, output_path, size=size)
    encoder = {name: getattr(naturalspeech.model_args, name) for name in ENCODER_FIELDS}
    budget = {
        key: value
        for key, value in training_settings(batch_size=32, lr=0.0).items()
        if not key.startswith(("lr_", "batch_size", "eval_batch_size"))  # the recipe's batch size and schedule
    }
    # about one epoch of the corpus fits 30 CPU-minutes (~4 CPU-s per step of 32 sentences), so the learning rate
    # warms up over 400 steps instead of the recipe's 4000 (meant for many epochs on a GPU)
    schedule = {"lr_scheduler_params": {"warmup_steps": 400}}
    return recipe_config(
        output_path, DEFAULT_CORPUS, run_name=PRETRAINING_RUN, **encoder, **budget, **(schedule | overrides)
    )


def build_model(config):
    """The model of a run's config, found by name as the toolkit's `train_tts` does."""
    from TTS.tts.models import setup_model

    return setup_model(config)


def parameter_counts(model) -> dict[str, int]:
    """Inference parameters (as `benchmarks/parameter_count.py` counts them), generator (all but the
    discriminators) and all parameters of a NaturalSpeech or VITS model."""
    from parameter_count import NATURALSPEECH_INFERENCE, VITS_INFERENCE, breakdown

    if model.config.model == "vits":
        rows = breakdown(model, VITS_INFERENCE, ("post_",))
    else:
        rows = breakdown(model, NATURALSPEECH_INFERENCE)
    total = parameter_count(model)
    return {
        "inference_params": sum(row.get("inference_params", 0) for row in rows),
        "generator_params": total - parameter_count(getattr(model, "disc", None)),
        "all_params": total,
    }


def describe_runs(size: str = DEFAULT_SIZE, runs: list[str] | None = None) -> list[dict]:
    """Parameter counts of the runs at `size` (the pre-trained encoder run counts as `naturalspeech`)."""
    import tempfile

    rows = []
    with tempfile.TemporaryDirectory() as work_dir:
        for run in runs or [r for r in RUNS if r != PRETRAINED_ENCODER_RUN]:
            model = build_model(make_config(run, work_dir, work_dir, size=size))
            rows.append({"run": run, "size": size, **parameter_counts(model)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default=DEFAULT_SIZE, choices=list(SIZES))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows = describe_runs(args.size)
    reference = next(row for row in rows if row["run"] == "vits")["inference_params"]
    print(f"{'run':28} {'inference':>10} {'generator':>10} {'all':>10}  inference / VITS")
    for row in rows:
        print(
            f"{row['run']:28} {row['inference_params'] / 1e6:9.2f}M {row['generator_params'] / 1e6:9.2f}M "
            f"{row['all_params'] / 1e6:9.2f}M  {row['inference_params'] / reference:.3f}"
        )


if __name__ == "__main__":
    main()
