"""The sup-phoneme input of the phoneme encoder in TTS (paper, Section 3.1): pre-training's BPE and embedding, kept.

The pre-training checkpoint is the recipe's short Trainer run of `test_pretraining.py` (`pretraining_run`); the TTS
run is a tiny NaturalSpeech trained a few steps from it by the Trainer on real clips, with the pre-training file
deleted afterwards, as a published run would be.
"""

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from tests import load_samples, make_ljspeech_config
from tests.tts_tests import test_pretraining
from tests.tts_tests.test_pretraining import TINY_ENCODER, _tts_config
from TTS.tts.layers.naturalspeech.pretraining.config import MixedPhonemePretrainingConfig
from TTS.tts.layers.naturalspeech.pretraining.corpus import PhonemeMLMDataset, SupPhonemeTokenizer
from TTS.tts.layers.naturalspeech.pretraining.model import MixedPhonemePretraining, add_sup_phonemes_to_checkpoint

SENTENCES = ["Be a voice, not an echo.", "Printing, in the only sense with which we are at present concerned."]
CLIPS = ["LJ001-0001", "LJ001-0002", "LJ001-0008", "LJ001-0010"]
BIN = Path(sys.executable).parent

# the pre-training fixtures of `test_pretraining.py` (a short recipe run through the Trainer), used by name
transcripts = test_pretraining.transcripts
pretraining_run = test_pretraining.pretraining_run


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _bpe_file(checkpoint: Path) -> Path:
    """The BPE file the recipe's pre-training run cached (`<output_path>/phoneme_cache/sup_phonemes-<hash>.json`)."""
    (path,) = (checkpoint.parent.parent / "phoneme_cache").glob("sup_phonemes-*.json")
    return path


def _pretraining_model(checkpoint: Path) -> MixedPhonemePretraining:
    """The pre-training model of `checkpoint`, rebuilt from the checkpoint alone, without dropout."""
    state = _load(checkpoint)
    config = MixedPhonemePretrainingConfig()
    config.from_dict(state["config"])
    model = MixedPhonemePretraining(config, SupPhonemeTokenizer.from_tensor(state["model"]["sup_phoneme_bpe"]))
    model.load_state_dict(state["model"])
    return model.eval()


def _tts_model(checkpoint: Path, **model_args):
    """A fresh NaturalSpeech initialised from the pre-training `checkpoint`, in eval mode."""
    from TTS.tts.models.naturalspeech import Naturalspeech

    config = _tts_config(checkpoint)
    for key, value in model_args.items():
        setattr(config.model_args, key, value)
    model = Naturalspeech(config)
    model.load_pretrained_encoder()
    return model.eval()


def _pretraining_batch(model, pretraining: MixedPhonemePretraining) -> dict[str, torch.Tensor]:
    """`SENTENCES` tokenized by the TTS tokenizer and collated as pre-training collates them (sup ids included)."""
    dataset = PhonemeMLMDataset([model.tokenizer.text_to_ids(s) for s in SENTENCES], pretraining.sup_phonemes, 0)
    return dataset.collate([dataset[i] for i in range(len(dataset))])


##########################
# the pre-training checkpoint
##########################


def test_pretraining_checkpoint_carries_its_bpe(pretraining_run):
    checkpoint, _ = pretraining_run
    stored = SupPhonemeTokenizer.from_tensor(_load(checkpoint)["model"]["sup_phoneme_bpe"])
    assert stored.to_json() == SupPhonemeTokenizer.load(_bpe_file(checkpoint)).to_json()


def test_tts_encoder_reads_sup_phonemes_as_pretraining_does(pretraining_run):
    checkpoint, _ = pretraining_run
    pretraining = _pretraining_model(checkpoint)
    model = _tts_model(checkpoint)
    assert model.sup_phonemes is not None
    assert torch.equal(model.sup_phonemes.emb.weight, pretraining.sup_phoneme_emb.weight)
    batch = _pretraining_batch(model, pretraining)
    tokens, lengths = batch["tokens"], batch["token_lengths"]
    assert lengths[0] < lengths[1]  # the first item is padded
    # the same sup ids as the pre-training batch: BPE spans, [BLNK] for blanks, [PAD] after each length
    assert torch.equal(model.sup_phonemes.sup_ids(tokens, lengths), batch["sup_ids"])
    with torch.no_grad():
        expected = pretraining(tokens, lengths, batch["sup_ids"])["hidden"]
        phoneme_only, _ = pretraining.encoder(tokens, lengths)
        hidden, _ = model.encode_phonemes(tokens, lengths)
    torch.testing.assert_close(hidden, expected, rtol=1e-5, atol=1e-6)
    assert (hidden - phoneme_only).abs().max() > 1e-2  # the sup-phoneme embedding changes the encoding


