"""Memory bank of NaturalSpeech's memory-based VAE (paper, Section 3.4).

The waveform decoder does not read the latent `z` itself but an attention read-out of a learned memory bank
`M ∈ R^{L×h}`: `Attention(Q=z W_Q, K=M W_K, V=M W_V) W_O`. The bank is a compact, easy-to-predict vocabulary of
latents, so the prior only has to land near one of its slots. After warm-up the bank is initialised by k-means over
posterior latents (`MemoryBank.init_from_latents`); the frames are sampled and clustered with mini-batch k-means, so
the initialisation costs minutes, not the ~10 h of full k-means over the ~7M LJSpeech frames.
"""

import logging
import time

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from sklearn.cluster import MiniBatchKMeans
from torch import Tensor, nn

logger = logging.getLogger(__name__)


class MemoryBank(nn.Module):
    """Multi-head attention from latent frames (queries) to a learned memory bank (keys and values).

    Args:
        channels: Channels `h` of the latent and of every memory slot.
        bank_size: Number of memory slots `L`.
        num_heads: Attention heads; `channels` must be divisible by it.
    """

    def __init__(self, channels: int, bank_size: int, num_heads: int = 1):
        super().__init__()
        if channels % num_heads != 0:
            msg = f"channels ({channels}) must be divisible by num_heads ({num_heads})"
            raise ValueError(msg)
        self.channels = channels
        self.bank_size = bank_size
        self.num_heads = num_heads
        self.bank = nn.Parameter(torch.randn(bank_size, channels))
        self.query_proj = nn.Linear(channels, channels)
        self.key_proj = nn.Linear(channels, channels)
        self.value_proj = nn.Linear(channels, channels)
        self.out_proj = nn.Linear(channels, channels)

    def forward(self, z: Tensor, mask: Tensor, return_attention: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Replace every latent frame by its attention read-out of the memory bank.

        Args:
            z: Latent frames (posterior sample, or prior sample mapped through the inverse flow).
            mask: 1 on valid frames, 0 on padding.
            return_attention: Also return the attention weights.

        Returns:
            The read-out, zero on padding frames; with `return_attention`, also the attention weights, whose rows
            sum to 1 over the bank.

        Shapes:
            - z: :math:`[B, C, T_feats]`
            - mask: :math:`[B, 1, T_feats]`
            - output: :math:`[B, C, T_feats]`
            - attention: :math:`[B, heads, T_feats, L]`
        """
        query = self._split_heads(self.query_proj(rearrange(z, "b c t -> b t c")))  # [B, heads, T_feats, C/heads]
        key = self._split_heads(self.key_proj(self.bank).unsqueeze(0))  # [1, heads, L, C/heads]
        value = self._split_heads(self.value_proj(self.bank).unsqueeze(0))  # [1, heads, L, C/heads]
        if return_attention:
            # [B, heads, T_feats, C/heads] @ [1, heads, C/heads, L] -> scores [B, heads, T_feats, L]
            scores = query @ key.transpose(-1, -2) * query.shape[-1] ** -0.5
            attention = scores.softmax(dim=-1)
            read = attention @ value  # [B, heads, T_feats, L] @ [1, heads, L, C/heads] -> [B, heads, T_feats, C/heads]
        else:
            key, value = (x.expand(query.shape[0], -1, -1, -1) for x in (key, value))
            read = F.scaled_dot_product_attention(query, key, value)  # [B, heads, T_feats, C/heads]
        out = self.out_proj(rearrange(read, "b h t d -> b t (h d)"))
        out = rearrange(out, "b t c -> b c t") * mask
        return (out, attention) if return_attention else out

    def _split_heads(self, x: Tensor) -> Tensor:
        """`[B, T, C]` -> `[B, heads, T, C / heads]`."""
        return rearrange(x, "b t (h d) -> b h t d", h=self.num_heads)

    @torch.no_grad()
    def init_from_latents(
        self, latents: Tensor, max_frames: int = 200_000, batch_size: int = 4096, seed: int = 0
    ) -> None:
        """Set the bank to k-means centres of (a uniform random sample of) latent frames.

        Fits scikit-learn's `MiniBatchKMeans` with `bank_size` clusters on at most `max_frames` frames sampled
        without replacement, and copies the centres into the bank (keeping its dtype and device).

        Args:
            latents: Latent frames, e.g. from `collect_latent_frames` over posterior latents.
            max_frames: Most frames clustered; caps time and memory.
            batch_size: Mini-batch size of the k-means updates.
            seed: Seed of the frame sample and of k-means.

        Shapes:
            - latents: :math:`[N, C]`
        """
        self._check_latents(latents)
        start = time.perf_counter()
        frames = _sample_rows(latents, max_frames, seed)
        kmeans = _make_kmeans(self.bank_size, batch_size, seed)
        kmeans.fit(frames)
        centres = torch.from_numpy(kmeans.cluster_centers_)
        self.bank.copy_(centres.to(dtype=self.bank.dtype, device=self.bank.device))
        logger.info(
            "Memory bank initialised: k-means with %d clusters on %d of %d latent frames in %.1f s",
            self.bank_size,
            frames.shape[0],
            latents.shape[0],
            time.perf_counter() - start,
        )

    def _check_latents(self, latents: Tensor) -> None:
        if latents.dim() != 2 or latents.shape[1] != self.channels:
            msg = f"latents must have shape [N, {self.channels}] (frames x channels), got {list(latents.shape)}"
            raise ValueError(msg)
        if latents.shape[0] < self.bank_size:
            msg = (
                f"k-means needs at least bank_size={self.bank_size} latent frames, got {latents.shape[0]}: "
                "collect latents from more batches, or lower memory_bank_size"
            )
            raise ValueError(msg)


def _sample_rows(latents: Tensor, max_frames: int, seed: int) -> np.ndarray:
    """At most `max_frames` rows of `latents`, drawn uniformly without replacement, as a float32 array."""
    num_frames = latents.shape[0]
    if num_frames > max_frames:
        generator = torch.Generator().manual_seed(seed)
        index = torch.randperm(num_frames, generator=generator)[:max_frames]
        latents = latents[index.to(latents.device)]
    return latents.detach().float().cpu().numpy()


def _make_kmeans(num_clusters: int, batch_size: int, seed: int) -> MiniBatchKMeans:
    """Mini-batch k-means tuned for ~1000 clusters on ~200k frames on a few CPU cores.

    Measured on 2 cores, 200k x 192 frames, 1000 clusters, batch 4096: early stopping (10 mini-batches without
    improvement of the smoothed inertia) ends the fit after ~4 passes in ~5-7 s. One k-means++ seeding (`n_init=1`)
    on `init_size` frames: 3 seedings double the time for 0.3 % lower inertia, and 6-8x longer fits (more patience
    or fixed passes) lower it by only 0.1-0.2 %, which the bank, trained further, does not need. `max_iter=50`
    bounds the worst case at ~50 passes (~1.5 s each); `init_size` is kept at 3 x the clusters for small batches.
    """
    return MiniBatchKMeans(
        n_clusters=num_clusters,
        batch_size=batch_size,
        n_init=1,
        max_iter=50,
        max_no_improvement=10,
        init_size=max(3 * batch_size, 3 * num_clusters),
        random_state=seed,
    )


def collect_latent_frames(latents: Tensor, mask: Tensor) -> Tensor:
    """Gather the valid frames of a padded batch of latents.

    Args:
        latents: Padded latents, e.g. posterior samples.
        mask: 1 on valid frames, 0 on padding.

    Returns:
        The valid frames of every utterance, one after another.

    Shapes:
        - latents: :math:`[B, C, T_feats]`
        - mask: :math:`[B, 1, T_feats]`
        - output: :math:`[N, C]` with `N = mask.sum()`
    """
    frames = rearrange(latents, "b c t -> b t c")
    return frames[mask[:, 0].bool()]
