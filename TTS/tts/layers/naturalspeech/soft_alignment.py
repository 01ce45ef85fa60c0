"""Soft monotonic alignment that scores every sampled frame exactly once (an asymmetric soft-DTW).

NaturalSpeech computes its KL terms under soft-DTW when the prior (predicted durations) and the posterior have
different lengths (paper, Section 3.3). The cost of cell `(n, m)` is the single-sample KL of sampled frame `n` under
target frame `m`; it can be negative. Symmetric soft-DTW sums one cell per step and its paths have between
`max(N, M)` and `N + M - 1` steps, so negative cells reward long paths: in training the durator learned to stretch
the prior (durations grew ~5x within 100 steps of the main stage). Shifting the cells by a per-item constant
hides that but changes the warp penalty by a different amount for every item and step.

Here every step moves to the next sampled frame, so every path sums exactly `N` cells, whatever their sign: the
single-sample KL of the whole sampled sequence under one monotonic assignment of target frames, the exact
counterpart of the frame-aligned KL (which is the diagonal path). From row `n - 1` a path may

- advance one target frame (free),
- stay on its target frame (penalty `warp`: the target frame is held for two sampled frames), or
- skip `k ≥ 1` target frames (penalty `k · warp`: those target frames explain no sampled frame),

so a prior that is too short pays for every repeated frame and one that is too long for every unused frame.
`PriorPosteriorKL` puts the posterior's frames on the rows in both KL terms (in L_fwd the sample is the prior's,
so it transposes the cost): the number of summed cells is then the posterior length, fixed by the data. With the
prior's frames on the rows, a prior `k` frames short would sum `k` cells fewer for `k` warps, a reward for short
priors whenever a cell costs more than the warp (early in training, most do). The
recursion over rows, with `softmin_γ(x) = -γ log Σ exp(-x/γ)`::

    R[0, 0] = 0,  R[0, m > 0] = +inf,
    R[n, m] = C[n-1, m-1] + softmin_γ(R[n-1, m] + warp,  {R[n-1, m-1-k] + k·warp : k ≥ 0}),

and the value is `R[N, M]`. Two backends compute it with a float64 table (a float32 table gives wrong gradients at
γ = 0.01 on long sequences, see `soft_dtw.py`):

- CPU tensors: numba kernels, parallel over the batch. The skips are a running soft-minimum along the row,
  `A[m] = softmin_γ(R[n-1, m-1], A[m-1] + warp)`, and the backward pass propagates adjoints row by row through the
  same two soft-minima, recomputing `A` from the stored table.
- other devices: the same recursion as a few vectorised ops per row (the skips are one `logcumsumexp`), with
  autograd's gradients.
"""

import math

import numpy as np
import torch
from numba import njit, prange
from torch.autograd.function import once_differentiable

from TTS.tts.layers.naturalspeech.soft_dtw import _softmin2
from TTS.tts.utils.helpers import sequence_mask

# Stand-in for +inf in the table: exp(-x/γ) of it is exactly 0, and unlike inf it gives no nan in the gradients.
_UNREACHABLE = 1e30


def soft_alignment_cost(
    cost: torch.Tensor, lengths_n: torch.Tensor, lengths_m: torch.Tensor, gamma: float, warp: float
) -> torch.Tensor:
    """Soft-minimum over monotonic alignments of the summed cost, one cell per row; see the module docstring.

    Args:
        cost: Cost of every (sampled frame, target frame) pair; entries past an item's lengths are ignored.
        lengths_n: Sampled frames per item (rows), at least 1.
        lengths_m: Target frames per item (columns), at least 1.
        gamma: Smoothing γ > 0; γ → 0 gives the hard minimum.
        warp: Penalty for holding a target frame one more row, and for each skipped target frame.

    Returns:
        `R[N_b, M_b]` per item, in the dtype of `cost`, differentiable w.r.t. `cost`.

    Shapes:
        - cost: :math:`[B, N, M]`
        - lengths_n, lengths_m: :math:`[B]`
        - output: :math:`[B]`
    """
    _check_inputs(cost, lengths_n, lengths_m, gamma)
    if cost.device.type == "cpu":
        lengths_n, lengths_m = lengths_n.long().contiguous(), lengths_m.long().contiguous()
        return _SoftAlignmentCPU.apply(cost, lengths_n, lengths_m, float(gamma), float(warp))
    return _soft_alignment_vectorised(cost, lengths_n, lengths_m, gamma, warp)


