"""Training losses of NaturalSpeech (paper, Section 3.5): L = L_bwd + L_fwd + L_rec + L_e2e (+ duration loss).

The adversarial pieces are the toolkit's VITS losses; what is new here is the KL between prior and posterior when
the two sequences have different lengths (soft-DTW over the frame-pair KL cost), and the weighting of the terms.
Everything is computed in float32 with autocast off: mixed-precision NaN in KL and flow terms is the most common
VITS training failure.
"""

import torch
from coqpit import Coqpit
from torch import nn

from TTS.tts.layers.losses import feature_loss, generator_loss
from TTS.tts.layers.naturalspeech.gaussian_kl import gaussian_kl_aligned, gaussian_kl_matrix
from TTS.tts.layers.naturalspeech.soft_dtw import SoftDTW
from TTS.tts.utils.helpers import sequence_mask


class PriorPosteriorKL(nn.Module):
    """Single-sample KL between a sampled sequence and a target Gaussian sequence, aligned or under soft-DTW.

    With equal lengths (durations from alignment search) the frames are paired one to one, exactly like the VITS KL.
    With different lengths (predicted durations) the frame-pair KL matrix is scored by soft-DTW, which finds the
    soft best monotonic pairing. Both are normalised by the number of target frames.

    Args:
        soft_dtw_gamma: Smoothing of soft-DTW.
        soft_dtw_warp: Warp penalty per latent channel; multiplied by the channel count because the cost sums the
            KL over channels.
        channels: Latent channels.
        soft_dtw_bandwidth: Optional Sakoe-Chiba band.
        soft_dtw_backend: "auto", "cpu" or "cuda".
    """

    def __init__(
        self,
        soft_dtw_gamma: float,
        soft_dtw_warp: float,
        channels: int,
        soft_dtw_bandwidth: int | None = None,
        soft_dtw_backend: str = "auto",
    ):
        super().__init__()
        self.soft_dtw = SoftDTW(
            gamma=soft_dtw_gamma,
            warp=soft_dtw_warp * channels,
            bandwidth=soft_dtw_bandwidth,
            backend=soft_dtw_backend,
        )

    def forward(
        self,
        sample: torch.Tensor,
        log_std_sample: torch.Tensor,
        sample_lengths: torch.Tensor,
        mean_target: torch.Tensor,
        log_std_target: torch.Tensor,
        target_lengths: torch.Tensor,
        aligned: bool,
    ) -> torch.Tensor:
        """KL of `sample` (with its own log-std) under the target Gaussians.

        Shapes:
            - sample, log_std_sample: :math:`[B, C, N]`
            - sample_lengths: :math:`[B]`
            - mean_target, log_std_target: :math:`[B, C, M]`
            - target_lengths: :math:`[B]`
        """
        with torch.autocast(device_type=sample.device.type, enabled=False):
            sample, log_std_sample = sample.float(), log_std_sample.float()
            mean_target, log_std_target = mean_target.float(), log_std_target.float()
            if aligned:
                mask = sequence_mask(target_lengths, mean_target.size(2)).unsqueeze(1).float()
                return gaussian_kl_aligned(sample, log_std_sample, mean_target, log_std_target, mask)
            cost = gaussian_kl_matrix(sample, log_std_sample, mean_target, log_std_target)  # [B, N, M]
            return self.soft_dtw_kl(cost, sample_lengths, target_lengths)

    def soft_dtw_kl(self, cost: torch.Tensor, lengths_n: torch.Tensor, lengths_m: torch.Tensor) -> torch.Tensor:
        """Soft-DTW of a frame-pair KL cost, with every item's cells shifted so the smallest valid one is zero.

        Single-sample KL terms can be negative, and a soft-DTW path sums one term per visited cell: negative cells
        would reward longer paths, i.e. teach the durator to stretch the prior (seen in training: durations grew
        ~5x within 100 steps of the main stage). Shifting all valid cells of an item by the same detached constant
        keeps which cells align and every cell's gradient, and removes that reward for length.

        Shapes:
            - cost: :math:`[B, N, M]`
            - lengths_n, lengths_m: :math:`[B]`
        """
        valid_n = sequence_mask(lengths_n, cost.size(1)).unsqueeze(2)  # [B, N, 1]
        valid = valid_n & sequence_mask(lengths_m, cost.size(2)).unsqueeze(1)  # [B, N, M]
        lowest = cost.detach().masked_fill(~valid, float("inf")).amin(dim=(1, 2))  # [B]
        shifted = cost - lowest.clamp(max=0.0)[:, None, None]
        path_costs = self.soft_dtw(shifted, lengths_n, lengths_m)  # [B]
        return path_costs.sum() / lengths_m.sum()


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
            "loss_duration": config.dur_loss_alpha,
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


def duration_loss(log_durations: torch.Tensor, target_durations: torch.Tensor, x_mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error between predicted and target log durations over the valid tokens.

    Shapes:
        - log_durations: :math:`[B, 1, T_text]`
        - target_durations: :math:`[B, T_text]` (frames)
        - x_mask: :math:`[B, 1, T_text]`
    """
    target = torch.log(target_durations.float().unsqueeze(1) + 1e-6) * x_mask
    return torch.sum((log_durations.float() - target) ** 2 * x_mask) / torch.sum(x_mask)
