"""Streaming with ONNX Runtime: two graphs, text -> latents + durations, and latent window -> audio.

`export_streaming_onnx` writes, into one folder:

- `latents.onnx`: a trace of `Naturalspeech.synthesize_latents` (phoneme encoder, durator, prior sample, inverse flow,
  memory bank). Inputs as the single graph of `onnx_export.py` (`input`, `input_lengths`, `scales`, and `sup_ids` for
  a model with the sup-phoneme input); outputs `latents` (`[B, C, T_feats]`, zero after each item's frames),
  `durations` (`[B, T_text]`, frames per token: the timings, `timings.py`) and `frame_lengths` (`[B]`).
- `decoder.onnx`: the HiFi-GAN decoder, input `latents` (`[B, C, T_window]`, any length), output `audio`
  (`[B, 1, T_window * hop]`).
- with `quantize=True` also `decoder_int8.onnx`, the decoder's convolutions static int8 (`onnx_quantization.py`),
  calibrated on the latents of `calibration_texts`, and `latents_int8.onnx`, the latents graph with the flow's
  convolutions static int8, calibrated on the inputs of the same texts. The phoneme encoder and the durator stay
  float32 (opt-in: `quantize_phoneme_encoder`), so the int8 graph predicts the same durations as the float one: the
  flow runs after them. At the paper's hidden size the latents graph is about half the time of an int8 decoder of
  Piper's size, and the flow half of the latents graph (`benchmarks/README.md`).

A multi-speaker model's `latents.onnx` also takes `sid` (`[B]`, speaker ids, after `sup_ids`) and outputs `speaker`
(`[B, C_g, 1]`, the speaker vector), which `decoder.onnx` takes as its second input, `speaker`: the decoder is
conditioned on the speaker too. The speaker names are in the metadata of `latents.onnx` (`SPEAKERS_METADATA_KEY`).

Every file's metadata holds what a runtime needs besides the graphs: the hop length, the sample rate, the decoder's
context in frames (`streaming.decoder_context`) and the model's default scales (and the sup-phoneme BPE in
`latents.onnx`). :class:`OnnxStreamingSynthesizer` runs the pair through onnxruntime on numpy arrays, with the window
arithmetic of the PyTorch stream (`streaming.plan_windows`), so both streams cut the same windows.
"""

import functools
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from TTS.tts.layers.naturalspeech.runtime.onnx_export import (
    DYNAMIC_AXES,
    INPUT_NAMES,
    OPSET_VERSION,
    SPEAKER_INPUT_NAME,
    SPEAKERS_METADATA_KEY,
    SUP_INPUT_NAME,
    SUP_PHONEME_METADATA_KEY,
    calibration_feeds,
    export_copy,
    extra_input_names,
    load_onnx,
    session_speaker_ids,
    session_sup_ids,
    store_metadata,
    traced_latents,
)
from TTS.tts.layers.naturalspeech.runtime.onnx_quantization import (
    FLOW_SCOPE,
    PHONEME_ENCODER_SCOPE,
    quantize_convolutions,
    quantize_decoder,
)
from TTS.tts.layers.naturalspeech.runtime.streaming import (
    DEFAULT_CHUNK_FRAMES,
    DecoderContext,
    LatentStream,
)

logger = logging.getLogger(__name__)

LATENTS_FILE, DECODER_FILE, DECODER_INT8_FILE = "latents.onnx", "decoder.onnx", "decoder_int8.onnx"
LATENTS_INT8_FILE = "latents_int8.onnx"  # absent from folders exported before the flow was quantized
LATENTS_OUTPUTS = ["latents", "durations", "frame_lengths"]
DECODER_INPUT, DECODER_OUTPUT = "latents", "audio"
SPEAKER_OUTPUT = (
    "speaker"  # the speaker vector: an output of `latents.onnx`, an input of `decoder.onnx` (multi-speaker)
)
HOP_LENGTH_KEY = "naturalspeech_hop_length"
SAMPLE_RATE_KEY = "naturalspeech_sample_rate"
CONTEXT_KEY = "naturalspeech_decoder_context"  # "left,right" latent frames
SCALES_KEY = "naturalspeech_scales"  # "noise_scale,length_scale", the model's defaults


class StreamingOnnxFiles(NamedTuple):
    """The files `export_streaming_onnx` wrote (the int8 graphs are None without `quantize`)."""

    latents: Path
    decoder: Path
    decoder_int8: Path | None
    latents_int8: Path | None = None