def _soft_alignment_vectorised(cost, lengths_n, lengths_m, gamma: float, warp: float) -> torch.Tensor:
    """The recursion as whole-row tensor ops, for any device; autograd differentiates it."""
    batch, num_rows, num_columns = cost.shape
    dtype = cost.dtype
    valid = sequence_mask(lengths_n, num_rows).unsqueeze(2) & sequence_mask(lengths_m, num_columns).unsqueeze(1)
    cost = cost.double().masked_fill(~valid, 0.0)  # padding may hold anything; keep it out of the gradients
    offsets = warp * torch.arange(num_columns + 1, device=cost.device, dtype=torch.float64)  # k · warp
    previous = torch.full((batch, num_columns + 1), _UNREACHABLE, device=cost.device, dtype=torch.float64)
    previous[:, 0] = 0.0
    values = cost.new_zeros(batch)
    for row in range(num_rows):
        previous = _next_row(previous, cost[:, row], offsets, gamma, warp)
        finished = lengths_n == row + 1
        if bool(finished.any()):
            values = torch.where(finished, previous.gather(1, lengths_m.view(-1, 1)).squeeze(1), values)
    return values.to(dtype)


def _next_row(previous: torch.Tensor, cost_row: torch.Tensor, offsets: torch.Tensor, gamma: float, warp: float):
    """Row `n` of the table from row `n - 1`: `previous` and the result are `[B, M + 1]` (column 0 unreachable)."""
    # Arriving at column m from any column j <= m - 1 costs (m - 1 - j) · warp. With u_j = R[j] - j·warp that is
    # (m - 1)·warp + u_j, so the soft minimum over j is one cumulative logsumexp along the row.
    shifted = -(previous - offsets) / gamma
    advance = offsets[:-1] - gamma * torch.logcumsumexp(shifted[:, :-1], dim=1)  # [B, M]: columns 1 .. M
    stay = previous[:, 1:] + warp
    best = -gamma * torch.logsumexp(torch.stack([-advance / gamma, -stay / gamma]), dim=0)
    best = cost_row + best.clamp(max=_UNREACHABLE)
    return torch.cat([best.new_full((best.size(0), 1), _UNREACHABLE), best], dim=1)


def _check_inputs(cost: torch.Tensor, lengths_n: torch.Tensor, lengths_m: torch.Tensor, gamma: float) -> None:
    if cost.dim() != 3 or not cost.dtype.is_floating_point:
        raise ValueError(f"`cost` must be a float tensor [B, N, M], got {cost.dtype} of shape {tuple(cost.shape)}.")
    for name, lengths, size in (("lengths_n", lengths_n, cost.size(1)), ("lengths_m", lengths_m, cost.size(2))):
        if lengths.shape != (cost.size(0),) or lengths.dtype.is_floating_point:
            raise ValueError(f"`{name}` must be an integer tensor with one length per item, got {lengths!r}.")
        if bool(((lengths < 1) | (lengths > size)).any()):
            raise ValueError(f"`{name}` must lie in [1, {size}], got {lengths.tolist()}.")
    if not gamma > 0:
        raise ValueError(f"`gamma` must be > 0, got {gamma}.")


@njit(cache=True)
def _forward_item(cost, n, m, gamma, warp, table):
    table[0, 0] = 0.0
    for j in range(1, m + 1):
        table[0, j] = np.inf
    for i in range(1, n + 1):
        table[i, 0] = np.inf
        arrive = np.inf  # A[j]: soft minimum over arriving from columns < j of the previous row, with skip penalties
        for j in range(1, m + 1):
            arrive = _softmin2(table[i - 1, j - 1], arrive + warp, gamma)
            table[i, j] = cost[i - 1, j - 1] + _softmin2(arrive, table[i - 1, j] + warp, gamma)


