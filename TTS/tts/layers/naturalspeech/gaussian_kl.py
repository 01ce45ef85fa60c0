"""Single-sample Gaussian KL terms of NaturalSpeech's bidirectional prior/posterior (paper, Section 3.3).

With `q(z|x) = N(μ_q, σ_q²)` the posterior, `p(z'|y) = N(μ_p, σ_p²)` the frame-level prior (both diagonal) and `f`
the volume-preserving flow (`log |det ∂f/∂z| = 0`), per channel and frame:

    term(s, log σ_s; μ_t, log σ_t) = log σ_t - log σ_s - 1/2 + 1/2 (s - μ_t)² exp(-2 log σ_t)

is `log N(s_0; μ_s, σ_s²) - log N(s; μ_t, σ_t²)` for a sample `s_0 = μ_s + σ_s ε` with `ε²` replaced by its mean 1,
and `s` the sample pushed through the flow. Its expectation is the KL exactly (no Jacobian term):

- backward loss (the VITS direction), sample the posterior and map it forward::

      L_bwd = KL(q(z|x) ‖ p(f(z)|y)) = E_q[log q(z|x) - log p(f(z)|y)]
      z = μ_q + σ_q ε;  sample = f(z), log_std_sample = log σ_q, target = (μ_p, log σ_p)

- forward loss, sample the prior and map it back::

      L_fwd = KL(p(z'|y) ‖ q(f⁻¹(z')|x)) = E_p[log p(z'|y) - log q(f⁻¹(z')|x)]
      z' = μ_p + σ_p ε;  sample = f⁻¹(z'), log_std_sample = log σ_p, target = (μ_q, log σ_q)

`gaussian_kl_aligned` scores frame t of the sample against frame t of the target (durations from monotonic
alignment search, equal lengths). `gaussian_kl_matrix` scores every sample frame n against every target frame m,
the cost matrix `[B, N, M]` of soft-DTW when the prior (predicted durations) and the posterior lengths differ:
for L_bwd `N = T_feats` posterior frames and `M` prior frames, for L_fwd the other way round.

Both run with autocast disabled: `gaussian_kl_aligned` in float32 (the toolkit's VITS KL casts its inputs),
`gaussian_kl_matrix` in float32, or float64 for float64 inputs.
"""

import logging

import torch
from torch import Tensor

from TTS.tts.layers.losses import VitsGeneratorLoss

logger = logging.getLogger(__name__)


def gaussian_kl_aligned(
    sample: Tensor, log_std_sample: Tensor, mean_target: Tensor, log_std_target: Tensor, mask: Tensor
) -> Tensor:
    """Frame-aligned single-sample KL, summed over channels and averaged over valid frames.

    Args:
        sample: The flow-mapped sample (`f(z)` for L_bwd, `f⁻¹(z')` for L_fwd).
        log_std_sample: Log-std of the distribution the sample was drawn from (`log σ_q` / `log σ_p`).
        mean_target: Mean of the scoring distribution (`μ_p` / `μ_q`).
        log_std_target: Its log-std (`log σ_p` / `log σ_q`).
        mask: 1 on valid frames, 0 on padding.

    Returns:
        Scalar `Σ_{b,c,t} term · mask / Σ_{b,t} mask`.

    Shapes:
        - sample, log_std_sample, mean_target, log_std_target: :math:`[B, C, T_feats]`
        - mask: :math:`[B, 1, T_feats]`
    """
    with torch.autocast(device_type=sample.device.type, enabled=False):
        # the toolkit's VITS KL is exactly this term, computed in float32
        return VitsGeneratorLoss.kl_loss(sample, log_std_sample, mean_target, log_std_target, mask)


def gaussian_kl_matrix(sample: Tensor, log_std_sample: Tensor, mean_target: Tensor, log_std_target: Tensor) -> Tensor:
    """Single-sample KL of every sample frame under every target frame, summed over channels.

    Expanding the square, with `w = exp(-2 log σ_t)`::

        cost[n, m] = Σ_c log σ_t[c, m] + 1/2 μ_t[c, m]² w[c, m]        (target term, [M])
                   - Σ_c log σ_s[c, n] + 1/2                            (sample term, [N])
                   + Σ_c 1/2 s[c, n]² w[c, m] - s[c, n] μ_t[c, m] w[c, m]  (one matmul over 2C channels)

    so memory is O(B·(N + M)·C + B·N·M), never `[B, N, M, C]`. Sample and target means are shifted by the same
    per-channel offset first (the cost is shift invariant) to limit cancellation in the expanded square.

    Args:
        sample: Flow-mapped sample frames (see `gaussian_kl_aligned`).
        log_std_sample: Log-std of the distribution the sample was drawn from.
        mean_target: Means of the scoring distribution.
        log_std_target: Its log-stds.

    Returns:
        The cost matrix; padding frames are not masked (soft-DTW reads only the valid lengths).

    Shapes:
        - sample, log_std_sample: :math:`[B, C, N]`
        - mean_target, log_std_target: :math:`[B, C, M]`
        - output: :math:`[B, N, M]`
    """
    with torch.autocast(device_type=sample.device.type, enabled=False):
        sample, log_std_sample, mean_target, log_std_target = (
            _at_least_float32(x) for x in (sample, log_std_sample, mean_target, log_std_target)
        )
        offset = mean_target.detach().mean(dim=2, keepdim=True)  # [B, C, 1]
        sample, mean_target = sample - offset, mean_target - offset
        precision = torch.exp(-2.0 * log_std_target)  # w, [B, C, M]
        target_term = (log_std_target + 0.5 * mean_target.square() * precision).sum(dim=1)  # [B, M]
        sample_term = (log_std_sample + 0.5).sum(dim=1)  # [B, N]
        left = torch.cat([0.5 * sample.square(), sample], dim=1)  # [B, 2C, N]
        right = torch.cat([precision, -mean_target * precision], dim=1)  # [B, 2C, M]
        cross = left.transpose(1, 2) @ right  # [B, N, 2C] @ [B, 2C, M] -> [B, N, M]
        return cross + target_term.unsqueeze(1) - sample_term.unsqueeze(2)


def _at_least_float32(x: Tensor) -> Tensor:
    return x if x.dtype == torch.float64 else x.float()
