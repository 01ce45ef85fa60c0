"""Time and peak memory of the k-means initialisation of NaturalSpeech's memory bank (paper, Section 3.4).

Clusters synthetic latents shaped like a large corpus' posterior frames (default 1M x 192, a Gaussian mixture
around `--bank-size` planted centres) into a 1000-slot bank with the model's default frame cap, and prints and
writes the wall time, the peak resident memory (psutil, sampled every 20 ms) and how close the bank rows come to
the planted centres.

    python benchmarks/memory_init_benchmark.py --out memory_init_benchmark.json
"""

import argparse
import json
import logging
import os
import platform
import time

import psutil
import torch
from common import PeakRssSampler

from TTS.tts.layers.naturalspeech.memory_bank import MemoryBank

logger = logging.getLogger(__name__)


def make_latents(num_frames: int, channels: int, num_centres: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames `[N, C]` drawn around `num_centres` planted centres `[num_centres, C]`, built in place in chunks."""
    generator = torch.Generator().manual_seed(seed)
    centres = 4.0 * torch.randn(num_centres, channels, generator=generator)
    latents = torch.randn(num_frames, channels, generator=generator)
    labels = torch.randint(num_centres, (num_frames,), generator=generator)
    for start in range(0, num_frames, 65_536):
        stop = start + 65_536
        latents[start:stop] += centres[labels[start:stop]]
    return latents, centres


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-frames", type=int, default=1_000_000)
    parser.add_argument("--channels", type=int, default=192)
    parser.add_argument("--bank-size", type=int, default=1000)
    parser.add_argument("--max-frames", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=str, default=None, help="write the results as JSON to this file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    latents, centres = make_latents(args.num_frames, args.channels, args.bank_size, args.seed)
    bank = MemoryBank(args.channels, args.bank_size)
    rss_before = psutil.Process().memory_info().rss
    with PeakRssSampler() as sampler:
        start = time.perf_counter()
        bank.init_from_latents(latents, max_frames=args.max_frames, batch_size=args.batch_size, seed=args.seed)
        seconds = time.perf_counter() - start
    # distance of every planted centre to its nearest bank row, relative to the spread of a cluster (sqrt(C))
    nearest = torch.cdist(centres, bank.bank.detach()).min(dim=1).values / args.channels**0.5
    results = {
        **vars(args),
        "seconds": round(seconds, 2),
        "peak_rss_gb": round(sampler.peak / 2**30, 3),
        "rss_before_init_gb": round(rss_before / 2**30, 3),
        "latents_gb": round(latents.numel() * latents.element_size() / 2**30, 3),
        "nearest_bank_row_median": round(nearest.median().item(), 3),
        "planted_centres_recovered_within_0.5": int((nearest < 0.5).sum()),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }
    print(json.dumps(results, indent=2))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
