"""Fine-tuning (`TTS/tts/layers/naturalspeech/runtime/finetuning.py`): symbol-matched warm start, frozen parts,
memory-bank re-fit, resume, and the recipe `finetune_naturalspeech.py` end to end on real clips."""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests import REPO_ROOT, load_samples, make_ljspeech_config, make_tiny_config
from TTS.tts.configs.shared_configs import CharactersConfig
from TTS.tts.layers.naturalspeech.runtime.checkpoints import CheckpointError
from TTS.tts.layers.naturalspeech.runtime.finetuning import freeze_modules, vocabulary_of, warm_start
from TTS.tts.models.naturalspeech import Naturalspeech

RECIPE = REPO_ROOT / "recipes" / "ljspeech" / "naturalspeech" / "finetune_naturalspeech.py"
CLIPS = ["LJ001-0002", "LJ001-0008", "LJ001-0009", "LJ001-0010"]
EMBEDDING = "phoneme_encoder.emb.weight"


def _graphemes(characters: str) -> CharactersConfig:
    """A grapheme vocabulary in the given order (not sorted), so symbols can change ids between two runs."""
    return CharactersConfig(
        characters_class="TTS.tts.utils.text.characters.Graphemes",
        pad="<PAD>",
        eos="<EOS>",
        bos="<BOS>",
        blank="<BLNK>",
        characters=characters,
        punctuations="!,.? ",
        is_unique=False,  # the toolkit makes characters unique through a set: its order changes between processes
        is_sorted=False,
    )


def _grapheme_config(characters: str, **model_args):
    return make_tiny_config(model_args, use_phonemes=False, characters=_graphemes(characters))


def _save_checkpoint(model: Naturalspeech, path: Path, step: int = 7) -> Path:
    """A Trainer-like checkpoint: the model's state (discriminator included), its config and step."""
    torch.save({"model": model.state_dict(), "config": model.config.to_dict(), "step": step}, path)
    return path


def _source(tmp_path, characters: str = "abcdefghijklmnopqrstuvwxyz", **model_args) -> tuple[Naturalspeech, Path]:
    torch.manual_seed(1)
    config = _grapheme_config(characters, **model_args)
    config.training_seed = 11  # other initial weights than the target models' (seed 54321)
    model = Naturalspeech(config)
    with torch.no_grad():  # a "trained" bank and fitted flag, as a run past warm-up has
        model.memory_bank.bank.normal_()
        model.memory_initialized.fill_(True)
    return model, _save_checkpoint(model, tmp_path / "source.pth")


##########################
# warm start
##########################


def test_shared_symbols_keep_their_trained_rows_wherever_their_ids_moved(tmp_path):
    source, checkpoint = _source(tmp_path)
    # reversed alphabet without x, y, z and with three new letters: every shared letter has another id
    target = Naturalspeech(_grapheme_config("wvutsrqponmlkjihgfedcbaäöü"))
    fresh = target.state_dict()[EMBEDDING].clone()
    report = warm_start(target, checkpoint)

    src_vocab, dst_vocab = source.tokenizer.characters.vocab, target.tokenizer.characters.vocab
    src_rows, dst_rows = source.state_dict()[EMBEDDING], target.state_dict()[EMBEDDING]
    assert src_vocab.index("a") != dst_vocab.index("a")
    for symbol in ["a", "b", "c", "w", "<PAD>", "<BLNK>", " ", "!"]:
        assert torch.equal(dst_rows[dst_vocab.index(symbol)], src_rows[src_vocab.index(symbol)]), symbol
    for symbol in "äöü":
        index = dst_vocab.index(symbol)
        assert torch.equal(dst_rows[index], fresh[index]), symbol  # the model's own initialisation
        assert not torch.equal(dst_rows[index], src_rows[index]), symbol  # not the row that had this id before
    assert sorted(report.new_symbols) == sorted("äöü")
    assert sorted(report.dropped_symbols) == sorted("xyz")
    assert "a" in report.moved_symbols and "a" in report.kept_symbols and "x" not in report.kept_symbols
    # everything else is the checkpoint's, discriminator included
    for name in ("flow.flows.flows.0.enc.in_layers.0.bias", "waveform_decoder.conv_pre.weight", "durator.proj.weight"):
        if name in source.state_dict():
            assert torch.equal(target.state_dict()[name], source.state_dict()[name]), name
    disc = [k for k in source.state_dict() if k.startswith("disc.")]
    assert disc and all(torch.equal(target.state_dict()[k], source.state_dict()[k]) for k in disc)
    assert set(report.copied) >= set(disc)


