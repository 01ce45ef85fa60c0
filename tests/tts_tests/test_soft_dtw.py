"""Tests of the soft-DTW layer (`TTS.tts.layers.naturalspeech.soft_dtw`) against brute-force references."""

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from TTS.tts.layers.naturalspeech.soft_dtw import SoftDTW, soft_dtw

_ROOT = Path(__file__).resolve().parents[2]


def reference_dtw(cost: list[list[float]], gamma: float, warp: float) -> float:
    """Pure-Python float64 recurrence; `gamma=0` is hard DTW."""
    n, m = len(cost), len(cost[0])
    table = [[math.inf] * (m + 1) for _ in range(n + 1)]
    table[0][0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            options = (table[i - 1][j - 1], table[i - 1][j] + warp, table[i][j - 1] + warp)
            low = min(options)
            if gamma > 0:
                low -= gamma * math.log(sum(math.exp(-(x - low) / gamma) for x in options))
            table[i][j] = cost[i - 1][j - 1] + low
    return table[n][m]


def make_batch(lengths_n: list[int], lengths_m: list[int], seed: int = 0, dtype=torch.float64):
    """Random costs in [0, 1] padded to the longest lengths; the padding holds large junk values."""
    generator = torch.Generator().manual_seed(seed)
    cost = 50.0 + torch.rand(len(lengths_n), max(lengths_n), max(lengths_m), generator=generator, dtype=dtype)
    for b, (n, m) in enumerate(zip(lengths_n, lengths_m)):
        cost[b, :n, :m] -= 50.0
    return cost, torch.tensor(lengths_n), torch.tensor(lengths_m)


@pytest.mark.parametrize("warp", [0.0, 0.3])
@pytest.mark.parametrize("shape", [(5, 7), (6, 3), (1, 4), (4, 4)])
def test_forward_matches_brute_force(shape, warp):
    cost, lengths_n, lengths_m = make_batch([shape[0], 2], [shape[1], 1], seed=shape[0])
    values = soft_dtw(cost, lengths_n, lengths_m, gamma=0.2, warp=warp)
    for b in range(2):
        n, m = int(lengths_n[b]), int(lengths_m[b])
        expected = reference_dtw(cost[b, :n, :m].tolist(), 0.2, warp)
        assert values[b].item() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("bandwidth", [None, 1])
@pytest.mark.parametrize("warp", [0.0, 0.4])
def test_gradcheck(warp, bandwidth):
    cost, lengths_n, lengths_m = make_batch([4, 3], [5, 2], seed=1)
    cost.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda c: soft_dtw(c, lengths_n, lengths_m, 0.5, warp, bandwidth), (cost,))


def test_padded_batch_equals_per_item():
    lengths = ([7, 3, 5], [4, 6, 5])
    cost, lengths_n, lengths_m = make_batch(*lengths, seed=2)
    cost.requires_grad_(True)
    weights = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    values = soft_dtw(cost, lengths_n, lengths_m, 0.1, 0.2)
    (values * weights).sum().backward()
    for b in range(3):
        n, m = lengths[0][b], lengths[1][b]
        item = cost[b : b + 1, :n, :m].detach().clone().requires_grad_(True)
        value = soft_dtw(item, lengths_n[b : b + 1], lengths_m[b : b + 1], 0.1, 0.2)
        (value * weights[b]).sum().backward()
        assert torch.equal(values[b], value[0])
        assert torch.equal(cost.grad[b, :n, :m], item.grad[0])
        padding = torch.ones_like(cost.grad[b], dtype=torch.bool)
        padding[:n, :m] = False
        assert torch.all(cost.grad[b][padding] == 0)


@pytest.mark.parametrize("warp", [0.0, 0.5])
def test_small_gamma_approaches_hard_dtw(warp):
    cost, lengths_n, lengths_m = make_batch([6, 8], [9, 5], seed=3)
    for b in range(2):
        n, m = int(lengths_n[b]), int(lengths_m[b])
        hard = reference_dtw(cost[b, :n, :m].tolist(), 0.0, warp)
        errors = []
        for gamma in (1e-1, 1e-2, 1e-4):
            soft = soft_dtw(cost[b : b + 1, :n, :m], lengths_n[b : b + 1], lengths_m[b : b + 1], gamma, warp).item()
            # softmin ≤ min, and each of the n + m steps loses at most γ·log 3.
            assert hard - (n + m) * gamma * math.log(3) - 1e-12 <= soft <= hard + 1e-12
            errors.append(hard - soft)
        assert errors[-1] < 1e-3