def export_streaming_onnx(
    model: Any,
    output_dir: str | Path,
    *,
    quantize: bool = False,
    calibration_texts: Sequence[str] | None = None,
    quantize_phoneme_encoder: bool = False,
    verbose: bool = False,
) -> StreamingOnnxFiles:
    """Export a NaturalSpeech model as the two graphs of streaming synthesis (see the module docstring).

    Args:
        model: A `Naturalspeech` model (left unchanged; a CPU copy is exported).
        output_dir: Folder to write `latents.onnx`, `decoder.onnx` (and `decoder_int8.onnx`, `latents_int8.onnx`)
            into; created if needed.
        quantize: Also write `decoder_int8.onnx` and `latents_int8.onnx`, the decoder and the flow with static int8
            convolutions (faster on CPUs with VNNI at the paper's sizes; see `onnx_quantization.py`). Defaults to
            False.
        calibration_texts: Sentences whose inputs and latents calibrate the int8 activation ranges (`quantize`
            only); defaults as in `onnx_export.export_onnx`.
        quantize_phoneme_encoder: Make the phoneme encoder's convolutions int8 in `latents_int8.onnx` as well
            (`quantize` only). Faster, but the encoder is before the durations, so it moves them (the speech length
            and the timings; measured in `benchmarks/README.md`). Defaults to False.
        verbose: Print the exported graphs. Defaults to False.

    Raises:
        ValueError: The model is conditioned on d-vectors (not exported).
    """
    multi_speaker = SPEAKER_INPUT_NAME in extra_input_names(model)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    feeds = calibration_feeds(model, calibration_texts) if quantize else None  # bad texts fail before the export
    export_model = export_copy(model)
    files = StreamingOnnxFiles(output_dir / LATENTS_FILE, output_dir / DECODER_FILE, None)
    with torch.no_grad():
        _export_latents(export_model, files.latents, verbose)
        _export_decoder(export_model, files.decoder, verbose)
    context = model.decoder_context
    metadata = {
        HOP_LENGTH_KEY: str(model.config.audio.hop_length),
        SAMPLE_RATE_KEY: str(model.config.audio.sample_rate),
        CONTEXT_KEY: f"{context.left},{context.right}",
        SCALES_KEY: f"{model.noise_scale},{model.length_scale}",
    }
    sup_phonemes = getattr(model, "sup_phonemes", None)
    latents_metadata = dict(metadata)
    if sup_phonemes is not None:
        latents_metadata[SUP_PHONEME_METADATA_KEY] = sup_phonemes.tokenizer.to_json()
    if multi_speaker:
        names = model._speaker_names() or [str(i) for i in range(model.speaker_embedding.num_speakers)]
        latents_metadata[SPEAKERS_METADATA_KEY] = json.dumps(names)
    store_metadata(files.latents, latents_metadata)
    store_metadata(files.decoder, metadata)
    if quantize:
        files = files._replace(decoder_int8=output_dir / DECODER_INT8_FILE)
        latents_session = load_onnx(files.latents)
        decoder_feeds = []
        for feed in feeds:
            if multi_speaker:
                latents, lengths, speaker = latents_session.run(["latents", "frame_lengths", SPEAKER_OUTPUT], feed)
                decoder_feeds.append({DECODER_INPUT: latents[:, :, : int(lengths[0])], SPEAKER_OUTPUT: speaker})
            else:
                latents, lengths = latents_session.run(["latents", "frame_lengths"], feed)
                decoder_feeds.append({DECODER_INPUT: latents[:, :, : int(lengths[0])]})
        quantize_decoder(files.decoder, files.decoder_int8, decoder_feeds)
        store_metadata(files.decoder_int8, metadata)
        files = files._replace(latents_int8=output_dir / LATENTS_INT8_FILE)
        scopes = [FLOW_SCOPE, PHONEME_ENCODER_SCOPE] if quantize_phoneme_encoder else [FLOW_SCOPE]
        quantize_convolutions(files.latents, files.latents_int8, feeds, scopes)
        store_metadata(files.latents_int8, latents_metadata)
    logger.info("NaturalSpeech exported for streaming to %s: %s", output_dir, ", ".join(p.name for p in files if p))
    return files


class _LatentsGraph(nn.Module):
    """`Naturalspeech.synthesize_latents` with the scales as one tensor input, as in `onnx_export._OnnxInference`."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.extra_inputs = extra_input_names(model)

    def forward(self, tokens: Tensor, token_lengths: Tensor, scales: Tensor, *extra: Tensor):
        out = traced_latents(self.model, self.extra_inputs, tokens, token_lengths, scales, extra)
        if out.speaker is None:
            return out.latents, out.durations, out.frame_lengths
        return out.latents, out.durations, out.frame_lengths, out.speaker


class _DecoderGraph(nn.Module):
    """The decoder under the model's attribute name, so the traced nodes read `/waveform_decoder/...`: the scope the
    int8 pass quantizes (`onnx_quantization.DECODER_SCOPE`)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.waveform_decoder = model.waveform_decoder

    def forward(self, latents: Tensor, speaker: Tensor | None = None) -> Tensor:
        return self.waveform_decoder(latents, g=speaker)


