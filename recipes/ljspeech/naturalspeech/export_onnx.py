"""Export a trained NaturalSpeech run to ONNX, float32 or with an int8 decoder and flow, and check the file synthesizes.

    python recipes/ljspeech/naturalspeech/export_onnx.py --run_dir run/ --out naturalspeech.onnx
    python recipes/ljspeech/naturalspeech/export_onnx.py --run_dir run/ --out naturalspeech_int8.onnx --quantize

`--run_dir` is a training run folder (`config.json` and `best_model.pth`, or `--checkpoint`). After writing the file
the script synthesizes `--check_text` with ONNX Runtime and prints the length of the audio, so a broken export fails
here, not in production. See `docs/model_zoo.md`, section 4.
"""

import argparse
import logging
import sys
import time
from pathlib import Path

from TTS.config import load_config
from TTS.tts.layers.naturalspeech.runtime.checkpoints import CheckpointError
from TTS.tts.layers.naturalspeech.runtime.onnx_export import inference_onnx, load_onnx
from TTS.tts.models.naturalspeech import Naturalspeech

logger = logging.getLogger(__name__)


def export(
    run_dir: Path, out: Path, checkpoint: Path | None, quantize: bool, calibration_texts: list[str] | None
) -> Naturalspeech:
    """Load the run's model and write it to `out`; returns the model."""
    config_path = run_dir / "config.json"
    checkpoint = checkpoint or run_dir / "best_model.pth"
    for path in (config_path, checkpoint):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: --run_dir must be a training run folder (or pass --checkpoint)")
    config = load_config(str(config_path))
    model = Naturalspeech.init_from_config(config)
    model.load_checkpoint(config, str(checkpoint), eval=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.export_onnx(str(out), quantize=quantize, calibration_texts=calibration_texts)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run_dir", type=Path, required=True, help="training run folder with config.json")
    parser.add_argument("--checkpoint", type=Path, help="checkpoint file (default: <run_dir>/best_model.pth)")
    parser.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    parser.add_argument("--quantize", action="store_true", help="int8 HiFi-GAN decoder and flow (faster CPU synthesis)")
    parser.add_argument("--calibration_text", action="append", help="a calibration sentence (repeatable)")
    parser.add_argument("--check_text", default="The birch canoe slid on the smooth planks.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        model = export(args.run_dir, args.out, args.checkpoint, args.quantize, args.calibration_text)
    except (FileNotFoundError, ValueError, CheckpointError) as error:
        sys.exit(f"export_onnx: {error}")
    start = time.perf_counter()
    ids = model.speakable_ids(args.check_text)
    wav = inference_onnx(load_onnx(args.out), [ids], noise_scale=model.noise_scale, length_scale=model.length_scale)
    seconds = wav.shape[-1] / model.config.audio.sample_rate
    kind = "int8 decoder and flow" if args.quantize else "float32"
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB, {kind})")
    print(f"check: {seconds:.2f} s of audio for {args.check_text!r} in {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