@pytest.mark.parametrize(("n", "m"), [(6, 6), (4, 7), (7, 3)])
def test_unique_zero_path_gives_indicator_gradient(n, m):
    # A monotone staircase path of zero cost through large costs: the soft alignment collapses onto it.
    cost = torch.full((1, n, m), 10.0, dtype=torch.float64)
    path = torch.zeros(n, m, dtype=torch.float64)
    steps = max(n, m)
    for k in range(steps):
        i, j = k * n // steps, k * m // steps
        path[i, j] = 1.0
    cost[0][path.bool()] = 0.0
    cost.requires_grad_(True)
    value = soft_dtw(cost, torch.tensor([n]), torch.tensor([m]), gamma=0.01)
    value.backward()
    assert value.item() == pytest.approx(0.0, abs=1e-12)
    torch.testing.assert_close(cost.grad[0], path, rtol=0, atol=1e-12)


@pytest.mark.parametrize("warp", [0.0, 0.5])
def test_float32_gradient_matches_float64_at_800_frames(warp):
    generator = torch.Generator().manual_seed(4)
    cost32 = torch.rand(1, 800, 800, generator=generator).requires_grad_(True)
    cost64 = cost32.detach().double().requires_grad_(True)  # the very same values
    lengths = torch.tensor([800])
    value32 = soft_dtw(cost32, lengths, lengths, gamma=0.01, warp=warp)
    value64 = soft_dtw(cost64, lengths, lengths, gamma=0.01, warp=warp)
    value32.backward()
    value64.backward()
    assert value32.dtype == torch.float32 and cost32.grad.dtype == torch.float32
    assert value32.item() == pytest.approx(value64.item(), rel=1e-6)
    assert (cost32.grad.double() - cost64.grad).abs().max().item() < 1e-6
    # Each step of an alignment has weight ≤ 1 and every path visits ≥ 800 cells.
    assert cost64.grad.sum().item() >= 800 - 1e-6


_SIMULATOR_SCRIPT = textwrap.dedent(
    """
    import importlib.util, sys
    import torch
    spec = importlib.util.spec_from_file_location("finder", sys.argv[1] + "/build_backend/source_finder.py")
    finder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(finder)
    finder.install(sys.argv[1])
    from numba import config
    assert config.ENABLE_CUDASIM
    from TTS.tts.layers.naturalspeech import soft_dtw_cuda
    from TTS.tts.layers.naturalspeech.soft_dtw import soft_dtw
    soft_dtw_cuda.THREADS_PER_BLOCK = 4  # diagonals longer than the block: threads loop over cells
    generator = torch.Generator().manual_seed(5)
    cases = [([9, 4, 6], [7, 7, 2], None, 0.0), ([5, 11], [10, 3], 2, 0.3), ([1, 3], [6, 1], None, 0.2)]
    for lengths_n, lengths_m, bandwidth, warp in cases:
        cost = torch.rand(len(lengths_n), max(lengths_n), max(lengths_m), generator=generator, dtype=torch.float64)
        weights = torch.rand(len(lengths_n), generator=generator, dtype=torch.float64)
        results = []
        for backend in ("cpu", "cuda"):
            leaf = cost.clone().requires_grad_(True)
            args = (torch.tensor(lengths_n), torch.tensor(lengths_m), 0.1, warp, bandwidth, backend)
            values = soft_dtw(leaf, *args)
            (values * weights).sum().backward()
            results.append((values.detach(), leaf.grad))
        (cpu_values, cpu_grad), (cuda_values, cuda_grad) = results
        torch.testing.assert_close(cuda_values, cpu_values, rtol=1e-12, atol=0)
        torch.testing.assert_close(cuda_grad, cpu_grad, rtol=1e-12, atol=1e-15)
        assert cuda_grad.abs().sum() > 0
    print("simulator ok")
    """
)


