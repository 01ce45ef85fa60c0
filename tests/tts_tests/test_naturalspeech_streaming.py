"""Streaming synthesis: latents once, then the decoder over windows whose context is its receptive field.

Tiny randomly initialised models: exactness of windowed decoding is a property of the architecture, not of training.
"""

import numpy as np
import pytest
import torch

from tests import make_phonemizing_tiny_config, make_tiny_config
from TTS.tts.layers.naturalspeech.runtime.streaming import (
    DecoderContext,
    SynthesisStream,
    decode_in_windows,
    decoder_context,
    plan_windows,
)
from TTS.tts.models.naturalspeech import Naturalspeech

ATOL = 1e-4  # float32; measured max |stream - whole| ~5e-7
SHORT = "Hi."
LONG = "Printing, in the only sense with which we are at present concerned, differs from most if not from all the arts."

# decoders unlike the tiny default: ResBlock type 2, mixed kernels and dilations, three upsampling layers
DECODERS = {
    "tiny": {},
    "resblock2": {"resblock_type_decoder": "2", "resblock_kernel_sizes_decoder": [5],
                  "resblock_dilation_sizes_decoder": [[1, 2]]},
    "mixed": {"resblock_kernel_sizes_decoder": [3, 7], "resblock_dilation_sizes_decoder": [[1, 3, 5], [1, 2, 4]],
              "upsample_rates_decoder": [8, 8, 4], "upsample_kernel_sizes_decoder": [16, 16, 8]},
}  # fmt: skip


@pytest.fixture(scope="module")
def model():
    config = make_phonemizing_tiny_config()
    return Naturalspeech.init_from_config(config).eval()


def _decode64(model):
    decoder = model.waveform_decoder
    return lambda latents: decoder(latents)[0, 0]


@pytest.mark.parametrize("name", DECODERS)
def test_decoder_context_is_exactly_the_receptive_field(name):
    """In float64 the windowed decoding equals the whole one to rounding with the context, and not with one less."""
    model = Naturalspeech(make_tiny_config(model_args=DECODERS[name])).eval().double()
    context = model.decoder_context
    hop = model.config.audio.hop_length
    torch.manual_seed(0)
    latents = torch.randn(1, model.args.hidden_channels, 40, dtype=torch.float64)
    decode = _decode64(model)
    with torch.inference_mode():
        whole = decode(latents)

        def error(ctx: DecoderContext, chunk_frames: int = 9) -> float:
            chunks = decode_in_windows(decode, latents, plan_windows(40, chunk_frames, ctx), hop)
            return float((torch.cat(list(chunks)) - whole).abs().max())

        assert error(context) < 1e-12
        # measured 1e-9 .. 1e-5 with a frame less: far from float64 rounding, so each side's last frame is needed
        assert error(context._replace(left=context.left - 1)) > 1e-10
        assert error(context._replace(right=context.right - 1)) > 1e-10


def test_decoder_context_of_the_paper_decoder():
    # HiFi-GAN V1 (kernels 3/7/11, dilations 1/3/5, rates 8-8-2-2, kernels 16-16-4-4): 3258 samples each side
    context = decoder_context("1", [3, 7, 11], [[1, 3, 5]] * 3, [8, 8, 2, 2], [16, 16, 4, 4])
    assert context == DecoderContext(13, 13)


def test_decoder_context_rejects_an_upsampling_layer_off_the_frame_grid():
    with pytest.raises(ValueError, match="kernel - rate must be even"):
        decoder_context("1", [3], [[1, 3, 5]], [8, 8, 4], [16, 15, 8])


