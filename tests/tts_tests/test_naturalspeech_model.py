"""Model tests: every training stage trains what it should, synthesis follows the durator, checkpoints reload."""

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tests import load_batch, load_samples, make_ljspeech_config
from TTS.tts.layers.naturalspeech.runtime.checkpoints import CheckpointError
from TTS.tts.layers.naturalspeech.training_stages import TrainingStage
from TTS.tts.models.naturalspeech import NaturalSpeech, Naturalspeech

SHORT_CLIPS = ["LJ001-0008", "LJ001-0002"]


def build(tmp_path, ljspeech_dir, model_args=None, **overrides):
    torch.manual_seed(0)
    config = make_ljspeech_config(ljspeech_dir, tmp_path, model_args=model_args, **overrides)
    model = Naturalspeech(config)
    return config, model


@pytest.fixture
def tiny(tmp_path, ljspeech_dir):
    config, model = build(tmp_path, ljspeech_dir)
    batch = load_batch(config, model, SHORT_CLIPS)
    return config, model, batch


def train_steps(model, batch, num_steps=2):
    """Run both optimizers like the Trainer does; return the generator loss dicts."""
    criteria = model.get_criterion()
    optimizers = model.get_optimizer()
    losses = []
    for _ in range(num_steps):
        for index, optimizer in enumerate(optimizers):
            optimizer.zero_grad(set_to_none=True)
            _, loss_dict = model.train_step(batch, criteria[index], index)
            loss_dict["loss"].backward()
            optimizer.step()
            if index == 1:
                losses.append({k: float(torch.as_tensor(v).detach()) for k, v in loss_dict.items()})
    return losses


def changed_modules(before, after):
    changed = set()
    for (name, p0), (_, p1) in zip(before.named_parameters(), after.named_parameters()):
        if not torch.equal(p0, p1):
            changed.add(name.split(".")[0])
    return changed


def test_alias_and_discovery_by_name():
    from tests import make_tiny_config
    from TTS.tts.configs.naturalspeech_config import NaturalspeechConfig
    from TTS.tts.models import setup_model

    assert NaturalSpeech is Naturalspeech
    assert type(setup_model(make_tiny_config())) is Naturalspeech
    assert isinstance(NaturalspeechConfig(), NaturalspeechConfig)


def test_decoder_must_match_hop_length():
    from tests import make_tiny_config

    config = make_tiny_config(model_args={"upsample_rates_decoder": [8, 8, 2]})
    with pytest.raises(ValueError, match="upsample_rates_decoder"):
        Naturalspeech(config)


@pytest.mark.parametrize(
    ("step", "stage", "memory_trains"),
    [(0, TrainingStage.WARMUP, False), (2, TrainingStage.MAIN, True), (4, TrainingStage.TUNING, True)],
)
def test_each_stage_trains_its_parameters(tiny, step, stage, memory_trains):
    _, model, batch = tiny
    model.step.fill_(step)
    model.memory_initialized.fill_(step > 0)
    assert model.switches.stage is stage
    before = copy.deepcopy(model)
    losses = train_steps(model, batch)
    changed = changed_modules(before, model)
    expected = {
        "phoneme_encoder",
        "alignment_prior",
        "durator",
        "posterior_encoder",
        "flow",
        "waveform_decoder",
        "disc",
    }
    assert expected <= changed
    assert ("memory_bank" in changed) is memory_trains
    loss_names = set(losses[-1])
    assert {"loss_kl_bwd", "loss_align", "loss_duration", "loss_mel", "loss_feat", "loss_gen"} <= loss_names
    assert ("loss_kl_fwd" in loss_names) is (stage is not TrainingStage.WARMUP)
    # the paper's objective L_bwd + L_fwd + L_rec + L_e2e from the main stage on
    assert ("loss_e2e" in loss_names) is (stage is not TrainingStage.WARMUP)
    assert all(torch.isfinite(torch.tensor(v)) for v in losses[-1].values())


