"""The KL terms under soft alignment: no reward for a longer prior, and planted alignments are recovered."""

import pytest
import torch

from TTS.tts.layers.naturalspeech.gaussian_kl import gaussian_kl_matrix
from TTS.tts.layers.naturalspeech.losses import FrameGaussians, PriorPosteriorKL
from TTS.tts.layers.naturalspeech.soft_alignment import _soft_alignment_vectorised, soft_alignment_cost


def kl(steps="posterior_once", channels=4):
    return PriorPosteriorKL(soft_dtw_gamma=0.01, soft_dtw_warp=0.07, channels=channels, soft_dtw_steps=steps)


def path_costs(layer, cost_same, cost_longer):
    n = cost_same.size(1)
    same = layer.soft_alignment_kl(cost_same, torch.tensor([n]), torch.tensor([cost_same.size(2)]))
    longer = layer.soft_alignment_kl(cost_longer, torch.tensor([n]), torch.tensor([cost_longer.size(2)]))
    return same, longer


def test_negative_costs_do_not_reward_a_longer_prior():
    # L_bwd, rows are posterior frames: uniformly negative frame-pair costs (single-sample KL terms can be negative)
    # must not make a prior twice as long as the posterior score better than one of the same length
    layer, m = kl(), 10
    same, longer = path_costs(layer, torch.full((1, m, m), -3.0), torch.full((1, m, 2 * m), -3.0))
    assert longer >= same


@pytest.mark.parametrize("num_target", [5, 8, 16])
def test_every_path_scores_each_sampled_frame_once(num_target):
    """A constant added to every cell adds exactly N times it, and moves no alignment, whatever the lengths."""
    torch.manual_seed(0)
    cost = torch.randn(1, 8, num_target, dtype=torch.float64, requires_grad=True)
    shifted = (cost.detach() - 5.0).requires_grad_()
    lengths_n, lengths_m = torch.tensor([8]), torch.tensor([num_target])
    value = soft_alignment_cost(cost, lengths_n, lengths_m, 0.01, 0.3)
    value_shifted = soft_alignment_cost(shifted, lengths_n, lengths_m, 0.01, 0.3)
    torch.testing.assert_close(value_shifted, value - 5.0 * 8)
    (alignment,) = torch.autograd.grad(value.sum(), cost)
    (alignment_shifted,) = torch.autograd.grad(value_shifted.sum(), shifted)
    torch.testing.assert_close(alignment_shifted, alignment)


def test_symmetric_soft_dtw_rewards_a_longer_prior_on_negative_costs():
    """Why "posterior_once" is the default: the paper's symmetric steps prefer longer paths through negative cells."""
    layer, m = kl("symmetric"), 10
    same, longer = path_costs(layer, torch.full((1, m, m), -3.0), torch.full((1, m, 2 * m), -3.0))
    assert longer < same - 10.0


def planted(num_sampled: int, num_target: int, channels: int = 8, seed: int = 0):
    """Target Gaussians and a sample drawn along a known monotonic assignment of sampled frames to target frames."""
    generator = torch.Generator().manual_seed(seed)
    target_mean = 3.0 * torch.randn(1, channels, num_target, generator=generator, dtype=torch.float64)
    target_log_std = torch.full_like(target_mean, -1.0)
    assignment = torch.linspace(0, num_target - 1, num_sampled).round().long()  # monotonic, first and last frames
    sample = target_mean[:, :, assignment] + 0.1 * torch.randn(1, channels, num_sampled, generator=generator)
    cost = gaussian_kl_matrix(sample, torch.full_like(sample, -1.0), target_mean, target_log_std)
    return cost, assignment


@pytest.mark.parametrize("num_sampled, num_target", [(30, 12), (12, 30), (20, 20)])
def test_soft_alignment_recovers_a_planted_alignment(num_sampled, num_target):
    """Shorter and longer targets: the soft alignment (d value / d cost) puts its weight on the planted path."""
    cost, assignment = planted(num_sampled, num_target)
    cost.requires_grad_()
    value = soft_alignment_cost(cost, torch.tensor([num_sampled]), torch.tensor([num_target]), 0.01, 0.07 * 8)
    (alignment,) = torch.autograd.grad(value.sum(), cost)
    # every sampled frame is scored once: each row of the alignment sums to one
    torch.testing.assert_close(alignment[0].sum(1), torch.ones(num_sampled, dtype=torch.float64))
    assert torch.equal(alignment[0].argmax(1), assignment)


def test_cpu_kernel_matches_the_vectorised_recursion_and_ignores_padding():
    torch.manual_seed(0)
    cost = torch.randn(3, 7, 9, dtype=torch.float64, requires_grad=True)
    lengths_n, lengths_m = torch.tensor([7, 4, 2]), torch.tensor([9, 5, 8])
    for gamma in (0.5, 0.01):
        value = soft_alignment_cost(cost, lengths_n, lengths_m, gamma, 0.3)
        reference = _soft_alignment_vectorised(cost, lengths_n, lengths_m, gamma, 0.3)
        (grad,) = torch.autograd.grad(value.sum(), cost)
        (grad_reference,) = torch.autograd.grad(reference.sum(), cost)
        torch.testing.assert_close(value, reference)
        torch.testing.assert_close(grad, grad_reference)
        assert torch.all(grad[1, 4:] == 0) and torch.all(grad[1, :, 5:] == 0)  # padding gets no gradient
    assert torch.autograd.gradcheck(lambda c: soft_alignment_cost(c, lengths_n, lengths_m, 0.5, 0.3), (cost,))


