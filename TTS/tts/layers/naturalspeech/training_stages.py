"""The four training stages of NaturalSpeech (paper, Section 3.5) and what switches between them.

1. warm-up: durations from alignment search, L_bwd + L_rec + duration loss; no memory bank, no L_fwd, no L_e2e;
2. memory initialisation at the warm-up/main boundary: k-means over posterior latents fits the memory bank;
3. main: the paper's objective L_bwd + L_fwd + L_rec + L_e2e with the memory bank, and (optionally) predicted
   durations with the KL terms under soft alignment; `e2e_in_main_stage=False` leaves L_e2e to the tuning stage;
4. tuning: as main, with L_e2e whatever `e2e_in_main_stage` says.

The stage is a function of the global step and the config, so a resumed run lands in the right stage by
construction; whether the memory bank was fitted is model state saved in every checkpoint. With
`main_stage_min_duration_r2` the main stage also waits for the duration predictor (`main_stage_gate.py`); the step it
opened at is model state as well.
"""

import enum
import logging
from collections.abc import Callable, Iterable
from typing import NamedTuple

import torch
from coqpit import Coqpit

from TTS.tts.layers.naturalspeech.memory_bank import collect_latent_frames

logger = logging.getLogger(__name__)


class TrainingStage(enum.Enum):
    WARMUP = "warm-up"
    MAIN = "main"
    TUNING = "tuning"


class StageSwitches(NamedTuple):
    """What a training step computes in a stage, after the config's ablation switches."""

    stage: TrainingStage
    use_memory_bank: bool
    use_forward_kl: bool
    use_predicted_durations: bool
    use_e2e: bool


def stage_at(step: int, config: Coqpit, main_stage_open: bool | None = None) -> TrainingStage:
    """The training stage of global step `step`; `main_stage_open` overrides `step >= warmup_steps` (the gate of
    `main_stage_min_duration_r2`)."""
    if not (step >= config.warmup_steps if main_stage_open is None else main_stage_open):
        return TrainingStage.WARMUP
    if step < config.tuning_start_step:
        return TrainingStage.MAIN
    return TrainingStage.TUNING


def switches_at(step: int, config: Coqpit, main_stage_open: bool | None = None) -> StageSwitches:
    """The stage of `step` and the losses and components it turns on, honouring the ablation switches."""
    stage = stage_at(step, config, main_stage_open)
    after_warmup = stage is not TrainingStage.WARMUP
    args = config.model_args
    return StageSwitches(
        stage=stage,
        use_memory_bank=after_warmup and args.use_memory_bank,
        use_forward_kl=after_warmup and args.use_forward_kl,
        use_predicted_durations=after_warmup and args.use_predicted_durations,
        use_e2e=stage is TrainingStage.TUNING or (stage is TrainingStage.MAIN and config.e2e_in_main_stage),
    )


@torch.no_grad()
def gather_training_latents(
    batches: Iterable[dict],
    encode: Callable[[dict], tuple[torch.Tensor, torch.Tensor]],
    max_frames: int,
) -> torch.Tensor:
    """Gather up to `max_frames` valid latent frames from `batches`.

    Args:
        batches: Training batches (already formatted for the model).
        encode: Returns the latents `[B, C, T_feats]` and their mask `[B, 1, T_feats]` for a batch.
        max_frames: Stop once this many frames are gathered; the k-means initialiser samples from them.

    Shapes:
        - output: :math:`[N, C]`
    """
    frames, count = [], 0
    for batch in batches:
        latents, mask = encode(batch)
        valid = collect_latent_frames(latents, mask)
        frames.append(valid.float().cpu())
        count += valid.size(0)
        if count >= max_frames:
            break
    if not frames:
        msg = "No training batches to initialise the memory bank from."
        raise ValueError(msg)
    return torch.cat(frames)[:max_frames]