@pytest.mark.parametrize(("step", "e2e"), [(0, False), (2, False), (4, True)])
def test_e2e_can_wait_for_the_tuning_stage(tmp_path, ljspeech_dir, step, e2e):
    _, model = build(tmp_path, ljspeech_dir, e2e_in_main_stage=False)
    model.step.fill_(step)
    assert model.switches.use_e2e is e2e


def test_main_stage_with_soft_dtw_uses_predicted_durations(tiny):
    _, model, batch = tiny
    model.step.fill_(2)
    outputs = model.forward(batch["tokens"], batch["token_lens"], batch["spec"], batch["spec_lens"], batch["waveform"])
    predicted = outputs["durations"]
    assert not torch.equal(predicted.round(), predicted) or predicted.sum(1).tolist() != batch["spec_lens"].tolist()
    model.step.fill_(0)
    outputs = model.forward(batch["tokens"], batch["token_lens"], batch["spec"], batch["spec_lens"], batch["waveform"])
    assert outputs["durations"].sum(1).long().tolist() == batch["spec_lens"].tolist()


@pytest.mark.parametrize(
    ("switch", "absent"),
    [("use_memory_bank", "memory_bank"), ("init_discriminator", "disc")],
)
def test_disabled_components_are_not_built(tmp_path, ljspeech_dir, switch, absent):
    _, model = build(tmp_path, ljspeech_dir, model_args={switch: False})
    assert getattr(model, absent) is None
    assert not any(name.startswith(f"{absent}.") for name, _ in model.named_parameters())


@pytest.mark.parametrize(
    "model_args",
    [
        {"use_memory_bank": False},
        {"use_forward_kl": False},
        {"use_learnable_upsampling": False},
        {"use_predicted_durations": False},
    ],
)
def test_ablations_train_in_the_main_stage(tmp_path, ljspeech_dir, model_args):
    config, model = build(tmp_path, ljspeech_dir, model_args=model_args)
    batch = load_batch(config, model, SHORT_CLIPS)
    model.step.fill_(2)
    model.memory_initialized.fill_(True)
    losses = train_steps(model, batch, num_steps=1)
    assert ("loss_kl_fwd" in losses[-1]) is model_args.get("use_forward_kl", True)
    assert all(torch.isfinite(torch.tensor(v)) for v in losses[-1].values())


def test_memory_bank_is_fitted_once_at_the_stage_boundary(tiny):
    config, model, _ = tiny
    trainer = SimpleNamespace(
        total_steps_done=0, train_loader=model.get_data_loader(config, samples=load_samples(config, SHORT_CLIPS))
    )
    fitted_shapes = []
    fit = model.memory_bank.init_from_latents
    model.memory_bank.init_from_latents = lambda latents, *a, **k: (
        fitted_shapes.append(latents.shape),
        fit(latents, *a, **k),
    )
    bank_before = model.memory_bank.bank.detach().clone()
    for step in range(6):
        trainer.total_steps_done = step
        model.on_train_step_start(trainer)
        assert bool(model.memory_initialized) is (step >= config.warmup_steps)
    assert len(fitted_shapes) == 1
    assert fitted_shapes[0][1] == config.model_args.hidden_channels
    assert not torch.equal(bank_before, model.memory_bank.bank)