@njit(parallel=True, cache=True)
def _forward_cpu(cost, lengths_n, lengths_m, gamma, warp, table, values):
    for b in prange(cost.shape[0]):
        _forward_item(cost[b], lengths_n[b], lengths_m[b], gamma, warp, table[b])
        values[b] = table[b, lengths_n[b], lengths_m[b]]


@njit(cache=True)
def _weight(child: float, parent: float, gamma: float) -> float:
    """d softmin / d child = exp(-(child - parent) / γ); 0 for an unreachable child."""
    if child == np.inf:
        return 0.0
    return math.exp(-(child - parent) / gamma)


@njit(cache=True)
def _backward_item(cost, table, n, m, gamma, warp, scale, grad):
    # adjoint[j] = dR[n, m] / dR[i, j] for the current row i; `above` collects it for row i - 1.
    adjoint = np.zeros(m + 1)
    above = np.zeros(m + 1)
    arrive = np.empty(m + 1)
    adjoint[m] = scale
    for i in range(n, 0, -1):
        arrive[0] = np.inf  # recompute A of row i from row i - 1
        for j in range(1, m + 1):
            arrive[j] = _softmin2(table[i - 1, j - 1], arrive[j - 1] + warp, gamma)
        above[:] = 0.0
        arrive_adjoint = 0.0  # dR[n, m] / dA[j + 1], carried leftwards
        for j in range(m, 0, -1):
            grad[i - 1, j - 1] = adjoint[j]
            inner = table[i, j] - cost[i - 1, j - 1]  # softmin(A[j], R[i-1, j] + warp)
            carried = arrive_adjoint * _weight(arrive[j] + warp, arrive[j + 1], gamma) if j < m else 0.0
            arrive_adjoint = carried
            if adjoint[j] != 0.0:
                arrive_adjoint += adjoint[j] * _weight(arrive[j], inner, gamma)
                above[j] += adjoint[j] * _weight(table[i - 1, j] + warp, inner, gamma)
            if arrive_adjoint != 0.0:
                above[j - 1] += arrive_adjoint * _weight(table[i - 1, j - 1], arrive[j], gamma)
        adjoint, above = above, adjoint


@njit(parallel=True, cache=True)
def _backward_cpu(cost, table, lengths_n, lengths_m, gamma, warp, grad_output, grad):
    for b in prange(cost.shape[0]):
        _backward_item(cost[b], table[b], lengths_n[b], lengths_m[b], gamma, warp, grad_output[b], grad[b])


class _SoftAlignmentCPU(torch.autograd.Function):
    """numba forward and backward passes; gradients flow to `cost` only."""

    @staticmethod
    def forward(ctx, cost, lengths_n, lengths_m, gamma, warp):
        batch, num_rows, num_columns = cost.shape
        cost64 = cost.detach().double().contiguous()
        table = torch.empty((batch, num_rows + 1, num_columns + 1), dtype=torch.float64)
        values = torch.empty(batch, dtype=torch.float64)
        _forward_cpu(cost64.numpy(), lengths_n.numpy(), lengths_m.numpy(), gamma, warp, table.numpy(), values.numpy())
        ctx.save_for_backward(cost64, table, lengths_n, lengths_m)
        ctx.settings = (gamma, warp, cost.dtype)
        return values.to(cost.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        cost64, table, lengths_n, lengths_m = ctx.saved_tensors
        gamma, warp, dtype = ctx.settings
        grad = torch.zeros_like(cost64)
        grad_output = grad_output.detach().double().contiguous()
        _backward_cpu(
            cost64.numpy(),
            table.numpy(),
            lengths_n.numpy(),
            lengths_m.numpy(),
            gamma,
            warp,
            grad_output.numpy(),
            grad.numpy(),
        )
        return grad.to(dtype), None, None, None, None
