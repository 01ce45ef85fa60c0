"""ONNX export and ONNX Runtime inference of NaturalSpeech's inference path (paper, Section 3, "Inference").

The exported graph is `text -> phoneme encoder -> durator (predicted durations) -> z' ~ p(z'|y) -> f^-1 -> memory
attention -> HiFi-GAN`, with the toolkit's VITS input/output names: `input` (token ids `[B, T_text]`), `input_lengths`
(`[B]`) and `scales` (`[noise_scale, length_scale]`), output `output` (`[B, 1, T_wav]`); a second output, `durations`
(`[B, T_text]`, frames per token), gives timings (`runtime/timings.py`). The discriminator and the posterior encoder
are not in the graph.

The graph traces `Naturalspeech.synthesize_latents`, the same code `Naturalspeech.inference` runs, then the decoder.
One difference remains: `Naturalspeech._decode_each` loops over the batch in Python, the graph decodes the padded
batch at once and zeroes each item after `frame_lengths * hop` samples. For one item this is exactly the per-item
decoding; for several items the shorter ones differ from per-item decoding in the last ~receptive field of samples
(HiFi-GAN sees the zero padding). :func:`inference_onnx` therefore runs the graph one item at a time by default
(`per_item=True`), which reproduces PyTorch's batch-equals-per-item guarantee; `per_item=False` runs one batched call.

`inference_onnx` needs only numpy and onnxruntime; torch tensors are accepted and converted. `export_onnx(...,
quantize=True)` writes the same graph with the convolutions of the HiFi-GAN decoder and of the flow static int8
(`onnx_quantization.INT8_SCOPES`) for faster CPU serving; the durations stay float32.

A model with the sup-phoneme input (`Naturalspeech.sup_phonemes`) exports a graph with a fourth input, `sup_ids`
(`[B, T_text]`, the sup-phoneme id of every token), and the sup-phoneme BPE in the model's metadata under
`SUP_PHONEME_METADATA_KEY`: the BPE runs in Python, outside the graph. `inference_onnx` computes `sup_ids` from that
metadata when the caller does not pass them (this needs the `tokenizers` package as well); other runtimes compute them
with `SupPhonemeTokenizer.from_json(<metadata>).align(ids).sup_ids`, `[PAD]` (id 0) after each item's length.

A multi-speaker model with a learned speaker embedding exports a graph with one more input, `sid` (`[B]`, int64
speaker ids), the toolkit's VITS name; its speaker names are stored in the metadata under `SPEAKERS_METADATA_KEY`
(a JSON list, in id order). The graph cannot check the ids: :func:`inference_onnx` rejects ids out of range.
Models conditioned on external d-vectors are not exported (a clear error).
"""

import copy
import functools
import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from TTS.tts.layers.naturalspeech.runtime.onnx_quantization import INT8_SCOPES, quantize_convolutions
from TTS.tts.utils.helpers import sequence_mask

logger = logging.getLogger(__name__)

