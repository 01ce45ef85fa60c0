"""Inference parameter count of the paper-size NaturalSpeech (`NaturalspeechConfig()`) vs the paper's 28.7M (±5%).

Counted: what `Naturalspeech.inference()` runs — phoneme encoder, durator (duration predictor, learnable upsampling,
prior projections), flow (inverse), memory bank (when `use_memory_bank`), HiFi-GAN decoder. Not counted: the
discriminators, the posterior encoder, `alignment_prior` (alignment search in training only) and the KL module.
VITS is counted the same way for reference: text encoder, stochastic duration predictor without its posterior
flows (`post_*`, used only by the training loss), flow, decoder.

    python benchmarks/parameter_count.py
"""

import argparse
import logging

from common import (
    SIZES,
    add_common_arguments,
    build_configs,
    environment,
    header,
    parameter_count,
    write_csv,
    write_json,
)

PAPER_PARAMS = 28.7e6
TOLERANCE = 0.05
NATURALSPEECH_INFERENCE = ("phoneme_encoder", "durator", "flow", "memory_bank", "waveform_decoder")
VITS_INFERENCE = ("text_encoder", "duration_predictor", "flow", "waveform_decoder")


def breakdown(model, inference_modules: tuple[str, ...], training_only_prefixes: tuple[str, ...] = ()) -> list[dict]:
    """One row per top-level sub-module (and per child of the inference ones), marking what inference uses."""
    rows = []
    for name, module in model.named_children():
        used = name in inference_modules
        count = parameter_count(module)
        excluded = 0
        children = list(module.named_children()) if used else []
        for child_name, child in children:
            child_count = parameter_count(child)
            child_used = not child_name.startswith(training_only_prefixes)
            if not child_used:
                excluded += child_count
            rows.append({"module": f"{name}.{child_name}", "params": child_count, "inference": child_used})
        rows.append(
            {"module": name, "params": count, "inference": used, "inference_params": count - excluded if used else 0}
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="paper", choices=list(SIZES))
    add_common_arguments(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.quick:
        args.size = "tiny"
    from TTS.tts.models.naturalspeech import Naturalspeech
    from TTS.tts.models.vits import Vits

    print(header("inference parameter count"))
    ns_config, vits_config = build_configs(args.size)
    naturalspeech, vits = Naturalspeech(ns_config), Vits(vits_config)
    rows = []
    totals = {}
    for system, model, used, training_only in (
        ("naturalspeech", naturalspeech, NATURALSPEECH_INFERENCE, ()),
        ("vits", vits, VITS_INFERENCE, ("post_",)),
    ):
        system_rows = [{"system": system, **row} for row in breakdown(model, used, training_only)]
        rows += system_rows
        totals[system] = {
            "inference_params": sum(r.get("inference_params", 0) for r in system_rows),
            "all_params": parameter_count(model),
        }
    ns_params = totals["naturalspeech"]["inference_params"]
    deviation = ns_params / PAPER_PARAMS - 1.0
    summary = {
        "environment": environment(),
        "size": args.size,
        "paper_inference_params": PAPER_PARAMS,
        "tolerance": TOLERANCE,
        "naturalspeech_inference_params": ns_params,
        "naturalspeech_deviation_from_paper": deviation,
        "target_met": abs(deviation) <= TOLERANCE if args.size == "paper" else None,
        "vits_inference_params": totals["vits"]["inference_params"],
        "naturalspeech_to_vits_ratio": ns_params / totals["vits"]["inference_params"],
        "totals": totals,
        "breakdown": rows,
    }
    print(f"{'system':<14}{'module':<44}{'params':>12}  inference")
    for row in rows:
        if "." not in row["module"]:
            mark = f"{row['inference_params']:,}" if row["inference"] else "no"
            print(f"{row['system']:<14}{row['module']:<44}{row['params']:>12,}  {mark}")
        else:
            print(f"{'':<14}  {row['module']:<42}{row['params']:>12,}  {'yes' if row['inference'] else 'no'}")
    print(f"\nNaturalSpeech inference parameters: {ns_params / 1e6:.2f}M (paper 28.7M, {deviation:+.1%})")
    print(f"VITS inference parameters: {totals['vits']['inference_params'] / 1e6:.2f}M")
    write_json(args.out_dir / "parameter_count.json", summary)
    write_csv(
        args.out_dir / "parameter_count.csv", rows, ["system", "module", "params", "inference", "inference_params"]
    )
    print(f"wrote {args.out_dir / 'parameter_count'}.json|csv")


if __name__ == "__main__":
    main()
