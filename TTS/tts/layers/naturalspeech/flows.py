"""Flow of NaturalSpeech's bidirectional prior/posterior module θ_bpp (paper, Section 3.3).

An invertible map `f` from the posterior space (latents `z ~ q(z|x)` of the posterior encoder) to the prior space
(frame-level prior `p(z'|y)` of the durator). It is volume preserving, made of the toolkit's mean-only affine
coupling layers, so `log |det ∂f/∂z| = 0` and the single-sample KL terms of `gaussian_kl` are exact. `forward`
serves the backward loss L_bwd (posterior mapped into the prior space); `inverse` serves the forward loss L_fwd and
inference (prior samples mapped back to the posterior space, which the memory bank and the decoder read).

VITS2's transformer coupling layers (arXiv 2307.16430, Section 2.3) are an option (`use_transformer_flow`): each
coupling layer reads its input half through a self-attention block before the WaveNet, so the shift it predicts can
depend on frames beyond the WaveNet's receptive field. The shift still depends on the untouched half only, so the
layer stays exactly invertible and volume preserving.
"""

import logging

import torch
from torch import Tensor, nn

from TTS.tts.layers.glow_tts.transformer import RelativePositionTransformer
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
        use_transformer: VITS2's transformer coupling layers: a self-attention block before each WaveNet.
            Defaults to False.
        num_heads_transformer: Attention heads of those blocks. Defaults to 2.
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
        use_transformer: bool = False,
        num_heads_transformer: int = 2,
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
        if use_transformer:
            for coupling in self.flows.flows:
                coupling.enc = AttentionThenWaveNet(coupling.enc, hidden_channels, num_heads_transformer)

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


class AttentionThenWaveNet(nn.Module):
    """The shift network of a VITS2 transformer coupling layer: one relative-position transformer block, then the
    coupling layer's own WaveNet (it replaces the WaveNet as the layer's `enc`, so the toolkit's coupling code runs
    unchanged).

    Args:
        wavenet: The coupling layer's WaveNet.
        channels: Hidden channels of the coupling layer.
        num_heads: Attention heads.

    Shapes:
        - h: :math:`[B, C_hidden, T_feats]`
        - mask: :math:`[B, 1, T_feats]`
        - g: :math:`[B, C_cond, 1]`
        - output: :math:`[B, C_hidden, T_feats]`
    """

    def __init__(self, wavenet: nn.Module, channels: int, num_heads: int):
        super().__init__()
        self.attention = RelativePositionTransformer(
            in_channels=channels,
            out_channels=channels,
            hidden_channels=channels,
            hidden_channels_ffn=channels,
            num_heads=num_heads,
            num_layers=1,
            kernel_size=3,
            dropout_p=0.0,
            layer_norm_type="2",
            rel_attn_window_size=4,
        )
        self.wavenet = wavenet

    def forward(self, h: Tensor, mask: Tensor, g: Tensor | None = None) -> Tensor:
        return self.wavenet(self.attention(h * mask, mask), mask, g=g)