def test_main_stage_waits_until_the_duration_predictor_explains_the_aligned_durations(tmp_path, ljspeech_dir):
    # tuning far away: a gate that opens after `tuning_start_step` goes straight to the tuning stage
    config, model = build(tmp_path, ljspeech_dir, main_stage_min_duration_r2=0.5, tuning_start_step=1000)
    trainer = SimpleNamespace(
        total_steps_done=0, train_loader=model.get_data_loader(config, samples=load_samples(config, SHORT_CLIPS))
    )
    gate = model.main_stage_gate
    for step in range(config.warmup_steps + 3):  # a predictor that explains 0.2 of the variance: warm-up goes on
        gate.track(torch.tensor(0.4), torch.tensor(0.5))
        trainer.total_steps_done = step
        model.on_train_step_start(trainer)
        assert model.switches.stage is TrainingStage.WARMUP and not bool(model.memory_initialized)
    opened_at = config.warmup_steps + 3
    for _ in range(300):  # the tracked variances follow a predictor that now explains 0.9
        gate.track(torch.tensor(0.05), torch.tensor(0.5))
    trainer.total_steps_done = opened_at
    model.on_train_step_start(trainer)
    assert gate.explained_variance >= 0.5 and int(gate.opened_at_step) == opened_at
    assert model.switches.stage is TrainingStage.MAIN and bool(model.memory_initialized)
    gate.track(torch.tensor(0.5), torch.tensor(0.5))  # once open, the main stage stays
    trainer.total_steps_done = opened_at + 1
    model.on_train_step_start(trainer)
    assert model.switches.stage is TrainingStage.MAIN

    path = tmp_path / "checkpoint.pth"  # a resumed run is in the stage it left, at the step it opened
    torch.save({"model": model.state_dict(), "config": config.to_dict()}, path)
    restored = Naturalspeech(copy.deepcopy(config))
    restored.load_checkpoint(config, str(path))
    assert int(restored.main_stage_gate.opened_at_step) == opened_at
    assert restored.switches.stage is TrainingStage.MAIN
    restored.step.fill_(opened_at - 1)
    assert restored.switches.stage is TrainingStage.WARMUP


def test_main_stage_gate_tracks_real_training_steps(tmp_path, ljspeech_dir):
    config, model = build(tmp_path, ljspeech_dir, main_stage_min_duration_r2=0.5)
    batch = load_batch(config, model, SHORT_CLIPS)
    model.on_train_step_start(SimpleNamespace(total_steps_done=0, train_loader=None))
    train_steps(model, batch, num_steps=1)
    model.on_train_step_end(None)
    gate = model.main_stage_gate
    assert gate.aligned_variance.item() > 0  # the aligned durations of real clips are not all equal
    assert gate.residual_variance.item() == model.durator.log_duration_variance.item()
    assert gate.explained_variance < 0.5  # an untrained predictor explains little
    state = model.state_dict()
    for key in ("residual_variance", "aligned_variance", "opened_at_step"):
        del state[f"main_stage_gate.{key}"]  # a checkpoint from before the gate loads, not opened
    model.load_state_dict(state)
    assert int(model.main_stage_gate.opened_at_step) == -1 and model.main_stage_gate.explained_variance == 0.0


def test_main_stage_gate_threshold_must_be_an_explained_variance(tmp_path, ljspeech_dir):
    with pytest.raises(ValueError, match="main_stage_min_duration_r2"):
        build(tmp_path, ljspeech_dir, main_stage_min_duration_r2=1.5)


def test_checkpoint_restores_stage_and_memory_bank(tiny, tmp_path):
    config, model, _ = tiny
    model.step.fill_(3)
    model.memory_initialized.fill_(True)
    with torch.no_grad():
        for p in model.memory_bank.parameters():
            p.add_(1.0)
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": model.state_dict(), "config": config.to_dict()}, path)
    restored = Naturalspeech(copy.deepcopy(config))
    restored.load_checkpoint(config, str(path))
    assert int(restored.step) == 3 and bool(restored.memory_initialized)
    assert restored.switches.stage is TrainingStage.MAIN
    for p0, p1 in zip(model.memory_bank.parameters(), restored.memory_bank.parameters()):
        assert torch.equal(p0, p1)


