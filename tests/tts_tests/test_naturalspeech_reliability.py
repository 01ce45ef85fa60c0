"""Reliability: resume after SIGKILL, atomic checkpoints, bad training data, numerical guards, untrusted checkpoints."""

import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from tests import make_ljspeech_config, make_tiny_config

CLIPS = ["LJ001-0001", "LJ001-0002"]
RESUME_CLIPS = ["LJ001-0001", "LJ001-0002", "LJ001-0003", "LJ001-0004"]


def _tiny_model(**model_args):
    from TTS.tts.models.naturalspeech import Naturalspeech

    torch.manual_seed(0)
    return Naturalspeech(make_tiny_config(model_args=model_args))


##########################
# untrusted checkpoints
##########################


class _Payload:
    """Pickles to a call of `open(marker, "w")`: loading it with full unpickling creates the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class _ShellPayload:
    """Pickles to a call of `os.system(command)`, a global of a module torch's weights-only unpickler blocks."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_pickle_payload_in_checkpoint_is_not_executed(tmp_path, zip_format):
    from TTS.tts.layers.naturalspeech.runtime.checkpoints import CheckpointError

    model = _tiny_model()
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    state = {"model": model.state_dict(), "config": {}, "payload": _Payload(marker)}
    torch.save(state, path, _use_new_zipfile_serialization=zip_format)
    with pytest.raises(CheckpointError, match=r"Refused to load .*evil.pth.*not plain weights") as error:
        model.load_checkpoint(model.config, str(path))
    assert "(it asks to import or call `io.open`)" in str(error.value)
    assert not marker.exists()


def test_refusal_names_the_blocked_global(tmp_path):
    from TTS.tts.layers.naturalspeech.runtime.checkpoints import CheckpointError, load_checkpoint_state

    path = tmp_path / "shell.pth"
    torch.save({"model": {}, "payload": _ShellPayload()}, path)
    with pytest.raises(CheckpointError, match=r"^Refused to load .*shell.pth: .*not plain weights") as error:
        load_checkpoint_state(path)
    assert f"(it asks to import or call `{os.system.__module__}.system`)" in str(error.value)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head></html>\n",
            "its first bytes look like an HTML page ('<!DOCTYPE html> <html><head><title>404 Not Found'): "
            "a download saved a web page instead of the file",
        ),
        (
            b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 132\n",
            "its first bytes look like a Git LFS pointer",
        ),
        (b"model weights go here\n", "its first bytes look like text ('model weights go here')"),
        (
            bytes(range(7, 200, 3)) * 4,
            "its first bytes are binary data (07 0a 0d 10 13 16 19 1c 1f 22 25 28 2b 2e 31 34)",
        ),
        (b"", "the file is empty (0 bytes)"),
    ],
    ids=["html", "git-lfs", "text", "binary", "empty"],
)
def test_garbage_file_is_not_a_checkpoint(tmp_path, content, expected):
    from TTS.tts.layers.naturalspeech.runtime.checkpoints import CheckpointError

    path = tmp_path / "best_model.pth"
    path.write_bytes(content)
    model = _tiny_model()
    with pytest.raises(CheckpointError) as error:
        model.load_checkpoint(model.config, str(path))
    message = str(error.value)
    assert message.startswith(f"{path} is not a checkpoint: it is neither a zip archive (what torch.save writes) nor ")
    assert expected in message, message
    assert "Refused" not in message


def test_checkpoint_of_another_model_names_its_keys(tmp_path):
    from TTS.tts.layers.naturalspeech.runtime.checkpoints import CheckpointError

    vits_like = {
        "text_encoder.emb.weight": torch.zeros(10, 4),
        "duration_predictor.pre.weight": torch.zeros(4, 4, 1),
        "waveform_decoder.conv_pre.weight": torch.zeros(4, 4, 7),
    }
    torch.save(vits_like, tmp_path / "vits.pth")
    model = _tiny_model()
    with pytest.raises(CheckpointError) as error:
        model.load_checkpoint(model.config, str(tmp_path / "vits.pth"))
    message = str(error.value)
    assert "not from this model" in message
    assert "missing keys: step, memory_initialized, phoneme_encoder.emb.weight" in message
    assert "unexpected keys: text_encoder.emb.weight" in message
    assert "in all)" in message  # only the first few keys are listed