def test_cuda_kernel_under_simulator_matches_cpu():
    environment = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    result = subprocess.run(
        [sys.executable, "-c", _SIMULATOR_SCRIPT, str(_ROOT)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "simulator ok" in result.stdout


def test_cuda_backend_needs_cuda_tensor_without_simulator():
    cost, lengths_n, lengths_m = make_batch([3], [3])
    with pytest.raises(ValueError, match="backend"):
        soft_dtw(cost, lengths_n, lengths_m, 0.1, backend="cuda")


def test_band_narrower_than_length_gap_stays_finite():
    cost, lengths_n, lengths_m = make_batch([3, 9], [9, 4], seed=6)
    values = soft_dtw(cost, lengths_n, lengths_m, 0.1, 0.2, bandwidth=0)
    assert torch.isfinite(values).all()


def test_band_wide_equals_full_and_narrow_band_excludes_cells():
    cost, lengths_n, lengths_m = make_batch([8, 6], [7, 8], seed=7)
    cost.requires_grad_(True)
    full = soft_dtw(cost, lengths_n, lengths_m, 0.5, 0.1)
    assert torch.equal(soft_dtw(cost, lengths_n, lengths_m, 0.5, 0.1, bandwidth=8), full)
    banded = soft_dtw(cost, lengths_n, lengths_m, 0.5, 0.1, bandwidth=2)
    assert torch.all(banded > full)  # fewer paths: a larger soft minimum
    (grad,) = torch.autograd.grad(banded.sum(), cost)
    i, j = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    assert torch.all(grad[:, (i - j).abs() > 2] == 0)
    assert torch.all(grad[0, :8, :7][(i - j).abs()[:8, :7] <= 2] > 0)


def test_module_matches_function_and_keeps_dtype():
    cost, lengths_n, lengths_m = make_batch([5, 4], [3, 6], dtype=torch.float32)
    layer = SoftDTW(gamma=0.1, warp=0.2, bandwidth=None)
    values = layer(cost, lengths_n, lengths_m)
    assert values.shape == (2,) and values.dtype == torch.float32
    assert torch.equal(values, soft_dtw(cost, lengths_n, lengths_m, 0.1, 0.2))
    half = soft_dtw(cost.half(), lengths_n, lengths_m, 0.1, 0.2)
    assert half.dtype == torch.float16


def _bad_inputs():
    cost, lengths_n, lengths_m = make_batch([4, 3], [5, 2])
    good = {"cost": cost, "lengths_n": lengths_n, "lengths_m": lengths_m, "gamma": 0.1}
    inside_nan = cost.clone()
    inside_nan[1, 0, 0] = math.nan
    inside_inf = cost.clone()
    inside_inf[0, 3, 4] = math.inf
    cases = [
        ({"cost": inside_nan}, "cost"),
        ({"cost": inside_inf}, "cost"),
        ({"cost": cost[0]}, "cost"),
        ({"gamma": 0.0}, "gamma"),
        ({"gamma": -1.0}, "gamma"),
        ({"gamma": math.nan}, "gamma"),
        ({"lengths_n": torch.tensor([4, 0])}, "lengths_n"),
        ({"lengths_n": torch.tensor([5, 3])}, "lengths_n"),
        ({"lengths_m": torch.tensor([6, 2])}, "lengths_m"),
        ({"lengths_m": torch.tensor([0, 2])}, "lengths_m"),
        ({"lengths_n": torch.tensor([4, 3, 2])}, "lengths_n"),
        ({"lengths_m": torch.tensor([5])}, "lengths_m"),
        ({"lengths_n": torch.tensor([4.0, 3.0])}, "lengths_n"),
        ({"bandwidth": -1}, "bandwidth"),
        ({"warp": math.inf}, "warp"),
        ({"backend": "gpu"}, "backend"),
    ]
    return [pytest.param({**good, **change}, name, id=f"{name}-{i}") for i, (change, name) in enumerate(cases)]


def test_module_rejects_bad_gamma_at_construction():
    with pytest.raises(ValueError, match="`gamma`"):
        SoftDTW(gamma=0.0)


@pytest.mark.parametrize(("kwargs", "name"), _bad_inputs())
def test_bad_input_raises_value_error_naming_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        soft_dtw(**kwargs)


def test_non_finite_padding_is_ignored():
    cost, lengths_n, lengths_m = make_batch([4, 3], [5, 2])
    expected = soft_dtw(cost, lengths_n, lengths_m, 0.1)
    cost[1, 3:, :] = math.inf
    cost[1, :, 2:] = math.nan
    assert torch.equal(soft_dtw(cost, lengths_n, lengths_m, 0.1), expected)
