"""Streaming with ONNX Runtime: the two exported graphs give the eager stream's audio, durations and timings.

A tiny randomly initialised model with its memory bank switched on, so every inference component is in the graphs.
"""

import shutil

import numpy as np
import pytest
import torch

from tests import make_phonemizing_tiny_config
from TTS.tts.layers.naturalspeech.runtime.onnx_export import SPINNING_CONFIG_KEY, load_onnx
from TTS.tts.layers.naturalspeech.runtime.onnx_quantization import decoder_conv_nodes
from TTS.tts.layers.naturalspeech.runtime.onnx_streaming import (
    CONTEXT_KEY,
    DECODER_FILE,
    DECODER_INT8_FILE,
    LATENTS_FILE,
    LATENTS_INT8_FILE,
    OnnxStreamingSynthesizer,
    export_streaming_onnx,
)
from TTS.tts.models.naturalspeech import Naturalspeech

ATOL = 1e-4  # float32; measured max |ONNX stream - eager stream| ~2e-7 on audio peaking at ~0.4
SHORT = "Hi."
LONG = "Printing, in the only sense with which we are at present concerned, differs from most if not from all the arts."


@pytest.fixture(scope="module")
def model():
    config = make_phonemizing_tiny_config()
    model = Naturalspeech.init_from_config(config).eval()
    model.step.fill_(3)
    model.memory_initialized.fill_(True)  # the memory bank is part of the latents graph
    return model


@pytest.fixture(scope="module")
def files(model, tmp_path_factory):
    return export_streaming_onnx(model, tmp_path_factory.mktemp("streaming") / "out", quantize=True)


def _quantized_convs(path) -> tuple[list[str], list[str]]:
    """The names of the `Conv` nodes of a graph whose weight and input come through `DequantizeLinear` (int8 QDQ),
    and of the other `Conv` nodes."""
    import onnx

    graph = onnx.load(str(path)).graph
    producers = {output: node for node in graph.node for output in node.output}
    int8_weights = {init.name for init in graph.initializer if init.data_type == onnx.TensorProto.INT8}
    quantized, other = [], []
    for conv in (node for node in graph.node if node.op_type == "Conv"):
        activation, weight = (producers.get(name) for name in conv.input[:2])
        is_int8 = (
            activation is not None
            and activation.op_type == "DequantizeLinear"
            and weight is not None
            and weight.op_type == "DequantizeLinear"
            and weight.input[0] in int8_weights
        )
        (quantized if is_int8 else other).append(conv.name)
    return quantized, other


def _latents_outputs(path, model, text):
    feed = {
        "input": np.array([model.tokenizer.text_to_ids(text)], dtype=np.int64),
        "scales": np.array([0.0, model.length_scale], dtype=np.float32),  # noise 0: deterministic
    }
    feed["input_lengths"] = np.array([feed["input"].shape[1]], dtype=np.int64)
    return load_onnx(path).run(["latents", "durations", "frame_lengths"], feed)


def _eager(model, text, chunk_frames):
    stream = model.inference_stream(text, chunk_frames=chunk_frames, noise_scale=0.0)
    return stream, np.concatenate(list(stream))