def test_checkpoint_from_before_the_tracked_duration_variance_loads_without_correction(tiny, tmp_path):
    config, model, _ = tiny
    model.durator.log_duration_variance.fill_(0.4)
    state = model.state_dict()
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": state, "config": config.to_dict()}, path)
    restored = Naturalspeech(copy.deepcopy(config))
    restored.load_checkpoint(config, str(path), eval=True)
    assert restored.durator.log_duration_variance.item() == pytest.approx(0.4)
    del state["durator.log_duration_variance"]
    torch.save({"model": state, "config": config.to_dict()}, path)
    restored.load_checkpoint(config, str(path), eval=True)
    assert restored.durator.log_duration_variance.item() == 0.0
    del state["durator.proj_mean.bias"]  # any other missing key is still an error
    torch.save({"model": state, "config": config.to_dict()}, path)
    with pytest.raises(CheckpointError, match=r"durator\.proj_mean\.bias"):
        restored.load_checkpoint(config, str(path), eval=True)


def test_inference_length_follows_durations_and_length_scale(tiny):
    _, model, _ = tiny
    model.eval()
    tokens = torch.randint(1, model.args.num_chars, (1, 12))
    hop = model.config.audio.hop_length
    out1 = model.inference(tokens, aux_input={"noise_scale": 0.0, "length_scale": 1.0})
    out2 = model.inference(tokens, aux_input={"noise_scale": 0.0, "length_scale": 2.0})
    frames1, frames2 = int(out1["frame_lengths"][0]), int(out2["frame_lengths"][0])
    assert frames1 == round(float(out1["durations"].sum()))
    assert abs(frames2 - 2 * frames1) <= 1
    assert out1["model_outputs"].shape == (1, 1, frames1 * hop)
    assert out2["model_outputs"].shape[-1] == frames2 * hop
    durations = torch.full((1, 12), 3.0)
    out3 = model.inference(tokens, aux_input={"noise_scale": 0.0, "durations": durations})
    assert out3["model_outputs"].shape[-1] == 36 * hop


def test_batch_inference_equals_one_at_a_time(tiny):
    _, model, _ = tiny
    model.eval()
    torch.manual_seed(1)
    a, b = torch.randint(1, model.args.num_chars, (1, 10)), torch.randint(1, model.args.num_chars, (1, 6))
    batch = torch.zeros(2, 10, dtype=torch.long)
    batch[0], batch[1, :6] = a[0], b[0]
    aux = {"noise_scale": 0.0}
    together = model.inference(batch, aux_input={**aux, "x_lengths": torch.tensor([10, 6])})
    alone_a = model.inference(a, aux_input=aux)
    alone_b = model.inference(b, aux_input=aux)
    len_a, len_b = alone_a["model_outputs"].shape[-1], alone_b["model_outputs"].shape[-1]
    torch.testing.assert_close(together["model_outputs"][0, :, :len_a], alone_a["model_outputs"][0], atol=1e-4, rtol=0)
    torch.testing.assert_close(together["model_outputs"][1, :, :len_b], alone_b["model_outputs"][0], atol=1e-4, rtol=0)
    assert torch.count_nonzero(together["model_outputs"][1, :, len_b:]) == 0


def test_synthesize_returns_a_waveform(tiny):
    _, model, _ = tiny
    model.eval()
    result = model.synthesize("Be a voice, not an echo.")
    assert result["wav"].ndim == 1 and result["wav"].size > 0
    assert result["wav"].size % model.config.audio.hop_length == 0


