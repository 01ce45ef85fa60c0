import pytest
import torch
from torch.autograd.graph import saved_tensors_hooks
from torch.distributions import Normal

from TTS.tts.layers.naturalspeech.flows import BidirectionalFlow
from TTS.tts.layers.naturalspeech.gaussian_kl import gaussian_kl_aligned, gaussian_kl_matrix
from TTS.tts.utils.helpers import sequence_mask


def make_flow(channels: int = 8, **overrides) -> BidirectionalFlow:
    """A small flow with every weight perturbed: the toolkit zero-inits the last conv (identity at start)."""
    torch.manual_seed(0)
    kwargs = {"hidden_channels": 16, "kernel_size": 5, "dilation_rate": 1, "num_layers": 2, "num_flows": 4}
    flow = BidirectionalFlow(channels, **{**kwargs, **overrides})
    with torch.no_grad():
        for param in flow.parameters():
            param.add_(0.3 * torch.randn_like(param))
    return flow


def make_mask(lengths: tuple[int, ...]) -> torch.Tensor:
    return sequence_mask(torch.tensor(lengths), max(lengths)).unsqueeze(1).float()  # [B, 1, T_feats]


def naive_kl_terms(sample, log_std_sample, mean_target, log_std_target):
    """term(n, m) summed over channels by broadcasting to [B, N, M, C] (tiny shapes only)."""
    s, ls = sample.transpose(1, 2)[:, :, None], log_std_sample.transpose(1, 2)[:, :, None]  # [B, N, 1, C]
    mt, lt = mean_target.transpose(1, 2)[:, None], log_std_target.transpose(1, 2)[:, None]  # [B, 1, M, C]
    return (lt - ls - 0.5 + 0.5 * (s - mt) ** 2 * torch.exp(-2 * lt)).sum(dim=-1)


def random_gaussians(*shape, dtype=torch.float64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=generator, dtype=dtype) * scale for scale in (1.0, 0.3, 1.0, 0.3)]


# ---------------------------------------------------------------- flow


def test_flow_is_not_trivial_and_inverts():
    flow = make_flow()
    mask = make_mask((11, 7))
    z = torch.randn(2, 8, 11) * mask
    z_p = flow(z, mask)
    assert (z_p - z).abs().max() > 0.1  # the perturbed flow really transforms z
    assert torch.allclose(flow.inverse(z_p, mask), z, atol=1e-5)
    assert torch.allclose(flow(flow.inverse(z, mask), mask), z, atol=1e-5)
    assert torch.all(z_p[1, :, 7:] == 0)
    assert torch.all(flow.inverse(z, mask)[1, :, 7:] == 0)


def test_padding_does_not_change_valid_frames():
    flow = make_flow()
    mask = make_mask((11, 7))
    z = torch.randn(2, 8, 11)
    assert torch.allclose(flow(z, mask), flow(z * mask, mask))


def test_flow_is_volume_preserving():
    flow = make_flow(channels=4).double()
    mask = torch.ones(1, 1, 3, dtype=torch.float64)
    z = torch.randn(1, 4, 3, dtype=torch.float64)

    def f(x):
        return flow(x.view(1, 4, 3), mask).flatten()

    jacobian = torch.autograd.functional.jacobian(f, z.flatten())  # [12, 12]
    assert torch.linalg.det(jacobian).item() == pytest.approx(1.0, abs=1e-5)
    assert not torch.allclose(jacobian, torch.eye(12, dtype=torch.float64))


def test_flow_runs_in_float32_under_autocast():
    flow = make_flow()
    mask = make_mask((5,))
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = flow(torch.randn(1, 8, 5), mask)
    assert out.dtype == torch.float32


# ---------------------------------------------------------------- aligned KL


def closed_form_kl(mean_a, log_std_a, mean_b, log_std_b):
    """KL(N(a) ‖ N(b)) per channel, diagonal Gaussians."""
    return (
        log_std_b
        - log_std_a
        + (torch.exp(2 * log_std_a) + (mean_a - mean_b) ** 2) / (2 * torch.exp(2 * log_std_b))
        - 0.5
    )


@pytest.mark.parametrize("direction", ["bwd", "fwd"])
def test_single_sample_kl_matches_monte_carlo_and_closed_form(direction):
    torch.manual_seed(0)
    channels, num_samples = 4, 200_000
    mean_q, log_std_q, mean_p, log_std_p = (torch.randn(channels, 1) * s for s in (1.0, 0.3, 1.0, 0.3))
    if direction == "bwd":  # sample q, score under p (identity flow)
        source, target = (mean_q, log_std_q), (mean_p, log_std_p)
    else:  # sample p, score under q
        source, target = (mean_p, log_std_p), (mean_q, log_std_q)
    samples = source[0] + torch.exp(source[1]) * torch.randn(channels, num_samples)  # [C, T_feats]
    expand = [x.expand(channels, num_samples).unsqueeze(0) for x in (source[1], *target)]
    mask = torch.ones(1, 1, num_samples)
    single_sample = gaussian_kl_aligned(samples.unsqueeze(0), *expand, mask)  # mean over samples of Σ_c term
    monte_carlo = Normal(*_loc_scale(source)).log_prob(samples) - Normal(*_loc_scale(target)).log_prob(samples)
    monte_carlo = monte_carlo.sum(dim=0).mean()
    closed = closed_form_kl(*source, *target).sum()
    assert single_sample.item() == pytest.approx(closed.item(), abs=0.03)
    assert monte_carlo.item() == pytest.approx(closed.item(), abs=0.03)


