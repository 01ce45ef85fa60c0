"""Invariants of the differentiable durator (NaturalSpeech, Section 3.3)."""

import math

import pytest
import torch

from TTS.tts.configs.naturalspeech_config import NaturalspeechArgs
from TTS.tts.layers.naturalspeech.durator import Durator, boundary_grids, hard_length_regulation
from TTS.tts.layers.naturalspeech.losses import duration_loss, log_duration_residual_variance
from TTS.tts.utils.helpers import generate_path, sequence_mask

CHANNELS = 6


def make_durator(**kwargs) -> Durator:
    torch.manual_seed(0)
    args = {
        "in_channels": CHANNELS,
        "latent_channels": 5,
        "hidden_channels_predictor": 8,
        "num_layers_predictor": 3,
        "kernel_size_predictor": 3,
        "dropout_p_predictor": 0.5,
        "num_heads": 4,
        "num_aux_channels": 2,
        "conv_channels": 3,
        "mlp_channels": 7,
        "kernel_size_upsampling": 3,
    }
    args.update(kwargs)
    return Durator(**args).eval()


def make_batch(token_lengths=(5, 3), dtype=torch.float32):
    torch.manual_seed(1)
    token_lengths = torch.tensor(token_lengths)
    x_mask = sequence_mask(token_lengths, int(token_lengths.max())).unsqueeze(1).to(dtype)
    h = torch.randn(len(token_lengths), CHANNELS, x_mask.size(2), dtype=dtype) * x_mask
    durations = torch.randint(0, 4, x_mask[:, 0].shape).to(dtype) * x_mask[:, 0]
    durations[:, 0] = 2.0  # every item at least two frames long
    return h, x_mask, durations


def hard_expansion(h, durations, num_frames):
    """Reference: repeat every token state by its integer duration, zero-pad to `num_frames`."""
    out = torch.zeros(h.size(0), h.size(1), num_frames, dtype=h.dtype)
    for b in range(h.size(0)):
        item = torch.repeat_interleave(h[b], durations[b].long(), dim=1)
        out[b, :, : item.size(1)] = item
    return out


def sharpen(durator: Durator, sharpness: float = 100.0):
    """Hand-set the upsampling so that logit = -(silu(-a S) + silu(-a E)) on every head and O = mean_q(W H^T).

    The logit is ~0 where both S, E >= 0.5 (the frame centre lies inside the token) and <= -a/2 elsewhere.
    """
    up = durator.upsampling
    conv_channels = up.conv.out_channels
    num_heads = up.mlp_weights[2].out_features
    with torch.no_grad():
        first, second = up.mlp_weights[0], up.mlp_weights[2]
        for param in (*first.parameters(), *second.parameters(), *up.proj_aux.parameters(), up.proj_weights.bias):
            param.zero_()
        first.weight[0, conv_channels] = -sharpness  # unit 0 reads S
        first.weight[1, conv_channels + 1] = -sharpness  # unit 1 reads E
        second.weight[:, :2] = -1.0
        up.proj_weights.weight.copy_(torch.eye(CHANNELS).repeat(1, num_heads) / num_heads)


def test_boundary_grids_select_the_hard_path():
    _, x_mask, durations = make_batch()
    num_frames = int(durations.sum(1).max())
    starts, ends = boundary_grids(durations, num_frames)
    inside = ((starts > 0) & (ends > 0)).float()  # [B, T_feats, T_text]
    path = generate_path(durations, x_mask.transpose(1, 2) * torch.ones(1, 1, num_frames))
    assert inside.sum() == durations.sum()
    torch.testing.assert_close(inside, path.transpose(1, 2), rtol=0, atol=0)


def test_sharp_attention_reproduces_hard_length_regulation():
    durator = make_durator(mlp_hidden_layers_upsampling=1)  # `sharpen` hand-sets a one-hidden-layer MLP
    sharpen(durator)
    h, x_mask, durations = make_batch()
    out = durator(h, x_mask, durations=durations)
    reference = hard_expansion(h, durations, out.frame_mask.size(2))
    hard_path = generate_path(durations, x_mask.transpose(1, 2) * out.frame_mask).transpose(1, 2)
    valid = out.frame_mask[:, 0].bool()
    assert torch.equal(out.attention.argmax(-1)[valid], hard_path.argmax(-1)[valid])
    torch.testing.assert_close(out.attention, hard_path, rtol=0, atol=1e-6)
    torch.testing.assert_close(out.frame_hidden, reference, rtol=0, atol=1e-5)