@pytest.mark.slow
def test_overfits_one_real_clip(tmp_path, ljspeech_dir):
    """The whole GAN objective on one fixed slice of one real clip: the mel loss halves within 30 steps."""
    config, model = build(
        tmp_path,
        ljspeech_dir,
        model_args={"use_memory_bank": False, "spec_segment_size": 32, "upsample_initial_channel_decoder": 64},
        lr_gen=5e-3,
        lr_disc=5e-3,
    )
    batch = load_batch(config, model, ["LJ001-0008"])
    criteria, optimizers = model.get_criterion(), model.get_optimizer()
    mel_losses = []
    for _ in range(30):
        torch.manual_seed(1234)  # the same random slice every step: overfit it
        for index, optimizer in enumerate(optimizers):
            optimizer.zero_grad(set_to_none=True)
            _, loss_dict = model.train_step(batch, criteria[index], index)
            loss_dict["loss"].backward()
            optimizer.step()
        mel_losses.append(float(loss_dict["loss_mel"].detach()))
    # the median of the last ten steps: the adversarial terms make single steps jump by up to a third
    first, last = mel_losses[0], float(np.median(mel_losses[-10:]))
    assert last < 0.5 * first, f"mel loss went from {first:.1f} to {last:.1f}: {mel_losses}"


def test_external_duration_labels_replace_alignment_search(tmp_path, ljspeech_dir):
    config, model = build(tmp_path, ljspeech_dir)
    batch = load_batch(config, model, SHORT_CLIPS)
    labels_dir = tmp_path / "durations"
    labels_dir.mkdir()
    expected = []
    for audio_file, tokens, frames in zip(batch["audio_files"], batch["token_lens"], batch["spec_lens"]):
        label = np.full(int(tokens), int(frames) // int(tokens))
        label[-1] += int(frames) - label.sum()
        np.save(labels_dir / f"{audio_file.rsplit('.', 1)[0]}.npy", label)
        expected.append(label.tolist())
    model.config.duration_labels_path = str(labels_dir)
    outputs, _ = model.train_step(batch, model.get_criterion()[0], 0)
    for index, label in enumerate(expected):
        assert outputs["durations"][index, : len(label)].long().tolist() == label


def test_alignment_prior_learns_from_the_posterior_without_pulling_it(tiny):
    """loss_align trains the alignment prior (the search's scorer) and leaves the posterior to L_bwd."""
    _, model, batch = tiny
    outputs = model.forward(batch["tokens"], batch["token_lens"], batch["spec"], batch["spec_lens"], batch["waveform"])
    outputs["kl_terms"]["loss_align"].backward()
    assert all(p.grad is None for p in model.posterior_encoder.parameters())
    assert all(p.grad is None for p in model.flow.parameters())
    assert model.alignment_prior.weight.grad.abs().sum() > 0


def test_training_tracks_the_duration_loss_that_mean_corrected_synthesis_uses(tmp_path, ljspeech_dir):
    config, model = build(tmp_path, ljspeech_dir, model_args={"mean_corrected_durations": True})
    batch = load_batch(config, model, SHORT_CLIPS)
    model.on_train_step_start(SimpleNamespace(total_steps_done=0, train_loader=None))
    losses = train_steps(model, batch, num_steps=1)
    assert model.durator.log_duration_variance.item() == 0.0  # tracked when the step ends, not in the forward pass
    model.on_train_step_end(None)
    variance = model.durator.log_duration_variance.item()
    assert 0 < variance < losses[0]["loss_duration"] / config.duration_loss_alpha  # the loss less the squared bias
    model.eval()
    tokens = torch.randint(1, model.args.num_chars, (1, 12))
    corrected = model.inference(tokens, aux_input={"noise_scale": 0.0})["durations"]
    model.durator.mean_corrected_durations = False
    plain = model.inference(tokens, aux_input={"noise_scale": 0.0})["durations"]
    unclamped = (plain > model.args.min_duration_frames) & (corrected < model.args.max_duration_frames)
    assert unclamped.any() and (corrected >= plain).all()
    torch.testing.assert_close(
        corrected[unclamped] / plain[unclamped], torch.full_like(plain[unclamped], 1.0) * np.exp(variance / 2)
    )
    model.forward(batch["tokens"], batch["token_lens"], batch["spec"], batch["spec_lens"], batch["waveform"])
    assert model.durator.log_duration_variance.item() == variance  # synthesis and evaluation do not track
