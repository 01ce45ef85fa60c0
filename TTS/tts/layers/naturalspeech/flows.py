"""Flow of NaturalSpeech's bidirectional prior/posterior module θ_bpp (paper, Section 3.3).

An invertible map `f` from the posterior space (latents `z ~ q(z|x)` of the posterior encoder) to the prior space
(frame-level prior `p(z'|y)` of the durator). It is volume preserving, made of the toolkit's mean-only affine
coupling layers, so `log |det ∂f/∂z| = 0` and the single-sample KL terms of `gaussian_kl` are exact. `forward`
serves the backward loss L_bwd (posterior mapped into the prior space); `inverse` serves the forward loss L_fwd and
inference (prior samples mapped back to the posterior space, which the memory bank and the decoder read).
"""

import logging

import torch
from torch import Tensor, nn

from TTS.tts.layers.vits.networks import ResidualCouplingBlocks

logger = logging.getLogger(__name__)


class BidirectionalFlow(nn.Module):
    """Volume-preserving coupling flow `f`: posterior space -> prior space, run in float32 (float64 stays).

    Args:
        channels: Channels `C` of the latent; must be even.
        hidden_channels: Channels of the WaveNet predicting each coupling layer's shift.
        kernel_size: Kernel size of the WaveNet layers.
        dilation_rate: Dilation rate of the WaveNet layers.
        num_layers: WaveNet layers inside each coupling layer.
        num_flows: Coupling layers (each followed by a channel flip).
        cond_channels: Channels of an optional global conditioning vector (e.g. a speaker embedding); 0 for none.
    """

    def __init__(
        self,
        channels: int,
        hidden_channels: int,
        kernel_size: int,
        dilation_rate: int,
        num_layers: int,
        num_flows: int = 4,
        cond_channels: int = 0,
    ):
        super().__init__()
        self.flows = ResidualCouplingBlocks(
            channels,
            hidden_channels,
            kernel_size,
            dilation_rate,
            num_layers,
            num_flows=num_flows,
            cond_channels=cond_channels,
        )  # mean-only coupling layers: log-det 0

    def forward(self, z: Tensor, mask: Tensor, g: Tensor | None = None) -> Tensor:
        """Map posterior latents into the prior space: `f(z)`.

        Shapes:
            - z: :math:`[B, C, T_feats]`
            - mask: :math:`[B, 1, T_feats]`
            - g: :math:`[B, C_cond, 1]`
            - output: :math:`[B, C, T_feats]`, zero on padding frames
        """
        return self._run(z, mask, g, reverse=False)

    def inverse(self, z_p: Tensor, mask: Tensor, g: Tensor | None = None) -> Tensor:
        """Map prior-space latents back into the posterior space: `f^{-1}(z_p)`.

        Shapes:
            - z_p: :math:`[B, C, T_feats]`
            - mask: :math:`[B, 1, T_feats]`
            - g: :math:`[B, C_cond, 1]`
            - output: :math:`[B, C, T_feats]`, zero on padding frames
        """
        return self._run(z_p, mask, g, reverse=True)

    def _run(self, x: Tensor, mask: Tensor, g: Tensor | None, reverse: bool) -> Tensor:
        # flows in half precision are a known source of NaNs: keep them in float32 (or float64) under autocast
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x if x.dtype == torch.float64 else x.float()
            mask = mask.to(x.dtype)
            g = None if g is None else g.to(x.dtype)
            return self.flows(x * mask, mask, g=g, reverse=reverse) * mask