def test_frame_lengths_and_padding():
    durator = make_durator()
    h, x_mask, _ = make_batch()
    durations = torch.tensor([[1.3, 2.4, 0.6, 1.0, 2.2], [3.7, 1.1, 2.0, 0.0, 0.0]])
    out = durator(h, x_mask, durations=durations)
    assert out.frame_lengths.tolist() == [8, 7] and out.frame_lengths.dtype == torch.long
    assert out.frame_mask.shape == (2, 1, 8) and out.frame_mask[1, 0].tolist() == [1.0] * 7 + [0.0]
    for tensor in (out.frame_hidden, out.prior_mean, out.prior_log_std):
        assert tensor[1, :, 7:].abs().sum() == 0
        assert tensor[1, :, :7].abs().sum(0).min() > 0
    assert out.attention[1, 7:].abs().sum() == 0
    assert out.attention[1, :, 3:].abs().sum() == 0  # padding tokens
    torch.testing.assert_close(out.attention[1, :7].sum(-1), torch.ones(7))


def test_gradients_wrt_durations_are_finite_and_nonzero():
    durator = make_durator()
    h, x_mask, durations = make_batch()
    durations = durations.requires_grad_()
    h = h.requires_grad_()
    out = durator(h, x_mask, durations=durations)
    weight = torch.randn_like(out.prior_mean)
    ((out.prior_mean + out.prior_log_std) * weight).sum().add(out.frame_hidden.sum()).backward()
    valid = x_mask[:, 0].bool()
    assert torch.isfinite(durations.grad).all() and torch.isfinite(h.grad).all()
    assert (durations.grad[valid].abs() > 0).all()
    assert durations.grad[~valid].abs().sum() == 0


