"""Multi-speaker NaturalSpeech: speaker ids change the voice, the embedding learns, bad speakers are clear errors.

The two speakers are the 32 real LJSpeech clips split in two fake speakers ("anna" and "ben", alternating) through a
metadata file of the toolkit's `coqui` formatter, which carries a speaker name per clip.
"""

import csv
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from tests import make_ljspeech_config, make_tiny_config
from TTS.tts.configs.shared_configs import BaseDatasetConfig
from TTS.tts.models.naturalspeech import Naturalspeech

SPEAKERS = ["anna", "ben"]
SPEAKER_ARGS = {"use_speaker_embedding": True, "speaker_embedding_channels": 8}
TEXT = "Be a voice, not an echo."
ATOL = 1e-4  # float rounding of ONNX Runtime and PyTorch, as in test_naturalspeech_onnx.py
TTS_PROGRAM = Path(sys.executable).parent / "tts"


@pytest.fixture(scope="module")
def two_speaker_metadata(tmp_path_factory, ljspeech_dir) -> Path:
    """`coqui`-format metadata of the real clips, alternately spoken by "anna" and "ben"."""
    path = tmp_path_factory.mktemp("two_speakers") / "metadata.csv"
    with open(ljspeech_dir / "metadata.csv", encoding="utf-8") as source:
        rows = [line.rstrip("\n").split("|") for line in source if line.strip()]
    with open(path, "w", encoding="utf-8", newline="") as target:
        writer = csv.writer(target, delimiter="|")
        writer.writerow(["audio_file", "text", "speaker_name"])
        for index, (clip, _, text) in enumerate(rows):
            writer.writerow([f"wavs/{clip}.wav", text, SPEAKERS[index % 2]])
    return path


def two_speaker_config(ljspeech_dir, metadata, output_path, model_args=None, **overrides):
    config = make_ljspeech_config(ljspeech_dir, output_path, model_args={**SPEAKER_ARGS, **(model_args or {})})
    config.datasets = [BaseDatasetConfig(formatter="coqui", path=str(ljspeech_dir), meta_file_train=str(metadata))]
    config.speakers = list(SPEAKERS)
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def tiny_two_speaker_model(**model_args) -> Naturalspeech:
    config = make_tiny_config(model_args={**SPEAKER_ARGS, **model_args})
    config.speakers = list(SPEAKERS)
    return Naturalspeech(config).eval()


@pytest.mark.parametrize("conditioned_encoder", [False, True])
def test_speaker_ids_change_the_output_of_one_model(conditioned_encoder):
    model = tiny_two_speaker_model(use_speaker_conditioned_phoneme_encoder=conditioned_encoder)
    tokens = torch.randint(1, 50, (1, 20), generator=torch.Generator().manual_seed(0))

    def synthesize(speaker_id):
        torch.manual_seed(0)
        aux = {"speaker_ids": torch.tensor([speaker_id]), "noise_scale": 0.5}
        return model.inference(tokens, aux)["model_outputs"][0, 0]

    anna, anna_again, ben = synthesize(0), synthesize(0), synthesize(1)
    assert torch.equal(anna, anna_again)
    common = min(anna.numel(), ben.numel())
    assert anna.numel() != ben.numel() or not torch.allclose(anna[:common], ben[:common], atol=1e-4)
    # the same speaker through a batch of two equals the one-item result (per-item speaker conditioning)
    torch.manual_seed(0)
    both = model.inference(
        tokens.repeat(2, 1),
        {"speaker_ids": torch.tensor([1, 1]), "noise_scale": 0.0, "x_lengths": torch.tensor([20, 20])},
    )["model_outputs"]
    assert torch.allclose(both[0], both[1])


def test_speaker_conditioned_phoneme_encoder_reads_the_speaker():
    model = tiny_two_speaker_model(use_speaker_conditioned_phoneme_encoder=True)
    plain = tiny_two_speaker_model()
    tokens, lengths = torch.randint(1, 50, (1, 9)), torch.tensor([9])
    g = model.speaker_vector({"speaker_ids": torch.tensor([0, 1])})
    h0, _ = model.encode_phonemes(tokens.repeat(2, 1), lengths.repeat(2), g=g)
    assert not torch.allclose(h0[0], h0[1], atol=1e-3)
    h1, _ = plain.encode_phonemes(tokens.repeat(2, 1), lengths.repeat(2), g=g)
    assert torch.allclose(h1[0], h1[1], atol=1e-5)  # without the option the encoder is speaker-independent
    assert plain.phoneme_encoder.cond is None and model.phoneme_encoder.cond is not None


