"""ONNX export of NaturalSpeech's inference path, checked against PyTorch on the `trained_model_dir` checkpoint.

The checkpoint has passed every training stage, so the exported graph includes the fitted memory bank.
"""

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from tests import load_run_model
from TTS.tts.layers.naturalspeech.runtime.onnx_export import (
    DYNAMIC_AXES,
    INPUT_NAMES,
    OPSET_VERSION,
    inference_onnx,
    load_onnx,
)
from TTS.tts.layers.naturalspeech.runtime.onnx_quantization import conv_nodes

# measured: max |ONNX - PyTorch| ~2e-7 on waveforms in [-1, 1] (float32 kernels differ in summation order)
ATOL = 1e-4
CALIBRATION_TEXTS = ["The birch canoe slid on the smooth planks.", "Rice is often served in round bowls."]
TEXTS = [
    "Be a voice, not an echo.",
    "Printing, in the only sense with which we are at present concerned, differs from most if not from all the arts.",
]


@pytest.fixture(scope="module")
def model(trained_model_dir):
    model = load_run_model(trained_model_dir)
    assert bool(model.memory_initialized)
    return model


@pytest.fixture(scope="module")
def onnx_path(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "naturalspeech.onnx"
    model.export_onnx(str(path))
    model.load_onnx(str(path))
    return path


@pytest.fixture(scope="module")
def int8_path(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx_int8") / "naturalspeech_int8.onnx"
    model.export_onnx(str(path), quantize=True, calibration_texts=CALIBRATION_TEXTS)
    return path


def _ids(model, text: str) -> torch.Tensor:
    return torch.tensor([model.tokenizer.text_to_ids(text)], dtype=torch.long)


def test_export_graph(model, onnx_path):
    import onnx

    graph = onnx.load(str(onnx_path))
    onnx.checker.check_model(graph)
    assert [i.name for i in graph.graph.input] == INPUT_NAMES
    # `output` first, as in the toolkit's VITS export; the durations (frames per token) for timings after it
    assert [o.name for o in graph.graph.output] == ["output", "durations"]
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) == OPSET_VERSION
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.graph.input}
    assert dims == {"input": ["batch_size", "phonemes"], "input_lengths": ["batch_size"], "scales": [2]}
    out_dims = [d.dim_param or d.dim_value for d in graph.graph.output[0].type.tensor_type.shape.dim]
    assert out_dims[0] == "batch_size" and out_dims[1] == 1 and out_dims[2] == DYNAMIC_AXES["output"][2]
    # the discriminator and the posterior encoder are not part of inference
    names = {init.name for init in graph.graph.initializer}
    assert not any("disc" in name or "posterior_encoder" in name for name in names)


@pytest.mark.parametrize("text", TEXTS)
def test_onnx_matches_torch(model, onnx_path, text):
    ids = _ids(model, text)
    expected = model.inference(ids, {"noise_scale": 0.0})["model_outputs"].numpy()
    actual = inference_onnx(model.onnx_sess, ids, noise_scale=0.0, length_scale=model.length_scale)
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=0, atol=ATOL)


def test_onnx_durations_output_matches_torch(model, onnx_path):
    ids = _ids(model, TEXTS[1])
    expected = model.inference(ids, {"noise_scale": 0.0, "length_scale": 1.3})
    scales = np.array([0.0, 1.3], np.float32)
    feeds = {"input": ids.numpy(), "input_lengths": np.array([ids.shape[1]]), "scales": scales}
    wav, durations = model.onnx_sess.run(["output", "durations"], feeds)
    assert durations.shape == tuple(expected["durations"].shape)
    np.testing.assert_allclose(durations, expected["durations"].numpy(), rtol=1e-5)
    assert wav.shape[2] == round(float(durations.sum())) * model.config.audio.hop_length