def test_bad_lengths_are_named():
    with pytest.raises(ValueError, match="lengths_m"):
        soft_alignment_cost(torch.zeros(1, 3, 4), torch.tensor([3]), torch.tensor([5]), 0.01, 0.1)


def test_kl_takes_named_sides_and_is_exact_when_aligned():
    """Equal lengths and the diagonal path: the soft alignment KL equals the frame-aligned KL."""
    torch.manual_seed(0)
    z, log_q = torch.randn(2, 4, 6), torch.randn(2, 4, 6) * 0.1
    mean, log_p = z + 0.01 * torch.randn(2, 4, 6), torch.zeros(2, 4, 6)
    lengths = torch.tensor([6, 6])
    sample, target = FrameGaussians(z, log_q, lengths), FrameGaussians(mean, log_p, lengths)
    aligned = kl()(sample=sample, target=target, num_frames=lengths, aligned=True)
    soft = kl()(sample=sample, target=target, num_frames=lengths, aligned=False)
    torch.testing.assert_close(soft, aligned, atol=0.05, rtol=0)


def test_feature_matching_weight_equals_vits():
    """The toolkit's feature_loss already doubles; NaturalSpeech's default must not double it again."""
    from TTS.tts.configs.naturalspeech_config import NaturalspeechConfig
    from TTS.tts.configs.vits_config import VitsConfig
    from TTS.tts.layers.losses import VitsGeneratorLoss
    from TTS.tts.layers.naturalspeech.losses import NaturalspeechGeneratorLoss

    torch.manual_seed(0)
    feats_real, feats_fake = [[torch.randn(2, 3, 5)]], [[torch.randn(2, 3, 5)]]
    scores = [torch.rand(2, 4)]
    mel = torch.rand(2, 80, 8)
    ours = NaturalspeechGeneratorLoss(NaturalspeechConfig())(mel, mel, scores, feats_fake, feats_real, {})
    vits_weight = VitsGeneratorLoss(VitsConfig()).feat_loss_alpha
    from TTS.tts.layers.losses import feature_loss

    torch.testing.assert_close(ours["loss_feat"], vits_weight * feature_loss(feats_real, feats_fake))


@pytest.mark.parametrize("weight", [0.0, 0.1, 1.0])
def test_discriminator_weighs_prior_path_fakes_explicitly(weight):
    from TTS.tts.configs.naturalspeech_config import NaturalspeechConfig
    from TTS.tts.layers.naturalspeech.losses import NaturalspeechDiscriminatorLoss

    torch.manual_seed(0)
    real, fake, e2e = [torch.rand(2, 4)], [torch.rand(2, 4)], [torch.rand(2, 4) + 1.0]
    loss = NaturalspeechDiscriminatorLoss(NaturalspeechConfig(disc_e2e_loss_alpha=weight))
    without = loss(real, fake)["loss"]
    with_e2e = loss(real, fake, e2e)
    torch.testing.assert_close(with_e2e["loss"] - without, weight * torch.mean(e2e[0] ** 2))


@pytest.mark.parametrize("posterior", ["sample", "target"])
def test_a_shorter_prior_is_not_rewarded(posterior):
    """Positive cells (a prior that fits badly, early in training): dropping prior frames must not lower the KL.

    Were the rows the prior's sampled frames (L_fwd before), a prior 4 frames short would sum 4 cells fewer for 4
    warps and win whenever a cell costs more than the warp.
    """
    channels, num_posterior = 4, 20
    generator = torch.Generator().manual_seed(0)
    posterior_mean = torch.randn(1, channels, num_posterior, generator=generator)
    posterior_frames = FrameGaussians(posterior_mean, torch.full_like(posterior_mean, -1.0), torch.tensor([20]))
    frames = torch.arange(num_posterior)
    values = {}
    for name, keep in {"true length": frames, "4 frames short": frames[frames % 5 != 2]}.items():
        prior_mean = posterior_mean[:, :, keep] + 1.0  # every cell ~ 0.5 * e^2 * C, far above the warp 0.07 * C
        prior = FrameGaussians(prior_mean, torch.full_like(prior_mean, -1.0), torch.tensor([keep.numel()]))
        sides = (posterior_frames, prior) if posterior == "sample" else (prior, posterior_frames)
        values[name] = kl(channels=channels)(
            sample=sides[0], target=sides[1], num_frames=torch.tensor([20]), aligned=False, posterior=posterior
        )
    assert values["true length"] < values["4 frames short"]


def test_posterior_side_is_checked():
    frames = FrameGaussians(torch.zeros(1, 4, 3), torch.zeros(1, 4, 3), torch.tensor([3]))
    with pytest.raises(ValueError, match="posterior must be one of"):
        kl()(sample=frames, target=frames, num_frames=torch.tensor([3]), aligned=False, posterior="prior")