def test_single_speaker_model_has_no_speaker_layers():
    model = Naturalspeech(make_tiny_config())
    assert model.speaker_embedding is None and model.cond_durator is None
    assert not any("cond" in name or "speaker" in name for name in model.state_dict())


def test_a_trainer_step_on_two_speakers_trains_the_embedding(tmp_path, ljspeech_dir, two_speaker_metadata):
    from trainer import Trainer, TrainerArgs

    from TTS.tts.datasets import load_tts_samples

    config = two_speaker_config(ljspeech_dir, two_speaker_metadata, tmp_path, batch_size=4, run_eval=False)
    config.save_step = 10**6
    torch.manual_seed(0)
    model = Naturalspeech(config)
    samples, _ = load_tts_samples(config, eval_split=False)
    assert {s["speaker_name"] for s in samples} == set(SPEAKERS)
    samples = [s for s in samples if Path(s["audio_file"]).stem in ("LJ001-0002", "LJ001-0008", "LJ001-0009")]
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    trainer = Trainer(TrainerArgs(), config, str(tmp_path), model=model, train_samples=samples, gpu=None)
    trainer.train_loader = trainer.get_train_dataloader(samples, verbose=False)
    batch = next(iter(trainer.train_loader))
    speakers_in_batch = {SPEAKERS.index(name) for name in batch["speaker_names"]}
    trainer.train_step(batch, 1, 0, 0.0)

    after = dict(model.named_parameters())
    embedding = "speaker_embedding.emb_g.weight"
    for row in speakers_in_batch:
        assert not torch.equal(before[embedding][row], after[embedding][row])
    # the speaker reaches every conditioned part: durator input, posterior encoder, flow, decoder
    for name in (
        "cond_durator.weight",
        "posterior_encoder.enc.cond_layer.bias",
        "flow.flows.flows.0.enc.cond_layer.bias",
        "waveform_decoder.cond_layer.weight",
    ):
        assert not torch.equal(before[name], after[name]), name


def test_gradients_of_the_generator_loss_reach_the_embedding(tmp_path, ljspeech_dir, two_speaker_metadata):
    from tests import load_batch

    config = two_speaker_config(ljspeech_dir, two_speaker_metadata, tmp_path)
    model = Naturalspeech(config)
    batch = load_batch(config, model, ["LJ001-0002", "LJ001-0008"])
    assert batch["speaker_ids"].tolist() == [SPEAKERS.index(n) for n in batch["speaker_names"]]
    criteria = model.get_criterion()
    model.train_step(batch, criteria[0], 0)
    _, losses = model.train_step(batch, criteria[1], 1)
    losses["loss"].backward()
    grad = model.speaker_embedding.emb_g.weight.grad
    # both clips are ben's: his row gets the gradient, anna's none
    assert batch["speaker_names"] == ["ben", "ben"]
    assert grad[SPEAKERS.index("ben")].abs().sum() > 0
    assert torch.count_nonzero(grad[SPEAKERS.index("anna")]) == 0


def test_speaker_errors_name_the_problem():
    model = tiny_two_speaker_model()
    tokens = torch.randint(1, 50, (1, 9))
    with pytest.raises(ValueError, match=r"Speaker id 2 is out of range.*0 to 1 \(0: anna, 1: ben\)"):
        model.inference(tokens, {"speaker_ids": torch.tensor([2])})
    with pytest.raises(ValueError, match="Speaker id -1 is out of range"):
        model.inference(tokens, {"speaker_ids": torch.tensor([-1])})
    with pytest.raises(ValueError, match="needs speaker ids"):
        model.inference(tokens, {})
    with pytest.raises(ValueError, match="'carol' is not a speaker of this model; its speakers are: anna, ben"):
        model.synthesize(TEXT, speaker="carol")
    with pytest.raises(ValueError, match="out of range"):
        model.synthesize(TEXT, speaker=5)
    assert model.synthesize(TEXT, speaker=1)["wav"].size > 0


def test_speakers_needed_to_build_a_multi_speaker_model():
    with pytest.raises(ValueError, match="use_speaker_embedding needs the speakers"):
        Naturalspeech(make_tiny_config(model_args=SPEAKER_ARGS))
    model = Naturalspeech(make_tiny_config(model_args={**SPEAKER_ARGS, "num_speakers": 3}))
    assert model.speaker_embedding.emb_g.num_embeddings == 3
    with pytest.raises(ValueError, match="d_vector_dim"):
        Naturalspeech(make_tiny_config(model_args={"use_d_vector_file": True}))


