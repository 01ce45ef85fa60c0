"""Token durations for training: monotonic alignment search inside the model, or external labels.

NaturalSpeech's warm-up (paper, Section 3.5) needs durations before the durator can predict them. Instead of labels
from a separately trained aligner or VITS model (brittle: a length mismatch crashes the collate), the model scores
the posterior latents under a phoneme-level Gaussian (`AlignmentPrior`) and finds the most likely monotonic path, as
VITS does. The `monotonic_alignment_search` package does the search; this module builds its score matrix, trains the
phoneme-level Gaussians to score well, and reads optional external labels with clear errors.
"""

import logging
from pathlib import Path

import numpy as np
import torch
from monotonic_alignment_search import maximum_path
from torch import nn

from TTS.tts.layers.naturalspeech.gaussian_kl import gaussian_kl_matrix
from TTS.tts.layers.naturalspeech.losses import FrameGaussians, PriorPosteriorKL

logger = logging.getLogger(__name__)


@torch.no_grad()
def search_durations(
    z_p: torch.Tensor,
    mean: torch.Tensor,
    log_std: torch.Tensor,
    x_mask: torch.Tensor,
    y_mask: torch.Tensor,
    noise_scale: float = 0.0,
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
        noise_scale: VITS2's exploration noise (arXiv 2307.16430, Section 2.1): Gaussian noise of standard deviation
            `noise_scale` times the standard deviation of the valid scores is added to the scores before the search.
            0 (the default) is the plain search.

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
    if noise_scale > 0:
        scale = log_likelihood[pair_mask.expand_as(log_likelihood) > 0].std()
        log_likelihood = log_likelihood + torch.randn_like(log_likelihood) * scale * noise_scale
    path = maximum_path(log_likelihood, pair_mask)
    return path.sum(2), path


class AlignmentPrior(nn.Conv1d):
    """The phoneme-level Gaussians alignment search scores the posterior under: a 1x1 conv of the phoneme states.

    The NaturalSpeech prior is frame-level, so it cannot score a token-to-frame search itself. This is the
    `nn.Conv1d` itself, not a wrapper around one, so its weights keep the state-dict keys `alignment_prior.weight`
    and `alignment_prior.bias` of existing checkpoints.

    Args:
        channels: Channels of the phoneme hidden states and of the latents.
    """

    def __init__(self, channels: int):
        super().__init__(channels, 2 * channels, 1)

    def align(
        self,
        h: torch.Tensor,
        x_mask: torch.Tensor,
        z_p: torch.Tensor,
        logs_q: torch.Tensor,
        y_mask: torch.Tensor,
        kl: PriorPosteriorKL,
        durations: torch.Tensor | None = None,
        noise_scale: float = 0.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Durations from alignment search (or `durations`), and the KL that makes the search learn.

        The KL only trains these Gaussians to score the posterior: it reads a detached posterior, so it does not
        pull the posterior towards them on top of L_bwd (which would double the KL weight on the posterior).

        Args:
            h: Phoneme hidden states.
            x_mask: Token mask.
            z_p: Posterior latents mapped to the prior space by the flow.
            logs_q: Posterior log-std.
            y_mask: Frame mask.
            kl: The model's prior/posterior KL, used frame-aligned along the searched path.
            durations: Durations to return instead of the searched ones (external labels); the KL still follows
                the searched path.
            noise_scale: Noise on the search scores (see :func:`search_durations`). Defaults to 0.

        Returns:
            Durations in frames and the unweighted alignment KL `loss_align`.

        Shapes:
            - h: :math:`[B, C, T_text]`
            - x_mask: :math:`[B, 1, T_text]`
            - z_p, logs_q: :math:`[B, C, T_feats]`
            - y_mask: :math:`[B, 1, T_feats]`
            - durations: :math:`[B, T_text]`
        """
        mean, log_std = torch.split(self(h) * x_mask, self.in_channels, dim=1)
        searched, path = search_durations(z_p, mean, log_std, x_mask, y_mask, noise_scale)
        # the Gaussians expanded along the path: [B, C, T_text] x [B, T_text, T_feats] -> [B, C, T_feats]
        frame_mean, frame_log_std = mean @ path, log_std @ path
        frame_lengths = y_mask.sum((1, 2)).long()
        loss_align = kl(
            sample=FrameGaussians(z_p.detach(), logs_q.detach(), frame_lengths),
            target=FrameGaussians(frame_mean, frame_log_std, frame_lengths),
            num_frames=frame_lengths,
            aligned=True,
        )
        return (searched if durations is None else durations), loss_align


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
