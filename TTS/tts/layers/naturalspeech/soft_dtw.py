"""Soft-DTW over a frame-pair cost matrix (NaturalSpeech, paper Section 3.3 "Bidirectional prior/posterior").

With predicted durations the prior has T_text_frames frames and the posterior T_feats frames, so NaturalSpeech
scores the KL terms under soft dynamic time warping (Cuturi & Blondel, 2017) with the warp penalty of Parallel
Tacotron 2 (Elias et al., 2021). The recurrence over a cost C of shape [N, M] is

    R[0, 0] = 0,   R[i, 0] = R[0, j] = +inf,
    R[i, j] = C[i, j] + softmin_γ(R[i-1, j-1], R[i-1, j] + warp, R[i, j-1] + warp),
    softmin_γ(a, b, c) = -γ log(exp(-a/γ) + exp(-b/γ) + exp(-c/γ)),

and the loss is R[N, M]. Steps that stay on one frame of either sequence pay `warp`; the diagonal step does not.
The paper uses γ = 0.01 and a per-channel warp of 0.07. When the cost is a KL summed over D channels, as in the
model (`gaussian_kl_matrix`), the warp must be summed the same way: 0.07·D, i.e. the model passes
`soft_dtw_warp * hidden_channels` (0.07 · 192 = 13.44 for D = 192).

Backends: a numba CPU kernel (parallel over the batch) and a numba.cuda anti-diagonal wavefront kernel
(`soft_dtw_cuda.py`). Both keep the DP table in float64 whatever the input dtype: a float32 table gives
gradients off by up to 0.35 at γ = 0.01 and T = 800. The backward pass is the E-matrix recursion of Cuturi &
Blondel (2017, Algorithm 2) with the warp term; every exponent in it is ≤ 0, so it cannot overflow.

Optional Sakoe-Chiba band: cell (i, j) is allowed when |i - j| ≤ bandwidth. Item b's band is widened to
|N_b - M_b| when narrower, because otherwise no path reaches (N_b, M_b) and the loss would be +inf.
"""

import logging
import math

import numpy as np
import torch
from numba import njit, prange
from torch import nn
from torch.autograd.function import once_differentiable

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "cpu", "cuda")


# exp(-40) < 2^-57: a term that small cannot change a float64 sum that is ≥ 1, so its exp/log are skipped (most
# predecessor gaps are many γ wide at γ = 0.01, so this is the common, fast case).
_NEGLIGIBLE_GAP = 40.0


@njit(cache=True)
def _softmin2(x: float, y: float, gamma: float) -> float:
    """-γ log(exp(-x/γ) + exp(-y/γ)), stable, with inf + inf = inf."""
    low, high = min(x, y), max(x, y)
    if high == np.inf:
        return low
    gap = (high - low) / gamma
    if gap > _NEGLIGIBLE_GAP:
        return low
    return low - gamma * math.log1p(math.exp(-gap))


@njit(cache=True)
def _forward_item(cost, n, m, width, gamma, warp, table):
    # `table` is [N + 1, M + 1]; row and column 0 are the +inf border. Cells past (n, m) are never touched.
    table[0, 0] = 0.0
    for j in range(1, m + 1):
        table[0, j] = np.inf
    for i in range(1, n + 1):
        table[i, 0] = np.inf
        low, high = max(1, i - width), min(m, i + width)
        left = np.inf  # R[i, j - 1], kept in a register
        for j in range(1, m + 1):
            if j < low or j > high:
                left = np.inf
            else:
                # softmin3 = softmin2(softmin2(diagonal, up), left): only the outer softmin2 waits on the previous
                # cell of this row, which keeps the serial dependency chain short.
                from_above = _softmin2(table[i - 1, j - 1], table[i - 1, j] + warp, gamma)
                left = cost[i - 1, j - 1] + _softmin2(from_above, left + warp, gamma)
            table[i, j] = left


@njit(parallel=True, cache=True)
def _forward_cpu(cost, lengths_n, lengths_m, widths, gamma, warp, table, values):
    for b in prange(cost.shape[0]):
        _forward_item(cost[b], lengths_n[b], lengths_m[b], widths[b], gamma, warp, table[b])
        values[b] = table[b, lengths_n[b], lengths_m[b]]