OPSET_VERSION = 18  # what the toolkit's VITS export uses
INPUT_NAMES = ["input", "input_lengths", "scales"]
OUTPUT_NAMES = ["output"]  # what `inference_onnx` reads; the graph has `durations` after it
GRAPH_OUTPUT_NAMES = [*OUTPUT_NAMES, "durations"]
DYNAMIC_AXES = {
    "input": {0: "batch_size", 1: "phonemes"},
    "input_lengths": {0: "batch_size"},
    "output": {0: "batch_size", 2: "samples"},
    "durations": {0: "batch_size", 1: "phonemes"},
}
SUP_INPUT_NAME = "sup_ids"  # the graph input of models with the sup-phoneme input, after INPUT_NAMES
SUP_PHONEME_METADATA_KEY = "naturalspeech_sup_phoneme_bpe"  # the sup-phoneme BPE (`SupPhonemeTokenizer.to_json`)
SPEAKER_INPUT_NAME = "sid"  # the graph input of multi-speaker models, last; the toolkit's VITS export uses this name
SPEAKERS_METADATA_KEY = "naturalspeech_speakers"  # JSON list of the speaker names, in id order
SPINNING_CONFIG_KEY = "session.intra_op.allow_spinning"  # ONNX Runtime session option; "0" in `load_onnx`
DISABLED_OPTIMIZERS_CONFIG_KEY = "optimization.disable_specified_optimizers"  # "NhwcTransformer" in `load_onnx`
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
    """`Naturalspeech.synthesize_latents`, then the decoder over the padded batch: the traced single graph.

    Shapes:
        - tokens: :math:`[B, T_text]` (int64)
        - token_lengths: :math:`[B]` (int64)
        - scales: :math:`[2]` (float32) `[noise_scale, length_scale]`
        - sup_ids: :math:`[B, T_text]` (int64), only for a model with the sup-phoneme input
        - sid: :math:`[B]` (int64), only for a multi-speaker model
        - output: :math:`[B, 1, T_wav]`, zero after each item's `frame_length * hop` samples
        - durations: :math:`[B, T_text]` (float32) frames per token, for timings
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.hop_length = model.config.audio.hop_length
        self.extra_inputs = extra_input_names(model)  # the optional inputs after `scales`, in order

    def forward(self, tokens: Tensor, token_lengths: Tensor, scales: Tensor, *extra: Tensor) -> tuple[Tensor, Tensor]:
        out = traced_latents(self.model, self.extra_inputs, tokens, token_lengths, scales, extra)
        wav = self.model.waveform_decoder(out.latents, g=out.speaker)  # [B, 1, T_feats * hop]
        wav_mask = sequence_mask(out.frame_lengths * self.hop_length, wav.size(2)).unsqueeze(1).to(wav.dtype)
        return wav * wav_mask, out.durations


def traced_latents(
    model: nn.Module, extra_names: list[str], tokens: Tensor, token_lengths: Tensor, scales: Tensor, extra
) -> Any:
    """`model.synthesize_latents` with the graph's inputs: `scales` is `[noise_scale, length_scale]`, `extra` the
    optional inputs named by `extra_input_names`; shared by the single graph and the streaming latents graph."""
    extra_inputs = dict(zip(extra_names, extra))
    return model.synthesize_latents(
        tokens,
        token_lengths,
        scales[0],
        scales[1],
        sup_ids=extra_inputs.get(SUP_INPUT_NAME),
        speaker_ids=extra_inputs.get(SPEAKER_INPUT_NAME),
    )


def extra_input_names(model: nn.Module) -> list[str]:
    """The graph inputs after `input`, `input_lengths`, `scales`: `sup_ids` and `sid`, as the model needs them.

    Raises:
        ValueError: The model is conditioned on external d-vectors (no ONNX export yet).
    """
    names = [SUP_INPUT_NAME] if getattr(model, "sup_phonemes", None) is not None else []
    if getattr(model, "speaker_embedding", None) is not None:
        if model.speaker_embedding.emb_g is None:
            msg = "ONNX export of a model conditioned on d-vectors (use_d_vector_file) is not supported."
            raise ValueError(msg)
        names.append(SPEAKER_INPUT_NAME)
    return names


def export_copy(model: nn.Module) -> nn.Module:
    """A CPU eval copy of `model` without discriminator or ONNX session, with weight norm folded into the weights."""
    skipped = ("disc", "duration_disc", "onnx_sess")
    memo = {id(getattr(model, name, None)): None for name in skipped if getattr(model, name, None)}
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
        quantize: Make the convolutions of the HiFi-GAN decoder and of the flow static int8 (`onnx_quantization.py`):
            2-3x faster CPU synthesis than PyTorch eager at the paper size, at the cost of quantization noise in the
            waveform; the phoneme encoder and the durator stay float32, so the durations do not move. Defaults to
            False.
        calibration_texts: Sentences whose synthesis calibrates the int8 activation ranges (`quantize` only).
            Defaults to the config's `test_sentences`, else a few built-in English sentences.
        verbose: Print the exported graph. Defaults to False.

    Returns:
        The path of the written file.
    """
    output_path = Path(output_path)
    extra_input_names(model)  # a model that cannot be exported fails before anything is written
    if not quantize:
        _export_float(model, output_path, verbose)
        _store_sup_phonemes(model, output_path)
        logger.info("NaturalSpeech exported to ONNX: %s", output_path)
        return output_path
    feeds = calibration_feeds(model, calibration_texts)  # bad texts fail before the slow export
    with tempfile.TemporaryDirectory(prefix="ns_onnx_") as workdir:
        float_path = _export_float(model, Path(workdir) / "float32.onnx", verbose)
        quantize_convolutions(float_path, output_path, feeds, INT8_SCOPES)
    _store_sup_phonemes(model, output_path)
    logger.info("NaturalSpeech exported to ONNX with an int8 decoder and flow: %s", output_path)
    return output_path


