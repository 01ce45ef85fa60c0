"""Token durations for training: monotonic alignment search inside the model, or external labels.

NaturalSpeech's warm-up (paper, Section 3.5) needs durations before the durator can predict them. Instead of labels
from a separately trained aligner or VITS model (brittle: a length mismatch crashes the collate), the model scores
the posterior latents under a phoneme-level Gaussian and finds the most likely monotonic path, as VITS does. The
`monotonic_alignment_search` package does the search; this module builds its score matrix and reads optional
external labels with clear errors.
"""

import logging
from pathlib import Path

import numpy as np
import torch
from monotonic_alignment_search import maximum_path

from TTS.tts.layers.naturalspeech.gaussian_kl import gaussian_kl_matrix

logger = logging.getLogger(__name__)


@torch.no_grad()
def search_durations(
    z_p: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor, x_mask: torch.Tensor, y_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Most likely monotonic alignment of latent frames to tokens.

    The log-likelihood of frame `j` under token `i` equals minus the frame-pair KL cost up to a constant per
    frame, and every monotonic path visits each frame once, so the KL matrix ranks paths exactly like the
    log-likelihood does.

    Args:
        z_p: Posterior latents mapped to the prior space by the flow.
        mean: Phoneme-level prior mean.
        log_std: Phoneme-level prior log-std.
        x_mask: Token mask.
        y_mask: Frame mask.

    Returns:
        Durations in frames (summing to each item's frame count) and the hard alignment path.

    Shapes:
        - z_p: :math:`[B, C, T_feats]`
        - mean, log_std: :math:`[B, C, T_text]`
        - x_mask: :math:`[B, 1, T_text]`
        - y_mask: :math:`[B, 1, T_feats]`
        - durations: :math:`[B, T_text]`
        - path: :math:`[B, T_text, T_feats]`
    """
    cost = gaussian_kl_matrix(z_p.float(), torch.zeros_like(z_p, dtype=torch.float), mean.float(), log_std.float())
    log_likelihood = -cost.transpose(1, 2).contiguous()  # [B, T_feats, T_text] -> [B, T_text, T_feats]
    pair_mask = x_mask.transpose(1, 2) * y_mask  # [B, T_text, 1] * [B, 1, T_feats]
    path = maximum_path(log_likelihood, pair_mask)
    return path.sum(2), path


def load_duration_labels(
    folder: str | Path,
    audio_files: list[str],
    token_lengths: torch.Tensor,
    frame_lengths: torch.Tensor,
    max_frame_mismatch: int = 2,
) -> torch.Tensor:
    """Read per-utterance duration labels (`<audio file stem>.npy`, frames per token) for a batch.

    A label whose frame total differs from the spectrogram length by at most `max_frame_mismatch` frames (aligners
    frame audio slightly differently) is corrected on its last token; a larger difference, or a label whose length
    differs from the tokenized text, raises a `ValueError` naming the file.

    Shapes:
        - token_lengths, frame_lengths: :math:`[B]`
        - output: :math:`[B, T_text]`
    """
    durations = torch.zeros(len(audio_files), int(token_lengths.max()))
    for index, audio_file in enumerate(audio_files):
        path = Path(folder) / f"{Path(audio_file).stem}.npy"
        if not path.is_file():
            msg = f"No duration label for '{audio_file}': expected {path}."
            raise ValueError(msg)
        label = torch.from_numpy(np.load(path).astype(np.float32)).flatten()
        num_tokens, num_frames = int(token_lengths[index]), int(frame_lengths[index])
        if label.numel() != num_tokens:
            msg = (
                f"Duration label {path} has {label.numel()} entries but the tokenized text has {num_tokens} tokens "
                "(were the labels made with the same phonemizer, cleaners and add_blank setting?)."
            )
            raise ValueError(msg)
        mismatch = num_frames - int(label.sum())
        if abs(mismatch) > max_frame_mismatch:
            msg = f"Duration label {path} sums to {int(label.sum())} frames but the audio has {num_frames} frames."
            raise ValueError(msg)
        label[-1] = max(float(label[-1]) + mismatch, 0.0)
        durations[index, :num_tokens] = label
    return durations.to(token_lengths.device)