def test_the_report_lists_what_was_kept_and_why(tmp_path, caplog):
    _, checkpoint = _source(tmp_path)
    target = Naturalspeech(_grapheme_config("abcdefghijklmnopqrstuvwäöü"))
    with caplog.at_level("INFO"):
        report = warm_start(target, checkpoint)
    assert report.source_step == 7
    assert report.skipped["step"].startswith("training progress")
    assert report.skipped["memory_initialized"].startswith("training progress")
    assert not bool(target.memory_initialized) and int(target.step) == 0  # the bank is fitted again, at step 0
    assert len(report.kept_symbols) == len(target.tokenizer.characters.vocab) - 3
    assert not report.moved_symbols  # the shared letters kept their ids here
    assert len(report.copied) + len(report.skipped) == len(target.state_dict())
    summary = caplog.text
    assert f"{len(report.kept_symbols)} kept" in summary and "3 new" in summary and "3 dropped" in summary
    assert "fitted again by k-means" in summary
    report.save(tmp_path / "report.json")
    saved = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert saved["new_symbols"] == ["ä", "ö", "ü"] and saved["dropped_symbols"] == ["x", "y", "z"]


def test_keeping_the_memory_bank_copies_it_and_its_fitted_flag(tmp_path):
    source, checkpoint = _source(tmp_path)
    target = Naturalspeech(_grapheme_config("abcdefghijklmnopqrstuvwxyz"))
    warm_start(target, checkpoint, refit_memory_bank=False)
    assert bool(target.memory_initialized)
    assert torch.equal(target.memory_bank.bank, source.memory_bank.bank)


def test_a_weights_file_without_discriminator_starts_it_fresh(tmp_path, caplog):
    source, _ = _source(tmp_path)
    weights = {k: v for k, v in source.state_dict().items() if not k.startswith("disc.")}
    torch.save({"model": weights, "config": source.config.to_dict()}, tmp_path / "weights.pth")
    target = Naturalspeech(_grapheme_config("abcdefghijklmnopqrstuvwxyz"))
    with caplog.at_level("WARNING"):
        report = warm_start(target, tmp_path / "weights.pth")
    assert all(report.skipped[k] == "not in the checkpoint" for k in target.state_dict() if k.startswith("disc."))
    assert "discriminator starts from scratch" in caplog.text


def test_vocabulary_of_a_config_is_the_tokenizers():
    config = make_tiny_config(use_phonemes=True, phonemizer="espeak", phoneme_language="en-us")
    model = Naturalspeech(config)
    assert vocabulary_of(config.to_dict()) == list(model.tokenizer.characters.vocab)
    grapheme_model = Naturalspeech(_grapheme_config("zyx"))
    assert vocabulary_of(grapheme_model.config.to_dict()) == list(grapheme_model.tokenizer.characters.vocab)


