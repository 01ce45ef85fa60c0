"""When warm-up may end: the main stage waits until the duration predictor explains the aligned durations.

The main stage lays the frame-level prior out on the *predicted* durations (soft-DTW) and fits the memory bank. The
paper enters it at a fixed point, long after the predictor has learned (its warm-up is the first 1k of 15k epochs on
8 GPUs). With short schedules the fixed step can come first: in the learning benchmark
(`benchmarks/README.md`, section 7) the predictor still predicts one constant duration for every token at the 300-step
boundary (explained variance 0.00), the prior of every token is then spread over the same number of frames, and the
text encoder stops learning phoneme structure (token variation 0.054 against 0.128 for the same model kept in
warm-up for the whole 60 CPU-minutes, which is ahead of VITS on every held-out metric).

`MainStageGate` holds the main stage back until the predictor explains at least `min_explained_variance` of the
variance of the aligned log durations (1 - residual variance / aligned variance, both averaged over training steps
with `momentum`), and records the step at which it opened, so a resumed run stays in its stage. With
`min_explained_variance <= 0` it is the paper's schedule: the main stage starts at `warmup_steps`, whatever the
predictor has learned.
"""

import logging

import torch
from torch import Tensor, nn

logger = logging.getLogger(__name__)

NOT_OPENED = -1


class MainStageGate(nn.Module):
    """Tracks how much of the aligned log-duration variance the duration predictor explains; opens the main stage.

    Args:
        min_explained_variance: Explained variance (R², from 0 to 1) the predictor needs before the main stage
            starts; 0 or less starts it at `warmup_steps` as the paper does.
        momentum: Momentum of the tracked variances (per training step). Defaults to 0.99.
    """

    def __init__(self, min_explained_variance: float, momentum: float = 0.99):
        super().__init__()
        if min_explained_variance >= 1:
            msg = f"main_stage_min_duration_r2 must be below 1 (an explained variance), got {min_explained_variance}"
            raise ValueError(msg)
        self.min_explained_variance = min_explained_variance
        self.momentum = momentum
        self.register_buffer("residual_variance", torch.zeros(()))
        self.register_buffer("aligned_variance", torch.zeros(()))
        self.register_buffer("opened_at_step", torch.tensor(NOT_OPENED, dtype=torch.long))

    @property
    def explained_variance(self) -> float:
        """Tracked `1 - residual / aligned` log-duration variance; 0 before any step was tracked."""
        if self.aligned_variance <= 0:
            return 0.0
        return float(1 - self.residual_variance / self.aligned_variance)

    @torch.no_grad()
    def track(self, residual_variance: Tensor, aligned_variance: Tensor) -> None:
        """Fold one training step's residual and aligned log-duration variances into the tracked ones."""
        residual_variance, aligned_variance = residual_variance.detach().float(), aligned_variance.detach().float()
        if not (torch.isfinite(residual_variance) and torch.isfinite(aligned_variance)):
            return
        if self.aligned_variance == 0:  # the first step: no history to average with
            self.residual_variance.copy_(residual_variance)
            self.aligned_variance.copy_(aligned_variance)
        else:
            self.residual_variance.lerp_(residual_variance, 1 - self.momentum)
            self.aligned_variance.lerp_(aligned_variance, 1 - self.momentum)

    def update(self, step: int, warmup_steps: int) -> None:
        """Open the main stage at `step` if warm-up has lasted `warmup_steps` and the predictor has learned enough."""
        if self.min_explained_variance <= 0 or int(self.opened_at_step) != NOT_OPENED or step < warmup_steps:
            return
        explained = self.explained_variance
        if explained >= self.min_explained_variance:
            self.opened_at_step.fill_(step)
            logger.info(
                "Main stage opens at step %d: the duration predictor explains %.2f of the aligned log-duration "
                "variance (main_stage_min_duration_r2 = %.2f)",
                step,
                explained,
                self.min_explained_variance,
            )
        elif step == warmup_steps or step % 100 == 0:
            logger.info(
                "Warm-up continues at step %d: the duration predictor explains %.2f of the aligned log-duration "
                "variance, below main_stage_min_duration_r2 = %.2f",
                step,
                explained,
                self.min_explained_variance,
            )

    def is_open(self, step: int, warmup_steps: int) -> bool:
        """Whether `step` is past warm-up."""
        if self.min_explained_variance <= 0:
            return step >= warmup_steps
        opened = int(self.opened_at_step)
        return opened != NOT_OPENED and step >= opened

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # checkpoints from before the gate: nothing tracked, not opened (a gated run then re-tracks from its next step)
        state_dict.setdefault(prefix + "residual_variance", torch.zeros(()))
        state_dict.setdefault(prefix + "aligned_variance", torch.zeros(()))
        state_dict.setdefault(prefix + "opened_at_step", torch.tensor(NOT_OPENED, dtype=torch.long))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