@pytest.mark.parametrize(("num_frames", "chunk_frames"), [(1, 4), (5, 64), (64, 64), (65, 64), (100, 7), (100, 1)])
def test_plan_windows_covers_every_frame_once(num_frames, chunk_frames):
    context = DecoderContext(3, 5)
    windows = plan_windows(num_frames, chunk_frames, context)
    assert [w.start for w in windows] == list(range(0, num_frames, chunk_frames))
    assert [w.end for w in windows[:-1]] == [w.start for w in windows[1:]] and windows[-1].end == num_frames
    for w in windows:
        assert w.window_start == max(0, w.start - context.left) and w.window_end == min(num_frames, w.end + 5)
    assert len(windows) == -(-num_frames // chunk_frames)


@pytest.mark.parametrize("bad", [0, -3])
def test_plan_windows_rejects_empty_chunks(bad):
    with pytest.raises(ValueError, match="chunk_frames"):
        plan_windows(10, bad, DecoderContext(1, 1))


@pytest.mark.parametrize("chunk_frames", [1, 8, 30, 1000])
@pytest.mark.parametrize("text", [SHORT, LONG])
def test_stream_equals_the_whole_waveform(model, text, chunk_frames):
    torch.manual_seed(3)  # the default noise scale: the prior is sampled once per stream, as in `inference`
    stream = model.inference_stream(text, chunk_frames=chunk_frames)
    chunks = list(stream)
    torch.manual_seed(3)
    ids = torch.tensor([model.tokenizer.text_to_ids(text)])
    whole = model.inference(ids)["model_outputs"][0, 0].numpy()
    joined = np.concatenate(chunks)
    assert joined.dtype == np.float32 and joined.shape == whole.shape == (stream.num_samples,)
    np.testing.assert_allclose(joined, whole, rtol=0, atol=ATOL)
    hop = model.config.audio.hop_length
    assert [len(c) for c in chunks[:-1]] == [chunk_frames * hop] * (len(chunks) - 1)
    if text == SHORT and chunk_frames >= 30:  # shorter than one chunk: one window, the whole sentence
        assert len(chunks) == 1 and stream.num_frames < chunk_frames


def test_stream_computes_the_latents_once_and_decodes_lazily(model):
    calls = {"durator": 0, "decoder": 0}

    def count(name):
        def hook(*_):
            calls[name] += 1

        return hook

    handles = [
        model.durator.register_forward_pre_hook(count("durator")),
        model.waveform_decoder.register_forward_pre_hook(count("decoder")),
    ]
    try:
        stream = model.inference_stream(LONG, chunk_frames=16)
        assert calls == {"durator": 1, "decoder": 0}  # latents up front, nothing decoded before it is asked for
        next(stream)
        assert calls["decoder"] == 1
        rest = list(stream)
        assert calls == {"durator": 1, "decoder": 1 + len(rest)} and len(stream.windows) == 1 + len(rest) > 2
        # every window is at most one chunk plus the context on both sides
        context = model.decoder_context
        assert max(w.window_end - w.window_start for w in stream.windows) <= 16 + context.left + context.right
    finally:
        for handle in handles:
            handle.remove()


def test_stream_knows_length_and_timings_before_decoding(model):
    stream = model.inference_stream(LONG, chunk_frames=16)
    timings = stream.timings()
    assert timings["phonemes"][-1]["end_sample"] == stream.num_samples
    assert len(timings["words"]) > 10
    assert sum(len(chunk) for chunk in stream) == stream.num_samples


def test_stream_with_given_token_ids_and_scales(model):
    ids = model.tokenizer.text_to_ids(LONG)
    slow = SynthesisStream(model, ids, 16, noise_scale=0.0, length_scale=1.5)
    normal = SynthesisStream(model, ids, 16, noise_scale=0.0, length_scale=1.0)
    assert abs(slow.num_frames - 1.5 * normal.num_frames) <= 1
    whole = model.inference(torch.tensor([ids]), {"noise_scale": 0.0, "length_scale": 1.5})["model_outputs"]
    np.testing.assert_allclose(np.concatenate(list(slow)), whole[0, 0].numpy(), rtol=0, atol=ATOL)


@pytest.mark.parametrize(("text", "message"), [("   ", "empty or only whitespace"), ("-", "no speakable")])
def test_stream_rejects_text_with_nothing_to_say(model, text, message):
    with pytest.raises(ValueError, match=message):
        model.inference_stream(text)


def test_synthesize_latents_is_the_path_of_inference_and_onnx_export(model, tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    calls = []
    original = Naturalspeech.synthesize_latents

    def spy(self, *args, **kwargs):
        calls.append(torch.jit.is_tracing())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Naturalspeech, "synthesize_latents", spy)
    ids = torch.tensor([model.tokenizer.text_to_ids(SHORT)])
    out = model.inference(ids, {"noise_scale": 0.0})
    assert calls == [False]
    latents = original(model, ids, torch.tensor([ids.shape[1]]), 0.0)
    with torch.inference_mode():
        decoded = model.waveform_decoder(latents.latents)
    torch.testing.assert_close(out["model_outputs"], decoded)
    model.export_onnx(str(tmp_path / "m.onnx"))
    assert calls[1:] and all(calls[1:])  # the exported graph is a trace of it