def test_bad_checkpoints_are_clear_errors(tmp_path):
    source, checkpoint = _source(tmp_path)
    target = Naturalspeech(_grapheme_config("abcdefghijklmnopqrstuvwxyz"))

    with pytest.raises(FileNotFoundError, match=r"Fine-tuning checkpoint not found: .*missing\.pth"):
        warm_start(target, tmp_path / "missing.pth")

    (tmp_path / "page.pth").write_text("<!DOCTYPE html><html>Not found</html>", encoding="utf-8")
    with pytest.raises(CheckpointError, match="is not a checkpoint"):
        warm_start(target, tmp_path / "page.pth")

    vits = source.config.to_dict() | {"model": "vits"}
    torch.save({"model": source.state_dict(), "config": vits}, tmp_path / "vits.pth")
    with pytest.raises(CheckpointError, match="checkpoint of a 'vits' model, not of NaturalSpeech"):
        warm_start(target, tmp_path / "vits.pth")

    torch.save({"model": {"encoder.weight": torch.zeros(2)}}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="holds no NaturalSpeech weights"):
        warm_start(target, tmp_path / "other.pth")

    (tmp_path / "bare").mkdir()
    torch.save({"model": source.state_dict()}, tmp_path / "bare" / "bare.pth")
    with pytest.raises(CheckpointError, match="vocabulary is unknown"):
        warm_start(target, tmp_path / "bare" / "bare.pth")

    wider = Naturalspeech(_grapheme_config("abcdefghijklmnopqrstuvwxyz", hidden_channels=24))
    with pytest.raises(CheckpointError, match="hidden size 16, the model 24"):
        warm_start(wider, checkpoint)

    bigger_decoder = Naturalspeech(_grapheme_config("abcdefghijklmnopqrstuvwxyz", upsample_initial_channel_decoder=48))
    with pytest.raises(CheckpointError, match=r"does not fit the model: .*waveform_decoder\.conv_pre\.weight"):
        warm_start(bigger_decoder, checkpoint)
    report = warm_start(bigger_decoder, checkpoint, strict=False)
    assert report.skipped["waveform_decoder.conv_pre.weight"].startswith("another shape")
    assert "flow.flows.flows.0.enc.in_layers.0.bias" in report.copied


def test_another_bank_size_is_fitted_again(tmp_path):
    _, checkpoint = _source(tmp_path)
    target = Naturalspeech(_grapheme_config("abcdefghijklmnopqrstuvwxyz", memory_bank_size=8))
    report = warm_start(target, checkpoint)
    assert report.skipped["memory_bank.bank"] == "fitted again by k-means (another bank size)"
    with pytest.raises(CheckpointError, match=r"memory_bank\.bank"):
        warm_start(target, checkpoint, refit_memory_bank=False)


##########################
# frozen parts
##########################


def test_freeze_modules_names_must_name_parts():
    with pytest.raises(ValueError, match=r"'phoneme_encodr' names no part of the model.*phoneme_encoder"):
        Naturalspeech(make_tiny_config({"freeze_modules": ["phoneme_encodr"]}))
    generator = ["phoneme_encoder", "alignment_prior", "durator", "posterior_encoder", "flow", "memory_bank"]
    with pytest.raises(ValueError, match="freezes every generator parameter"):
        Naturalspeech(make_tiny_config({"freeze_modules": [*generator, "waveform_decoder"]}))
    # a synthesis model is built without the discriminator: naming it is no error there
    model = Naturalspeech(make_tiny_config({"freeze_modules": ["disc"], "init_discriminator": False}))
    assert model.disc is None
    # a dotted prefix freezes part of a module
    model = Naturalspeech(make_tiny_config())
    frozen = freeze_modules(model, ["durator.duration_predictor"])
    assert frozen and all(name.startswith("durator.duration_predictor.") for name in frozen)
    assert any(p.requires_grad for n, p in model.named_parameters() if n.startswith("durator."))


def _trainer(tmp_path, ljspeech_dir, model_args: dict, output: str = "out", **trainer_kwargs):
    from trainer import Trainer, TrainerArgs

    config = make_ljspeech_config(
        ljspeech_dir, tmp_path / output, model_args, batch_size=2, run_eval=False, save_step=10**6, epochs=1
    )
    config.warmup_steps, config.tuning_start_step = 0, 100
    model = Naturalspeech(config)
    samples = load_samples(config, CLIPS[:2])
    args = trainer_kwargs.pop("args", TrainerArgs())
    trainer = Trainer(
        args,
        config,
        str(tmp_path / output),
        model=model,
        train_samples=samples,
        gpu=None,
        parse_command_line_args=False,  # pytest's arguments are not the Trainer's (and would reset dict fields)
        **trainer_kwargs,
    )
    trainer.train_loader = trainer.get_train_dataloader(samples, verbose=False)
    return trainer, model


def _step(trainer) -> None:
    batch = next(iter(trainer.train_loader))
    trainer.train_step(batch, 1, 0, time.time())


def _tensors(model, prefix: str = "") -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k.startswith(prefix)}


