"""The KL terms under soft-DTW must not reward a longer prior."""

import torch

from TTS.tts.layers.naturalspeech.losses import PriorPosteriorKL


def kl(channels=4):
    return PriorPosteriorKL(soft_dtw_gamma=0.01, soft_dtw_warp=0.07, channels=channels)


def test_negative_costs_do_not_reward_a_longer_prior():
    # uniformly negative frame-pair costs (single-sample KL terms can be negative): a prior twice as long as the
    # posterior must not score better than one of the same length
    layer = kl()
    m = 10
    same = layer.soft_dtw_kl(torch.full((1, m, m), -3.0), torch.tensor([m]), torch.tensor([m]))
    longer = layer.soft_dtw_kl(torch.full((1, 2 * m, m), -3.0), torch.tensor([2 * m]), torch.tensor([m]))
    assert longer >= same


def test_shift_keeps_the_cell_gradients_and_ignores_padding():
    layer = kl()
    cost = torch.randn(2, 6, 5, dtype=torch.float64).requires_grad_()
    padded = cost.detach().clone()
    padded[1, 4:, :] = -100.0  # padding must not set the shift
    padded.requires_grad_()
    lengths_n, lengths_m = torch.tensor([6, 4]), torch.tensor([5, 5])
    layer.soft_dtw_kl(cost, lengths_n, lengths_m).backward()
    layer.soft_dtw_kl(padded, lengths_n, lengths_m).backward()
    torch.testing.assert_close(cost.grad[1, :4], padded.grad[1, :4])
    assert torch.all(padded.grad[1, 4:] == 0)
    # a constant shift of one item's valid cells changes neither that item's soft alignment nor its gradient
    shifted = (cost.detach() - 7.0).requires_grad_()
    layer.soft_dtw_kl(shifted, lengths_n, lengths_m).backward()
    torch.testing.assert_close(shifted.grad[0], cost.grad[0])