def test_d_vectors_condition_the_model():
    model = Naturalspeech(make_tiny_config(model_args={"use_d_vector_file": True, "d_vector_dim": 6})).eval()
    tokens = torch.randint(1, 50, (1, 12))
    outs = []
    for seed in (1, 2):
        d_vector = torch.randn(1, 6, generator=torch.Generator().manual_seed(seed))
        outs.append(model.inference(tokens, {"d_vectors": d_vector, "noise_scale": 0.0})["model_outputs"][0, 0])
    common = min(o.numel() for o in outs)
    assert outs[0].numel() != outs[1].numel() or not torch.allclose(outs[0][:common], outs[1][:common], atol=1e-4)
    with pytest.raises(ValueError, match="6"):
        model.inference(tokens, {"d_vectors": torch.randn(1, 5)})


##########################
# the toolkit's programs: `tts` and `TTS.api` on a saved two-speaker checkpoint
##########################


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return save_two_speaker_run(tmp_path_factory.mktemp("speaker_run"))


def save_two_speaker_run(root: Path) -> Path:
    """A run folder (`config.json`, `best_model.pth`) of a random two-speaker model with espeak-ng phonemes."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (make setup installs it)")
    config = make_tiny_config(
        model_args=SPEAKER_ARGS,
        use_phonemes=True,
        phonemizer="espeak",
        phoneme_language="en-us",
        text_cleaner="english_cleaners",
    )
    config.speakers = list(SPEAKERS)
    model = Naturalspeech.init_from_config(config)
    config.save_json(str(root / "config.json"))
    torch.save({"model": model.state_dict()}, root / "best_model.pth")
    return root


def run_tts(run_dir, *args):
    # the installed `tts` program (run as `python -m TTS.bin.synthesize`, its own log lines would not show)
    command = [str(TTS_PROGRAM), "--model_path", str(run_dir / "best_model.pth")]
    command += ["--config_path", str(run_dir / "config.json"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)


def read_wav(path) -> np.ndarray:
    with wave.open(str(path), "rb") as wav:
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")


def test_tts_command_speaks_with_the_chosen_speaker(run_dir, tmp_path):
    listing = run_tts(run_dir, "--list_speaker_idxs")
    assert listing.returncode == 0, listing.stderr[-2000:]
    assert "anna" in listing.stdout + listing.stderr and "ben" in listing.stdout + listing.stderr

    wavs = {}
    for speaker in SPEAKERS:
        out = tmp_path / f"{speaker}.wav"
        result = run_tts(run_dir, "--text", TEXT, "--speaker_idx", speaker, "--out_path", str(out))
        assert result.returncode == 0, result.stderr[-2000:]
        wavs[speaker] = read_wav(out)
    common = min(w.size for w in wavs.values())
    assert wavs["anna"].size != wavs["ben"].size or not np.array_equal(wavs["anna"][:common], wavs["ben"][:common])

    bad = run_tts(run_dir, "--text", TEXT, "--speaker_idx", "carol", "--out_path", str(tmp_path / "x.wav"))
    assert bad.returncode != 0
    assert "'carol' is not a speaker of this model; its speakers are: anna, ben" in bad.stderr


def test_api_lists_the_speakers_and_rejects_unknown_ones(run_dir):
    from TTS.api import TTS

    api = TTS(model_path=str(run_dir / "best_model.pth"), config_path=str(run_dir / "config.json"))
    assert api.is_multi_speaker and api.speakers == SPEAKERS
    assert len(api.tts(TEXT, speaker="ben")) > 0
    with pytest.raises(ValueError, match="its speakers are: anna, ben"):
        api.tts(TEXT, speaker="carol")


##########################
# ONNX and streaming
##########################


def test_onnx_graph_takes_the_speaker_id_and_equals_pytorch(tmp_path):
    pytest.importorskip("onnxruntime")
    from TTS.tts.layers.naturalspeech.runtime.onnx_export import inference_onnx, load_onnx

    model = tiny_two_speaker_model()
    path = tmp_path / "two_speakers.onnx"
    model.export_onnx(str(path))
    session = load_onnx(path)
    assert [i.name for i in session.get_inputs()] == ["input", "input_lengths", "scales", "sid"]
    tokens = torch.randint(1, 50, (2, 15), generator=torch.Generator().manual_seed(3))
    lengths = torch.tensor([15, 11])
    waves = {}
    for sid in (0, 1):
        aux = {"speaker_ids": torch.tensor([sid, sid]), "noise_scale": 0.0, "x_lengths": lengths}
        expected = model.inference(tokens, aux)["model_outputs"].numpy()
        actual = inference_onnx(session, tokens, lengths, noise_scale=0.0, length_scale=model.length_scale, sid=sid)
        assert actual.shape == expected.shape
        np.testing.assert_allclose(actual, expected, rtol=0, atol=ATOL)
        waves[sid] = actual
    assert waves[0].shape != waves[1].shape or not np.allclose(waves[0], waves[1], atol=1e-4)
    # per item: one speaker each
    mixed = inference_onnx(session, tokens, lengths, noise_scale=0.0, length_scale=model.length_scale, sid=[1, 0])
    np.testing.assert_allclose(mixed[0, :, : waves[1].shape[2]], waves[1][0], rtol=0, atol=ATOL)
    with pytest.raises(ValueError, match=r"multi-speaker: pass `sid`.*anna, ben"):
        inference_onnx(session, tokens, lengths)
    with pytest.raises(ValueError, match="Speaker id 2 is out of range"):
        inference_onnx(session, tokens, lengths, sid=2)


def test_streaming_with_a_speaker_equals_whole_synthesis():
    model = tiny_two_speaker_model()
    ids = model.speakable_ids(TEXT)
    whole = model.inference(torch.tensor([ids]), {"speaker_ids": torch.tensor([1]), "noise_scale": 0.0})
    joined = np.concatenate(list(model.inference_stream(TEXT, speaker="ben", noise_scale=0.0, chunk_frames=7)))
    np.testing.assert_allclose(joined, whole["model_outputs"][0, 0].numpy(), rtol=0, atol=ATOL)
    with pytest.raises(ValueError, match="needs a speaker"):
        model.inference_stream(TEXT)
    with pytest.raises(ValueError, match="its speakers are: anna, ben"):
        model.inference_stream(TEXT, speaker="carol")


def test_streaming_onnx_graphs_take_the_speaker_and_equal_pytorch(tmp_path):
    pytest.importorskip("onnxruntime")
    from TTS.tts.layers.naturalspeech.runtime.onnx_streaming import OnnxStreamingSynthesizer, export_streaming_onnx

    model = tiny_two_speaker_model()
    files = export_streaming_onnx(model, tmp_path, quantize=True, calibration_texts=[TEXT])
    assert "sid" in {i.name for i in OnnxStreamingSynthesizer.from_dir(tmp_path).latents_session.get_inputs()}
    ids = model.speakable_ids(TEXT)
    for int8 in (False, True):
        synth = OnnxStreamingSynthesizer.from_dir(tmp_path, int8=int8)
        streams = {}
        for sid in (0, 1):
            streams[sid] = np.concatenate(list(synth.stream(ids, noise_scale=0.0, chunk_frames=7, sid=sid)))
            if not int8:
                whole = model.inference(torch.tensor([ids]), {"speaker_ids": torch.tensor([sid]), "noise_scale": 0.0})
                np.testing.assert_allclose(streams[sid], whole["model_outputs"][0, 0].numpy(), rtol=0, atol=ATOL)
        common = min(len(w) for w in streams.values())
        assert len(streams[0]) != len(streams[1]) or not np.allclose(streams[0][:common], streams[1][:common])
    assert files.decoder_int8 is not None and files.latents_int8 is not None
    # the int8 latents graph (flow int8) keeps the speaker input and the speaker names of its metadata
    with pytest.raises(ValueError, match="pass `sid`"):
        synth.stream(ids)
    with pytest.raises(ValueError, match="Speaker id 7 is out of range"):
        synth.stream(ids, sid=7)


##########################
# the VCTK recipe
##########################


def load_vctk_recipe():
    import importlib.util

    from tests import REPO_ROOT

    path = REPO_ROOT / "recipes/vctk/naturalspeech/train_naturalspeech.py"
    spec = importlib.util.spec_from_file_location("vctk_recipe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_vctk_recipe_reads_speakers_and_feeds_their_ids(tmp_path, ljspeech_dir):
    """A VCTK-format folder (txt/<speaker>/*.txt, wav48_silence_trimmed/<speaker>/*_mic1.flac) of real clips."""
    import soundfile

    from tests import make_tiny_args

    with open(ljspeech_dir / "metadata.csv", encoding="utf-8") as source:
        rows = [line.rstrip("\n").split("|") for line in source if line.strip()][:4]
    for index, (clip, _, text) in enumerate(rows):
        speaker = f"p{225 + index % 2}"
        (tmp_path / "vctk/txt" / speaker).mkdir(parents=True, exist_ok=True)
        (tmp_path / "vctk/wav48_silence_trimmed" / speaker).mkdir(parents=True, exist_ok=True)
        (tmp_path / "vctk/txt" / speaker / f"{speaker}_{index:03d}.txt").write_text(text + "\n", encoding="utf-8")
        audio, rate = soundfile.read(ljspeech_dir / "wavs" / f"{clip}.wav")
        soundfile.write(
            tmp_path / "vctk/wav48_silence_trimmed" / speaker / f"{speaker}_{index:03d}_mic1.flac", audio, rate
        )

    recipe = load_vctk_recipe()
    config = recipe.make_config(tmp_path / "vctk", tmp_path / "run")
    assert config.model_args.use_speaker_embedding and config.model_args.hidden_channels == 192  # paper size
    from TTS.tts.datasets import load_tts_samples

    samples, _ = load_tts_samples(config, eval_split=False)
    config.speakers = recipe.speakers_of(samples)
    assert config.speakers == ["VCTK_p225", "VCTK_p226"]
    config.model_args = make_tiny_args(use_speaker_embedding=True, speaker_embedding_channels=8)
    model = Naturalspeech(config)
    assert model.speaker_embedding.emb_g.num_embeddings == 2
    loader = model.get_data_loader(config, samples=samples)
    batch = model.format_batch(next(iter(loader)))
    assert batch["speaker_ids"].tolist() == [config.speakers.index(name) for name in batch["speaker_names"]]


def test_training_data_of_an_unknown_speaker_is_a_clear_error():
    model = tiny_two_speaker_model()
    with pytest.raises(ValueError, match=r"speaker\(s\) \['carol'\] that the model does not have"):
        model.format_batch({"speaker_names": ["anna", "carol"], "audio_unique_names": ["a", "b"]})


def test_epoch_end_test_sentences_speak_with_a_speaker():
    model = tiny_two_speaker_model()
    model.config.test_sentences = [["Be a voice.", "ben"], "Not an echo."]
    results = model.test_run(None)
    assert set(results["audios"]) == {"0-audio", "1-audio"}


def test_d_vector_file_speakers_through_synthesize_and_batches(tmp_path):
    import json

    generator = torch.Generator().manual_seed(0)
    entries = {
        f"clip{i}": {"name": SPEAKERS[i % 2], "embedding": torch.randn(6, generator=generator).tolist()}
        for i in range(4)
    }
    path = tmp_path / "d_vectors.json"
    path.write_text(json.dumps(entries), encoding="utf-8")
    args = {"use_d_vector_file": True, "d_vector_dim": 6, "d_vector_file": str(path)}
    model = Naturalspeech(make_tiny_config(model_args=args)).eval()
    assert sorted(model.speaker_manager.embedding_names) == SPEAKERS
    assert model.synthesize(TEXT, speaker="ben")["wav"].size > 0
    with pytest.raises(ValueError, match="'carol' has no d-vector in this model; its speakers are: anna, ben"):
        model.synthesize(TEXT, speaker="carol")
    batch = model.format_batch({"speaker_names": ["anna", "ben"], "audio_unique_names": ["clip0", "clip3"]})
    assert torch.equal(batch["d_vectors"], torch.tensor([entries["clip0"]["embedding"], entries["clip3"]["embedding"]]))
    with pytest.raises(ValueError, match="No d-vector for clip9"):
        model.format_batch({"speaker_names": ["anna"], "audio_unique_names": ["clip9"]})


def test_a_pretrained_encoder_loads_into_the_speaker_conditioned_encoder(tmp_path):
    from TTS.tts.layers.naturalspeech.pretraining.model import load_pretrained_encoder

    plain = tiny_two_speaker_model()
    conditioned = tiny_two_speaker_model(use_speaker_conditioned_phoneme_encoder=True)
    vocabulary = plain.tokenizer.characters.vocab
    state = {f"encoder.{k}": v for k, v in plain.phoneme_encoder.state_dict().items()}
    torch.save({"model": state, "config": {"phoneme_vocabulary": vocabulary}}, tmp_path / "pretrained.pth")
    cond_before = conditioned.phoneme_encoder.cond.weight.detach().clone()
    load_pretrained_encoder(conditioned.phoneme_encoder, str(tmp_path / "pretrained.pth"), vocabulary)
    torch.testing.assert_close(conditioned.phoneme_encoder.emb.weight, plain.phoneme_encoder.emb.weight)
    torch.testing.assert_close(conditioned.phoneme_encoder.cond.weight, cond_before)  # its own initialisation
    del state["encoder.emb.weight"]
    torch.save({"model": state, "config": {"phoneme_vocabulary": vocabulary}}, tmp_path / "broken.pth")
    with pytest.raises(RuntimeError, match=r"missing \['emb.weight'\]"):
        load_pretrained_encoder(conditioned.phoneme_encoder, str(tmp_path / "broken.pth"), vocabulary)