def test_frozen_parts_do_not_change_in_a_trainer_step_and_the_others_do(tmp_path, ljspeech_dir):
    trainer, model = _trainer(tmp_path, ljspeech_dir, {"freeze_modules": ["phoneme_encoder", "waveform_decoder"]})
    in_optimizer = {
        id(p) for optimizer in trainer.optimizer for group in optimizer.param_groups for p in group["params"]
    }
    for name, parameter in model.named_parameters():
        frozen = name.startswith(("phoneme_encoder.", "waveform_decoder."))
        assert parameter.requires_grad != frozen, name
        assert (id(parameter) in in_optimizer) != frozen, name
    before = _tensors(model)
    _step(trainer)
    after = _tensors(model)
    for name in before:
        if name.startswith(("phoneme_encoder.", "waveform_decoder.")):
            assert torch.equal(before[name], after[name]), name
    for part in ("posterior_encoder.", "flow.", "durator.", "disc."):
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(part)), part


def test_the_bank_is_fitted_again_on_the_new_voice_at_the_first_step(tmp_path, ljspeech_dir):
    """Warm start from a checkpoint whose bank is far from the new data: the first step's k-means moves it there."""
    trainer, model = _trainer(tmp_path, ljspeech_dir, {"freeze_modules": ["memory_bank"]}, output="source")
    source_path = tmp_path / "source.pth"
    with torch.no_grad():
        model.memory_bank.bank.normal_(mean=5.0)
        model.memory_initialized.fill_(True)
    _save_checkpoint(model, source_path)
    source_bank = model.memory_bank.bank.detach().clone()

    trainer, model = _trainer(
        tmp_path, ljspeech_dir, {"finetune_checkpoint_path": str(source_path), "freeze_modules": ["memory_bank"]}
    )
    assert torch.equal(model.memory_bank.bank, source_bank)  # warm-started in `on_init_start`, not fitted yet
    assert not bool(model.memory_initialized)
    assert (Path(trainer.output_path) / "finetune_report.json").is_file()
    batch = model.format_batch_on_device(model.format_batch(next(iter(trainer.train_loader))))
    with torch.no_grad():
        z, mask = model._encode_posterior(batch)
    frames = z.transpose(1, 2)[mask[:, 0].bool()]  # the new voice's posterior latents [N, C]

    def distance_to(bank):  # mean distance of a latent frame to its nearest slot
        return torch.cdist(frames, bank).min(dim=1).values.mean().item()

    _step(trainer)
    assert bool(model.memory_initialized)
    assert distance_to(model.memory_bank.bank.detach()) < 0.5 * distance_to(source_bank)


def test_a_resumed_finetune_keeps_its_frozen_parts_and_does_not_warm_start_again(tmp_path, ljspeech_dir):
    from trainer import TrainerArgs

    _, source_model = _trainer(tmp_path, ljspeech_dir, {}, output="source")
    source_path = _save_checkpoint(source_model, tmp_path / "source.pth")
    args = {"finetune_checkpoint_path": str(source_path), "freeze_modules": ["phoneme_encoder", "flow"]}
    trainer, model = _trainer(tmp_path, ljspeech_dir, args)
    _step(trainer)
    trainer.save_checkpoint()
    run_dir = Path(trainer.output_path)
    saved = _tensors(model)
    (run_dir / "finetune_report.json").unlink()

    # a new process: the model is built from the run's saved config, the Trainer restores the checkpoint
    from TTS.config import load_config

    config = load_config(str(run_dir / "config.json"))
    resumed = Naturalspeech(config)
    for name, parameter in resumed.named_parameters():
        assert parameter.requires_grad != name.startswith(("phoneme_encoder.", "flow.")), name
    from trainer import Trainer

    samples = load_samples(config, CLIPS[:2])
    trainer = Trainer(
        TrainerArgs(continue_path=str(run_dir)),
        config,
        str(run_dir),
        model=resumed,
        train_samples=samples,
        gpu=None,
        parse_command_line_args=False,
    )
    assert not (run_dir / "finetune_report.json").exists()  # the warm start did not run again
    restored = _tensors(resumed)
    assert all(torch.equal(saved[k], restored[k]) for k in saved), "the checkpoint, not the source, was restored"
    trainer.train_loader = trainer.get_train_dataloader(samples, verbose=False)
    _step(trainer)
    after = _tensors(resumed)
    for name in saved:
        if name.startswith(("phoneme_encoder.", "flow.")):
            assert torch.equal(after[name], source_model.state_dict()[name]), name
    assert any(not torch.equal(saved[k], after[k]) for k in saved if k.startswith("posterior_encoder."))