def test_without_sup_phonemes_the_model_is_phoneme_only(pretraining_run):
    from TTS.tts.models.naturalspeech import Naturalspeech

    checkpoint, _ = pretraining_run
    untouched = Naturalspeech(_tts_config(checkpoint))  # no pre-trained encoder loaded: the model as it always was
    assert untouched.sup_phonemes is None
    assert not any(key.startswith("sup_phonemes.") for key in untouched.state_dict())
    model = _tts_model(checkpoint, use_sup_phonemes=False)
    assert model.sup_phonemes is None
    assert model.state_dict().keys() == untouched.state_dict().keys()
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in untouched.parameters())
    pretraining = _pretraining_model(checkpoint)
    batch = _pretraining_batch(model, pretraining)
    with torch.no_grad():
        phoneme_only, _ = pretraining.encoder(batch["tokens"], batch["token_lengths"])
        hidden, _ = model.encode_phonemes(batch["tokens"], batch["token_lengths"])
    torch.testing.assert_close(hidden, phoneme_only, rtol=1e-5, atol=1e-6)


def test_older_pretraining_checkpoint_without_bpe(pretraining_run, tmp_path, caplog):
    checkpoint, expected_encoder = pretraining_run
    state = _load(checkpoint)
    bpe = state["model"].pop("sup_phoneme_bpe")
    old = tmp_path / "old_pretraining.pth"
    torch.save(state, old)
    with caplog.at_level(logging.WARNING):
        model = _tts_model(old)
    assert model.sup_phonemes is None  # the encoder only, with a warning
    assert "carries no sup-phoneme BPE" in caplog.text and "add_sup_phonemes_to_checkpoint" in caplog.text
    encoder = model.phoneme_encoder.state_dict()
    assert all(torch.equal(encoder[k], v) for k, v in expected_encoder.items())
    _pretraining_model(checkpoint).load_state_dict(state["model"])  # a pre-training run still resumes from it

    completed = tmp_path / "completed.pth"
    add_sup_phonemes_to_checkpoint(str(old), str(_bpe_file(checkpoint)), str(completed))
    model = _tts_model(completed)
    assert model.sup_phonemes is not None and torch.equal(model.sup_phonemes.bpe, bpe)

    vocabulary = model.tokenizer.characters.vocab
    other = SupPhonemeTokenizer(SupPhonemeTokenizer.from_tensor(bpe).bpe, vocabulary, [0])
    other.bpe.add_tokens(["extra"])  # one sup-phoneme more than the checkpoint's embedding has rows
    other.save(tmp_path / "other.json")
    with pytest.raises(ValueError, match="from another run"):
        add_sup_phonemes_to_checkpoint(str(old), str(tmp_path / "other.json"), str(tmp_path / "bad.pth"))


##########################
# a TTS run trained with sup-phonemes
##########################


@pytest.fixture(scope="module")
def trained_run(pretraining_run, ljspeech_dir, tmp_path_factory) -> dict:
    """A tiny NaturalSpeech trained 2 steps by the Trainer from a copy of the pre-training checkpoint (then deleted).

    Returns the run folder, the deleted pre-training path, the pre-training BPE and the sup-phoneme embedding the
    run started from.
    """
    from trainer import Trainer, TrainerArgs

    from TTS.tts.models.naturalspeech import Naturalspeech

    root = tmp_path_factory.mktemp("sup_phoneme_run")
    pretrained = root / "pretrained_encoder.pth"
    shutil.copy(pretraining_run[0], pretrained)
    config = make_ljspeech_config(
        ljspeech_dir,
        root / "out",
        model_args={**TINY_ENCODER, "pretrained_encoder_path": str(pretrained)},
        batch_size=2,
        epochs=1,
        run_eval=False,
        save_step=1,
    )
    model = Naturalspeech(config)
    assert model.sup_phonemes is None  # building the model reads no pre-training file
    samples = load_samples(config, CLIPS)
    trainer = Trainer(
        TrainerArgs(), config, config.output_path, model=model, train_samples=samples, parse_command_line_args=False
    )
    assert model.sup_phonemes is not None
    initial = model.sup_phonemes.emb.weight.detach().clone()
    optimized = {id(p) for group in trainer.optimizer[1].param_groups for p in group["params"]}
    assert id(model.sup_phonemes.emb.weight) in optimized
    trainer.fit()
    bpe = model.sup_phonemes.tokenizer.to_json()
    pretrained.unlink()  # the published run: config.json still names the pre-training checkpoint
    return {"run_dir": trainer.output_path, "pretrained": pretrained, "bpe": bpe, "initial": initial}


