"""Streaming synthesis: the latents once, then the HiFi-GAN decoder window by window, exactly.

Everything before the decoder (phoneme encoder, durator, prior sample, inverse flow, memory bank) runs once over the
whole sentence (`Naturalspeech.synthesize_latents`); it is cheap next to the decoder (< 5% of CPU synthesis time,
`benchmarks/README.md`). The HiFi-GAN decoder is purely convolutional: output sample `n` depends only on the latent
frames within its receptive field. So the latents are cut into chunks of `chunk_frames` frames, each chunk is decoded
together with `context.left` frames before it and `context.right` frames after it, and the samples of the context are
cut off again. When the context covers the receptive field, the zero padding at a window's edges never reaches the
kept samples, and the joined chunks equal decoding the whole sentence at once (to float rounding).

:func:`decoder_context` computes that context from the decoder's configuration (its conv kernels, dilations and
upsampling layers); :func:`plan_windows` is the window arithmetic, shared by the PyTorch stream
(:class:`SynthesisStream`) and the ONNX Runtime stream (`onnx_streaming.py`); :func:`decode_in_windows` runs any
decoder over the plan, and :class:`LatentStream` makes that an iterator of audio chunks.
"""

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple, TypeVar

import numpy as np

# `HifiganGenerator` (toolkit) has a fixed kernel-7, padding-3 convolution before and after the upsampling stack.
HIFIGAN_PRE_POST_KERNEL = 7
DEFAULT_CHUNK_FRAMES = 64  # 0.74 s of audio at 22,050 Hz and hop 256; a window is 64 + 2 x 13 frames at paper size

Array = TypeVar("Array")  # numpy arrays and torch tensors alike: only `[..., a:b]` slicing is used


class DecoderContext(NamedTuple):
    """Latent frames of context a decoder window needs before (`left`) and after (`right`) the frames it keeps."""

    left: int
    right: int


class DecoderWindow(NamedTuple):
    """One step of a stream: decode frames `[window_start, window_end)`, keep the samples of `[start, end)`."""

    start: int
    end: int
    window_start: int
    window_end: int

    def kept_samples(self, hop_length: int) -> slice:
        """The samples of the window's decoded audio that belong to frames `[start, end)`."""
        offset = (self.start - self.window_start) * hop_length
        return slice(offset, offset + (self.end - self.start) * hop_length)


def _conv_reach(kernel_size: int, dilation: int, padding: int) -> tuple[int, int]:
    """Input positions a stride-1 convolution output reaches to the left and to the right of its own position."""
    return padding, (kernel_size - 1) * dilation - padding


def decoder_context(
    resblock_type: str,
    resblock_kernel_sizes: Sequence[int],
    resblock_dilation_sizes: Sequence[Sequence[int]],
    upsample_rates: Sequence[int],
    upsample_kernel_sizes: Sequence[int],
) -> DecoderContext:
    """The receptive field of the toolkit's `HifiganGenerator`, in latent frames on each side.

    Walks the generator's layers and tracks how many output positions next to a window's edge can see the zero
    padding beyond it (`left`, `right`, in samples of the current resolution):

    - a stride-1 convolution with padding `p` adds `p` on the left and `(k - 1) * d - p` on the right (`conv_pre`,
      `conv_post`: kernel 7; every ResBlock convolution: `get_padding(k, d)`);
    - a ResBlock is a chain of its convolutions (type "1" uses three dilations, each followed by a dilation-1 conv;
      type "2" uses two), the parallel ResBlocks of a level (multi-receptive-field fusion) reach as far as the widest;
    - a transposed convolution (rate `u`, kernel `k`, padding `p = (k - u) // 2`) turns `c` affected positions into
      `c * u + k - u - p` on either side.

    The result, divided by the hop length (the product of the rates) and rounded up, is the context: with it the
    windowed decoding equals the whole decoding; with one frame less on a side it does not (tested).

    Args:
        resblock_type: "1" or "2" (`resblock_type_decoder`).
        resblock_kernel_sizes: `resblock_kernel_sizes_decoder`.
        resblock_dilation_sizes: `resblock_dilation_sizes_decoder`.
        upsample_rates: `upsample_rates_decoder`.
        upsample_kernel_sizes: `upsample_kernel_sizes_decoder`.

    Raises:
        ValueError: An upsampling kernel minus its rate is odd or negative: such a layer does not give exactly
            `rate` samples per input position, and no window could be cut on frame boundaries.
    """
    num_convs = {"1": 3, "2": 2}.get(str(resblock_type))
    if num_convs is None:
        raise ValueError(f"resblock_type must be '1' or '2', got {resblock_type!r}")
    pad = HIFIGAN_PRE_POST_KERNEL // 2
    left, right = pad, pad  # conv_pre
    for rate, kernel in zip(upsample_rates, upsample_kernel_sizes, strict=True):
        if kernel < rate or (kernel - rate) % 2:
            msg = (
                f"upsampling kernel {kernel} with rate {rate}: kernel - rate must be even and >= 0, or the layer does "
                "not give exactly `rate` samples per frame"
            )
            raise ValueError(msg)
        padding = (kernel - rate) // 2
        left, right = (side * rate + kernel - rate - padding for side in (left, right))
        block_reaches = [
            _resblock_reach(resblock_type, k, dilations[:num_convs])
            for k, dilations in zip(resblock_kernel_sizes, resblock_dilation_sizes, strict=True)
        ]
        left += max(reach[0] for reach in block_reaches)
        right += max(reach[1] for reach in block_reaches)
    left, right = left + pad, right + pad  # conv_post
    hop_length = math.prod(upsample_rates)
    return DecoderContext(math.ceil(left / hop_length), math.ceil(right / hop_length))


