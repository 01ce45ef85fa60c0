"""Sup-phoneme input of the phoneme encoder in TTS (paper, Section 3.1).

Mixed-phoneme pre-training feeds the encoder the sum of each token's phoneme embedding and the embedding of the
sup-phoneme the token belongs to, and the paper keeps both inputs when the encoder serves TTS. `SupPhonemeEmbedding`
computes the sup-phoneme of every token from the phoneme ids with the pre-training's BPE (`SupPhonemeTokenizer.align`,
exactly as the pre-training batches are built) and looks up the pre-trained embedding, which
`PhonemeEncoder.forward(..., extra_embedding=...)` adds to the phoneme embedding.

The BPE is part of the module's state: a uint8 buffer `bpe` holding the tokenizer's JSON, saved in every checkpoint
next to the embedding table `emb.weight`. A trained TTS checkpoint therefore synthesizes without the pre-training
checkpoint, and the merges can never come apart from the table they index.
"""

import torch
from torch import nn

from TTS.tts.layers.naturalspeech.pretraining.corpus import SupPhonemeTokenizer


class SupPhonemeEmbedding(nn.Module):
    """Sup-phoneme embedding of every encoder token, from a pre-trained BPE and embedding table.

    Built only from trained weights (the pre-training checkpoint, or a TTS checkpoint): it never starts from a
    random table, and building it draws no random numbers.

    Args:
        tokenizer: The sup-phoneme BPE of the pre-training run.
        weight: The sup-phoneme embedding table (copied; it trains on with the TTS model).

    Shapes:
        - weight: :math:`[V_sup, C]`
    """

    def __init__(self, tokenizer: SupPhonemeTokenizer, weight: torch.Tensor):
        super().__init__()
        if weight.dim() != 2 or weight.size(0) != tokenizer.num_sup_phonemes:
            msg = (
                f"The sup-phoneme embedding table has shape {tuple(weight.shape)}, but the BPE has "
                f"{tokenizer.num_sup_phonemes} sup-phonemes: the table and the BPE are from different runs."
            )
            raise ValueError(msg)
        self.tokenizer = tokenizer
        self.emb = nn.Embedding.from_pretrained(weight.detach().clone(), freeze=False, padding_idx=tokenizer.pad_sup_id)
        self.register_buffer("bpe", tokenizer.to_tensor())

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], prefix: str = "") -> "SupPhonemeEmbedding":
        """The module saved in `state` under `prefix` (its `bpe` buffer and `emb.weight`)."""
        return cls(SupPhonemeTokenizer.from_tensor(state[f"{prefix}bpe"]), state[f"{prefix}emb.weight"])

    @property
    def vocabulary(self) -> list[str]:
        """The phoneme vocabulary the BPE was learned over (the TTS tokenizer's must be the same)."""
        return self.tokenizer.vocabulary

    def sup_ids(self, tokens: torch.Tensor, token_lengths: torch.Tensor) -> torch.Tensor:
        """Sup-phoneme id of every token: its BPE span's, `[BLNK]` for blanks, BOS and EOS, `[PAD]` after the length.

        The BPE runs on the CPU, one utterance at a time (a fraction of a millisecond each).

        Shapes:
            - tokens: :math:`[B, T_text]`
            - token_lengths: :math:`[B]`
            - output: :math:`[B, T_text]`
        """
        rows = padded_sup_ids(self.tokenizer, tokens.tolist(), token_lengths.tolist())
        return torch.tensor(rows, dtype=torch.long, device=tokens.device).view_as(tokens)

    def forward(self, tokens: torch.Tensor, token_lengths: torch.Tensor) -> torch.Tensor:
        """The sup-phoneme embedding of every token, to add to its phoneme embedding.

        Shapes:
            - tokens: :math:`[B, T_text]`
            - token_lengths: :math:`[B]`
            - output: :math:`[B, T_text, C]`
        """
        return self.emb(self.sup_ids(tokens, token_lengths))


def padded_sup_ids(tokenizer: SupPhonemeTokenizer, tokens: list[list[int]], lengths: list[int]) -> list[list[int]]:
    """Sup-phoneme ids of a padded batch of token id rows (see `SupPhonemeEmbedding.sup_ids`), as Python lists."""
    rows = []
    for ids, length in zip(tokens, lengths, strict=True):
        rows.append(tokenizer.align(ids[:length]).sup_ids + [tokenizer.pad_sup_id] * (len(ids) - length))
    return rows
