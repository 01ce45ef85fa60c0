"""Which learnable-upsampling variant learns best: a controlled task for the differentiable durator (paper, 3.3).

The upsampling layer follows Parallel Tacotron 2 with three details that PT2 states differently or not at all: the
depth of its swish MLPs, whether the attention and the auxiliary context read one convolution or two, and raw vs
signed-log boundary grids. Training the whole model once per variant costs hours of CPU, so this benchmark isolates
the durator on a synthetic task whose answer is known:

- phoneme sequences over a small vocabulary, each phoneme with its own duration (lengthened by one frame after an
  even-numbered phoneme, so durations need context) and its own frame trajectory: a frame at relative position
  `r` inside a phoneme has target `(1 - r) · start[v] + r · end[v]`;
- a small convolutional encoder (embedding, two convolutions) feeds the `Durator`; its frame-level prior mean is
  the prediction.

Three tasks per variant and seed, scored on held-out sequences:

1. `given`: true durations throughout, masked frame MSE. Can the attention represent the motion inside a phoneme?
   (Hard length regulation repeats one vector per phoneme, so it cannot.)
2. `soft-alignment`: a warm-up on true durations (frame MSE), then predicted durations trained only through
   `soft_alignment_cost` of the target frames against the predicted frames (every target frame scored once, the
   orientation of L_bwd), as NaturalSpeech trains its durator after warm-up. The duration predictor starts from
   the mean duration for every phoneme, so all it learns comes through the upsampling's gradients w.r.t. the
   durations. Score: duration MAE against the truth, in frames.
3. `soft-alignment + duration loss`: the same plus the model's `duration_loss` on the true durations in every step
   (the model's MAS targets). Hard length regulation passes no gradient to the durations, so its row is the
   duration loss alone: the reference the soft alignment must beat.

Usage: python benchmarks/durator_variants.py [--steps 400] [--seeds 2] [--tasks ...] [--variants ...] [--quick]
Writes `results/durator_variants.json` and `.csv` and prints a markdown table.
"""

import argparse
import logging
import math
import os
import time

# one numba thread, like the learning benchmark's workers: idle pool threads would be billed as CPU time
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import torch
from common import (
    add_common_arguments,
    header,
    install_source_finder,
    markdown_table,
    run_record,
    write_csv,
    write_json,
)
from torch import nn

install_source_finder()

from TTS.tts.layers.naturalspeech.durator import Durator  # noqa: E402
from TTS.tts.layers.naturalspeech.losses import duration_loss  # noqa: E402
from TTS.tts.layers.naturalspeech.soft_alignment import soft_alignment_cost  # noqa: E402
from TTS.tts.utils.helpers import sequence_mask  # noqa: E402

logger = logging.getLogger(__name__)

# Durator keyword overrides of each variant, explicit so that a row keeps its meaning when a default changes (the
# first results were taken when one hidden layer was the default: their "default (...)" row is the first one here).
ONE_HIDDEN = {"mlp_hidden_layers_upsampling": 1}
VARIANTS = {
    "1 hidden layer, shared conv, signed-log grids": ONE_HIDDEN,
    "2 hidden layers": {"mlp_hidden_layers_upsampling": 2},
    "separate aux conv": {**ONE_HIDDEN, "share_conv_upsampling": False},
    "raw grids": {**ONE_HIDDEN, "compress_grids_upsampling": False},
    "PT2 reading (2 hidden, separate conv, raw grids)": {
        "mlp_hidden_layers_upsampling": 2,
        "share_conv_upsampling": False,
        "compress_grids_upsampling": False,
    },
    "random start (init_sharpness 0)": {**ONE_HIDDEN, "init_sharpness_upsampling": 0.0},
    "durations detached from the prior": {**ONE_HIDDEN, "detach_predicted_durations": True},
    "hard length regulation": {"use_learnable_upsampling": False},
}
TASKS = ("given", "soft-alignment", "soft-alignment + duration loss")