@njit(cache=True)
def _backward_item(cost, table, n, m, width, gamma, warp, scale, grad):
    # E[i, j] = dR[n, m] / dR[i, j]; row i only needs row i + 1, so two rows of float64 suffice.
    # A zero E means "no path through here" (outside the band, or underflow): skipping it also avoids inf - inf.
    e_next = np.zeros(m + 2)
    e_cur = np.zeros(m + 2)
    for i in range(n, 0, -1):
        e_cur[:] = 0.0
        low, high = max(1, i - width), min(m, i + width)
        for j in range(high, low - 1, -1):
            if i == n and j == m:
                e_cur[j] = 1.0
            else:
                r = table[i, j]
                e = 0.0
                if e_next[j] != 0.0:
                    e += e_next[j] * math.exp((table[i + 1, j] - cost[i, j - 1] - r - warp) / gamma)
                if e_cur[j + 1] != 0.0:
                    e += e_cur[j + 1] * math.exp((table[i, j + 1] - cost[i - 1, j] - r - warp) / gamma)
                if e_next[j + 1] != 0.0:
                    e += e_next[j + 1] * math.exp((table[i + 1, j + 1] - cost[i, j] - r) / gamma)
                e_cur[j] = e
            grad[i - 1, j - 1] = e_cur[j] * scale
        e_next, e_cur = e_cur, e_next


@njit(parallel=True, cache=True)
def _backward_cpu(cost, table, lengths_n, lengths_m, widths, gamma, warp, grad_output, grad):
    for b in prange(cost.shape[0]):
        _backward_item(cost[b], table[b], lengths_n[b], lengths_m[b], widths[b], gamma, warp, grad_output[b], grad[b])


def _numba_view(cost: torch.Tensor) -> torch.Tensor:
    """numba has no half types: half and bfloat16 costs are widened to float32 (exactly)."""
    if cost.dtype not in (torch.float32, torch.float64):
        cost = cost.float()
    return cost.contiguous()


def forward_cpu(cost, lengths_n, lengths_m, widths, gamma: float, warp: float) -> tuple[torch.Tensor, torch.Tensor]:
    """CPU forward pass: returns the values [B] (float64) and the DP table [B, N + 1, M + 1] (float64)."""
    batch, n, m = cost.shape
    cost = _numba_view(cost.detach())
    table = torch.empty((batch, n + 1, m + 1), dtype=torch.float64)
    values = torch.empty(batch, dtype=torch.float64)
    _forward_cpu(
        cost.numpy(), lengths_n.numpy(), lengths_m.numpy(), widths.numpy(), gamma, warp, table.numpy(), values.numpy()
    )
    return values, table


def backward_cpu(cost, table, lengths_n, lengths_m, widths, gamma: float, warp: float, grad_output) -> torch.Tensor:
    """CPU backward pass: returns dL/dcost [B, N, M] in the dtype numba computed with (float32 or float64)."""
    cost = _numba_view(cost.detach())
    grad = torch.zeros_like(cost)
    grad_output = grad_output.detach().to(torch.float64).contiguous()
    _backward_cpu(
        cost.numpy(),
        table.numpy(),
        lengths_n.numpy(),
        lengths_m.numpy(),
        widths.numpy(),
        gamma,
        warp,
        grad_output.numpy(),
        grad.numpy(),
    )
    return grad


