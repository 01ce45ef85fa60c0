"""VITS2's adversarial duration discriminator (Kong et al., 2023, arXiv 2307.16430, Section 2.2), an option.

A small convolutional network scores token durations given the phoneme states: the durations alignment search found
(real) against the durator's predicted ones (fake). It trains with the waveform discriminators (optimizer 0) on LSGAN
losses; the duration predictor gets the generator's LSGAN loss on top of its log-duration regression, which pushes
its output towards durations that look like real ones instead of their conditional mean. Not part of NaturalSpeech.

The phoneme states are detached: the discriminator judges durations given the text, and its adversarial gradient
reaches the duration predictor only, not the phoneme encoder (VITS2's public implementation also back-propagates
into the text encoder on the generator side; here the encoder keeps NaturalSpeech's objectives).
"""

import torch
from torch import Tensor, nn

from TTS.tts.layers.generic.normalization import LayerNorm2


class DurationDiscriminator(nn.Module):
    """Per-token real/fake scores of log durations given the phoneme states.

    Args:
        in_channels: Channels of the phoneme states.
        hidden_channels: Channels of the convolutions.
        kernel_size: Kernel size of the convolutions.
        dropout_p: Dropout rate. Defaults to 0.1.
    """

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int, dropout_p: float = 0.1):
        super().__init__()
        padding = kernel_size // 2
        self.pre = nn.Conv1d(in_channels, hidden_channels, kernel_size, padding=padding)
        self.norm_pre = LayerNorm2(hidden_channels)
        self.duration_proj = nn.Conv1d(1, hidden_channels, 1)
        self.conv = nn.Conv1d(2 * hidden_channels, hidden_channels, kernel_size, padding=padding)
        self.norm = LayerNorm2(hidden_channels)
        self.dropout = nn.Dropout(dropout_p)
        self.proj = nn.Conv1d(hidden_channels, 1, 1)

    def forward(self, h: Tensor, x_mask: Tensor, log_durations: Tensor) -> Tensor:
        """Scores, zero on padding tokens.

        Shapes:
            - h: :math:`[B, C, T_text]`
            - x_mask: :math:`[B, 1, T_text]`
            - log_durations: :math:`[B, 1, T_text]`
            - scores: :math:`[B, 1, T_text]`
        """
        x = self.dropout(self.norm_pre(torch.relu(self.pre(h * x_mask))))
        d = self.duration_proj(log_durations * x_mask)
        x = self.dropout(self.norm(torch.relu(self.conv(torch.cat([x, d], dim=1) * x_mask))))
        return self.proj(x * x_mask) * x_mask


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    return torch.sum(values * mask) / torch.sum(mask)


def duration_discriminator_loss(real_scores: Tensor, fake_scores: Tensor, x_mask: Tensor) -> Tensor:
    """LSGAN discriminator loss over the valid tokens: `E[(1 - D(real))^2] + E[D(fake)^2]`."""
    mask = x_mask.float()
    return _masked_mean((1 - real_scores.float()) ** 2, mask) + _masked_mean(fake_scores.float() ** 2, mask)


def duration_generator_loss(fake_scores: Tensor, x_mask: Tensor) -> Tensor:
    """LSGAN generator loss over the valid tokens: `E[(1 - D(fake))^2]`."""
    return _masked_mean((1 - fake_scores.float()) ** 2, x_mask.float())