class PhonemeTask:
    """Random phoneme sequences with known durations and frame targets (see the module docstring)."""

    def __init__(self, seed: int, vocab: int = 24, dims: int = 16, min_tokens: int = 12, max_tokens: int = 24):
        generator = torch.Generator().manual_seed(seed)
        self.generator = generator
        self.vocab, self.dims = vocab, dims
        self.min_tokens, self.max_tokens = min_tokens, max_tokens
        self.base_duration = torch.randint(2, 10, (vocab,), generator=generator).float()
        self.start = torch.randn(vocab, dims, generator=generator)
        self.end = torch.randn(vocab, dims, generator=generator)

    def batch(self, size: int) -> dict[str, torch.Tensor]:
        """Padded tokens, token lengths, true durations, frame targets and frame lengths.

        Shapes:
            - tokens, durations: :math:`[B, T_text]`
            - targets: :math:`[B, D, T_feats]`
        """
        lengths = torch.randint(self.min_tokens, self.max_tokens + 1, (size,), generator=self.generator)
        tokens = torch.randint(0, self.vocab, (size, int(lengths.max())), generator=self.generator)
        token_mask = sequence_mask(lengths, tokens.size(1)).float()
        after_even = torch.nn.functional.pad((tokens[:, :-1] % 2 == 0).float(), (1, 0))
        durations = (self.base_duration[tokens] + after_even) * token_mask
        frame_lengths = durations.sum(1).long()
        targets = torch.zeros(size, self.dims, int(frame_lengths.max()))
        for b in range(size):
            frame = 0
            for token, duration in zip(tokens[b, : lengths[b]].tolist(), durations[b, : lengths[b]].long().tolist()):
                position = (torch.arange(duration) + 0.5) / duration  # relative frame centres inside the phoneme
                trajectory = torch.outer(1 - position, self.start[token]) + torch.outer(position, self.end[token])
                targets[b, :, frame : frame + duration] = trajectory.T
                frame += duration
        return {
            "tokens": tokens,
            "token_lengths": lengths,
            "durations": durations,
            "targets": targets,
            "frame_lengths": frame_lengths,
        }


class TinyDuratorModel(nn.Module):
    """Embedding → two convolutions → `Durator`; the prior mean is the frame prediction."""

    def __init__(self, vocab: int, dims: int, channels: int, mean_duration: float, **durator_kwargs):
        super().__init__()
        self.emb = nn.Embedding(vocab, channels)
        self.encoder = nn.Sequential(
            nn.Conv1d(channels, channels, 3, padding=1), nn.ReLU(), nn.Conv1d(channels, channels, 3, padding=1)
        )
        self.durator = Durator(
            in_channels=channels,
            latent_channels=dims,
            hidden_channels_predictor=channels,
            num_layers_predictor=2,
            kernel_size_predictor=3,
            dropout_p_predictor=0.0,
            **durator_kwargs,
        )
        # the warm-up's stand-in: every phoneme starts at the mean duration
        with torch.no_grad():
            self.durator.duration_predictor.proj.weight.zero_()
            self.durator.duration_predictor.proj.bias.fill_(math.log(mean_duration))

    def forward(self, batch: dict, given_durations: bool):
        x_mask = sequence_mask(batch["token_lengths"], batch["tokens"].size(1)).unsqueeze(1).float()
        h = self.encoder(self.emb(batch["tokens"]).transpose(1, 2) * x_mask) * x_mask
        return self.durator(h, x_mask, durations=batch["durations"] if given_durations else None)


def frame_mse(out, batch) -> torch.Tensor:
    """Mean squared error per frame and channel over the valid frames (given durations: equal lengths)."""
    mask = out.frame_mask
    return ((out.prior_mean - batch["targets"]) ** 2 * mask).sum() / (mask.sum() * out.prior_mean.size(1))


def soft_alignment_loss(out, batch, gamma: float, warp: float) -> torch.Tensor:
    """Soft alignment of the target frames (each scored once) with the predicted frames, per target frame."""
    cost = torch.cdist(batch["targets"].transpose(1, 2), out.prior_mean.transpose(1, 2)).square()  # [B, M, N]
    value = soft_alignment_cost(cost, batch["frame_lengths"], out.frame_lengths, gamma, warp)
    return (value / batch["frame_lengths"]).mean()