def _checkpoint(run_dir: Path) -> Path:
    return max(run_dir.glob("checkpoint_*.pth"), key=lambda p: int(p.stem.split("_")[1]))


def test_training_updates_and_saves_the_sup_phonemes(trained_run):
    state = _load(_checkpoint(trained_run["run_dir"]))["model"]
    assert SupPhonemeTokenizer.from_tensor(state["sup_phonemes.bpe"]).to_json() == trained_run["bpe"]
    assert state["sup_phonemes.emb.weight"].shape == trained_run["initial"].shape
    assert not torch.equal(state["sup_phonemes.emb.weight"], trained_run["initial"])  # fine-tuned with the encoder


def _wav(model, text: str = SENTENCES[0]) -> torch.Tensor:
    ids = torch.tensor([model.tokenizer.text_to_ids(text)])
    return model.inference(ids, {"noise_scale": 0.0})["model_outputs"]


def test_trained_run_synthesizes_with_its_stored_sup_phonemes(trained_run, tmp_path):
    from TTS.api import TTS
    from TTS.config import load_config
    from TTS.tts.models import setup_model

    run_dir = trained_run["run_dir"]
    assert not trained_run["pretrained"].exists()
    checkpoint, config_path = _checkpoint(run_dir), run_dir / "config.json"
    api = TTS(model_path=str(checkpoint), config_path=str(config_path))
    model = api.synthesizer.tts_model
    assert model.sup_phonemes is not None and model.sup_phonemes.tokenizer.to_json() == trained_run["bpe"]
    out = tmp_path / "api.wav"
    api.tts_to_file(text=SENTENCES[0], file_path=str(out))
    audio, _ = soundfile.read(out)
    assert audio.size > 0 and np.isfinite(audio).all()

    # the stored sup-phoneme embedding shapes the speech: without it (zeroed, or the BPE removed) it changes
    wav = _wav(model)
    with torch.no_grad():
        weight = model.sup_phonemes.emb.weight.clone()
        model.sup_phonemes.emb.weight.zero_()
        zeroed = _wav(model)
        model.sup_phonemes.emb.weight.copy_(weight)
    assert torch.equal(_wav(model), wav)
    assert zeroed.shape != wav.shape or not torch.allclose(zeroed, wav)
    state = _load(checkpoint)
    state["model"] = {k: v for k, v in state["model"].items() if not k.startswith("sup_phonemes.")}
    torch.save(state, tmp_path / "without_sup_phonemes.pth")
    config = load_config(str(config_path))
    phoneme_only = setup_model(config)
    phoneme_only.load_checkpoint(config, str(tmp_path / "without_sup_phonemes.pth"), eval=True)
    assert phoneme_only.sup_phonemes is None
    without = _wav(phoneme_only)
    assert without.shape != wav.shape or not torch.allclose(without, wav)