def _export_latents(model: nn.Module, path: Path, verbose: bool) -> None:
    tokens = torch.randint(low=1, high=max(2, model.args.num_chars), size=(1, 50), dtype=torch.long)
    inputs = (tokens, torch.tensor([tokens.size(1)]), torch.tensor([model.noise_scale, model.length_scale]))
    input_names = list(INPUT_NAMES)
    dynamic_axes = {
        "input": DYNAMIC_AXES["input"],
        "input_lengths": DYNAMIC_AXES["input_lengths"],
        "latents": {0: "batch_size", 2: "frames"},
        "durations": {0: "batch_size", 1: "phonemes"},
        "frame_lengths": {0: "batch_size"},
    }
    graph = _LatentsGraph(model).eval()
    output_names = list(LATENTS_OUTPUTS)
    for name in graph.extra_inputs:
        if name == SUP_INPUT_NAME:
            inputs = (*inputs, torch.zeros_like(tokens))
            dynamic_axes[SUP_INPUT_NAME] = DYNAMIC_AXES["input"]
        else:
            inputs = (*inputs, torch.zeros(1, dtype=torch.long))  # speaker id 0
            dynamic_axes[SPEAKER_INPUT_NAME] = {0: "batch_size"}
            output_names.append(SPEAKER_OUTPUT)
            dynamic_axes[SPEAKER_OUTPUT] = {0: "batch_size"}
        input_names.append(name)
    torch.onnx.export(
        graph,
        inputs,
        str(path),
        opset_version=OPSET_VERSION,
        input_names=input_names,
        output_names=output_names,
        dynamic_axes=dynamic_axes,
        verbose=verbose,
        dynamo=False,
    )


def _export_decoder(model: nn.Module, path: Path, verbose: bool) -> None:
    inputs, input_names = (torch.randn(1, model.args.hidden_channels, 40),), [DECODER_INPUT]
    dynamic_axes = {DECODER_INPUT: {0: "batch_size", 2: "frames"}, DECODER_OUTPUT: {0: "batch_size", 2: "samples"}}
    if getattr(model, "speaker_embedding", None) is not None:
        inputs = (*inputs, torch.randn(1, model.embedded_speaker_dim, 1))
        input_names.append(SPEAKER_OUTPUT)
        dynamic_axes[SPEAKER_OUTPUT] = {0: "batch_size"}
    torch.onnx.export(
        _DecoderGraph(model).eval(),
        inputs,
        str(path),
        opset_version=OPSET_VERSION,
        input_names=input_names,
        output_names=[DECODER_OUTPUT],
        dynamic_axes=dynamic_axes,
        verbose=verbose,
        dynamo=False,
    )