def test_checkpoint_of_another_size_names_mismatched_keys(tmp_path):
    from TTS.tts.layers.naturalspeech.runtime.checkpoints import CheckpointError

    torch.save({"model": _tiny_model(memory_bank_size=32).state_dict()}, tmp_path / "big_bank.pth")
    model = _tiny_model()
    with pytest.raises(CheckpointError, match=r"another configuration.*memory_bank.bank \(32, 16\) vs \(16, 16\)"):
        model.load_checkpoint(model.config, str(tmp_path / "big_bank.pth"))


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    from TTS.tts.layers.naturalspeech.runtime.checkpoints import CheckpointError

    model = _tiny_model()
    torch.save({"model": model.state_dict()}, tmp_path / "full.pth")
    data = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        model.load_checkpoint(model.config, str(tmp_path / "cut.pth"))
    torch.save({"model": model.state_dict()}, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    data = (tmp_path / "legacy.pth").read_bytes()
    (tmp_path / "legacy_cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        model.load_checkpoint(model.config, str(tmp_path / "legacy_cut.pth"))


##########################
# atomic checkpoints
##########################

_KILLED_SAVE = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    from trainer.io import save_checkpoint
    from TTS.tts.layers.naturalspeech.runtime.trainer_hooks import atomic_trainer_io

    out, atomic = sys.argv[1], sys.argv[2] == "1"
    model = torch.nn.Linear(64, 64)
    save_checkpoint({}, model, out, current_step=1, epoch=0)  # a complete earlier checkpoint

    def save_then_die(obj, f, **kwargs):  # the process dies half-way through writing the next one
        f.write(b"PK\\x03\\x04 half a zip archive")
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    torch.save = save_then_die
    if atomic:
        with atomic_trainer_io():
            save_checkpoint({}, model, out, current_step=2, epoch=0)
    else:
        save_checkpoint({}, model, out, current_step=2, epoch=0)
    """
)


def _killed_save(out: Path, atomic: bool) -> None:
    out.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", _KILLED_SAVE, str(out), "1" if atomic else "0"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]


def test_kill_during_save_leaves_the_latest_checkpoint_loadable(tmp_path):
    from trainer.io import get_last_checkpoint

    from TTS.tts.layers.naturalspeech.runtime.checkpoints import load_checkpoint_state
    from TTS.tts.layers.naturalspeech.runtime.trainer_hooks import remove_stale_temporaries

    _killed_save(tmp_path / "atomic", atomic=True)
    last, _ = get_last_checkpoint(str(tmp_path / "atomic"))
    assert Path(last).name == "checkpoint_1.pth"
    assert load_checkpoint_state(last)["step"] == 1
    assert not (tmp_path / "atomic" / "checkpoint_2.pth").exists()
    assert len(remove_stale_temporaries(tmp_path / "atomic")) == 1

    # the Trainer's own save leaves a corrupt newest checkpoint that `--continue_path` would pick
    _killed_save(tmp_path / "plain", atomic=False)
    last, _ = get_last_checkpoint(str(tmp_path / "plain"))
    assert Path(last).name == "checkpoint_2.pth"


def test_model_makes_trainer_saves_atomic(tmp_path):
    from types import SimpleNamespace

    calls = []

    class FakeTrainer:
        def save_checkpoint(self):
            import trainer.io

            calls.append(trainer.io.save_fsspec.__module__)

        def save_best_model(self):
            pass

    fake = FakeTrainer()
    fake.args, fake.output_path = SimpleNamespace(rank=0), str(tmp_path)
    (tmp_path / "checkpoint_3.pth.tmp-123").write_bytes(b"junk")
    _tiny_model().on_init_end(fake)
    fake.save_checkpoint()
    assert calls == ["TTS.tts.layers.naturalspeech.runtime.trainer_hooks"]
    assert not list(tmp_path.iterdir())  # the stale temporary was removed
    import trainer.io

    assert trainer.io.save_fsspec.__module__ == "trainer.io"  # swapped only during the save


##########################
# bad training data
##########################


@pytest.fixture
def bad_corpus(tmp_path, ljspeech_dir):
    """Two good clips plus one of each kind of bad item, in LJSpeech format."""
    import torchaudio

    root = tmp_path / "bad_corpus"
    (root / "wavs").mkdir(parents=True)
    good, rate = soundfile.read(ljspeech_dir / "wavs" / f"{CLIPS[0]}.wav", dtype="float32")
    lines = []

    def add(clip_id, text, audio=None, sample_rate=rate, raw=None):
        path = root / "wavs" / f"{clip_id}.wav"
        if raw is not None:
            path.write_bytes(raw)
        else:
            soundfile.write(path, audio, sample_rate, subtype="PCM_16")
        lines.append(f"{clip_id}|{text}|{text}")

    add("GOOD-0", "Printing, in the only sense with which we are at present concerned.", good)
    add("GOOD-1", "The quick brown fox jumps over the lazy dog.", good[: rate * 2])
    add("CORRUPT", "This file is not a wav file.", raw=b"RIFF\x00\x00garbage" + os.urandom(300))
    add("EMPTY", "This file has a header and no samples.", np.zeros(0, dtype=np.float32))
    add("SHORT", "Short.", good[:300])
    add("NOTEXT", "", good[:rate])
    add("UNKNOWN", "☃☃☃ ♞♞", good[:rate])
    low = torchaudio.functional.resample(torch.from_numpy(good[: rate * 2]), rate, 16000).numpy()
    add("RATE16K", "A clip recorded at sixteen kilohertz.", low, sample_rate=16000)
    (root / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def _dataset_config(corpus, tmp_path):
    config = make_ljspeech_config(corpus, tmp_path / "out", batch_size=8)
    config.use_phonemes = False  # graphemes: which symbols are unknown does not depend on espeak's version
    return config


def test_bad_items_are_skipped_once_or_repaired(bad_corpus, tmp_path, caplog):
    from TTS.tts.models.naturalspeech import Naturalspeech

    config = _dataset_config(bad_corpus, tmp_path)
    model = Naturalspeech(config)
    from TTS.tts.datasets import load_tts_samples

    samples, _ = load_tts_samples(config, eval_split=False)
    with caplog.at_level(logging.WARNING, logger="TTS.tts.layers.naturalspeech.runtime.dataset"):
        loader = model.get_data_loader(config, samples=samples)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    for clip_id in ("CORRUPT", "EMPTY", "NOTEXT", "UNKNOWN"):
        assert sum(f"{clip_id}.wav" in w and w.startswith("Skipping") for w in warnings) == 1, warnings
    assert sum("RATE16K.wav" in w and "resampled" in w for w in warnings) == 1, warnings
    assert sum("SHORT.wav" in w and "zero-padded" in w for w in warnings) == 1, warnings
    (summary,) = [w for w in warnings if w.startswith("Skipped")]
    assert summary.startswith("Skipped 4 of 8 training samples"), summary
    assert sum(loader.dataset.skipped.values()) == 4

    batch = next(iter(loader))
    assert sorted(batch["audio_files"]) == ["GOOD-0.wav", "GOOD-1.wav", "RATE16K.wav", "SHORT.wav"]
    lengths = dict(zip(batch["audio_files"], batch["waveform_lens"].tolist(), strict=True))
    assert abs(lengths["RATE16K.wav"] - 2 * config.audio.sample_rate) <= 1  # resampled to the model's rate
    args = config.model_args
    assert lengths["SHORT.wav"] == args.spec_segment_size * config.audio.hop_length + config.audio.fft_size

    # the run continues: a full training step on this batch gives finite losses
    batch = model.format_batch_on_device(model.format_batch(batch))
    criterion = model.get_criterion()
    for idx in (0, 1):
        _, loss_dict = model.train_step(batch, criterion[idx], idx)
        assert torch.isfinite(loss_dict["loss"])


@pytest.fixture
def float_corpus(tmp_path, ljspeech_dir):
    """A 16-bit clip plus float clips holding NaN, +inf, -inf, int16-scaled samples and slightly hot samples."""
    root = tmp_path / "float_corpus"
    (root / "wavs").mkdir(parents=True)
    good, rate = soundfile.read(ljspeech_dir / "wavs" / f"{CLIPS[0]}.wav", dtype="float32")
    good = good[: rate * 4]  # longer than one block of the check (65,536 samples)
    text = "The quick brown fox jumps over the lazy dog."
    lines = []

    def add(clip_id, audio, subtype="FLOAT"):
        soundfile.write(root / "wavs" / f"{clip_id}.wav", audio, rate, subtype=subtype)
        lines.append(f"{clip_id}|{text}|{text}")

    def with_value(value, index):
        audio = good.copy()
        audio[index] = value
        return audio

    add("GOOD", good, subtype="PCM_16")
    add("NAN", with_value(np.nan, 100))
    add("POSINF", with_value(np.inf, 70000))  # in the second block read
    add("NEGINF", with_value(-np.inf, 5).astype(np.float64), subtype="DOUBLE")
    add("UNSCALED", good * 32768.0)  # int16 values written as float without scaling
    add("HOT", good / np.abs(good).max() * 1.5)  # slightly over full scale: kept, clipped when loaded
    (root / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_non_finite_or_unscaled_float_audio_is_skipped(float_corpus, tmp_path, caplog):
    from TTS.tts.datasets import load_tts_samples
    from TTS.tts.models.naturalspeech import Naturalspeech

    config = _dataset_config(float_corpus, tmp_path)
    model = Naturalspeech(config)
    samples, _ = load_tts_samples(config, eval_split=False)
    with caplog.at_level(logging.WARNING, logger="TTS.tts.layers.naturalspeech.runtime.dataset"):
        loader = model.get_data_loader(config, samples=samples)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    expected = {
        "NAN": "non-finite audio samples (NaN; first at sample 100)",
        "POSINF": "non-finite audio samples (+inf; first at sample 70000)",
        "NEGINF": "non-finite audio samples (-inf; first at sample 5)",
        "UNSCALED": "audio samples far outside [-1, 1] (peak 2.018e+04 > 2: float audio that was never scaled",
    }
    for clip_id, reason in expected.items():
        (warning,) = [w for w in warnings if f"{clip_id}.wav" in w]
        assert warning.startswith("Skipping training sample") and reason in warning, warning
    (summary,) = [w for w in warnings if w.startswith("Skipped")]
    assert summary == (
        "Skipped 4 of 6 training samples (1 audio samples far outside [-1, 1], 3 non-finite audio samples)."
    )
    assert sum(loader.dataset.skipped.values()) == 4

    batch = next(iter(loader))
    assert sorted(batch["audio_files"]) == ["GOOD.wav", "HOT.wav"]
    assert bool(torch.isfinite(batch["waveform"]).all()) and float(batch["waveform"].abs().max()) <= 1.0


def test_all_bad_dataset_stops_with_a_clear_error(bad_corpus, tmp_path):
    from TTS.tts.datasets import load_tts_samples
    from TTS.tts.models.naturalspeech import Naturalspeech

    lines = (bad_corpus / "metadata.csv").read_text(encoding="utf-8").splitlines()
    bad = [line for line in lines if line.split("|")[0] in {"CORRUPT", "EMPTY", "NOTEXT", "UNKNOWN"}]
    (bad_corpus / "metadata.csv").write_text("\n".join(bad) + "\n", encoding="utf-8")
    config = _dataset_config(bad_corpus, tmp_path)
    model = Naturalspeech(config)
    samples, _ = load_tts_samples(config, eval_split=False)
    with pytest.raises(ValueError, match="No usable training samples: all 4 were skipped"):
        model.get_data_loader(config, samples=samples)


##########################
# numerical safety
##########################


def _trainer(tmp_path, ljspeech_dir, clips, **overrides):
    from trainer import Trainer, TrainerArgs

    from tests import load_samples
    from TTS.tts.models.naturalspeech import Naturalspeech

    config = make_ljspeech_config(
        ljspeech_dir, tmp_path / "out", batch_size=len(clips), run_eval=False, save_step=10**6, **overrides
    )
    config.dashboard_logger = "tensorboard"
    torch.manual_seed(0)
    model = Naturalspeech(config)
    samples = load_samples(config, clips)
    trainer = Trainer(TrainerArgs(), config, str(tmp_path / "out"), model=model, train_samples=samples, gpu=None)
    trainer.train_loader = trainer.get_train_dataloader(samples, verbose=False)
    return trainer, model


def _run_step(trainer):
    batch = next(iter(trainer.train_loader))
    return trainer.train_step(batch, 1, 0, time.time())[1]


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}


def test_non_finite_loss_or_gradient_skips_the_step(tmp_path, ljspeech_dir, caplog):
    trainer, model = _trainer(tmp_path, ljspeech_dir, CLIPS[:1], warmup_steps=100, tuning_start_step=200)
    _run_step(trainer)  # one healthy step first: optimizer state exists
    assert model.num_skipped_steps == 0

    # 1) a NaN generator loss: the Trainer gets an empty loss dict and skips backward and the optimizer step
    generator_loss = trainer.criterion[1]
    original_forward = generator_loss.forward

    def nan_forward(*args, **kwargs):
        losses = original_forward(*args, **kwargs)
        losses["loss"] = losses["loss"] * float("nan")
        return losses

    generator_loss.forward = nan_forward
    before = _snapshot(model)
    with caplog.at_level(logging.WARNING):
        _run_step(trainer)
    generator_loss.forward = original_forward
    after = _snapshot(model)
    for name, value in before.items():
        if not name.startswith("disc."):
            assert torch.equal(value, after[name]), name
    assert all(torch.isfinite(v).all() for v in after.values())
    assert model.num_skipped_steps == 1
    assert any("Non-finite loss" in r.getMessage() and "loss" in r.getMessage() for r in caplog.records)

    # 2) a finite loss with a NaN gradient: the generator parameters keep their values
    hook = model.flow.parameters().__next__().register_hook(lambda grad: grad * float("nan"))
    before = _snapshot(model)
    _run_step(trainer)
    hook.remove()
    after = _snapshot(model)
    for name, value in before.items():
        if not name.startswith("disc."):
            assert torch.equal(value, after[name]), name
    assert model.num_skipped_steps == 2
    assert any("Non-finite gradient" in r.getMessage() for r in caplog.records)

    # 3) healthy again: the count is logged with the losses
    assert _run_step(trainer)["num_skipped_steps"] == 2


def test_predicted_durations_are_bounded_at_model_level():
    model = _tiny_model().eval()
    with torch.no_grad():
        model.durator.duration_predictor.proj.bias.fill_(80.0)  # exp(80) overflows float16 and float32 sums
    tokens = torch.randint(1, 20, (2, 7))
    outputs = model.inference(tokens, aux_input={"x_lengths": torch.tensor([7, 4]), "length_scale": 1.0})
    durations = outputs["durations"]
    assert torch.isfinite(durations).all()
    assert (durations >= 0).all()
    assert durations.max() <= model.durator.max_duration + 1e-3
    assert (outputs["frame_lengths"] > 0).all()
    assert torch.isfinite(outputs["model_outputs"]).all()


def _bf16_steps() -> int:
    return int(os.environ.get("NATURALSPEECH_BF16_STEPS", "200"))


@pytest.mark.slow
def test_bf16_autocast_trains_without_nan(tmp_path, ljspeech_dir):
    """bf16 autocast on CPU through every stage; see the report/troubleshooting doc for the step count chosen."""
    steps = _bf16_steps()
    trainer, model = _trainer(
        tmp_path,
        ljspeech_dir,
        CLIPS[:1],
        mixed_precision=True,
        precision="bf16",
        warmup_steps=steps // 3,
        tuning_start_step=2 * steps // 3,
    )
    start = time.time()
    batch = next(iter(trainer.train_loader))
    for _ in range(steps):
        trainer.train_step(batch, 1, 0, time.time())
    elapsed = time.time() - start
    print(f"bf16: {steps} steps in {elapsed:.1f} s")
    assert model.num_skipped_steps == 0
    assert all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point())
    assert bool(model.memory_initialized)


##########################
# resume after SIGKILL
##########################


def _train_tts(args: list[str], kill_after_checkpoint: Path | None = None, timeout: float = 600) -> str:
    command = [sys.executable, "-m", "TTS.bin.train_tts", *args]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
        if kill_after_checkpoint is None:
            output, _ = process.communicate(timeout=timeout)
            assert process.returncode == 0, output[-4000:]
            return output
        deadline = time.time() + timeout
        while not list(kill_after_checkpoint.parent.glob(f"run-*/{kill_after_checkpoint.name}")):
            assert process.poll() is None, process.stdout.read()[-4000:]
            assert time.time() < deadline
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        output, _ = process.communicate()
        return output


_STEP_LINE = re.compile(r"-- STEP: \d+/\d+ -- GLOBAL_STEP: (\d+)")


def _losses_by_step(output: str) -> dict[int, tuple[str, str]]:
    """{global step: (loss_0, loss_1)} as printed by the Trainer (print_step=1, `str()` of the float: exact)."""
    result, step = {}, None
    for line in output.splitlines():
        if match := _STEP_LINE.search(line):
            step = int(match.group(1))
            result[step] = {}
        elif step is not None and (match := re.search(r"\| > (loss_[01]): ([-\d.e+]+)", line)):
            result[step][match.group(1)] = match.group(2)
    return {k: (v["loss_0"], v["loss_1"]) for k, v in result.items() if "loss_0" in v and "loss_1" in v}


@pytest.mark.slow
def test_resume_after_sigkill_in_each_stage_repeats_the_uninterrupted_run(tmp_path, ljspeech_dir):
    def config_for(name):
        config = make_ljspeech_config(
            ljspeech_dir,
            tmp_path / name,
            batch_size=2,  # the two clips are one batch: every epoch is one step, and a resumed epoch is a full one
            epochs=9,
            warmup_steps=3,
            tuning_start_step=6,
            save_step=1,
            print_step=1,
            run_eval=False,
            test_delay_epochs=100,
            save_best_after=10**6,
            # The Trainer saves the last step's checkpoint before the end-of-epoch scheduler step, so with
            # `scheduler_after_epoch=True` a resumed run misses one learning-rate decay (a 1.25e-4 relative change
            # that makes the losses drift from the 6th digit). Per-step scheduling checkpoints the decayed rate.
            scheduler_after_epoch=False,
            eval_split_size=2,  # train_tts always splits: 2 of the 4 clips (seeded split), 2 left to train on
        )
        config.datasets[0].meta_file_train = "metadata_two.csv"
        path = tmp_path / f"{name}.json"
        config.save_json(str(path))
        return path

    lines = (ljspeech_dir / "metadata.csv").read_text(encoding="utf-8").splitlines()
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "wavs").symlink_to(ljspeech_dir / "wavs")
    (corpus / "metadata_two.csv").write_text(
        "\n".join(line for line in lines if line.split("|")[0] in RESUME_CLIPS) + "\n", encoding="utf-8"
    )
    ljspeech_dir = corpus

    reference = _losses_by_step(_train_tts(["--config_path", str(config_for("reference"))]))
    assert sorted(reference) == list(range(9)), reference

    resumed: dict[int, tuple[str, str]] = {}
    output = _train_tts(["--config_path", str(config_for("killed"))], tmp_path / "killed" / "checkpoint_1.pth")
    resumed.update(_losses_by_step(output))
    (run_dir,) = (tmp_path / "killed").glob("run-*")
    logs = []
    for kill_at in (4, 7, None):  # resume in warm-up, then in main, then in tuning, then to the end
        checkpoints = {int(p.stem.split("_")[1]) for p in run_dir.glob("checkpoint_*.pth")}
        target = None if kill_at is None else run_dir.parent / f"checkpoint_{kill_at}.pth"
        output = _train_tts(["--continue_path", str(run_dir)], target)
        logs.append((max(checkpoints), output))
        resumed.update(_losses_by_step(output))
    assert not list(run_dir.glob("*.tmp-*"))  # temporaries of a killed save are removed at the next start

    for last_checkpoint, output in logs:
        stage_of_resume = "warm-up" if last_checkpoint + 1 < 3 else "main" if last_checkpoint + 1 < 6 else "tuning"
        print(f"resumed after checkpoint {last_checkpoint} in {stage_of_resume}")
        assert f"Continuing from checkpoint_{last_checkpoint}.pth" in output, output[-3000:]
        if last_checkpoint + 1 >= 3:  # the bank was fitted before the kill: loaded, never re-fitted
            assert "Initialising the memory bank" not in output, output[-3000:]
    # Every step of the uninterrupted run is repeated bit for bit. (The Trainer counts the epoch of a mid-epoch
    # checkpoint as not done, so the resumed run ends one step later than the reference: that step has no twin.)
    for step, losses in sorted(reference.items()):
        assert resumed[step] == losses, (step, resumed[step], losses)
    assert set(resumed) >= set(range(9))
