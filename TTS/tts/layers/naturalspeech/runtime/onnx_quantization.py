"""Static int8 quantization of the convolutions of an exported ONNX graph (decoder, flow), for faster CPU synthesis.

Why static int8: PyTorch eager already runs the convolutions through oneDNN, so a float32 ONNX Runtime graph is no
faster (0.9–1.04× measured). Static int8 quantization lets ONNX Runtime fuse each quantized convolution into an
integer `QLinearConv` (VNNI/AVX2 integer kernels). Dynamic quantization is not an option here: its `ConvInteger` path
re-quantizes every activation at run time and measured 6× *slower* than float32 on the decoder.

The result is a standard QDQ graph (`QuantizeLinear`/`DequantizeLinear` pairs around the chosen `Conv` nodes):
weights int8 per output channel, activations uint8 with ranges calibrated by running the float graph on real inputs.
Which convolutions, by module scope (`INT8_SCOPES`):

- the HiFi-GAN decoder (`waveform_decoder`): most of the time with the paper's 512-channel decoder;
- the flow (`flows`): with a smaller decoder the part before it is no longer negligible. Measured under load with
  Piper medium's 256-channel decoder at the paper's hidden size (1 thread, `benchmarks/README.md` section 11): the
  float32 latents graph takes RTF 0.038 next to 0.043 for the int8 decoder, i.e. 47% of the int8 time, and the flow
  is about half of the latents graph; with the flow int8 the latents graph takes 0.023 (35% of the time). The flow
  runs after the durations, so its int8 noise (relative error of the latents ~0.2%) does not move them.

The phoneme encoder and the durator stay float32 by default: they compute the durations, the length of the speech,
and int8 there moves them (measured on 20 sentences, random paper-size weights: up to 9% per token, 1.2% mean, up to
0.75% of a sentence's length). `PHONEME_ENCODER_SCOPE` is an opt-in (`export_streaming_onnx(...,
quantize_phoneme_encoder=True)`): it took the latents graph from RTF 0.023 to 0.017 in the same measurement. The
memory bank (a few matmuls, ~3%) stays float32.

Int8 pays off for large convolutions only: with the CPU recipe's 64-channel decoder the quantize/dequantize steps cost
more than the integer kernels save. Integer convolutions are fastest on CPUs with VNNI (AVX-512 VNNI, AVX-VNNI).

Only `onnx` and `onnxruntime` are needed (no torch).
"""

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

DECODER_SCOPE = "waveform_decoder"  # module name of the HiFi-GAN decoder in both NaturalSpeech and the toolkit's VITS
FLOW_SCOPE = "flows"  # the coupling layers of the flow (`BidirectionalFlow.flows`), after the durations
PHONEME_ENCODER_SCOPE = "phoneme_encoder"  # before the durations: int8 there moves them (opt-in only)
INT8_SCOPES = (DECODER_SCOPE, FLOW_SCOPE)  # what an int8 export quantizes by default


def conv_nodes(onnx_path: str | Path, scopes: Sequence[str]) -> list[str]:
    """Names of the `Conv` nodes traced from modules under any of `scopes` (the exporter names nodes
    `/.../scope/...`), in graph order."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return [
        node.name
        for node in graph.node
        if node.op_type == "Conv" and any(f"/{scope}/" in node.name for scope in scopes)
    ]


def decoder_conv_nodes(onnx_path: str | Path, scope: str = DECODER_SCOPE) -> list[str]:
    """Names of the `Conv` nodes of the decoder (or of another module `scope`)."""
    return conv_nodes(onnx_path, [scope])


class _Feeds:
    """An `onnxruntime.quantization.CalibrationDataReader` over a fixed list of input feeds."""

    def __init__(self, feeds: Sequence[dict[str, np.ndarray]]):
        self._feeds = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def quantize_convolutions(
    float_path: str | Path,
    output_path: str | Path,
    calibration_feeds: Iterable[dict[str, np.ndarray]],
    scopes: Sequence[str],
) -> Path:
    """Write a copy of an exported graph whose convolutions under `scopes` are static int8 (QDQ format).

    Args:
        float_path: A float32 graph exported by `export_onnx`, `export_streaming_onnx` (or the toolkit's VITS export).
        output_path: Where to write the quantized graph.
        calibration_feeds: Graph inputs (name -> array) to measure activation ranges on; real sentences, a handful is
            enough (the ranges are min/max over all of them).
        scopes: Module names whose convolutions are quantized (e.g. `INT8_SCOPES`); a scope absent from the graph
            is skipped.

    Raises:
        ValueError: No calibration input, or no `Conv` node under any of `scopes`.

    Returns:
        The path of the written file.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if isinstance(scopes, str):
        raise TypeError(f"scopes must be a sequence of module names, got the string {scopes!r}")
    feeds = list(calibration_feeds)
    if not feeds:
        raise ValueError("quantize_convolutions: no calibration inputs (activation ranges need at least one input)")
    nodes = conv_nodes(float_path, scopes)
    if not nodes:
        raise ValueError(f"quantize_convolutions: {float_path} has no Conv nodes under {list(scopes)} to quantize")
    float_path, output_path = Path(float_path).resolve(), Path(output_path).resolve()  # the work runs elsewhere
    with tempfile.TemporaryDirectory(prefix="ns_quant_") as workdir, _working_directory(workdir):
        # ORT's recommended pre-processing (shape inference, graph clean-up); the symbolic shape pass cannot resolve
        # the data-dependent frame axis (it follows the predicted durations), ONNX's own shape inference still runs.
        prepared = Path(workdir) / "prepared.onnx"
        quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(output_path),
            _Feeds(feeds),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["Conv"],  # also limits calibration to Conv tensors
            nodes_to_quantize=nodes,
            per_channel=True,
            activation_type=QuantType.QUInt8,  # u8 activations x s8 weights: the fast integer kernels on x86
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    logger.info("Int8 %s: %d convolutions, %d calibration inputs: %s", "+".join(scopes), len(nodes), len(feeds),
                output_path)  # fmt: skip
    return output_path


def quantize_decoder(
    float_path: str | Path,
    output_path: str | Path,
    calibration_feeds: Iterable[dict[str, np.ndarray]],
    *,
    scope: str = DECODER_SCOPE,
) -> Path:
    """`quantize_convolutions` of the decoder only (or of another single module `scope`)."""
    return quantize_convolutions(float_path, output_path, calibration_feeds, [scope])


@contextlib.contextmanager
def _working_directory(path: str | Path) -> Iterator[None]:
    """Run the block with `path` as the working directory.

    ONNX Runtime's quantization tools write some temporaries to relative paths, so into the caller's working
    directory: its symbolic shape inference saves `sym_shape_infer_temp.onnx` plus a `<uuid>.data` file there when it
    gives up, and leaves them behind. The working directory is per process, so this is not thread-safe.
    """
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)