def test_onnx_batch_matches_torch_batch(model, onnx_path):
    rows = [model.tokenizer.text_to_ids(t) for t in TEXTS]
    lengths = torch.tensor([len(r) for r in rows])
    ids = torch.zeros(len(rows), int(lengths.max()), dtype=torch.long)
    for index, row in enumerate(rows):
        ids[index, : len(row)] = torch.tensor(row)
    expected = model.inference(ids, {"x_lengths": lengths, "noise_scale": 0.0, "length_scale": 1.2})["model_outputs"]
    actual = inference_onnx(model.onnx_sess, ids, lengths, noise_scale=0.0, length_scale=1.2)
    np.testing.assert_allclose(actual, expected.numpy(), rtol=0, atol=ATOL)
    # one batched graph call is exact for the longest item only (HiFi-GAN sees the others' zero padding)
    batched = inference_onnx(model.onnx_sess, ids, lengths, noise_scale=0.0, length_scale=1.2, per_item=False)
    np.testing.assert_allclose(batched[1], expected[1].numpy(), rtol=0, atol=ATOL)


def test_model_methods_use_model_scales(model, onnx_path):
    ids = _ids(model, TEXTS[0])
    wav = model.inference_onnx(ids)
    assert wav.shape[:2] == (1, 1) and np.isfinite(wav).all() and np.abs(wav).max() > 0
    with pytest.raises(ValueError, match="at least one token"):
        model.inference_onnx(np.zeros((1, 0), dtype=np.int64))