def test_export_writes_two_graphs_with_their_metadata(model, files):
    import onnx

    latents, decoder = onnx.load(str(files.latents)), onnx.load(str(files.decoder))
    for graph in (latents, decoder, onnx.load(str(files.decoder_int8))):
        onnx.checker.check_model(graph)
    assert [i.name for i in latents.graph.input] == ["input", "input_lengths", "scales"]
    assert [o.name for o in latents.graph.output] == ["latents", "durations", "frame_lengths"]
    assert [i.name for i in decoder.graph.input] == ["latents"] and [o.name for o in decoder.graph.output] == ["audio"]
    dims = [d.dim_param or d.dim_value for d in decoder.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch_size", model.args.hidden_channels, "frames"]
    # the latents graph has no decoder, the decoder graph nothing else
    latents_names = {init.name for init in latents.graph.initializer}
    assert not any("waveform_decoder" in n or "disc" in n or "posterior" in n for n in latents_names)
    assert any("memory_bank" in n for n in latents_names)
    assert all(n.startswith("waveform_decoder.") or n.startswith("onnx::") for n in
               {init.name for init in decoder.graph.initializer})  # fmt: skip
    context = model.decoder_context
    assert {p.key: p.value for p in decoder.metadata_props}[CONTEXT_KEY] == f"{context.left},{context.right}"


def test_int8_decoder_has_integer_convolutions(files):
    import onnx

    graph = onnx.load(str(files.decoder_int8)).graph
    convs = [node for node in graph.node if node.op_type == "Conv"]
    assert len(convs) == len(decoder_conv_nodes(files.decoder)) > 0
    producers = {output: node for node in graph.node for output in node.output}
    assert all(producers[conv.input[1]].op_type == "DequantizeLinear" for conv in convs)


def test_int8_latents_graph_quantizes_the_flow_convolutions_only(files):
    quantized, other = _quantized_convs(files.latents_int8)
    assert quantized and all("/flows/" in name for name in quantized)
    # the durations path (phoneme encoder, durator) stays float32, so int8 cannot move the durations
    assert any("/phoneme_encoder/" in name for name in other) and any("/durator/" in name for name in other)
    assert not any("/flows/" in name for name in other)
    float_convs = _quantized_convs(files.latents)[1]
    assert sorted(quantized + other) == sorted(float_convs)


@pytest.mark.parametrize("text", [SHORT, LONG])
def test_int8_latents_keep_the_durations_and_are_close_to_float(model, files, text):
    float_latents, float_durations, float_lengths = _latents_outputs(files.latents, model, text)
    latents, durations, lengths = _latents_outputs(files.latents_int8, model, text)
    # the flow runs after the durator: the durations (and the frame count) are computed by the same float32 nodes
    np.testing.assert_array_equal(durations, float_durations)
    np.testing.assert_array_equal(lengths, float_lengths)
    relative_error = np.linalg.norm(latents - float_latents) / np.linalg.norm(float_latents)
    # measured 0.0016-0.0017 on this tiny model, 0.0022 at paper size (int8 rounding in the flow only); the float
    # graph gives 0, a wrong scale or zero point far more than 0.02
    assert 0 < relative_error < 0.02, relative_error


def test_int8_phoneme_encoder_is_opt_in(model, files, tmp_path):
    quantized = _quantized_convs(files.latents_int8)[0]
    assert not any("/phoneme_encoder/" in name for name in quantized)
    opted = export_streaming_onnx(model, tmp_path, quantize=True, quantize_phoneme_encoder=True)
    quantized, other = _quantized_convs(opted.latents_int8)
    assert any("/phoneme_encoder/" in name for name in quantized) and any("/flows/" in name for name in quantized)
    assert not any("/phoneme_encoder/" in name or "/flows/" in name for name in other)
    assert any("/durator/" in name for name in other)


def test_int8_synthesizer_runs_the_int8_latents_graph_and_falls_back_for_older_exports(model, files, tmp_path):
    ids = model.tokenizer.text_to_ids(LONG)
    float_latents, float_durations = OnnxStreamingSynthesizer.from_dir(files.latents.parent).latents(ids, 0.0)
    latents, durations = OnnxStreamingSynthesizer.from_dir(files.latents.parent, int8=True).latents(ids, 0.0)
    np.testing.assert_array_equal(latents, _latents_outputs(files.latents_int8, model, LONG)[0])
    assert not np.array_equal(latents, float_latents)
    np.testing.assert_array_equal(durations, float_durations)
    # a folder exported before the flow was quantized has no latents_int8.onnx: the float latents graph runs
    for name in (LATENTS_FILE, DECODER_FILE, DECODER_INT8_FILE):
        shutil.copy(files.latents.parent / name, tmp_path / name)
    assert not (tmp_path / LATENTS_INT8_FILE).exists()
    old = OnnxStreamingSynthesizer.from_dir(tmp_path, int8=True)
    np.testing.assert_array_equal(old.latents(ids, 0.0)[0], float_latents)
    audio = np.concatenate(list(old.stream(ids, chunk_frames=16, noise_scale=0.0)))
    assert audio.size == float_latents.shape[2] * old.hop_length


def _optimized_op_types(session, path, tmp_path) -> list[str]:
    """The node types of `path` after ONNX Runtime's graph optimizations with `session`'s options."""
    import onnx
    import onnxruntime as ort

    options = session.get_session_options()
    options.optimized_model_filepath = str(tmp_path / f"optimized_{path.name}")
    ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    return [node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node]


def test_synthesizer_threads_block_and_int8_convolutions_stay_nchw(model, files, tmp_path):
    """Two sessions alternate per sentence: spinning workers of one slowed the other (2 threads slower than 1), and the
    NHWC layout pass wrapped every integer convolution in Transposes (see `load_onnx`)."""
    synth = OnnxStreamingSynthesizer.from_dir(files.latents.parent, int8=True, threads=2)
    for session in (synth.latents_session, synth.decoder_session):
        assert session.get_session_options().get_session_config_entry(SPINNING_CONFIG_KEY) == "0"
    ops = _optimized_op_types(synth.decoder_session, files.decoder_int8, tmp_path)
    assert ops.count("QLinearConv") == len(decoder_conv_nodes(files.decoder)) > 0  # the QDQ pairs still fuse
    assert "Transpose" not in ops
    latents_ops = _optimized_op_types(synth.latents_session, files.latents_int8, tmp_path)
    transposes = latents_ops.count("Transpose")
    # the latents graph has Transposes of its own (attention), none added around its integer convolutions
    assert "QLinearConv" in latents_ops and transposes == _optimized_op_types(
        synth.latents_session, files.latents, tmp_path
    ).count("Transpose")


@pytest.mark.parametrize("chunk_frames", [1, 16, 1000])
@pytest.mark.parametrize("text", [SHORT, LONG])
def test_onnx_stream_equals_the_eager_stream(model, files, text, chunk_frames):
    eager_stream, eager = _eager(model, text, chunk_frames)
    synth = OnnxStreamingSynthesizer.from_dir(files.latents.parent)
    stream = synth.stream(eager_stream.token_ids, chunk_frames=chunk_frames, noise_scale=0.0)
    assert stream.windows == eager_stream.windows  # the same window arithmetic
    np.testing.assert_allclose(stream.durations, eager_stream.durations, rtol=1e-5)
    chunks = list(stream)
    assert [len(c) for c in chunks] == [(w.end - w.start) * synth.hop_length for w in stream.windows]
    np.testing.assert_allclose(np.concatenate(chunks), eager, rtol=0, atol=ATOL)


@pytest.mark.parametrize("chunk_frames", [1, 16])
def test_int8_stream_equals_its_whole_decoding_and_is_close_to_float(model, files, chunk_frames):
    eager_stream, eager = _eager(model, LONG, chunk_frames)
    synth = OnnxStreamingSynthesizer.from_dir(files.latents.parent, int8=True)
    ids = model.tokenizer.text_to_ids(LONG)
    stream = synth.stream(ids, chunk_frames=chunk_frames, noise_scale=0.0)
    np.testing.assert_allclose(stream.durations, eager_stream.durations, rtol=1e-5)  # int8 flow: same durations
    assert stream.windows == eager_stream.windows
    streamed = np.concatenate(list(stream))
    whole = synth.decode(synth.latents(ids, noise_scale=0.0)[0])
    # the windows are exact for the int8 graphs too (measured: bit-identical to decoding the whole sentence)
    np.testing.assert_allclose(streamed, whole, rtol=0, atol=ATOL)
    snr_db = 10 * np.log10(np.sum(eager**2) / np.sum((streamed - eager) ** 2))
    # measured 39 dB on this tiny decoder (int8 noise only); a wrong scale or a misplaced window is far below 20
    assert 20 < snr_db < 80, snr_db


def test_onnx_stream_timings_equal_the_eager_ones(model, files):
    eager_stream, _ = _eager(model, LONG, 16)
    synth = OnnxStreamingSynthesizer.from_dir(files.latents.parent)
    stream = synth.stream(eager_stream.token_ids, noise_scale=0.0, tokenizer=model.tokenizer, text=LONG)
    onnx_timings, eager_timings = stream.timings(), eager_stream.timings()
    assert [w["end_sample"] for w in onnx_timings["words"]] == [w["end_sample"] for w in eager_timings["words"]]
    assert onnx_timings["phonemes"][-1]["end_sample"] == stream.num_samples
    with pytest.raises(ValueError, match="tokenizer"):
        synth.stream(eager_stream.token_ids).timings()


def test_default_scales_come_from_the_export(model, files):
    synth = OnnxStreamingSynthesizer.from_dir(files.latents.parent)
    assert (synth.noise_scale, synth.length_scale) == (model.noise_scale, model.length_scale)
    ids = model.tokenizer.text_to_ids(LONG)
    torch.manual_seed(0)
    assert synth.latents(ids, length_scale=2.0)[0].shape[2] > synth.latents(ids)[0].shape[2]


def test_a_decoder_without_streaming_metadata_is_refused(model, files, tmp_path):
    single = tmp_path / "single.onnx"
    model.export_onnx(str(single))
    with pytest.raises(ValueError, match="streaming metadata"):
        OnnxStreamingSynthesizer(files.latents, single)
    with pytest.raises(ValueError, match="no token ids"):
        OnnxStreamingSynthesizer.from_dir(files.latents.parent).latents([])