def training_loss(model: "TinyDuratorModel", batch: dict, task: str, warm: bool, args) -> torch.Tensor:
    """The task's loss; `warm` is the warm-up (true durations, frame MSE) of the soft-alignment tasks."""
    out = model(batch, given_durations=task == "given" or warm)
    loss = frame_mse(out, batch) if task == "given" or warm else soft_alignment_loss(out, batch, args.gamma, args.warp)
    if task.endswith("duration loss"):
        x_mask = sequence_mask(batch["token_lengths"], batch["tokens"].size(1)).unsqueeze(1).float()
        loss = loss + args.duration_loss_alpha * duration_loss(out.log_durations, batch["durations"], x_mask)
    return loss


def duration_mae(out, batch) -> float:
    mask = sequence_mask(batch["token_lengths"], batch["tokens"].size(1)).float()
    return float(((out.durations - batch["durations"]).abs() * mask).sum() / mask.sum())


def evaluate(model: TinyDuratorModel, batch: dict, task: str) -> float:
    model.eval()
    with torch.no_grad():
        out = model(batch, given_durations=task == "given")
        score = frame_mse(out, batch) if task == "given" else duration_mae(out, batch)
    model.train()
    return float(score)


def train_one(variant: dict, task: str, seed: int, args) -> dict:
    """Train one (variant, task, seed); returns the held-out score every `--eval-every` steps."""
    data = PhonemeTask(seed)
    train_batches = [data.batch(args.batch_size) for _ in range(args.train_batches)]
    heldout = data.batch(64)
    mean_duration = float(heldout["durations"].sum() / heldout["token_lengths"].sum())
    torch.manual_seed(seed)
    model = TinyDuratorModel(data.vocab, data.dims, args.channels, mean_duration, **variant)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    curve = [(0, evaluate(model, heldout, task))]
    start = time.process_time()
    for step in range(1, args.steps + 1):
        batch = train_batches[step % len(train_batches)]
        loss = training_loss(model, batch, task, step <= args.warmup_steps, args)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % args.eval_every == 0 or step == args.steps:
            curve.append((step, evaluate(model, heldout, task)))
    return {"curve": curve, "final": curve[-1][1], "start": curve[0][1], "cpu_seconds": time.process_time() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--warmup-steps", type=int, default=150, help="true durations first (soft-alignment tasks)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--train-batches", type=int, default=16, help="fixed training batches, cycled")
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--gamma", type=float, default=0.01)
    parser.add_argument("--warp", type=float, default=1.12, help="per skipped/held frame (0.07 x 16 channels)")
    parser.add_argument("--duration-loss-alpha", type=float, default=1.0)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--name", default="durator_variants", help="result file name (without extension)")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.warmup_steps, args.seeds, args.train_batches, args.eval_every = 4, 2, 1, 2, 2
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logger.info("%s", header("durator variants"))

    rows = []
    for name in args.variants:
        variant = VARIANTS[name]
        for task in args.tasks:
            runs = [train_one(variant, task, seed, args) for seed in range(args.seeds)]
            finals = torch.tensor([run["final"] for run in runs])
            row = {
                "variant": name,
                "task": task,
                "metric": "frame MSE" if task == "given" else "duration MAE (frames)",
                "start": sum(run["start"] for run in runs) / len(runs),
                "final_mean": float(finals.mean()),
                "final_min": float(finals.min()),
                "final_max": float(finals.max()),
                "cpu_seconds": sum(run["cpu_seconds"] for run in runs),
                "curves": [run["curve"] for run in runs],
                "overrides": variant,
            }
            rows.append(row)
            logger.info("%-55s %-8s start %.3f final %.3f (%.3f-%.3f)", name, task, row["start"],
                        row["final_mean"], row["final_min"], row["final_max"])  # fmt: skip

    columns = ["variant", "task", "metric", "start", "final_mean", "final_min", "final_max", "cpu_seconds"]
    out_dir = args.out_dir
    if not args.quick:
        write_json(out_dir / f"{args.name}.json", {**run_record(args), "rows": rows})
        write_csv(out_dir / f"{args.name}.csv", rows, columns)
    print(markdown_table(rows, columns))


if __name__ == "__main__":
    main()