def _loc_scale(gaussian):
    mean, log_std = gaussian
    return mean, torch.exp(log_std)


def test_backward_kl_through_flow_matches_monte_carlo():
    """KL(q ‖ p∘f) with a real (perturbed) flow: the single-sample term and log q(z) - log p(f(z)) agree."""
    torch.manual_seed(0)
    flow = make_flow(channels=4)
    num_samples = 40_000
    mask = torch.ones(1, 1, num_samples)
    mean_q, log_std_q, mean_p, log_std_p = (torch.randn(1, 4, 1).expand(1, 4, num_samples) * 0.5 for _ in range(4))
    z = mean_q + torch.exp(log_std_q) * torch.randn(1, 4, num_samples)
    with torch.no_grad():
        z_p = flow(z, mask)
        single_sample = gaussian_kl_aligned(z_p, log_std_q, mean_p, log_std_p, mask)
    log_q = Normal(mean_q, torch.exp(log_std_q)).log_prob(z)
    log_p = Normal(mean_p, torch.exp(log_std_p)).log_prob(z_p)  # log-det 0: no Jacobian term
    monte_carlo = (log_q - log_p).sum(dim=1).mean()
    assert single_sample.item() == pytest.approx(monte_carlo.item(), abs=0.03)


def test_aligned_kl_ignores_padding_and_averages_over_valid_frames():
    sample, log_std_sample, mean_target, log_std_target = random_gaussians(2, 3, 6, dtype=torch.float32)
    mask = make_mask((6, 2))
    kl = gaussian_kl_aligned(sample, log_std_sample, mean_target, log_std_target, mask)
    terms = torch.diagonal(naive_kl_terms(sample, log_std_sample, mean_target, log_std_target), dim1=1, dim2=2)
    expected = (terms[0].sum() + terms[1, :2].sum()) / 8
    assert kl.item() == pytest.approx(expected.item(), rel=1e-5)
    assert kl.dtype == torch.float32


# ---------------------------------------------------------------- KL cost matrix


def test_kl_matrix_matches_naive_pairs_and_its_gradients():
    inputs = [x.requires_grad_() for x in random_gaussians(2, 5, 7, dtype=torch.float64)]
    targets = random_gaussians(2, 5, 4, dtype=torch.float64, seed=1)
    inputs_targets = [*inputs[:2], *[t.requires_grad_() for t in targets[2:]]]
    cost = gaussian_kl_matrix(*inputs_targets)
    naive = naive_kl_terms(*inputs_targets)
    assert cost.shape == (2, 7, 4)
    assert torch.allclose(cost, naive, atol=1e-5)
    weights = torch.randn_like(cost)
    grads = torch.autograd.grad((cost * weights).sum(), inputs_targets)
    naive_grads = torch.autograd.grad((naive * weights).sum(), inputs_targets)
    for grad, naive_grad in zip(grads, naive_grads):
        assert torch.allclose(grad, naive_grad, atol=1e-5)
    assert all(grad.abs().sum() > 0 for grad in grads)


def test_kl_matrix_float32_with_offset_latents_stays_accurate():
    """Large common offsets cancel in (s - μ)²; the expansion must not lose them in float32."""
    sample, log_std_sample, mean_target, log_std_target = random_gaussians(1, 192, 30, seed=2)
    offset = 20.0 * torch.randn(1, 192, 1, dtype=torch.float64)
    args64 = (sample + offset, log_std_sample, mean_target + offset, log_std_target)
    cost = gaussian_kl_matrix(*(x.float() for x in args64))
    assert cost.dtype == torch.float32
    naive = naive_kl_terms(*args64)
    assert torch.allclose(cost.double(), naive, rtol=1e-5, atol=1e-3)


def test_kl_matrix_diagonal_equals_aligned_terms():
    sample, log_std_sample, mean_target, log_std_target = random_gaussians(2, 5, 6)
    cost = gaussian_kl_matrix(sample, log_std_sample, mean_target, log_std_target)
    aligned = torch.diagonal(cost, dim1=1, dim2=2)  # [B, T_feats]
    mask = torch.ones(2, 1, 6, dtype=torch.float64)
    assert aligned.sum().item() / 12 == pytest.approx(
        gaussian_kl_aligned(sample, log_std_sample, mean_target, log_std_target, mask).item(), rel=1e-5
    )
    terms = log_std_target - log_std_sample - 0.5 + 0.5 * (sample - mean_target) ** 2 * torch.exp(-2 * log_std_target)
    assert torch.allclose(aligned, terms.sum(dim=1), atol=1e-5)


def test_kl_matrix_under_autocast_is_float32():
    inputs = random_gaussians(1, 4, 3, dtype=torch.float32)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        cost = gaussian_kl_matrix(*(x.bfloat16() for x in inputs))
    assert cost.dtype == torch.float32


def test_kl_matrix_memory_is_linear_in_channels():
    batch, frames, channels = 2, 400, 192
    inputs = [x.requires_grad_() for x in random_gaussians(batch, channels, frames, dtype=torch.float32)]
    saved_bytes = 0

    def pack(tensor):
        nonlocal saved_bytes
        saved_bytes += tensor.numel() * tensor.element_size()
        return tensor

    with saved_tensors_hooks(pack, lambda tensor: tensor):
        cost = gaussian_kl_matrix(*inputs)
    cost.sum().backward()
    full_size = batch * frames * frames * channels * 4
    assert 0 < saved_bytes < full_size / 10, (saved_bytes, full_size)
    assert all(x.grad is not None for x in inputs)