class OnnxStreamingSynthesizer:
    """Streaming synthesis with the two graphs of :func:`export_streaming_onnx`, on numpy arrays with onnxruntime.

    Args:
        latents_path: `latents.onnx` or `latents_int8.onnx`.
        decoder_path: `decoder.onnx` or `decoder_int8.onnx`.
        threads: CPU threads of each session; None for all.
        cuda: Run on CUDA when available.

    Attributes:
        speakers: Speaker names of a multi-speaker export in id order (the `sid` of :meth:`stream`); empty otherwise.

    Examples:
        >>> synth = OnnxStreamingSynthesizer.from_dir("exported", int8=True)
        >>> stream = synth.stream(token_ids)
        >>> stream.timings(tokenizer)  # before any audio is decoded
        >>> for chunk in stream:
        ...     player.write(chunk)
    """

    def __init__(self, latents_path: str | Path, decoder_path: str | Path, *, threads: int | None = None, cuda=False):
        self.latents_session = load_onnx(latents_path, cuda=cuda, threads=threads)
        self.decoder_session = load_onnx(decoder_path, cuda=cuda, threads=threads)
        metadata = self.decoder_session.get_modelmeta().custom_metadata_map
        missing = [k for k in (HOP_LENGTH_KEY, SAMPLE_RATE_KEY, CONTEXT_KEY, SCALES_KEY) if k not in metadata]
        if missing:
            msg = f"{decoder_path} lacks the streaming metadata {missing}: export it with `export_streaming_onnx`."
            raise ValueError(msg)
        self.hop_length = int(metadata[HOP_LENGTH_KEY])
        self.sample_rate = int(metadata[SAMPLE_RATE_KEY])
        self.context = DecoderContext(*(int(v) for v in metadata[CONTEXT_KEY].split(",")))
        self.noise_scale, self.length_scale = (float(v) for v in metadata[SCALES_KEY].split(","))
        latents_inputs = {i.name for i in self.latents_session.get_inputs()}
        self._takes_sup_ids = SUP_INPUT_NAME in latents_inputs
        self._takes_sid = SPEAKER_INPUT_NAME in latents_inputs
        speakers = self.latents_session.get_modelmeta().custom_metadata_map.get(SPEAKERS_METADATA_KEY, "[]")
        self.speakers: list[str] = json.loads(speakers) if self._takes_sid else []  # names in id order

    @classmethod
    def from_dir(cls, directory: str | Path, *, int8: bool = False, **kwargs) -> "OnnxStreamingSynthesizer":
        """The synthesizer of an export folder; `int8` picks `decoder_int8.onnx` and `latents_int8.onnx` (or
        `latents.onnx` in a folder exported before the flow was quantized)."""
        directory = Path(directory)
        if not int8:
            return cls(directory / LATENTS_FILE, directory / DECODER_FILE, **kwargs)
        latents = directory / LATENTS_INT8_FILE
        if not latents.exists():
            logger.info("%s has no %s (an older export): the latents graph runs in float32", directory, latents.name)
            latents = directory / LATENTS_FILE
        return cls(latents, directory / DECODER_INT8_FILE, **kwargs)

    def latents(
        self,
        token_ids: Sequence[int],
        noise_scale: float | None = None,
        length_scale: float | None = None,
        sup_ids: Sequence[int] | None = None,
        sid: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The decoder input `[1, C, T_feats]` and the durations `[T_text]` of one sentence's token ids.

        A multi-speaker export needs the speaker id `sid` (see :meth:`stream`, which also conditions the decoder).
        """
        return self._latents(token_ids, noise_scale, length_scale, sup_ids, sid)[:2]

    def _latents(self, token_ids, noise_scale, length_scale, sup_ids, sid) -> tuple:
        """Latents, durations and the speaker vector (None for a single-speaker export)."""
        ids = np.asarray(token_ids, dtype=np.int64).reshape(1, -1)
        if ids.shape[1] == 0:
            raise ValueError("OnnxStreamingSynthesizer: no token ids to synthesize")
        noise_scale = self.noise_scale if noise_scale is None else noise_scale
        length_scale = self.length_scale if length_scale is None else length_scale
        lengths = np.array([ids.shape[1]], dtype=np.int64)
        feed = {"input": ids, "input_lengths": lengths, "scales": np.array([noise_scale, length_scale], np.float32)}
        if self._takes_sup_ids:
            sup = session_sup_ids(self.latents_session, ids, lengths) if sup_ids is None else sup_ids
            feed[SUP_INPUT_NAME] = np.asarray(sup, dtype=np.int64).reshape(ids.shape)
        if not self._takes_sid:
            latents, durations, frame_lengths = self.latents_session.run(LATENTS_OUTPUTS, feed)
            return latents[:, :, : int(frame_lengths[0])], durations[0], None
        feed[SPEAKER_INPUT_NAME] = session_speaker_ids(self.latents_session, sid, 1)
        latents, durations, frame_lengths, speaker = self.latents_session.run([*LATENTS_OUTPUTS, SPEAKER_OUTPUT], feed)
        return latents[:, :, : int(frame_lengths[0])], durations[0], speaker

    def decode(self, latents: np.ndarray, speaker: np.ndarray | None = None) -> np.ndarray:
        """The decoder on a latent window `[1, C, T_window]`: audio `[T_window * hop]`; `speaker` `[1, C_g, 1]`
        (from the latents graph) for a multi-speaker export."""
        feed = {DECODER_INPUT: latents}
        if speaker is not None:
            feed[SPEAKER_OUTPUT] = speaker
        return self.decoder_session.run([DECODER_OUTPUT], feed)[0][0, 0]

    def stream(
        self,
        token_ids: Sequence[int],
        *,
        chunk_frames: int = DEFAULT_CHUNK_FRAMES,
        noise_scale: float | None = None,
        length_scale: float | None = None,
        sup_ids: Sequence[int] | None = None,
        tokenizer: Any = None,
        text: str | None = None,
        sid: int | None = None,
    ) -> LatentStream:
        """Synthesize one sentence's token ids as a stream of float32 audio chunks (latents once, then windows).

        `tokenizer` (and `text`) are only kept for the stream's `timings()`; `sid` is the speaker id of a
        multi-speaker export (required there).
        """
        latents, durations, speaker = self._latents(token_ids, noise_scale, length_scale, sup_ids, sid)
        return LatentStream(
            functools.partial(self.decode, speaker=speaker),
            latents,
            token_ids=token_ids,
            durations=durations,
            hop_length=self.hop_length,
            sample_rate=self.sample_rate,
            chunk_frames=chunk_frames,
            context=self.context,
            tokenizer=tokenizer,
            text=text,
        )