def _export_float(model: nn.Module, output_path: Path, verbose: bool) -> Path:
    wrapper = _OnnxInference(export_copy(model)).eval()
    num_chars = model.args.num_chars
    dummy_tokens = torch.randint(low=1, high=max(2, num_chars), size=(1, 50), dtype=torch.long)
    dummy_lengths = torch.tensor([dummy_tokens.size(1)], dtype=torch.long)
    dummy_scales = torch.tensor([model.noise_scale, model.length_scale], dtype=torch.float32)
    inputs, input_names, dynamic_axes = (dummy_tokens, dummy_lengths, dummy_scales), INPUT_NAMES, DYNAMIC_AXES
    for name in wrapper.extra_inputs:
        if name == SUP_INPUT_NAME:
            inputs = (*inputs, torch.zeros_like(dummy_tokens))  # any ids below the sup-phoneme vocabulary size trace
            dynamic_axes = {**dynamic_axes, SUP_INPUT_NAME: DYNAMIC_AXES["input"]}
        else:
            inputs = (*inputs, torch.zeros_like(dummy_lengths))  # speaker id 0
            dynamic_axes = {**dynamic_axes, SPEAKER_INPUT_NAME: {0: "batch_size"}}
        input_names = [*input_names, name]
    with torch.no_grad():
        torch.onnx.export(
            wrapper,
            inputs,
            str(output_path),
            opset_version=OPSET_VERSION,
            input_names=input_names,
            output_names=GRAPH_OUTPUT_NAMES,
            dynamic_axes=dynamic_axes,
            verbose=verbose,
            dynamo=False,
        )
    return output_path


def _store_sup_phonemes(model: nn.Module, path: Path) -> None:
    """Write the model's sup-phoneme BPE and speaker names (if any) into the metadata of the ONNX file at `path`.

    Done on the final file: the int8 pass writes a new model and need not keep the float graph's metadata.
    """
    entries = {}
    sup_phonemes = getattr(model, "sup_phonemes", None)
    if sup_phonemes is not None:
        entries[SUP_PHONEME_METADATA_KEY] = sup_phonemes.tokenizer.to_json()
    if SPEAKER_INPUT_NAME in extra_input_names(model):
        names = model._speaker_names() or [str(i) for i in range(model.speaker_embedding.num_speakers)]
        entries[SPEAKERS_METADATA_KEY] = json.dumps(names)
    if entries:
        store_metadata(path, entries)