def test_onnx_runs_without_torch(model, onnx_path):
    ids = model.tokenizer.text_to_ids(TEXTS[0])
    script = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        import onnxruntime as ort

        session = ort.InferenceSession({str(onnx_path)!r}, providers=["CPUExecutionProvider"])
        ids = np.array([{ids!r}], dtype=np.int64)
        feeds = {{"input": ids, "input_lengths": np.array([ids.shape[1]], dtype=np.int64),
                  "scales": np.array([0.0, 1.0], dtype=np.float32)}}
        (wav,) = session.run(["output"], feeds)
        assert "torch" not in sys.modules, "onnxruntime inference imported torch"
        np.save(sys.argv[1], wav)
        """
    )
    out = onnx_path.parent / "no_torch.npy"
    result = subprocess.run(
        [sys.executable, "-c", script, str(out)], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    expected = model.inference(torch.tensor([ids]), {"noise_scale": 0.0})["model_outputs"].numpy()
    np.testing.assert_allclose(np.load(out), expected, rtol=0, atol=ATOL)


def test_int8_export_quantizes_the_decoder_and_flow_convolutions_only(onnx_path, int8_path):
    import onnx

    graph = onnx.load(str(int8_path)).graph
    onnx.checker.check_model(onnx.load(str(int8_path)))
    producers = {output: node for node in graph.node for output in node.output}
    int8_weights = {init.name for init in graph.initializer if init.data_type == onnx.TensorProto.INT8}
    scopes = ("/waveform_decoder/", "/flows/")  # `onnx_quantization.INT8_SCOPES`, as in the streaming export
    quantized = [node for node in graph.node if node.op_type == "Conv" and any(s in node.name for s in scopes)]
    assert len(quantized) == len(conv_nodes(onnx_path, ["waveform_decoder", "flows"])) > 0
    assert all(any(s in node.name for node in quantized) for s in scopes)
    for conv in quantized:
        activation, weight = (producers.get(name) for name in conv.input[:2])
        assert activation is not None and activation.op_type == "DequantizeLinear", conv.name
        assert weight is not None and weight.op_type == "DequantizeLinear" and weight.input[0] in int8_weights
    # the durations path (phoneme encoder, durator) and the memory bank stay float32: the durations do not move
    dequantized = {out for node in graph.node if node.op_type == "DequantizeLinear" for out in node.output}
    consumers = [node for node in graph.node if dequantized & set(node.input)]
    assert consumers and all(any(s in node.name for s in scopes) for node in consumers)


@pytest.mark.parametrize("text", TEXTS)
def test_int8_output_is_close_to_float(model, int8_path, text):
    ids = _ids(model, text)
    expected = model.inference(ids, {"noise_scale": 0.0})["model_outputs"].numpy()
    actual = inference_onnx(load_onnx(int8_path), ids, noise_scale=0.0, length_scale=model.length_scale)
    assert actual.shape == expected.shape  # durations are computed in float32: same length
    noise = actual - expected
    snr_db = 10 * np.log10(np.sum(expected**2) / np.sum(noise**2))
    # measured ~40 dB on this checkpoint (decoder and flow int8); audible-but-harmless int8 noise is ~20-30 dB, a
    # broken scale <10
    assert 20 < snr_db < 80, snr_db


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        ([], "non-empty list"),
        ("Just one string.", "non-empty list"),
        (["Fine.", " "], "empty or only whitespace"),
        (["Fine.", "-"], "no speakable characters"),
    ],
)
def test_int8_export_rejects_bad_calibration_texts(model, tmp_path, texts, message):
    path = tmp_path / "int8.onnx"
    with pytest.raises(ValueError, match=message):
        model.export_onnx(str(path), quantize=True, calibration_texts=texts)
    assert not path.exists()


EXPORT_SCRIPT = Path(__file__).resolve().parents[2] / "recipes/ljspeech/naturalspeech/export_onnx.py"


def test_export_script_writes_a_checked_int8_file(trained_model_dir, model, tmp_path):
    out = tmp_path / "exported" / "naturalspeech_int8.onnx"
    command = [sys.executable, str(EXPORT_SCRIPT), "--run_dir", str(trained_model_dir), "--out", str(out), "--quantize"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "int8 decoder" in result.stdout and "s of audio" in result.stdout
    ids = _ids(model, TEXTS[0])
    expected = model.inference(ids, {"noise_scale": 0.0})["model_outputs"].numpy()
    actual = inference_onnx(load_onnx(out), ids, noise_scale=0.0, length_scale=model.length_scale)
    assert actual.shape == expected.shape and 0 < np.abs(actual - expected).max() < 0.5 * np.abs(expected).max()


def test_export_script_names_a_missing_run_folder(tmp_path):
    command = [sys.executable, str(EXPORT_SCRIPT), "--run_dir", str(tmp_path), "--out", str(tmp_path / "x.onnx")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode != 0
    assert f"{tmp_path / 'config.json'} not found" in result.stderr
    assert not (tmp_path / "x.onnx").exists()


def test_int8_quantization_writes_nothing_to_the_working_directory(tmp_path, monkeypatch):
    from onnxruntime.quantization import shape_inference

    from tests import make_tiny_config
    from TTS.tts.layers.naturalspeech.runtime.onnx_export import calibration_feeds
    from TTS.tts.layers.naturalspeech.runtime.onnx_quantization import quantize_decoder
    from TTS.tts.models.naturalspeech import Naturalspeech

    model = Naturalspeech(make_tiny_config()).eval()  # untrained and tiny: only the files written matter here
    float_path = tmp_path / "float32.onnx"
    model.export_onnx(str(float_path))
    feeds = calibration_feeds(model, CALIBRATION_TEXTS[:1])
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)

    quantize_decoder(float_path, "int8.onnx", feeds)  # a relative output path is the caller's working directory
    assert sorted(p.name for p in cwd.iterdir()) == ["int8.onnx"]

    # ORT's symbolic shape inference cannot resolve the data-dependent frame axis: it saves its partial model to
    # `sym_shape_infer_temp.onnx` + `<uuid>.data` in the working directory, then raises (how those files once got
    # committed). Forced on, it must leave them in the temporary folder only.
    original = shape_inference.quant_pre_process
    monkeypatch.setattr(
        shape_inference,
        "quant_pre_process",
        lambda *args, **kwargs: original(*args, **{**kwargs, "skip_symbolic_shape": False}),
    )
    with pytest.raises(Exception, match="Incomplete symbolic shape inference"):
        quantize_decoder(float_path, "failed.onnx", feeds)
    assert sorted(p.name for p in cwd.iterdir()) == ["int8.onnx"]