def test_gradcheck_float64():
    durator = make_durator(num_heads=2, conv_channels=2, mlp_channels=3).double()
    h, x_mask, _ = make_batch(token_lengths=(3, 2), dtype=torch.float64)
    durations = torch.tensor([[2.0, 1.0, 3.0], [1.0, 2.0, 0.0]], dtype=torch.float64, requires_grad=True)
    h.requires_grad_()

    def frame_outputs(durations, h):
        out = durator(h, x_mask, durations=durations)
        return out.frame_hidden, out.prior_mean, out.prior_log_std

    assert torch.autograd.gradcheck(frame_outputs, (durations, h), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("use_learnable_upsampling", [True, False])
@pytest.mark.parametrize("given_durations", [True, False])
def test_padded_batch_equals_single_items(use_learnable_upsampling, given_durations):
    durator = make_durator(use_learnable_upsampling=use_learnable_upsampling)
    h, x_mask, durations = make_batch(token_lengths=(5, 3, 4))
    h_garbage = h + 10.0 * (1 - x_mask)  # the layer must not read padding tokens
    batch = durator(h_garbage, x_mask, durations=durations if given_durations else None)
    for b in range(h.size(0)):
        t_text = int(x_mask[b].sum())
        item_durations = durations[b : b + 1, :t_text] if given_durations else None
        item = durator(h[b : b + 1, :, :t_text], x_mask[b : b + 1, :, :t_text], durations=item_durations)
        t_feats = int(item.frame_lengths[0])
        assert batch.frame_lengths[b] == t_feats
        torch.testing.assert_close(batch.durations[b, :t_text], item.durations[0])
        for name in ("log_durations", "durations"):
            torch.testing.assert_close(getattr(batch, name)[b, ..., :t_text], getattr(item, name)[0], atol=1e-5, rtol=0)
        for name in ("frame_hidden", "prior_mean", "prior_log_std"):
            got = getattr(batch, name)[b, :, :t_feats]
            torch.testing.assert_close(got, getattr(item, name)[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(batch.attention[b, :t_feats, :t_text], item.attention[0], atol=1e-5, rtol=0)


def test_predicted_durations_are_clamped():
    durator = make_durator(min_duration=1.0, max_duration=20.0)
    h, x_mask, _ = make_batch()
    proj = durator.duration_predictor.proj
    with torch.no_grad():
        proj.weight.zero_()
        proj.bias.fill_(50.0)
    out = durator(h, x_mask)
    assert torch.equal(out.durations, 20.0 * x_mask[:, 0])
    assert out.frame_lengths.tolist() == [100, 60]
    assert all(torch.isfinite(tensor).all() for tensor in out)
    with torch.no_grad():
        proj.bias.fill_(-50.0)
    out = durator(h, x_mask)
    assert torch.equal(out.durations, x_mask[:, 0])
    assert out.frame_lengths.tolist() == [5, 3]


def test_length_scale_and_max_frames():
    durator = make_durator()
    h, x_mask, _ = make_batch()
    with torch.no_grad():
        durator.duration_predictor.proj.bias.fill_(1.2)
    base = durator(h, x_mask).frame_lengths
    slow = durator(h, x_mask, length_scale=2.0).frame_lengths
    assert ((slow - 2 * base).abs() <= 1).all() and (slow > base).all()
    capped = durator(h, x_mask, length_scale=2.0, max_frames=int(slow.min()) - 1)
    assert capped.frame_lengths.max() == int(slow.min()) - 1
    assert capped.frame_hidden.size(2) == int(slow.min()) - 1


def test_hard_length_regulation_repeats_states():
    durator = make_durator(use_learnable_upsampling=False)
    h, x_mask, durations = make_batch()
    out = durator(h, x_mask, durations=durations)
    assert durator.upsampling is None
    torch.testing.assert_close(out.frame_hidden, hard_expansion(h, durations, out.frame_mask.size(2)))
    assert out.frame_lengths.tolist() == durations.sum(1).long().tolist()
    frame_hidden, path = hard_length_regulation(h, durations, x_mask, out.frame_mask)
    assert torch.equal(frame_hidden, out.frame_hidden) and torch.equal(path, out.attention)
    # predicted durations are rounded to whole frames
    predicted = durator(h, x_mask, length_scale=1.37)
    assert torch.equal(predicted.durations, predicted.durations.round())
    assert predicted.frame_lengths.tolist() == predicted.durations.sum(1).long().tolist()


def test_detach_predictor_input_stops_duration_gradients_only():
    durator = make_durator(detach_predictor_input=True)
    h, x_mask, durations = make_batch()
    h.requires_grad_()
    out = durator(h, x_mask, durations=durations)
    out.log_durations.sum().backward()
    assert h.grad is None
    out = durator(h, x_mask, durations=durations)
    out.prior_mean.sum().backward()
    assert h.grad.abs().sum() > 0


def test_autocast_keeps_attention_in_float32():
    durator = make_durator()
    h, x_mask, _ = make_batch()
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = durator(h, x_mask)
    assert out.attention.dtype == torch.float32 and out.durations.dtype == torch.float32
    assert all(torch.isfinite(tensor.float()).all() for tensor in out)


def test_from_args():
    args = NaturalspeechArgs(hidden_channels=12, hidden_channels_durator=16, num_heads_upsampling=2)
    durator = Durator.from_args(args)
    assert durator.duration_predictor.proj.in_channels == 16 and len(durator.duration_predictor.convs) == 3
    assert durator.upsampling.mlp_weights[-1].out_features == 2 and durator.proj_mean.out_channels == 12
    linear_layers = [m for m in durator.upsampling.mlp_weights if isinstance(m, torch.nn.Linear)]
    assert len(linear_layers) == args.mlp_hidden_layers_upsampling + 1
    assert Durator.from_args(NaturalspeechArgs(use_learnable_upsampling=False)).upsampling is None


def alternating_durations(num_tokens: int) -> torch.Tensor:
    """Strongly varied durations: 1 and 6 frames in turn."""
    return torch.tensor([1.0, 6.0]).repeat(num_tokens // 2 + 1)[:num_tokens].unsqueeze(0)


def paper_size_durator(**kwargs) -> Durator:
    torch.manual_seed(0)
    return Durator.from_args(NaturalspeechArgs(hidden_channels=64, **kwargs)).eval()


# Raw grids are left out: the random units then see distances of hundreds of frames and their logits swamp the two
# hard-path units (measured: mean largest weight 0.09-0.24 at 177 tokens); that start is what signed-log avoids.
UPSAMPLING_VARIANTS = [{}, {"mlp_hidden_layers_upsampling": 1}, {"share_conv_upsampling": False}]


@pytest.mark.parametrize("variant", UPSAMPLING_VARIANTS, ids=lambda v: ",".join(v) or "default")
def test_attention_starts_near_the_hard_path(variant):
    """With given durations, every frame attends mostly to its own token from initialisation (uniform: 1/T_text)."""
    num_tokens = 177
    h, x_mask = torch.randn(1, 64, num_tokens), torch.ones(1, 1, num_tokens)
    durations = alternating_durations(num_tokens)
    out = paper_size_durator(**variant)(h, x_mask, durations=durations)
    assert out.attention.max(-1).values.mean() >= 0.5
    hard_path = generate_path(durations, x_mask.transpose(1, 2) * out.frame_mask).transpose(1, 2)
    assert (out.attention.argmax(-1) == hard_path.argmax(-1)).float().mean() > 0.95
    # the plain random start of Parallel Tacotron 2 is what left the attention uniform
    random_start = paper_size_durator(**variant, init_sharpness_upsampling=0.0)(h, x_mask, durations=durations)
    assert random_start.attention.max(-1).values.mean() < 0.05


def test_prior_mean_follows_the_tokens():
    """Frames of the same phoneme are closer in prior mean than frames of different phonemes, wherever they are."""
    torch.manual_seed(0)
    token_ids = torch.tensor([0, 1, 2]).repeat(13)  # every phoneme at 13 positions, always between the same neighbours
    h = torch.nn.Embedding(3, 64)(token_ids).T.unsqueeze(0).detach()
    durations = torch.full((1, token_ids.numel()), 3.0)
    out = paper_size_durator()(h, torch.ones(1, 1, token_ids.numel()), durations=durations)
    mean = out.prior_mean[0].T[3:-3]  # [T_feats, C], edge tokens (other neighbours) left out
    phoneme_of_frame = token_ids.repeat_interleave(3)[3:-3]
    distances = torch.cdist(mean, mean)
    same = phoneme_of_frame[:, None] == phoneme_of_frame[None, :]
    assert distances[same].mean() < 0.5 * distances[~same].mean()


def test_duration_predictor_alone_overfits_one_sentence():
    """Dropout off, fixed phoneme states: the log-duration error falls below a tenth of the targets' variance."""
    torch.manual_seed(0)
    num_tokens = 120
    token_ids = torch.randint(0, 40, (num_tokens,))
    h = torch.nn.Embedding(40, 64)(token_ids).T.unsqueeze(0).detach()  # [1, C, T_text]
    x_mask = torch.ones(1, 1, num_tokens)
    targets = torch.exp(torch.rand(40)[token_ids] * 2.5).round().clamp(min=1).unsqueeze(0)  # token-dependent
    durator = paper_size_durator(dropout_p_durator=0.0)
    durator.train()
    optimizer = torch.optim.AdamW(durator.duration_predictor.parameters(), lr=2e-4, betas=(0.8, 0.99))
    log_targets = torch.log(targets)
    for _ in range(300):
        log_durations = durator.duration_predictor(h, x_mask)[:, 0]
        loss = torch.mean((log_durations - log_targets) ** 2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss) < 0.1 * float(log_targets.var())


def test_separate_aux_conv_feeds_only_the_auxiliary_context():
    """`share_conv_upsampling=False`: the second convolution changes the output through C, never the attention W."""
    num_tokens = 9
    h, x_mask = torch.randn(1, 64, num_tokens), torch.ones(1, 1, num_tokens)
    durations = torch.full((1, num_tokens), 3.0)
    durator = paper_size_durator(share_conv_upsampling=False)
    before = durator(h, x_mask, durations=durations)
    with torch.no_grad():
        durator.upsampling.conv_aux.weight.add_(1.0)
    after = durator(h, x_mask, durations=durations)
    torch.testing.assert_close(after.attention, before.attention)
    assert not torch.allclose(after.frame_hidden, before.frame_hidden)
    assert paper_size_durator().upsampling.conv_aux is None


def test_detached_predicted_durations_learn_from_the_duration_loss_only():
    """`detach_predicted_durations`: a loss on the prior reaches the upsampling but not the duration predictor."""
    num_tokens = 9
    h, x_mask = torch.randn(1, 64, num_tokens), torch.ones(1, 1, num_tokens)
    for detach, predictor_learns in ((False, True), (True, False)):
        durator = paper_size_durator(detach_predicted_durations=detach)
        durator(h, x_mask).prior_mean.square().sum().backward()
        predictor_grad = durator.duration_predictor.proj.weight.grad
        assert (predictor_grad is not None and predictor_grad.abs().sum() > 0) == predictor_learns
        assert durator.upsampling.conv.weight.grad.abs().sum() > 0


def test_mean_corrected_durations_keep_the_total_length_of_log_normal_durations():
    """A log-domain regression predicts E[log d]; with the tracked residual variance the predicted durations sum to
    the true total, without it they fall short by exp(-var / 2) (the paper's prediction, the median)."""
    generator = torch.Generator().manual_seed(0)
    num_tokens, sigma = 20_000, 0.7
    log_durations = 1.0 + sigma * torch.randn(1, 1, num_tokens, generator=generator)
    durations = torch.exp(log_durations[:, 0])
    x_mask = torch.ones(1, 1, num_tokens)
    best_regression = torch.full_like(log_durations, log_durations.mean().item())  # the MSE optimum: E[log d]
    totals = {}
    for corrected in (False, True):
        durator = make_durator(mean_corrected_durations=corrected, min_duration=0.01)
        for _ in range(3):  # steps of training: the first sets the variance, the next ones average into it
            durator.track_log_duration_variance(log_duration_residual_variance(best_regression, durations, x_mask))
        torch.testing.assert_close(durator.log_duration_variance, torch.tensor(sigma**2), rtol=0.05, atol=0.0)
        totals[corrected] = durator.predicted_durations(best_regression, x_mask).sum() / durations.sum()
    # a predictor whose level is off has a larger duration loss but the same residual variance: no larger correction
    off_level = best_regression - 1.0
    assert duration_loss(off_level, durations, x_mask) == pytest.approx(sigma**2 + 1.0, rel=0.05)
    assert log_duration_residual_variance(off_level, durations, x_mask) == pytest.approx(sigma**2, rel=0.05)
    assert totals[False] == pytest.approx(math.exp(-(sigma**2) / 2), rel=0.03)  # 0.78: 22 % short
    assert totals[True] == pytest.approx(1.0, abs=0.03)


def test_tracked_duration_variance_ignores_non_finite_losses_and_loads_from_old_checkpoints():
    durator = make_durator(mean_corrected_durations=True)
    durator.track_log_duration_variance(torch.tensor(0.5))
    durator.track_log_duration_variance(torch.tensor(float("nan")))
    durator.track_log_duration_variance(torch.tensor(1.5))
    assert durator.log_duration_variance.item() == pytest.approx(0.5 * 0.99 + 1.5 * 0.01)
    state = durator.state_dict()
    assert "log_duration_variance" in state  # saved with the weights: synthesis uses the trained value
    fresh = make_durator(mean_corrected_durations=True)
    fresh.load_state_dict(state)
    assert fresh.log_duration_variance.item() == pytest.approx(durator.log_duration_variance.item())
    del state["log_duration_variance"]  # a checkpoint from before the switch: no correction, as it was trained
    fresh.load_state_dict(state)
    assert fresh.log_duration_variance.item() == 0.0