def _resblock_reach(resblock_type: str, kernel_size: int, dilations: Sequence[int]) -> tuple[int, int]:
    convs = []
    for dilation in dilations:
        convs.append((kernel_size, dilation))
        if str(resblock_type) == "1":
            convs.append((kernel_size, 1))  # ResBlock1 follows each dilated conv with a dilation-1 conv
    left = right = 0
    for kernel, dilation in convs:
        reach = _conv_reach(kernel, dilation, (kernel * dilation - dilation) // 2)  # the toolkit's `get_padding`
        left, right = left + reach[0], right + reach[1]
    return left, right


def decoder_context_from_args(args: Any) -> DecoderContext:
    """:func:`decoder_context` of a model's `NaturalspeechArgs` (`model.args`)."""
    return decoder_context(
        args.resblock_type_decoder,
        args.resblock_kernel_sizes_decoder,
        args.resblock_dilation_sizes_decoder,
        args.upsample_rates_decoder,
        args.upsample_kernel_sizes_decoder,
    )


def plan_windows(num_frames: int, chunk_frames: int, context: DecoderContext) -> list[DecoderWindow]:
    """Cut `num_frames` latent frames into chunks of `chunk_frames` (the last one shorter) with their context.

    A window is clipped at the sentence's ends, where the whole decoding sees zero padding too. A sentence shorter
    than one chunk is one window: the whole sentence.
    """
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be at least 1, got {chunk_frames}")
    if num_frames < 1:
        raise ValueError(f"nothing to decode: {num_frames} latent frames")
    return [
        DecoderWindow(
            start,
            min(start + chunk_frames, num_frames),
            max(0, start - context.left),
            min(num_frames, start + chunk_frames + context.right),
        )
        for start in range(0, num_frames, chunk_frames)
    ]


def decode_in_windows(
    decode: Callable[[Array], Array], latents: Array, windows: Sequence[DecoderWindow], hop_length: int
) -> Iterator[Array]:
    """Decode `latents` window by window; yield each window's kept samples (their concatenation is the audio).

    Args:
        decode: The decoder, latent window `[..., C, T_window]` -> audio `[..., T_window * hop]`.
        latents: The decoder input of one sentence, `[..., C, T_feats]` (numpy or torch).
        windows: From :func:`plan_windows`.
        hop_length: Samples per latent frame.
    """
    for window in windows:
        audio = decode(latents[..., window.window_start : window.window_end])
        yield audio[..., window.kept_samples(hop_length)]


class LatentStream:
    """An iterator over the float32 audio chunks of one sentence's latents, decoded window by window.

    The durations (hence the length and the timings) are known before the first chunk; each `next()` decodes one
    window. The PyTorch stream (:class:`SynthesisStream`) and the ONNX Runtime stream (`onnx_streaming.py`) are this
    with another `decode`.

    Attributes:
        token_ids: The token ids synthesized.
        durations: Frames per token (float, as predicted).
        num_frames: Latent frames of the sentence.
        num_samples: Samples of the whole audio (`num_frames * hop_length`).
        sample_rate: Output sample rate.
        hop_length: Samples per latent frame.
        windows: The decoding plan (:func:`plan_windows`).
        text: The text synthesized, if given (for the words of :meth:`timings`).
        language: Its language, if given.
    """

    def __init__(
        self,
        decode: Callable[[Any], Any],
        latents: Any,
        *,
        token_ids: Sequence[int],
        durations: np.ndarray,
        hop_length: int,
        sample_rate: int,
        chunk_frames: int,
        context: DecoderContext,
        tokenizer: Any = None,
        text: str | None = None,
        language: str | None = None,
    ):
        self.token_ids = [int(i) for i in token_ids]
        self.durations = np.asarray(durations, dtype=np.float32)
        self.num_frames = int(latents.shape[-1])
        self.hop_length, self.sample_rate = hop_length, sample_rate
        self.num_samples = self.num_frames * hop_length
        self.windows = plan_windows(self.num_frames, chunk_frames, context)
        self.tokenizer, self.text, self.language = tokenizer, text, language
        self._chunks = decode_in_windows(decode, latents, self.windows, hop_length)

    def __iter__(self) -> "LatentStream":
        return self

    def __next__(self) -> np.ndarray:
        chunk = next(self._chunks)
        if hasattr(chunk, "detach"):
            chunk = chunk.detach().float().cpu().numpy()
        return np.asarray(chunk, dtype=np.float32).reshape(-1)

    def timings(self, tokenizer: Any = None, *, text_words: bool = True) -> dict[str, list[dict[str, Any]]]:
        """Phoneme and word start/end times of this synthesis (see `timings.py`); no decoding needed.

        Args:
            tokenizer: The model's tokenizer (its vocabulary names the tokens); None for the stream's own.
            text_words: Give every word the words of the text it speaks (`text`), which may phonemize the text's
                words one by one; False, or a stream without `text`, leaves `text` out.
        """
        from TTS.tts.layers.naturalspeech.runtime.timings import synthesis_timings

        tokenizer = tokenizer or self.tokenizer
        if tokenizer is None:
            raise ValueError("timings need the model's tokenizer: pass `tokenizer=`")
        text = self.text if text_words else None
        return synthesis_timings(
            self.token_ids,
            self.durations,
            self.num_frames,
            tokenizer,
            self.hop_length,
            self.sample_rate,
            text,
            self.language,
        )


class SynthesisStream(LatentStream):
    """Streamed synthesis of one sentence by a PyTorch `Naturalspeech` model (`Naturalspeech.inference_stream`).

    Creating it runs `Naturalspeech.synthesize_latents` once; iterating runs the decoder window by window.
    """

    def __init__(
        self,
        model: Any,
        token_ids: Sequence[int],
        chunk_frames: int = DEFAULT_CHUNK_FRAMES,
        noise_scale: float | None = None,
        length_scale: float | None = None,
        *,
        text: str | None = None,
        language: str | None = None,
        speaker_id: int | None = None,
    ):
        import torch

        tokens = torch.tensor([list(token_ids)], dtype=torch.long, device=model.device)
        lengths = torch.tensor([tokens.size(1)], dtype=torch.long, device=model.device)
        speaker_ids = None if speaker_id is None else torch.tensor([speaker_id], device=model.device)
        with torch.inference_mode():
            out = model.synthesize_latents(tokens, lengths, noise_scale, length_scale, speaker_ids=speaker_ids)
        decoder, speaker = model.waveform_decoder, out.speaker

        def decode(latents: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return decoder(latents, g=speaker)[0, 0]

        super().__init__(
            decode,
            out.latents[:, :, : int(out.frame_lengths[0])],
            token_ids=token_ids,
            durations=out.durations[0].float().cpu().numpy(),
            hop_length=model.config.audio.hop_length,
            sample_rate=model.config.audio.sample_rate,
            chunk_frames=chunk_frames,
            context=model.decoder_context,
            tokenizer=model.tokenizer,
            text=text,
            language=language,
        )