def store_metadata(path: str | Path, entries: dict[str, str]) -> None:
    """Set `entries` in the metadata of the ONNX file at `path` (replacing entries of the same keys)."""
    import onnx

    graph = onnx.load(str(path))
    kept = [(p.key, p.value) for p in graph.metadata_props if p.key not in entries]
    del graph.metadata_props[:]
    for key, value in [*kept, *entries.items()]:
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(graph, str(path))


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
    sup_phonemes = getattr(model, "sup_phonemes", None)
    feeds = []
    for text in texts:
        ids = model.speakable_ids(text)
        tokens = np.array([ids], dtype=np.int64)
        feed = {"input": tokens, "input_lengths": np.array([len(ids)], dtype=np.int64), "scales": scales}
        if sup_phonemes is not None:
            feed[SUP_INPUT_NAME] = np.array([sup_phonemes.tokenizer.align(ids).sup_ids], dtype=np.int64)
        if getattr(model, "speaker_embedding", None) is not None:
            feed[SPEAKER_INPUT_NAME] = np.zeros(1, dtype=np.int64)  # calibrated on the first speaker
        feeds.append(feed)
    return feeds


def load_onnx(model_path: str | Path, cuda: bool = False, threads: int | None = None) -> Any:
    """An ONNX Runtime session of an exported model (CPU, or CUDA when `cuda`; `threads` CPU threads, default all)."""
    import onnxruntime as ort

    providers = [("CUDAExecutionProvider", {"cudnn_conv_algo_search": "DEFAULT"})] if cuda else []
    providers.append("CPUExecutionProvider")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    # Workers that block instead of spinning between kernels. Each session owns its thread pool, and the streaming
    # synthesizer alternates two sessions (latents, decoder) sentence by sentence: a pool's spinning workers kept a
    # core busy while the other session ran, so 2 threads were *slower* than 1. Measured on 2 cores, idle machine,
    # paper size with Piper medium's decoder, int8 (2026-11-30): RTF 0.043 at 1 thread; at 2 threads 0.054 spinning,
    # 0.033 blocking. Even one session alone was no faster spinning. 1 thread has no workers: no change there.
    options.add_session_config_entry(SPINNING_CONFIG_KEY, "0")
    # Int8 convolutions in NCHW, as exported. ORT's NHWC layout pass wraps each `QLinearConv` in Transposes and, across
    # the float Adds of the residual blocks, float Transposes plus extra Quantize/Dequantize pairs (decoder: 159 nodes
    # instead of 101, 34 of them Transposes): the int8 decoder took RTF 0.028 with it and 0.025 without (1 thread; 2
    # threads 0.019 and 0.017). Same integer arithmetic; float graphs have no node this pass rewrites.
    options.add_session_config_entry(DISABLED_OPTIMIZERS_CONFIG_KEY, "NhwcTransformer")
    return ort.InferenceSession(str(model_path), sess_options=options, providers=providers)


