import logging

import pytest
import torch
from sklearn.cluster import MiniBatchKMeans

from TTS.tts.layers.naturalspeech.memory_bank import MemoryBank, collect_latent_frames
from TTS.tts.utils.helpers import sequence_mask


def make_bank(channels: int = 16, bank_size: int = 8, num_heads: int = 1) -> MemoryBank:
    torch.manual_seed(0)
    return MemoryBank(channels, bank_size, num_heads)


def make_latents(channels: int = 16, lengths: tuple[int, ...] = (7, 4)) -> tuple[torch.Tensor, torch.Tensor]:
    mask = sequence_mask(torch.tensor(lengths), max(lengths)).unsqueeze(1).float()  # [B, 1, T_feats]
    return torch.randn(len(lengths), channels, max(lengths)) * mask, mask


def planted_clusters(num_centres: int = 8, channels: int = 16, per_centre: int = 200) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(1)
    centres = 10.0 * torch.randn(num_centres, channels, generator=generator)
    frames = centres.repeat_interleave(per_centre, dim=0) + 0.1 * torch.randn(
        num_centres * per_centre, channels, generator=generator
    )
    return frames[torch.randperm(frames.shape[0], generator=generator)], centres


@pytest.mark.parametrize("num_heads", [1, 4])
def test_output_shape_and_zero_padding(num_heads):
    bank = make_bank(num_heads=num_heads)
    z, mask = make_latents()
    out = bank(z, mask)
    assert out.shape == z.shape
    assert torch.all(out[1, :, 4:] == 0)
    assert out[1, :, :4].abs().sum() > 0


@pytest.mark.parametrize("num_heads", [1, 4])
def test_attention_rows_sum_to_one_and_both_paths_agree(num_heads):
    bank = make_bank(num_heads=num_heads)
    z, mask = make_latents()
    out, attention = bank(z, mask, return_attention=True)
    assert attention.shape == (2, num_heads, 7, 8)
    assert torch.allclose(attention.sum(dim=-1), torch.ones(2, num_heads, 7), atol=1e-6)
    assert torch.allclose(out, bank(z, mask), atol=1e-5)  # explicit matmuls == scaled_dot_product_attention


def test_gradients_reach_bank_and_projections():
    bank = make_bank()
    z, mask = make_latents()
    bank(z, mask).sum().backward()
    for name, param in bank.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_collect_latent_frames_keeps_valid_frames_in_order():
    z, mask = make_latents(lengths=(3, 5))
    frames = collect_latent_frames(z, mask)
    assert frames.shape == (8, 16)
    assert torch.equal(frames[:3], z[0, :, :3].T)
    assert torch.equal(frames[3:], z[1, :, :5].T)


def test_kmeans_init_recovers_planted_centres(caplog):
    frames, centres = planted_clusters()
    bank = make_bank(bank_size=8)
    with caplog.at_level(logging.INFO, logger="TTS.tts.layers.naturalspeech.memory_bank"):
        bank.init_from_latents(frames, batch_size=256)
    nearest = torch.cdist(centres, bank.bank.detach()).min(dim=1).values
    assert torch.all(nearest < 0.5), nearest  # the centres are ~45 apart, the cluster noise radius ~0.4
    assert "on 1600 of 1600 latent frames" in caplog.text


def test_kmeans_init_keeps_dtype_and_device():
    frames, _ = planted_clusters()
    bank = make_bank().double()
    bank.init_from_latents(frames.half(), batch_size=256)
    assert bank.bank.dtype == torch.float64 and bank.bank.device.type == "cpu"


def test_kmeans_init_respects_frame_cap(monkeypatch):
    fitted_rows = []
    original_fit = MiniBatchKMeans.fit

    def spy_fit(self, x, *args, **kwargs):
        fitted_rows.append(x.shape[0])
        return original_fit(self, x, *args, **kwargs)

    monkeypatch.setattr(MiniBatchKMeans, "fit", spy_fit)
    frames, _ = planted_clusters(per_centre=500)
    make_bank().init_from_latents(frames, max_frames=300, batch_size=64)
    assert fitted_rows == [300]


def test_kmeans_init_sample_is_seeded():
    frames, _ = planted_clusters()
    first, second = make_bank(), make_bank()
    first.init_from_latents(frames, max_frames=500, batch_size=64, seed=3)
    second.init_from_latents(frames, max_frames=500, batch_size=64, seed=3)
    assert torch.equal(first.bank, second.bank)


@pytest.mark.parametrize(
    ("latents", "match"),
    [
        (torch.randn(5, 16), "at least bank_size=8 latent frames, got 5"),
        (torch.randn(100, 12), r"shape \[N, 16\]"),
        (torch.randn(2, 16, 50), r"shape \[N, 16\]"),
    ],
)
def test_kmeans_init_rejects_bad_latents(latents, match):
    with pytest.raises(ValueError, match=match):
        make_bank().init_from_latents(latents)


def test_heads_must_divide_channels():
    with pytest.raises(ValueError, match="divisible"):
        MemoryBank(channels=10, bank_size=4, num_heads=3)
