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


##########################
# transformer coupling layers (VITS2, Section 2.3)
##########################


def make_flow(use_transformer, seed=0):
    from TTS.tts.layers.naturalspeech.flows import BidirectionalFlow

    torch.manual_seed(seed)
    flow = BidirectionalFlow(
        8,
        16,
        kernel_size=3,
        dilation_rate=1,
        num_layers=1,
        num_flows=2,
        cond_channels=4,
        use_transformer=use_transformer,
    )
    # the toolkit zero-initialises each coupling layer's output: give it weights, so the shifts are not all zero
    for coupling in flow.flows.flows:
        torch.nn.init.normal_(coupling.post.weight, std=0.5)
    return flow.eval()


def test_transformer_flow_is_invertible_and_sees_far_frames():
    flow = make_flow(use_transformer=True)
    generator = torch.Generator().manual_seed(1)
    z = torch.randn(2, 8, 50, generator=generator)
    g = torch.randn(2, 4, 1, generator=generator)
    mask = torch.ones(2, 1, 50)
    mask[1, :, 40:] = 0
    z_p = flow(z, mask, g)
    torch.testing.assert_close(flow.inverse(z_p, mask, g), z * mask, rtol=0, atol=1e-5)
    assert not torch.allclose(z_p, z * mask)

    # a change at frame 0 reaches frame 45 through the attention; the WaveNet alone (kernel 3, 1 layer per
    # coupling, 2 couplings) reaches a couple of frames
    far = z.clone()
    far[:, :, 0] += 3.0
    assert not torch.allclose(flow(far, mask, g)[0, :, 45], z_p[0, :, 45], atol=1e-6)
    plain = make_flow(use_transformer=False)
    torch.testing.assert_close(plain(far, mask, g)[0, :, 45], plain(z, mask, g)[0, :, 45], rtol=0, atol=0)
    # padding frames do not leak into valid ones
    padded = z.clone()
    padded[1, :, 40:] = 100.0
    torch.testing.assert_close(flow(padded, mask, g)[1, :, :40], z_p[1, :, :40], rtol=0, atol=1e-5)


def test_model_builds_the_transformer_flow_and_trains_it():
    model = Naturalspeech(make_tiny_config(model_args={"use_transformer_flow": True}))
    names = [n for n, _ in model.named_parameters() if n.startswith("flow.") and ".enc.attention." in n]
    assert names
    for coupling in model.flow.flows.flows:  # zero-initialised by the toolkit: no gradient reaches `enc` before
        torch.nn.init.normal_(coupling.post.weight, std=0.5)  # the first update of `post`
    model.train()
    outputs = model.forward(*random_inputs())
    outputs["kl_terms"]["loss_kl_bwd"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if n in names)
    assert not any(".enc.attention." in n for n, _ in Naturalspeech(make_tiny_config()).named_parameters())


##########################
# adversarial duration discriminator (VITS2, Section 2.2)
##########################


def random_batch(model, seed=0):
    tokens, token_lengths, _, _, waveform = random_inputs(seed=seed)
    batch = {"tokens": tokens, "token_lens": token_lengths, "waveform": waveform, "waveform_rel_lens": torch.ones(1)}
    return model.format_batch_on_device(model.format_batch(batch))


def test_duration_discriminator_trains_in_the_discriminator_step():
    model = Naturalspeech(make_tiny_config(model_args={"use_duration_discriminator": True})).train()
    assert Naturalspeech(make_tiny_config()).duration_disc is None
    batch = random_batch(model)
    criteria = model.get_criterion()
    disc_optimizer, gen_optimizer = model.get_optimizer()
    duration_parameters = {id(p) for p in model.duration_disc.parameters()}
    assert duration_parameters <= {id(p) for group in disc_optimizer.param_groups for p in group["params"]}
    assert not duration_parameters & {id(p) for group in gen_optimizer.param_groups for p in group["params"]}

    _, losses = model.train_step(batch, criteria[0], 0)
    assert "loss_duration_disc" in losses
    losses["loss"].backward()
    grads = [p.grad for p in model.duration_disc.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0
    # the discriminator step does not reach the duration predictor (its durations are detached there)
    assert model.durator.duration_predictor.proj.weight.grad is None


def test_generator_loss_includes_the_adversarial_duration_term():
    config = make_tiny_config(model_args={"use_duration_discriminator": True})
    model = Naturalspeech(config).train()
    batch = random_batch(model)
    criteria = model.get_criterion()
    model.train_step(batch, criteria[0], 0)  # caches the generator pass

    def generator_losses(alpha):
        model.config.duration_adv_loss_alpha = alpha
        torch.manual_seed(0)  # the same dropout in the duration discriminator
        return model.train_step(batch, criteria[1], 1)[1]

    with_term, without_term = generator_losses(3.0), generator_losses(0.0)
    term = with_term["loss_duration_gen"]
    assert term > 0
    torch.testing.assert_close(with_term["loss"] - without_term["loss"], 3.0 * term.detach())
    # its gradient reaches the duration predictor
    grad = torch.autograd.grad(term, model.durator.duration_predictor.proj.weight, retain_graph=True)[0]
    assert grad.abs().sum() > 0


def test_duration_discriminator_stays_out_of_exports_and_inference_checkpoints(tmp_path):
    from TTS.tts.layers.naturalspeech.runtime.onnx_export import export_copy

    config = make_tiny_config(model_args={"use_duration_discriminator": True})
    model = Naturalspeech(config)
    assert export_copy(model).duration_disc is None and model.duration_disc is not None
    torch.save({"model": model.state_dict()}, tmp_path / "model.pth")
    loaded = Naturalspeech(config)
    loaded.load_checkpoint(config, str(tmp_path / "model.pth"), eval=True)
    assert loaded.duration_disc is None and loaded.disc is None
    resumed = Naturalspeech(config)
    resumed.load_checkpoint(config, str(tmp_path / "model.pth"))
    torch.testing.assert_close(resumed.duration_disc.proj.weight, model.duration_disc.proj.weight)
