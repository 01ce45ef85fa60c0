"""Training losses of NaturalSpeech (paper, Section 3.5): L = L_bwd + L_fwd + L_rec + L_e2e (+ duration loss).

The adversarial pieces are the toolkit's VITS losses; what is new here is the KL between prior and posterior when
the two sequences have different lengths (soft-DTW over the frame-pair KL cost), and the weighting of the terms.
Everything is computed in float32 with autocast off: mixed-precision NaN in KL and flow terms is the most common
VITS training failure.
"""

from typing import NamedTuple

import torch
from coqpit import Coqpit
from torch import nn

from TTS.tts.layers.losses import VitsDiscriminatorLoss, feature_loss, generator_loss
from TTS.tts.layers.naturalspeech.gaussian_kl import gaussian_kl_aligned, gaussian_kl_matrix
from TTS.tts.layers.naturalspeech.soft_alignment import soft_alignment_cost
from TTS.tts.layers.naturalspeech.soft_dtw import SoftDTW
from TTS.tts.utils.helpers import sequence_mask

SOFT_DTW_STEPS = ("posterior_once", "symmetric")
POSTERIOR_SIDES = ("sample", "target")


class FrameGaussians(NamedTuple):
    """One side of a KL term: per-frame values (a sample or the means), their log-stds and the valid frames.

    Shapes:
        - values, log_std: :math:`[B, C, T]`
        - lengths: :math:`[B]`
    """

    values: torch.Tensor
    log_std: torch.Tensor
    lengths: torch.Tensor


class PriorPosteriorKL(nn.Module):
    """Single-sample KL of a sampled sequence under a target Gaussian sequence, aligned or under soft alignment.

    With equal lengths (durations from alignment search) the frames are paired one to one, exactly like the VITS KL.
    With different lengths (predicted durations) the frame-pair KL matrix is scored by a soft-DTW:

    - `"posterior_once"` (default): every posterior frame is scored exactly once (`soft_alignment.py`), whichever
      side the sample is; a prior frame that explains one more posterior frame, or none, pays the warp penalty. The
      number of summed cells is the posterior length, fixed by the data: no path is rewarded for its length (the
      cells may be negative), and no prior for being shorter (when the rows were the prior's sampled frames, a prior
      k frames too short saved k cells for k warps: measured in `benchmarks/durator_variants.py`, the loss was lower
      at 0.8x the true durations than at the true ones).
    - `"symmetric"`: the paper's soft-DTW (`soft_dtw.py`): one cell per step, horizontal and vertical steps pay the
      warp penalty. Negative cells reward longer paths (measured: durations grew ~5x in 100 steps).

    Both are normalised by `num_frames`, the posterior frame count, which no alignment can change.

    Args:
        soft_dtw_gamma: Smoothing of the soft minimum.
        soft_dtw_warp: Warp penalty per latent channel; multiplied by the channel count because the cost sums the
            KL over channels (0.07 · 192 = 13.44 at the paper's size).
        channels: Latent channels.
        soft_dtw_steps: `"posterior_once"` or `"symmetric"`, see above.
        soft_dtw_bandwidth: Optional Sakoe-Chiba band (symmetric steps only).
        soft_dtw_backend: "auto", "cpu" or "cuda" (symmetric steps only).
    """

    def __init__(
        self,
        soft_dtw_gamma: float,
        soft_dtw_warp: float,
        channels: int,
        soft_dtw_steps: str = "posterior_once",
        soft_dtw_bandwidth: int | None = None,
        soft_dtw_backend: str = "auto",
    ):
        super().__init__()
        if soft_dtw_steps not in SOFT_DTW_STEPS:
            raise ValueError(f"soft_dtw_steps must be one of {SOFT_DTW_STEPS}, got {soft_dtw_steps!r}.")
        self.gamma = soft_dtw_gamma
        self.warp = soft_dtw_warp * channels
        self.steps = soft_dtw_steps
        self.soft_dtw = SoftDTW(
            gamma=soft_dtw_gamma, warp=self.warp, bandwidth=soft_dtw_bandwidth, backend=soft_dtw_backend
        )

    def forward(
        self,
        *,
        sample: FrameGaussians,
        target: FrameGaussians,
        num_frames: torch.Tensor,
        aligned: bool,
        posterior: str = "sample",
    ) -> torch.Tensor:
        """KL of `sample.values` (drawn with `sample.log_std`) under the target Gaussians, per posterior frame.

        Args:
            sample: The flow-mapped sample and the log-std of the distribution it was drawn from.
            target: Means and log-stds of the scoring distribution.
            num_frames: Posterior frames per item (the normaliser).
            aligned: Pair frame t with frame t (the two sides must have equal lengths).
            posterior: Which side is the posterior, `"sample"` (L_bwd) or `"target"` (L_fwd): under soft alignment
                its frames are the ones scored exactly once.
        """
        if posterior not in POSTERIOR_SIDES:
            raise ValueError(f"posterior must be one of {POSTERIOR_SIDES}, got {posterior!r}.")
        with torch.autocast(device_type=sample.values.device.type, enabled=False):
            values, log_std = sample.values.float(), sample.log_std.float()
            mean_target, log_std_target = target.values.float(), target.log_std.float()
            if aligned:
                mask = sequence_mask(target.lengths, mean_target.size(2)).unsqueeze(1).float()
                return gaussian_kl_aligned(values, log_std, mean_target, log_std_target, mask)
            cost = gaussian_kl_matrix(values, log_std, mean_target, log_std_target)  # [B, N_sample, M_target]
            lengths = (sample.lengths, target.lengths)
            if self.steps == "posterior_once" and posterior == "target":
                cost, lengths = cost.transpose(1, 2), lengths[::-1]
            return self.soft_alignment_kl(cost, *lengths) / num_frames.sum()

    def soft_alignment_kl(self, cost: torch.Tensor, lengths_n: torch.Tensor, lengths_m: torch.Tensor) -> torch.Tensor:
        """Sum over the batch of the soft-minimum path cost of a frame-pair cost (rows: posterior frames).

        Shapes:
            - cost: :math:`[B, N, M]`
            - lengths_n, lengths_m: :math:`[B]`
        """
        if self.steps == "posterior_once":
            return soft_alignment_cost(cost, lengths_n, lengths_m, self.gamma, self.warp).sum()
        return self.soft_dtw(cost, lengths_n, lengths_m).sum()