class _SoftDTWFunction(torch.autograd.Function):
    """Autograd wrapper; gradients flow to `cost` only."""

    @staticmethod
    def forward(ctx, cost, lengths_n, lengths_m, widths, gamma, warp, use_cuda):
        if use_cuda:
            from TTS.tts.layers.naturalspeech import soft_dtw_cuda

            values, table = soft_dtw_cuda.forward_cuda(cost, lengths_n, lengths_m, widths, gamma, warp)
        else:
            values, table = forward_cpu(cost, lengths_n, lengths_m, widths, gamma, warp)
        ctx.save_for_backward(cost, table, lengths_n, lengths_m, widths)
        ctx.settings = (gamma, warp, use_cuda)
        return values.to(cost.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        cost, table, lengths_n, lengths_m, widths = ctx.saved_tensors
        gamma, warp, use_cuda = ctx.settings
        if use_cuda:
            from TTS.tts.layers.naturalspeech import soft_dtw_cuda

            grad = soft_dtw_cuda.backward_cuda(cost, table, lengths_n, lengths_m, widths, gamma, warp, grad_output)
        else:
            grad = backward_cpu(cost, table, lengths_n, lengths_m, widths, gamma, warp, grad_output)
        return grad.to(cost.dtype), None, None, None, None, None, None


def _check_lengths(name: str, lengths: torch.Tensor, batch: int, size: int) -> None:
    if not isinstance(lengths, torch.Tensor) or lengths.dim() != 1 or lengths.shape[0] != batch:
        raise ValueError(f"`{name}` must be a 1-D tensor with one length per batch item ({batch}).")
    if lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool:
        raise ValueError(f"`{name}` must be an integer tensor, got {lengths.dtype}.")
    if bool(((lengths < 1) | (lengths > size)).any()):
        raise ValueError(f"`{name}` must lie in [1, {size}], got {lengths.tolist()}.")


def _check_cost(cost: torch.Tensor, lengths_n: torch.Tensor, lengths_m: torch.Tensor) -> None:
    if torch.isfinite(cost).all():
        return
    # Padding may hold anything (it is ignored); only the valid region must be finite.
    _, n, m = cost.shape
    valid_n = torch.arange(n, device=cost.device)[None, :] < lengths_n.to(cost.device)[:, None]  # [B, N]
    valid_m = torch.arange(m, device=cost.device)[None, :] < lengths_m.to(cost.device)[:, None]  # [B, M]
    valid = valid_n[:, :, None] & valid_m[:, None, :]  # [B, N, M]
    if bool((~torch.isfinite(cost) & valid).any()):
        raise ValueError("`cost` holds non-finite values (nan or inf) inside the valid lengths.")


def _band_widths(lengths_n: torch.Tensor, lengths_m: torch.Tensor, bandwidth: int | None) -> torch.Tensor:
    """Per-item half-width of the band |i - j| ≤ width, widened to |N_b - M_b| so (N_b, M_b) stays reachable."""
    gap = (lengths_n - lengths_m).abs()
    if bandwidth is None:
        return torch.maximum(lengths_n, lengths_m)  # covers every cell
    widened = gap > bandwidth
    if bool(widened.any()):
        logger.debug("Soft-DTW band %d widened to |N - M| for %d items.", bandwidth, int(widened.sum()))
    return gap.clamp(min=bandwidth)


def _validate(cost, lengths_n, lengths_m, gamma, warp, bandwidth, backend) -> None:
    if not isinstance(cost, torch.Tensor) or cost.dim() != 3:
        raise ValueError("`cost` must be a 3-D tensor [B, N, M].")
    if not cost.dtype.is_floating_point:
        raise ValueError(f"`cost` must be a floating-point tensor, got {cost.dtype}.")
    if cost.shape[1] == 0 or cost.shape[2] == 0:
        raise ValueError(f"`cost` must have N, M ≥ 1, got shape {tuple(cost.shape)}.")
    if not (math.isfinite(gamma) and gamma > 0):
        raise ValueError(f"`gamma` must be a finite number > 0, got {gamma}.")
    if not math.isfinite(warp):
        raise ValueError(f"`warp` must be finite, got {warp}.")
    if bandwidth is not None and (isinstance(bandwidth, bool) or not isinstance(bandwidth, int) or bandwidth < 0):
        raise ValueError(f"`bandwidth` must be None or an int ≥ 0, got {bandwidth!r}.")
    if backend not in BACKENDS:
        raise ValueError(f"`backend` must be one of {BACKENDS}, got {backend!r}.")
    _check_lengths("lengths_n", lengths_n, cost.shape[0], cost.shape[1])
    _check_lengths("lengths_m", lengths_m, cost.shape[0], cost.shape[2])
    _check_cost(cost, lengths_n, lengths_m)


def _use_cuda(cost: torch.Tensor, backend: str) -> bool:
    # Decide by the tensor's device: under numba's CUDA simulator `cuda.is_available()` is True without a GPU.
    if backend == "auto":
        return cost.is_cuda
    if backend == "cpu":
        if cost.is_cuda:
            raise ValueError("`backend` 'cpu' needs a CPU `cost` tensor; move it with `.cpu()` or use 'auto'.")
        return False
    if not cost.is_cuda:
        from numba import config as numba_config

        if not numba_config.ENABLE_CUDASIM:
            raise ValueError("`backend` 'cuda' needs a CUDA `cost` tensor (CPU only under NUMBA_ENABLE_CUDASIM=1).")
    return True


def soft_dtw(
    cost: torch.Tensor,
    lengths_n: torch.Tensor,
    lengths_m: torch.Tensor,
    gamma: float,
    warp: float = 0.0,
    bandwidth: int | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Soft-DTW value of each item of a padded batch of cost matrices.

    Args:
        cost: Pairwise costs; entries past the item's lengths are ignored and get zero gradient.
        lengths_n: Valid rows per item, in [1, N].
        lengths_m: Valid columns per item, in [1, M].
        gamma: Smoothing γ > 0; γ → 0 gives hard DTW.
        warp: Penalty added to every horizontal or vertical step. For a KL cost summed over D channels use the
            per-channel penalty times D (paper: 0.07·D).
        bandwidth: Sakoe-Chiba half-width on |i - j|; None for no band. Widened per item to |N_b - M_b|.
        backend: "auto" (by the tensor's device), "cpu" or "cuda".

    Returns:
        The soft-DTW values R[N_b, M_b], in the dtype of `cost`, differentiable w.r.t. `cost`.

    Shapes:
        - cost: :math:`[B, N, M]`, any float dtype (computed in float64).
        - lengths_n, lengths_m: :math:`[B]`, integer.
        - output: :math:`[B]`.

    Raises:
        ValueError: on malformed input; the message names the offending argument.
    """
    _validate(cost, lengths_n, lengths_m, gamma, warp, bandwidth, backend)
    use_cuda = _use_cuda(cost, backend)
    device = cost.device if use_cuda else torch.device("cpu")
    lengths_n = lengths_n.to(device=device, dtype=torch.int64).contiguous()
    lengths_m = lengths_m.to(device=device, dtype=torch.int64).contiguous()
    widths = _band_widths(lengths_n, lengths_m, bandwidth).contiguous()
    return _SoftDTWFunction.apply(cost, lengths_n, lengths_m, widths, float(gamma), float(warp), use_cuda)


class SoftDTW(nn.Module):
    """Soft-DTW loss layer; see :func:`soft_dtw` for the recurrence and the meaning of each argument.

    Args:
        gamma: Smoothing γ > 0 (paper: 0.01).
        warp: Penalty for horizontal and vertical steps (paper: 0.07 per channel, i.e. 0.07·D for a cost summed
            over D channels).
        bandwidth: Optional Sakoe-Chiba half-width on |i - j|.
        backend: "auto", "cpu" or "cuda".
    """

    def __init__(self, gamma: float = 0.01, warp: float = 0.0, bandwidth: int | None = None, backend: str = "auto"):
        super().__init__()
        if not (math.isfinite(gamma) and gamma > 0):  # fail at construction, not at the first batch
            raise ValueError(f"`gamma` must be a finite number > 0, got {gamma}.")
        self.gamma = gamma
        self.warp = warp
        self.bandwidth = bandwidth
        self.backend = backend

    def forward(self, cost: torch.Tensor, lengths_n: torch.Tensor, lengths_m: torch.Tensor) -> torch.Tensor:
        """Soft-DTW value per item.

        Shapes:
            - cost: :math:`[B, N, M]` (e.g. the frame-pair KL :math:`[B, T_text_frames, T_feats]`).
            - lengths_n, lengths_m: :math:`[B]`.
            - output: :math:`[B]`.
        """
        return soft_dtw(cost, lengths_n, lengths_m, self.gamma, self.warp, self.bandwidth, self.backend)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, warp={self.warp}, bandwidth={self.bandwidth}, backend={self.backend!r}"
