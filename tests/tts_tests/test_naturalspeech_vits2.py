"""VITS2's options (arXiv 2307.16430), each a switch off by default: their wiring, not their benefit (not measured)."""

import pytest
import torch

from tests import make_tiny_config
from TTS.tts.layers.naturalspeech.alignment import search_durations
from TTS.tts.models.naturalspeech import Naturalspeech


def random_inputs(num_tokens=12, num_frames=40, seed=0):
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, 50, (1, num_tokens), generator=generator)
    spec = torch.rand(1, 513, num_frames, generator=generator)
    waveform = torch.rand(1, 1, num_frames * 256, generator=generator) - 0.5
    return tokens, torch.tensor([num_tokens]), spec, torch.tensor([num_frames]), waveform


def test_defaults_are_off():
    args = make_tiny_config().model_args.__class__()
    assert not args.use_duration_discriminator and not args.use_transformer_flow and args.mas_noise_scale == 0


##########################
# noise in monotonic alignment search (VITS2, Section 2.1)
##########################


def test_search_noise_changes_the_path_but_keeps_it_an_alignment():
    generator = torch.Generator().manual_seed(0)
    z_p, mean, log_std = (torch.randn(2, 4, shape, generator=generator) for shape in (30, 8, 8))
    x_mask = torch.ones(2, 1, 8)
    y_mask = torch.ones(2, 1, 30)
    y_mask[1, :, 25:] = 0
    plain, _ = search_durations(z_p, mean, log_std, x_mask, y_mask)
    torch.manual_seed(0)
    assert torch.equal(search_durations(z_p, mean, log_std, x_mask, y_mask, noise_scale=0.0)[0], plain)
    noisy, path = search_durations(z_p, mean, log_std, x_mask, y_mask, noise_scale=1.0)
    assert not torch.equal(noisy, plain)
    assert noisy.sum(1).tolist() == [30, 25]  # still every frame to exactly one token
    assert path[1, :, 25:].sum() == 0


def test_model_search_noise_decays_with_the_step():
    config = make_tiny_config(model_args={"mas_noise_scale": 1.0, "mas_noise_decay_steps": 10}, warmup_steps=100)
    model = Naturalspeech(config).train()
    inputs = random_inputs()

    def aligned_durations(step, noise):
        model.step.fill_(step)
        model.args.mas_noise_scale = noise
        torch.manual_seed(0)
        return model.forward(*inputs)["durations"]  # the aligned durations in warm-up

    assert model.mas_noise_scale == 1.0
    assert not torch.equal(aligned_durations(0, 1.0), aligned_durations(0, 0.0))
    assert torch.equal(aligned_durations(10, 1.0), aligned_durations(10, 0.0))  # decayed to nothing
    model.args.mas_noise_scale = 1.0
    model.step.fill_(5)
    assert model.mas_noise_scale == pytest.approx(0.5)
    model.eval()
    model.step.fill_(0)
    assert model.mas_noise_scale == 0.0  # never outside training