class NaturalspeechGeneratorLoss(nn.Module):
    """Weighted sum of the generator-side losses; returns a dict with `"loss"` and every weighted part.

    Args:
        config: A `NaturalspeechConfig` (reads the `*_loss_alpha` weights).
    """

    def __init__(self, config: Coqpit):
        super().__init__()
        self.weights = {
            "loss_mel": config.mel_loss_alpha,
            "loss_feat": config.feat_loss_alpha,
            "loss_gen": config.gen_loss_alpha,
            "loss_e2e": config.e2e_loss_alpha,
            "loss_kl_bwd": config.kl_bwd_loss_alpha,
            "loss_kl_fwd": config.kl_fwd_loss_alpha,
            "loss_align": config.align_loss_alpha,
            "loss_duration": config.duration_loss_alpha,
        }

    def forward(
        self,
        mel_slice: torch.Tensor,
        mel_slice_hat: torch.Tensor,
        scores_disc_fake: list[torch.Tensor],
        feats_disc_fake: list[list[torch.Tensor]],
        feats_disc_real: list[list[torch.Tensor]],
        kl_terms: dict[str, torch.Tensor],
        scores_disc_e2e: list[torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Combine the reconstruction, adversarial and KL losses.

        Args:
            mel_slice: Mel spectrogram slice of the recording.
            mel_slice_hat: Mel spectrogram of the decoded slice (posterior path).
            scores_disc_fake: Discriminator scores of the decoded slice.
            feats_disc_fake: Discriminator features of the decoded slice.
            feats_disc_real: Discriminator features of the recording slice.
            kl_terms: Unweighted `loss_kl_bwd`, `loss_kl_fwd`, `loss_align`, `loss_duration` values present in
                this training stage.
            scores_disc_e2e: Discriminator scores of the prior-path slice (tuning stage only).

        Shapes:
            - mel_slice, mel_slice_hat: :math:`[B, C_mel, T_slice]`
        """
        with torch.autocast(device_type=mel_slice.device.type, enabled=False):
            parts = {
                "loss_mel": nn.functional.l1_loss(mel_slice_hat.float(), mel_slice.float()),
                "loss_feat": feature_loss(feats_real=feats_disc_real, feats_generated=feats_disc_fake),
                "loss_gen": generator_loss(scores_fake=scores_disc_fake)[0],
            }
            if scores_disc_e2e is not None:
                parts["loss_e2e"] = generator_loss(scores_fake=scores_disc_e2e)[0]
            parts.update({name: value.float() for name, value in kl_terms.items()})
            weighted = {name: value * self.weights[name] for name, value in parts.items()}
        weighted["loss"] = sum(weighted.values())
        return weighted


class NaturalspeechDiscriminatorLoss(nn.Module):
    """The VITS discriminator loss on recordings and posterior-path fakes, plus the prior-path fakes' own weight.

    Args:
        config: A `NaturalspeechConfig` (reads `disc_loss_alpha` and `disc_e2e_loss_alpha`).
    """

    def __init__(self, config: Coqpit):
        super().__init__()
        self.vits_loss = VitsDiscriminatorLoss(config)
        self.e2e_weight = config.disc_loss_alpha * config.disc_e2e_loss_alpha

    def forward(
        self,
        scores_real: list[torch.Tensor],
        scores_fake: list[torch.Tensor],
        scores_e2e: list[torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Loss dict with `"loss"`, `"loss_disc"` and, when prior-path fakes are given, `"loss_disc_e2e"`."""
        loss_dict = self.vits_loss(scores_real, scores_fake)
        if scores_e2e is not None:
            loss_dict["loss_disc_e2e"] = self.e2e_weight * sum(torch.mean(score.float() ** 2) for score in scores_e2e)
            loss_dict["loss"] = loss_dict["loss"] + loss_dict["loss_disc_e2e"]
        return loss_dict


def _log_duration_residuals(log_durations: torch.Tensor, target_durations: torch.Tensor, x_mask: torch.Tensor):
    target = torch.log(target_durations.float().unsqueeze(1) + 1e-6) * x_mask
    return (target - log_durations.float()) * x_mask


def duration_loss(log_durations: torch.Tensor, target_durations: torch.Tensor, x_mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error between predicted and target log durations over the valid tokens.

    Shapes:
        - log_durations: :math:`[B, 1, T_text]`
        - target_durations: :math:`[B, T_text]` (frames)
        - x_mask: :math:`[B, 1, T_text]`
    """
    residuals = _log_duration_residuals(log_durations, target_durations, x_mask)
    return torch.sum(residuals**2) / torch.sum(x_mask)


def _masked_variance(values: torch.Tensor, x_mask: torch.Tensor) -> torch.Tensor:
    count = torch.sum(x_mask)
    mean = torch.sum(values * x_mask) / count
    return torch.sum((values * x_mask) ** 2) / count - mean**2


@torch.no_grad()
def log_duration_residual_variance(
    log_durations: torch.Tensor, target_durations: torch.Tensor, x_mask: torch.Tensor
) -> torch.Tensor:
    """Variance of the target minus predicted log durations over the valid tokens: the duration loss without the
    squared mean residual, so that a predictor whose level is off (early in training) is not taken for a noisy one.
    Shapes as `duration_loss`."""
    return _masked_variance(_log_duration_residuals(log_durations, target_durations, x_mask), x_mask)


@torch.no_grad()
def aligned_log_duration_variance(target_durations: torch.Tensor, x_mask: torch.Tensor) -> torch.Tensor:
    """Variance of the target log durations over the valid tokens: what a constant prediction leaves as residual.
    Shapes as `duration_loss`."""
    return _masked_variance(torch.log(target_durations.float().unsqueeze(1) + 1e-6), x_mask)