def test_tts_cli_synthesizes_without_the_pretraining_file(trained_run, tmp_path):
    run_dir = trained_run["run_dir"]
    out = tmp_path / "cli.wav"
    command = [BIN / "tts", "--model_path", _checkpoint(run_dir), "--config_path", run_dir / "config.json"]
    result = subprocess.run(
        [*command, "--text", SENTENCES[0], "--out_path", out], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    audio, _ = soundfile.read(out)
    assert audio.size > 0 and np.isfinite(audio).all()


def test_continued_run_restores_the_sup_phonemes_and_their_optimizer_state(trained_run):
    from trainer import Trainer, TrainerArgs

    from TTS.config import load_config
    from TTS.tts.models.naturalspeech import Naturalspeech

    run_dir = trained_run["run_dir"]
    saved = _load(_checkpoint(run_dir))
    config = load_config(str(run_dir / "config.json"))
    model = Naturalspeech(config)
    trainer = Trainer(
        TrainerArgs(continue_path=str(run_dir)), config, str(run_dir), model=model, parse_command_line_args=False
    )
    assert model.sup_phonemes is not None
    assert torch.equal(model.sup_phonemes.emb.weight, saved["model"]["sup_phonemes.emb.weight"])
    # the sup-phoneme embedding is the last generator parameter, as in the saved optimizer state
    group = trainer.optimizer[1].param_groups[0]
    assert group["params"][-1] is model.sup_phonemes.emb.weight
    saved_group = saved["optimizer"][1]["param_groups"][0]
    assert len(group["params"]) == len(saved_group["params"])
    restored = trainer.optimizer[1].state[model.sup_phonemes.emb.weight]["exp_avg"]
    torch.testing.assert_close(restored, saved["optimizer"][1]["state"][saved_group["params"][-1]]["exp_avg"])


def test_onnx_export_takes_and_computes_the_sup_phoneme_ids(trained_run, tmp_path):
    import onnx

    from TTS.config import load_config
    from TTS.tts.layers.naturalspeech.runtime.onnx_export import (
        INPUT_NAMES,
        SUP_INPUT_NAME,
        SUP_PHONEME_METADATA_KEY,
        inference_onnx,
        load_onnx,
    )
    from TTS.tts.models import setup_model

    run_dir = trained_run["run_dir"]
    config = load_config(str(run_dir / "config.json"))
    model = setup_model(config)
    model.load_checkpoint(config, str(_checkpoint(run_dir)), eval=True)
    path = tmp_path / "sup.onnx"
    model.export_onnx(str(path))
    graph = onnx.load(str(path))
    assert [i.name for i in graph.graph.input] == [*INPUT_NAMES, SUP_INPUT_NAME]
    assert {p.key: p.value for p in graph.metadata_props}[SUP_PHONEME_METADATA_KEY] == trained_run["bpe"]

    ids = [model.tokenizer.text_to_ids(s) for s in SENTENCES]
    tokens = torch.zeros(len(ids), max(map(len, ids)), dtype=torch.long)
    for row, item in enumerate(ids):
        tokens[row, : len(item)] = torch.tensor(item)
    lengths = torch.tensor([len(item) for item in ids])
    expected = model.inference(tokens, {"x_lengths": lengths, "noise_scale": 0.0})["model_outputs"].numpy()
    session = load_onnx(path)
    actual = inference_onnx(session, tokens, lengths, noise_scale=0.0)  # sup ids from the stored BPE
    np.testing.assert_allclose(actual, expected, atol=1e-4)
    zero_sup = inference_onnx(session, tokens, lengths, noise_scale=0.0, sup_ids=np.zeros(tokens.shape, np.int64))
    assert zero_sup.shape != expected.shape or not np.allclose(zero_sup, expected, atol=1e-4)


def test_streaming_onnx_export_takes_the_sup_phoneme_ids(trained_run, tmp_path):
    from TTS.config import load_config
    from TTS.tts.layers.naturalspeech.runtime.onnx_export import SUP_INPUT_NAME
    from TTS.tts.layers.naturalspeech.runtime.onnx_streaming import OnnxStreamingSynthesizer, export_streaming_onnx
    from TTS.tts.models import setup_model

    run_dir = trained_run["run_dir"]
    config = load_config(str(run_dir / "config.json"))
    model = setup_model(config)
    model.load_checkpoint(config, str(_checkpoint(run_dir)), eval=True)
    files = export_streaming_onnx(model, tmp_path)
    synth = OnnxStreamingSynthesizer.from_dir(tmp_path)
    assert SUP_INPUT_NAME in {i.name for i in synth.latents_session.get_inputs()}
    eager = np.concatenate(list(model.inference_stream(SENTENCES[1], chunk_frames=8, noise_scale=0.0)))
    ids = model.tokenizer.text_to_ids(SENTENCES[1])
    streamed = np.concatenate(list(synth.stream(ids, chunk_frames=8, noise_scale=0.0)))  # sup ids from the BPE
    np.testing.assert_allclose(streamed, eager, rtol=0, atol=1e-4)
    zero_sup = synth.latents(ids, noise_scale=0.0, sup_ids=[0] * len(ids))[0]
    expected = synth.latents(ids, noise_scale=0.0)[0]
    assert zero_sup.shape != expected.shape or not np.allclose(zero_sup, expected, atol=1e-4)
    assert files.decoder_int8 is None
