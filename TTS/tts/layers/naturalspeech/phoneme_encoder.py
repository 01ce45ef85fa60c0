"""Phoneme encoder θ_pho of NaturalSpeech (paper, Section 3.1 and 3.2).

The VITS text encoder's transformer (6 blocks, hidden 192, relative positions), without VITS's projection to
phoneme-level prior statistics: NaturalSpeech's prior is frame-level and comes from the durator. The same module is
the encoder of mixed-phoneme pre-training, so a pre-trained state dict loads into it key for key.
"""

import math

import torch
from torch import nn

from TTS.tts.layers.glow_tts.transformer import RelativePositionTransformer
from TTS.tts.layers.naturalspeech.speakers import SpeakerToHidden
from TTS.tts.utils.helpers import sequence_mask


class PhonemeEncoder(nn.Module):
    """Phoneme embedding plus a relative-position transformer.

    Args:
        num_chars: Size of the phoneme vocabulary.
        hidden_channels: Channels of the embedding and the transformer.
        hidden_channels_ffn: Channels of the transformer's feed-forward layers.
        num_heads: Attention heads.
        num_layers: Transformer blocks.
        kernel_size: Kernel size of the feed-forward convolutions.
        dropout_p: Dropout rate.
        cond_channels: Channels of a global speaker vector `g` added (through a 1x1 convolution) to the input of
            block `cond_block`: VITS2's speaker-conditioned text encoder (arXiv 2307.16430, Section 2.4); 0 for
            none. Defaults to 0.
        cond_block: Index of the block whose input gets `g`; beyond the last block means the last. Defaults to 2.
    """

    def __init__(
        self,
        num_chars: int,
        hidden_channels: int,
        hidden_channels_ffn: int,
        num_heads: int,
        num_layers: int,
        kernel_size: int,
        dropout_p: float,
        cond_channels: int = 0,
        cond_block: int = 2,
    ):
        super().__init__()
        self.hidden_channels = hidden_channels
        self.emb = nn.Embedding(num_chars, hidden_channels)
        nn.init.normal_(self.emb.weight, 0.0, hidden_channels**-0.5)
        self.encoder = RelativePositionTransformer(
            in_channels=hidden_channels,
            out_channels=hidden_channels,
            hidden_channels=hidden_channels,
            hidden_channels_ffn=hidden_channels_ffn,
            num_heads=num_heads,
            num_layers=num_layers,
            kernel_size=kernel_size,
            dropout_p=dropout_p,
            layer_norm_type="2",
            rel_attn_window_size=4,
        )
        # created after the transformer, so a model without it initialises exactly as before
        self.cond = SpeakerToHidden(cond_channels, hidden_channels) if cond_channels > 0 else None
        self.cond_block = min(cond_block, num_layers - 1)

    def forward(
        self,
        tokens: torch.Tensor,
        token_lengths: torch.Tensor,
        extra_embedding: torch.Tensor | None = None,
        g: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode a padded batch of phoneme ids.

        Args:
            tokens: Phoneme ids.
            token_lengths: Number of valid tokens of each item.
            extra_embedding: Added to the phoneme embedding before the transformer (pre-training adds the
                sup-phoneme embedding here). Defaults to None.
            g: Speaker vector, read only by an encoder built with `cond_channels`. Defaults to None.

        Returns:
            The hidden states `h` and the token mask.

        Shapes:
            - tokens: :math:`[B, T_text]`
            - token_lengths: :math:`[B]`
            - extra_embedding: :math:`[B, T_text, C]`
            - g: :math:`[B, C_g, 1]`
            - h: :math:`[B, C, T_text]`
            - x_mask: :math:`[B, 1, T_text]`
        """
        x = self.emb(tokens)
        if extra_embedding is not None:
            x = x + extra_embedding
        x = (x * math.sqrt(self.hidden_channels)).transpose(1, 2)  # [B, C, T_text]
        x_mask = sequence_mask(token_lengths, x.size(2)).unsqueeze(1).to(x.dtype)
        if self.cond is None or g is None:
            h = self.encoder(x * x_mask, x_mask)
        else:
            h = self._conditioned_encoder(x * x_mask, x_mask, g)
        return h * x_mask, x_mask

    def _conditioned_encoder(self, x: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """The toolkit transformer's own block loop, with `g` added to the input of block `cond_block`."""
        encoder = self.encoder
        attn_mask = x_mask.unsqueeze(2) * x_mask.unsqueeze(-1)
        for index in range(encoder.num_layers):
            if index == self.cond_block:
                x = self.cond.condition(x, x_mask, g)
            x = x * x_mask
            y = encoder.dropout(encoder.attn_layers[index](x, x, attn_mask))
            x = encoder.norm_layers_1[index](x + y)
            y = encoder.dropout(encoder.ffn_layers[index](x, x_mask))
            x = encoder.norm_layers_2[index](x + y)
        return x * x_mask
