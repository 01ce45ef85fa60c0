"""Streaming with ONNX Runtime: the two exported graphs give the eager stream's audio, durations and timings.

A tiny randomly initialised model with its memory bank switched on, so every inference component is in the graphs.
"""

import numpy as np
import pytest
import torch

from tests import make_phonemizing_tiny_config
from TTS.tts.layers.naturalspeech.runtime.onnx_quantization import decoder_conv_nodes
from TTS.tts.layers.naturalspeech.runtime.onnx_streaming import (
    CONTEXT_KEY,
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
    _, eager = _eager(model, LONG, chunk_frames)
    synth = OnnxStreamingSynthesizer.from_dir(files.latents.parent, int8=True)
    ids = model.tokenizer.text_to_ids(LONG)
    streamed = np.concatenate(list(synth.stream(ids, chunk_frames=chunk_frames, noise_scale=0.0)))
    whole = synth.decode(synth.latents(ids, noise_scale=0.0)[0])
    # the windows are exact for the int8 graph too (measured: bit-identical to decoding the whole sentence)
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
