"""ONNX export and ONNX Runtime inference of NaturalSpeech's inference path (paper, Section 3, "Inference").

The exported graph is `text -> phoneme encoder -> durator (predicted durations) -> z' ~ p(z'|y) -> f^-1 -> memory
attention -> HiFi-GAN`, with the toolkit's VITS input/output names: `input` (token ids `[B, T_text]`), `input_lengths`
(`[B]`) and `scales` (`[noise_scale, length_scale]`), output `output` (`[B, 1, T_wav]`). The discriminator and the
posterior encoder are not in the graph.

Two parts of `Naturalspeech.inference` do not survive tracing and are rebuilt here from the same sub-modules:

- `Durator.forward` sizes the frame mask with `int(frame_lengths.max())`, a Python number that tracing would freeze to
  the dummy input's length. :class:`_OnnxInference` builds the mask from the tensor `frame_lengths.max()`, so the
  number of frames follows the predicted durations at run time (`T_feats` is a dynamic axis of the graph).
- `Naturalspeech._decode_each` loops over the batch in Python. The graph decodes the padded batch at once and zeroes
  each item after `frame_lengths * hop` samples. For one item this is exactly the per-item decoding; for several
  items the shorter ones differ from per-item decoding in the last ~receptive field of samples (HiFi-GAN sees the
  zero padding). :func:`inference_onnx` therefore runs the graph one item at a time by default
  (`per_item=True`), which reproduces PyTorch's batch-equals-per-item guarantee; `per_item=False` runs one batched call.

`inference_onnx` needs only numpy and onnxruntime; torch tensors are accepted and converted. `export_onnx(...,
quantize=True)` writes the same graph with an int8 HiFi-GAN decoder (`onnx_quantization.py`) for faster CPU serving.
"""

import copy
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from TTS.tts.layers.naturalspeech.runtime.onnx_quantization import quantize_decoder
from TTS.tts.utils.helpers import sequence_mask

logger = logging.getLogger(__name__)

OPSET_VERSION = 18  # what the toolkit's VITS export uses
INPUT_NAMES = ["input", "input_lengths", "scales"]
OUTPUT_NAMES = ["output"]
DYNAMIC_AXES = {
    "input": {0: "batch_size", 1: "phonemes"},
    "input_lengths": {0: "batch_size"},
    "output": {0: "batch_size", 2: "samples"},
}
# Harvard sentences: varied phonemes and lengths, for int8 calibration when the config has no test sentences
DEFAULT_CALIBRATION_TEXTS = [
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
]