##########################
# the recipe
##########################


@pytest.fixture
def four_clips(tmp_path, ljspeech_dir) -> Path:
    """An LJSpeech-format folder of four real clips: a (very) small new voice."""
    root = tmp_path / "new_voice"
    root.mkdir()
    (root / "wavs").symlink_to(ljspeech_dir / "wavs")
    metadata = (ljspeech_dir / "metadata.csv").read_text(encoding="utf-8").splitlines()
    lines = [line for line in metadata if line.split("|")[0] in CLIPS]
    (root / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.mark.slow
def test_recipe_finetunes_a_trained_run_end_to_end(tmp_path, ljspeech_dir, four_clips):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (make setup installs it)")
    source_config = make_ljspeech_config(ljspeech_dir, tmp_path / "source")
    source = Naturalspeech(source_config)
    with torch.no_grad():
        source.memory_initialized.fill_(True)
    (tmp_path / "source").mkdir()
    checkpoint = _save_checkpoint(source, tmp_path / "source" / "checkpoint_7.pth")
    command = [sys.executable, str(RECIPE), "--checkpoint", str(checkpoint.parent), "--data", str(four_clips)]
    command += ["--output", str(tmp_path / "ft"), "--epochs", "1", "--batch-size", "2", "--freeze", "phoneme_encoder"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert "Warm start from" in log and "fitted again by k-means" in log
    assert "Initialising the memory bank from posterior latents" in log
    (run_dir,) = (tmp_path / "ft").glob("*_finetune-*")
    report = json.loads((run_dir / "finetune_report.json").read_text(encoding="utf-8"))
    assert report["checkpoint"] == str(checkpoint) and not report["new_symbols"]
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    assert config["warmup_steps"] == 0 and config["model_args"]["freeze_modules"] == ["phoneme_encoder"]
    from trainer.io import get_last_checkpoint

    last, _ = get_last_checkpoint(run_dir)
    state = torch.load(last, map_location="cpu", weights_only=True)["model"]
    assert int(state["step"]) >= 1 and bool(state["memory_initialized"])
    reference = source.state_dict()
    encoder = [k for k in reference if k.startswith("phoneme_encoder.")]
    assert all(torch.equal(state[k], reference[k]) for k in encoder)
    assert any(not torch.equal(state[k], reference[k]) for k in reference if k.startswith("flow."))
    assert not torch.equal(state["memory_bank.bank"], reference["memory_bank.bank"])


def test_recipe_names_a_missing_checkpoint(tmp_path, four_clips):
    command = [sys.executable, str(RECIPE), "--checkpoint", str(tmp_path / "nothing"), "--data", str(four_clips)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode != 0
    assert f"No checkpoint or run folder at {tmp_path / 'nothing'}" in result.stderr


def test_the_run_folders_config_wins_over_an_older_one_stored_in_the_checkpoint(tmp_path):
    """A run trained before a config field was renamed: its Trainer checkpoint stores the old name, its folder's
    config.json (what the `tts` CLI reads) has the new one; the fine-tune reads the folder's."""
    sys.path.insert(0, str(RECIPE.parent))
    from finetune_naturalspeech import source_config

    source, _ = _source(tmp_path)
    (tmp_path / "run").mkdir()
    stored = source.config.to_dict()
    stored["dur_loss_alpha"] = stored.pop("duration_loss_alpha")  # the old name
    torch.save({"model": source.state_dict(), "config": stored}, tmp_path / "run" / "checkpoint_7.pth")
    with pytest.raises(ValueError, match="'dur_loss_alpha' is now 'duration_loss_alpha'"):
        source_config(tmp_path / "run" / "checkpoint_7.pth")
    source.config.duration_loss_alpha = 3.0
    source.config.save_json(str(tmp_path / "run" / "config.json"))
    assert source_config(tmp_path / "run" / "checkpoint_7.pth").duration_loss_alpha == 3.0
