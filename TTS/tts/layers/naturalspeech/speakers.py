"""Speaker conditioning of a multi-speaker NaturalSpeech (the toolkit's VITS scheme; VITS2's text encoder option).

NaturalSpeech is single-speaker in the paper. A multi-speaker model follows the toolkit's VITS: one global vector `g`
per utterance, a learned embedding of the speaker id (`emb_g`, `use_speaker_embedding`) or an external d-vector
(`use_d_vector_file`), conditions

- the posterior encoder, the flow and the HiFi-GAN decoder through their own `cond_channels` inputs (as in VITS);
- the durator and the alignment prior, through a 1x1 convolution of `g` added to the phoneme states they read (VITS
  conditions its duration predictor the same way): the duration predictor, the upsampling, the frame-level prior and
  the phoneme-level Gaussians scored by alignment search all see the speaker, in training and synthesis alike;
- optionally the phoneme encoder itself (VITS2, arXiv 2307.16430, Section 2.4).

The memory bank is speaker-independent: one bank of latent "words" shared by all speakers; the decoder gets `g`.

Speaker ids arrive in `aux_input["speaker_ids"]` (`[B]`) or d-vectors in `aux_input["d_vectors"]` (`[B, C]` or
`[B, C, 1]`), the keys the toolkit's `BaseTTS.synthesize` and VITS's `format_batch` use.
"""

from typing import Any

import torch
from torch import Tensor, nn


class SpeakerEmbedding(nn.Module):
    """The global speaker vector `g` of a batch: a learned embedding of speaker ids, or given d-vectors.

    Args:
        num_speakers: Speakers of the learned embedding; 0 when the model reads d-vectors.
        channels: Channels `C_g` of `g` (`speaker_embedding_channels`, or `d_vector_dim` for d-vectors).
    """

    def __init__(self, num_speakers: int, channels: int):
        super().__init__()
        self.num_speakers = num_speakers
        self.channels = channels
        self.emb_g = nn.Embedding(num_speakers, channels) if num_speakers > 0 else None

    def forward(self, speaker_ids: Tensor | None = None, d_vectors: Tensor | None = None) -> Tensor:
        """`g` from the speaker ids (learned embedding) or the d-vectors.

        Shapes:
            - speaker_ids: :math:`[B]`
            - d_vectors: :math:`[B, C_g]` or :math:`[B, C_g, 1]`
            - g: :math:`[B, C_g, 1]`
        """
        if self.emb_g is not None:
            if speaker_ids is None:
                msg = "This multi-speaker model needs speaker ids (`aux_input['speaker_ids']`, or a speaker name)."
                raise ValueError(msg)
            return self.emb_g(speaker_ids.reshape(-1).long()).unsqueeze(-1)
        if d_vectors is None:
            msg = "This multi-speaker model needs d-vectors (`aux_input['d_vectors']`, or a speaker name)."
            raise ValueError(msg)
        d_vectors = d_vectors if d_vectors.dim() == 3 else d_vectors.unsqueeze(-1)
        if d_vectors.size(1) != self.channels:
            msg = f"d-vectors have {d_vectors.size(1)} channels, the model expects d_vector_dim={self.channels}."
            raise ValueError(msg)
        return d_vectors

    def check_ids(self, speaker_ids: Tensor | None, names: list[str] | None = None) -> None:
        """A ValueError naming the valid ids (and names) if any speaker id is outside `[0, num_speakers)`."""
        if self.emb_g is None or speaker_ids is None:
            return
        ids = torch.as_tensor(speaker_ids).reshape(-1)
        bad = [int(i) for i in ids if not 0 <= int(i) < self.num_speakers]
        if bad:
            listing = f" ({', '.join(f'{i}: {n}' for i, n in enumerate(names))})" if names else ""
            last = self.num_speakers - 1
            msg = f"Speaker id {bad[0]} is out of range: this model has speaker ids 0 to {last}{listing}."
            raise ValueError(msg)


class SpeakerToHidden(nn.Conv1d):
    """A 1x1 convolution of `g` added to hidden states: `h + W g`, zero on padding.

    Shapes:
        - h: :math:`[B, C, T]`
        - mask: :math:`[B, 1, T]`
        - g: :math:`[B, C_g, 1]`
        - output: :math:`[B, C, T]`
    """

    def __init__(self, cond_channels: int, channels: int):
        super().__init__(cond_channels, channels, 1)

    def condition(self, h: Tensor, mask: Tensor, g: Tensor | None) -> Tensor:
        if g is None:
            return h
        return (h + super().forward(g.to(h.dtype))) * mask


def speaker_inputs(aux_input: dict[str, Any] | None) -> tuple[Tensor | None, Tensor | None]:
    """The speaker ids and d-vectors of an `aux_input` dict (VITS also accepted `sid`/`d_vectors` spellings)."""
    aux_input = aux_input or {}
    speaker_ids = aux_input.get("speaker_ids")
    if speaker_ids is None:
        speaker_ids = aux_input.get("sid")
    if speaker_ids is not None and not isinstance(speaker_ids, Tensor):
        speaker_ids = torch.as_tensor(speaker_ids, dtype=torch.long)
    d_vectors = aux_input.get("d_vectors")
    if d_vectors is not None and not isinstance(d_vectors, Tensor):
        d_vectors = torch.as_tensor(d_vectors, dtype=torch.float)
    return speaker_ids, d_vectors