def inference_onnx(
    session: Any,
    x: Any,
    x_lengths: Any = None,
    noise_scale: float = 0.667,
    length_scale: float = 1.0,
    *,
    per_item: bool = True,
    sup_ids: Any = None,
    sid: Any = None,
) -> np.ndarray:
    """Run an exported model; numpy in, numpy out (torch tensors are accepted).

    Args:
        session: From :func:`load_onnx`.
        x: Token ids `[B, T_text]` (or `[T_text]` for one item).
        x_lengths: Valid tokens per item `[B]`; None for all full length.
        noise_scale: Prior sampling temperature (0 is deterministic).
        length_scale: Factor on the predicted durations; larger is slower speech.
        per_item: Decode each item on its own (equal to PyTorch's batched inference); False for one batched call.
        sup_ids: Sup-phoneme ids `[B, T_text]` for a graph with the `sup_ids` input; None computes them with the
            BPE stored in the model's metadata. Ignored by phoneme-only graphs.
        sid: Speaker ids `[B]` (or one id for all items) for a multi-speaker graph (input `sid`); required there,
            ignored by single-speaker graphs.

    Raises:
        ValueError: An item has no token; a multi-speaker graph gets no speaker id or one out of range.

    Returns:
        Waveforms `[B, 1, T_wav]`, zero after each item's end (`T_wav` is the longest item's length).
    """
    x = _as_int64(x)
    if x.ndim == 1:
        x = x[None]
    if x_lengths is None:
        x_lengths = np.full((x.shape[0],), x.shape[1], dtype=np.int64)
    x_lengths = _as_int64(x_lengths)
    if x.shape[1] == 0 or (x_lengths < 1).any():
        msg = f"inference_onnx: every item needs at least one token, got lengths {x_lengths.tolist()}"
        raise ValueError(msg)
    scales = np.array([noise_scale, length_scale], dtype=np.float32)
    graph_inputs = {i.name for i in session.get_inputs()}
    if SUP_INPUT_NAME in graph_inputs:
        sup_ids = session_sup_ids(session, x, x_lengths) if sup_ids is None else _as_int64(sup_ids).reshape(x.shape)
    else:
        sup_ids = None
    sid = session_speaker_ids(session, sid, x.shape[0]) if SPEAKER_INPUT_NAME in graph_inputs else None

    def run(index: slice | None, lengths: np.ndarray) -> np.ndarray:
        rows = slice(None) if index is None else index
        feed = {"input": x[rows], "input_lengths": lengths, "scales": scales}
        if sup_ids is not None:
            feed[SUP_INPUT_NAME] = sup_ids[rows]
        if sid is not None:
            feed[SPEAKER_INPUT_NAME] = sid[rows if index is None else index[0]]
        return session.run(OUTPUT_NAMES, feed)[0]

    if not per_item or x.shape[0] == 1:
        return run(None, x_lengths)
    wavs = [run(np.s_[i : i + 1, : x_lengths[i]], x_lengths[i : i + 1]) for i in range(x.shape[0])]
    out = np.zeros((x.shape[0], 1, max(w.shape[2] for w in wavs)), dtype=wavs[0].dtype)
    for index, wav in enumerate(wavs):
        out[index, :, : wav.shape[2]] = wav[0]
    return out


def session_speaker_ids(session: Any, sid: Any, batch_size: int) -> np.ndarray:
    """Speaker ids `[B]` for a multi-speaker graph, checked against the speakers in its metadata."""
    names = json.loads(session.get_modelmeta().custom_metadata_map.get(SPEAKERS_METADATA_KEY, "[]"))
    if sid is None:
        msg = f"This ONNX model is multi-speaker: pass `sid` (speaker ids 0 to {len(names) - 1}: {', '.join(names)})."
        raise ValueError(msg)
    sid = np.broadcast_to(_as_int64(sid).reshape(-1), (batch_size,)).copy()
    bad = [int(i) for i in sid if names and not 0 <= int(i) < len(names)]
    if bad:
        msg = f"Speaker id {bad[0]} is out of range: this ONNX model has speaker ids 0 to {len(names) - 1}."
        raise ValueError(msg)
    return sid


def _as_int64(values: Any) -> np.ndarray:
    return np.asarray(values.detach().cpu() if hasattr(values, "detach") else values, dtype=np.int64)


def session_sup_ids(session: Any, x: np.ndarray, x_lengths: np.ndarray) -> np.ndarray:
    """The sup-phoneme ids of a padded batch, from the BPE in the session's model metadata."""
    metadata = session.get_modelmeta().custom_metadata_map
    if SUP_PHONEME_METADATA_KEY not in metadata:
        msg = f"The ONNX model takes `{SUP_INPUT_NAME}` but stores no sup-phoneme BPE: pass `sup_ids` yourself."
        raise ValueError(msg)
    from TTS.tts.layers.naturalspeech.pretraining.sup_phoneme_embedding import padded_sup_ids

    rows = padded_sup_ids(_sup_phoneme_tokenizer(metadata[SUP_PHONEME_METADATA_KEY]), x.tolist(), x_lengths.tolist())
    return np.array(rows, dtype=np.int64).reshape(x.shape)


@functools.lru_cache(maxsize=4)
def _sup_phoneme_tokenizer(bpe_json: str) -> Any:
    """The tokenizer of a stored BPE, parsed once per model rather than once per call."""
    from TTS.tts.layers.naturalspeech.pretraining.corpus import SupPhonemeTokenizer

    return SupPhonemeTokenizer.from_json(bpe_json)
