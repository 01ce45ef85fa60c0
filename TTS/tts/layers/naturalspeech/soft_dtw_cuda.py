"""numba.cuda backend of soft-DTW (NaturalSpeech, paper Section 3.3); the recurrence is documented in `soft_dtw.py`.

One block per batch item sweeps the anti-diagonals i + j = d of its own [N_b, M_b] region: every cell of a
diagonal depends only on the two previous diagonals, so its cells are independent and the block's threads share
them, each thread looping over cells when the diagonal is longer than the block (no limit on N or M). The DP table
and the backward E matrix live in global memory in float64.

Import this module only when a CUDA tensor (or numba's CUDA simulator) is in use: it imports `numba.cuda`.
Under `NUMBA_ENABLE_CUDASIM=1` CPU tensors are accepted and copied to simulated device arrays (tests only).
"""

import logging
import math

import torch
from numba import cuda

logger = logging.getLogger(__name__)

# Read at call time, so tests can force a small block (cells per thread > 1) by setting it.
THREADS_PER_BLOCK = 256
# Same cut-off as the CPU backend: exp(-40) cannot change a float64 sum that is ≥ 1.
_NEGLIGIBLE_GAP = 40.0


@cuda.jit(device=True)
def _softmin2(x, y, gamma):
    # Same formula as the CPU backend, so both backends agree to rounding.
    low, high = min(x, y), max(x, y)
    if high == math.inf:
        return low
    gap = (high - low) / gamma
    if gap > _NEGLIGIBLE_GAP:
        return low
    return low - gamma * math.log1p(math.exp(-gap))


@cuda.jit
def _forward_kernel(cost, lengths_n, lengths_m, widths, gamma, warp, table, values):
    b = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    step = cuda.blockDim.x
    n, m, width = lengths_n[b], lengths_m[b], widths[b]
    # +inf border (row 0 and column 0) and the start cell.
    for j in range(tid, m + 1, step):
        table[b, 0, j] = math.inf
    for i in range(tid, n + 1, step):
        table[b, i, 0] = math.inf
    cuda.syncthreads()
    if tid == 0:
        table[b, 0, 0] = 0.0
    cuda.syncthreads()
    for d in range(2, n + m + 1):
        first, last = max(1, d - m), min(n, d - 1)
        for i in range(first + tid, last + 1, step):
            j = d - i
            if abs(i - j) > width:
                table[b, i, j] = math.inf
            else:
                from_above = _softmin2(table[b, i - 1, j - 1], table[b, i - 1, j] + warp, gamma)
                table[b, i, j] = cost[b, i - 1, j - 1] + _softmin2(from_above, table[b, i, j - 1] + warp, gamma)
        cuda.syncthreads()
    if tid == 0:
        values[b] = table[b, n, m]


@cuda.jit
def _backward_kernel(cost, table, lengths_n, lengths_m, widths, gamma, warp, grad_output, e_matrix, grad):
    # e_matrix is [B, N + 2, M + 2] of zeros: cells past (n, m) and outside the band keep E = 0.
    b = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    step = cuda.blockDim.x
    n, m, width = lengths_n[b], lengths_m[b], widths[b]
    scale = grad_output[b]
    for d in range(n + m, 1, -1):
        first, last = max(1, d - m), min(n, d - 1)
        for i in range(first + tid, last + 1, step):
            j = d - i
            if abs(i - j) > width:
                continue
            if i == n and j == m:
                e = 1.0
            else:
                # A zero E means no path through that neighbour; skipping it also avoids inf - inf.
                r = table[b, i, j]
                e = 0.0
                if e_matrix[b, i + 1, j] != 0.0:
                    e += e_matrix[b, i + 1, j] * math.exp((table[b, i + 1, j] - cost[b, i, j - 1] - r - warp) / gamma)
                if e_matrix[b, i, j + 1] != 0.0:
                    e += e_matrix[b, i, j + 1] * math.exp((table[b, i, j + 1] - cost[b, i - 1, j] - r - warp) / gamma)
                if e_matrix[b, i + 1, j + 1] != 0.0:
                    e += e_matrix[b, i + 1, j + 1] * math.exp((table[b, i + 1, j + 1] - cost[b, i, j] - r) / gamma)
            e_matrix[b, i, j] = e
            grad[b, i - 1, j - 1] = e * scale
        cuda.syncthreads()


def _device_array(tensor: torch.Tensor):
    """A numba device view of `tensor`: zero-copy on a GPU, a simulated copy for CPU tensors under the simulator."""
    if tensor.is_cuda:
        return cuda.as_cuda_array(tensor.detach())
    return cuda.to_device(tensor.detach().numpy())


def _launch(kernel, batch: int, threads_per_block: int, device: torch.device, *args) -> None:
    if device.type == "cuda":
        # Run on torch's current stream so the kernel is ordered with the surrounding torch ops.
        stream = cuda.external_stream(torch.cuda.current_stream(device).cuda_stream)
        kernel[batch, threads_per_block, stream](*args)
    else:
        kernel[batch, threads_per_block](*args)


def _float_cost(cost: torch.Tensor) -> torch.Tensor:
    # numba has no half types; float16/bfloat16 widen to float32 exactly.
    if cost.dtype not in (torch.float32, torch.float64):
        cost = cost.float()
    return cost.detach().contiguous()


def forward_cuda(
    cost, lengths_n, lengths_m, widths, gamma: float, warp: float, threads_per_block: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """CUDA forward pass.

    Shapes:
        - cost: :math:`[B, N, M]`; lengths_n, lengths_m, widths: :math:`[B]` int64 on the same device.
        - returns: values :math:`[B]` and the table :math:`[B, N + 1, M + 1]`, both float64, on `cost`'s device.
    """
    threads_per_block = threads_per_block or THREADS_PER_BLOCK
    batch, n, m = cost.shape
    cost = _float_cost(cost)
    table = torch.empty((batch, n + 1, m + 1), dtype=torch.float64, device=cost.device)
    values = torch.empty(batch, dtype=torch.float64, device=cost.device)
    device_table, device_values = _device_array(table), _device_array(values)
    args = [_device_array(t) for t in (cost, lengths_n, lengths_m, widths)]
    _launch(_forward_kernel, batch, threads_per_block, cost.device, *args, gamma, warp, device_table, device_values)
    if not cost.is_cuda:  # simulator: copy the results back
        table = torch.from_numpy(device_table.copy_to_host())
        values = torch.from_numpy(device_values.copy_to_host())
    return values, table


def backward_cuda(
    cost,
    table,
    lengths_n,
    lengths_m,
    widths,
    gamma: float,
    warp: float,
    grad_output,
    threads_per_block: int | None = None,
) -> torch.Tensor:
    """CUDA backward pass: dL/dcost :math:`[B, N, M]` (zero outside the lengths and the band)."""
    threads_per_block = threads_per_block or THREADS_PER_BLOCK
    batch, n, m = cost.shape
    cost = _float_cost(cost)
    grad = torch.zeros_like(cost)
    e_matrix = torch.zeros((batch, n + 2, m + 2), dtype=torch.float64, device=cost.device)
    grad_output = grad_output.detach().to(torch.float64).contiguous()
    device_grad = _device_array(grad)
    args = [_device_array(t) for t in (cost, table, lengths_n, lengths_m, widths)]
    extra = [_device_array(grad_output), _device_array(e_matrix), device_grad]
    _launch(_backward_kernel, batch, threads_per_block, cost.device, *args, gamma, warp, *extra)
    if not cost.is_cuda:
        grad = torch.from_numpy(device_grad.copy_to_host())
    return grad