class _OnnxInference(nn.Module):
    """Trace-friendly copy of `Naturalspeech.inference` (predicted durations, no speaker/language inputs).

    Shapes:
        - tokens: :math:`[B, T_text]` (int64)
        - token_lengths: :math:`[B]` (int64)
        - scales: :math:`[2]` (float32) `[noise_scale, length_scale]`
        - output: :math:`[B, 1, T_wav]`, zero after each item's `frame_length * hop` samples
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.switches = model._inference_switches()
        self.hop_length = model.config.audio.hop_length
        self.max_frames = model.args.max_inference_len

    def forward(self, tokens: Tensor, token_lengths: Tensor, scales: Tensor) -> Tensor:
        model, durator = self.model, self.model.durator
        noise_scale, length_scale = scales[0], scales[1]
        h, x_mask = model.phoneme_encoder(tokens, token_lengths)
        log_durations = durator.duration_predictor(h, x_mask)
        durations = durator.predicted_durations(log_durations, x_mask, length_scale)
        if durator.upsampling is None:
            durations = torch.round(durations)
        frame_lengths = durator.frame_lengths(durations, self.max_frames)
        # tensor-valued max length: the frame axis stays dynamic in the traced graph
        frame_mask = sequence_mask(frame_lengths, frame_lengths.max()).unsqueeze(1).to(h.dtype)  # [B, 1, T_feats]
        if durator.upsampling is None:
            from TTS.tts.layers.naturalspeech.durator import hard_length_regulation

            frame_hidden, _ = hard_length_regulation(h, durations, x_mask, frame_mask)
        else:
            frame_hidden, _ = durator.upsampling(h, x_mask, durations, frame_mask)
        prior_mean = durator.proj_mean(frame_hidden) * frame_mask
        prior_log_std = durator.proj_log_std(frame_hidden) * frame_mask
        z = model._sample_prior(prior_mean, prior_log_std, frame_mask, noise_scale)
        z = model._decoder_input(z, frame_mask, self.switches)
        wav = model.waveform_decoder(z)  # [B, 1, T_feats * hop]
        wav_mask = sequence_mask(frame_lengths * self.hop_length, wav.size(2)).unsqueeze(1).to(wav.dtype)
        return wav * wav_mask


def export_copy(model: nn.Module) -> nn.Module:
    """A CPU eval copy of `model` without discriminator or ONNX session, with weight norm folded into the weights."""
    memo = {id(getattr(model, name, None)): None for name in ("disc", "onnx_sess") if getattr(model, name, None)}
    export_model = copy.deepcopy(model, memo).cpu().eval()
    for module in export_model.modules():
        if parametrize.is_parametrized(module, "weight"):
            # `deepcopy` shares the parametrized class with the original model: give the copy its own class first,
            # so removing the parametrization leaves the original intact (as the toolkit's VITS export does).
            cls = type(module)
            module.__class__ = type(cls.__name__, cls.__bases__, dict(vars(cls)))
            parametrize.remove_parametrizations(module, "weight")
    return export_model


def export_onnx(
    model: nn.Module,
    output_path: str | Path,
    *,
    quantize: bool = False,
    calibration_texts: Sequence[str] | None = None,
    verbose: bool = False,
) -> Path:
    """Export the inference path of a NaturalSpeech model to an ONNX file.

    Args:
        model: A `Naturalspeech` model (left unchanged; a CPU copy is exported).
        output_path: Where to write the `.onnx` file.
        quantize: Make the HiFi-GAN decoder's convolutions static int8 (`onnx_quantization.py`): 2-3x faster
            CPU synthesis than PyTorch eager at the paper size, at the cost of quantization noise in the waveform.
            Defaults to False.
        calibration_texts: Sentences whose synthesis calibrates the int8 activation ranges (`quantize` only).
            Defaults to the config's `test_sentences`, else a few built-in English sentences.
        verbose: Print the exported graph. Defaults to False.

    Returns:
        The path of the written file.
    """
    output_path = Path(output_path)
    if not quantize:
        _export_float(model, output_path, verbose)
        logger.info("NaturalSpeech exported to ONNX: %s", output_path)
        return output_path
    feeds = calibration_feeds(model, calibration_texts)  # bad texts fail before the slow export
    with tempfile.TemporaryDirectory(prefix="ns_onnx_") as workdir:
        float_path = _export_float(model, Path(workdir) / "float32.onnx", verbose)
        quantize_decoder(float_path, output_path, feeds)
    logger.info("NaturalSpeech exported to ONNX with an int8 decoder: %s", output_path)
    return output_path


def _export_float(model: nn.Module, output_path: Path, verbose: bool) -> Path:
    wrapper = _OnnxInference(export_copy(model)).eval()
    num_chars = model.args.num_chars
    dummy_tokens = torch.randint(low=1, high=max(2, num_chars), size=(1, 50), dtype=torch.long)
    dummy_lengths = torch.tensor([dummy_tokens.size(1)], dtype=torch.long)
    dummy_scales = torch.tensor([model.noise_scale, model.length_scale], dtype=torch.float32)
    with torch.no_grad():
        torch.onnx.export(
            wrapper,
            (dummy_tokens, dummy_lengths, dummy_scales),
            str(output_path),
            opset_version=OPSET_VERSION,
            input_names=INPUT_NAMES,
            output_names=OUTPUT_NAMES,
            dynamic_axes=DYNAMIC_AXES,
            verbose=verbose,
            dynamo=False,
        )
    return output_path


def calibration_feeds(model: nn.Module, texts: Sequence[str] | None = None) -> list[dict[str, np.ndarray]]:
    """Graph inputs for int8 calibration: each text tokenized by the model's tokenizer, at the model's scales."""
    if texts is None:
        texts = [t for t in getattr(model.config, "test_sentences", None) or [] if isinstance(t, str)]
        texts = texts or DEFAULT_CALIBRATION_TEXTS
    if isinstance(texts, str) or not texts:
        raise ValueError(f"calibration_texts must be a non-empty list of sentences, got {texts!r}")
    if model.tokenizer is None:
        raise ValueError("int8 export needs the model's tokenizer for calibration: build it with `init_from_config`")
    scales = np.array([model.noise_scale, model.length_scale], dtype=np.float32)
    feeds = []
    for text in texts:
        ids = model.speakable_ids(text)
        tokens = np.array([ids], dtype=np.int64)
        feeds.append({"input": tokens, "input_lengths": np.array([len(ids)], dtype=np.int64), "scales": scales})
    return feeds


def load_onnx(model_path: str | Path, cuda: bool = False, threads: int | None = None) -> Any:
    """An ONNX Runtime session of an exported model (CPU, or CUDA when `cuda`; `threads` CPU threads, default all)."""
    import onnxruntime as ort

    providers = [("CUDAExecutionProvider", {"cudnn_conv_algo_search": "DEFAULT"})] if cuda else []
    providers.append("CPUExecutionProvider")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(model_path), sess_options=options, providers=providers)


def inference_onnx(
    session: Any,
    x: Any,
    x_lengths: Any = None,
    noise_scale: float = 0.667,
    length_scale: float = 1.0,
    *,
    per_item: bool = True,
) -> np.ndarray:
    """Run an exported model; numpy in, numpy out (torch tensors are accepted).

    Args:
        session: From :func:`load_onnx`.
        x: Token ids `[B, T_text]` (or `[T_text]` for one item).
        x_lengths: Valid tokens per item `[B]`; None for all full length.
        noise_scale: Prior sampling temperature (0 is deterministic).
        length_scale: Factor on the predicted durations; larger is slower speech.
        per_item: Decode each item on its own (equal to PyTorch's batched inference); False for one batched call.

    Returns:
        Waveforms `[B, 1, T_wav]`, zero after each item's end (`T_wav` is the longest item's length).
    """
    x = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.int64)
    if x.ndim == 1:
        x = x[None]
    if x_lengths is None:
        x_lengths = np.full((x.shape[0],), x.shape[1], dtype=np.int64)
    x_lengths = np.asarray(x_lengths.detach().cpu() if hasattr(x_lengths, "detach") else x_lengths, dtype=np.int64)
    if x.shape[1] == 0 or (x_lengths < 1).any():
        msg = f"inference_onnx: every item needs at least one token, got lengths {x_lengths.tolist()}"
        raise ValueError(msg)
    scales = np.array([noise_scale, length_scale], dtype=np.float32)

    def run(tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        return session.run(OUTPUT_NAMES, {"input": tokens, "input_lengths": lengths, "scales": scales})[0]

    if not per_item or x.shape[0] == 1:
        return run(x, x_lengths)
    wavs = [run(x[i : i + 1, : x_lengths[i]], x_lengths[i : i + 1]) for i in range(x.shape[0])]
    out = np.zeros((x.shape[0], 1, max(w.shape[2] for w in wavs)), dtype=wavs[0].dtype)
    for index, wav in enumerate(wavs):
        out[index, :, : wav.shape[2]] = wav[0]
    return out
