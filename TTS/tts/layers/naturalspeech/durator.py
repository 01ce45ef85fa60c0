"""Differentiable durator θ_dur of NaturalSpeech (paper, Section 3.3).

A convolutional duration predictor gives log durations of the phonemes; a learnable upsampling layer (Parallel
Tacotron 2, Elias et al., 2021, Section 3.2) expands the phoneme hidden states to frames with a soft attention built
from the token boundary grids, so the frame-level prior p(z'|y) is differentiable w.r.t. the durations. Hard length
regulation (integer durations, `generate_path`) is kept as the "no differentiable durator" ablation.

Frame convention: frame `t = 0 .. T_feats - 1` sits at its centre `t + 0.5`; token `k` spans `[s_k, e_k)` with
`e_k = cumsum(d)_k` and `s_k = e_k - d_k`. So `S[t, k] = t + 0.5 - s_k` and `E[t, k] = e_k - t - 0.5` are both
positive exactly on the frames that hard length regulation gives to token `k` (for integer durations).
"""

import math
from typing import NamedTuple

import torch
from einops import rearrange
from torch import Tensor, nn
from torch.nn import functional as F

from TTS.tts.configs.naturalspeech_config import NaturalspeechArgs
from TTS.tts.layers.generic.normalization import LayerNorm2
from TTS.tts.utils.helpers import generate_path, sequence_mask


class DuratorOutput(NamedTuple):
    """Result of :class:`Durator`; see :meth:`Durator.forward` for the shapes."""

    log_durations: Tensor
    durations: Tensor
    frame_lengths: Tensor
    frame_mask: Tensor
    frame_hidden: Tensor
    prior_mean: Tensor
    prior_log_std: Tensor
    attention: Tensor


def boundary_grids(durations: Tensor, num_frames: int) -> tuple[Tensor, Tensor]:
    """Distances of every frame centre from the start and to the end of every token.

    Args:
        durations: Token durations in frames (float, zero on padding tokens).
        num_frames: Number of frames `T_feats` of the grid.

    Returns:
        `S = t + 0.5 - s_k` and `E = e_k - t - 0.5`.

    Shapes:
        - durations: :math:`[B, T_text]`
        - S, E: :math:`[B, T_feats, T_text]`
    """
    ends = torch.cumsum(durations, dim=1)
    starts = ends - durations
    centres = torch.arange(num_frames, device=durations.device, dtype=durations.dtype) + 0.5
    centres = rearrange(centres, "f -> 1 f 1")
    return centres - starts.unsqueeze(1), ends.unsqueeze(1) - centres


class DurationPredictor(nn.Module):
    """Convolution stack (conv → ReLU → LayerNorm → dropout) and a 1×1 projection to log durations.

    Args:
        in_channels: Channels of the phoneme hidden states.
        hidden_channels: Channels of the convolutions.
        num_layers: Number of convolution layers.
        kernel_size: Kernel size of the convolutions.
        dropout_p: Dropout rate.
    """

    def __init__(self, in_channels: int, hidden_channels: int, num_layers: int, kernel_size: int, dropout_p: float):
        super().__init__()
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        for index in range(num_layers):
            channels = in_channels if index == 0 else hidden_channels
            self.convs.append(nn.Conv1d(channels, hidden_channels, kernel_size, padding=kernel_size // 2))
            self.norms.append(LayerNorm2(hidden_channels))
        self.dropout = nn.Dropout(dropout_p)
        self.proj = nn.Conv1d(hidden_channels, 1, 1)

    def forward(self, h: Tensor, x_mask: Tensor) -> Tensor:
        """Predict log durations.

        Args:
            h: Phoneme hidden states.
            x_mask: Token mask.

        Returns:
            Log durations in frames, zero on padding tokens.

        Shapes:
            - h: :math:`[B, C, T_text]`
            - x_mask: :math:`[B, 1, T_text]`
            - log_durations: :math:`[B, 1, T_text]`
        """
        x = h
        for conv, norm in zip(self.convs, self.norms):
            x = self.dropout(norm(torch.relu(conv(x * x_mask))))
        return self.proj(x * x_mask) * x_mask


def swish_mlp(in_channels: int, hidden_channels: int, out_channels: int, num_hidden_layers: int = 1) -> nn.Sequential:
    """Linear → swish, `num_hidden_layers` times, then a Linear to `out_channels`; applied on the last axis."""
    if num_hidden_layers < 1:
        raise ValueError(f"a swish MLP needs at least one hidden layer, got {num_hidden_layers}")
    layers = [nn.Linear(in_channels, hidden_channels), nn.SiLU()]
    for _ in range(num_hidden_layers - 1):
        layers += [nn.Linear(hidden_channels, hidden_channels), nn.SiLU()]
    return nn.Sequential(*layers, nn.Linear(hidden_channels, out_channels))


def signed_log(grids: Tensor) -> Tensor:
    """`sign(x) · log(1 + |x|)`: keeps the sign and the detail near 0, compresses large distances."""
    return torch.sign(grids) * torch.log1p(grids.abs())


class LearnableUpsampling(nn.Module):
    """Parallel Tacotron 2 learnable upsampling: soft token-to-frame attention from the duration grids.

    Args:
        channels: Channels `C` of the phoneme hidden states and of the frame-level output.
        num_heads: Attention heads `q`.
        num_aux_channels: Channels `p` of the auxiliary context.
        conv_channels: Channels of the per-token convolution feature fed to the MLPs.
        mlp_channels: Hidden channels of the swish MLPs.
        kernel_size: Kernel size of the per-token convolution.
        init_sharpness: Start the attention near hard length regulation with this slope (see
            :meth:`start_near_hard_path`); 0 keeps the plain random initialisation of Parallel Tacotron 2.
        mlp_hidden_layers: Hidden layers of each swish MLP (Parallel Tacotron 2 describes two-layer MLPs; whether
            that counts hidden layers or linear layers is open, so both readings are available).
        share_conv: One per-token convolution feeds both MLPs; False gives the auxiliary-context MLP its own.
        compress_grids: Feed the MLPs `signed_log` of the boundary grids instead of the raw frame distances
            (Parallel Tacotron 2 uses the raw grids).
    """

    def __init__(
        self,
        channels: int,
        num_heads: int = 4,
        num_aux_channels: int = 2,
        conv_channels: int = 8,
        mlp_channels: int = 16,
        kernel_size: int = 3,
        init_sharpness: float = 8.0,
        mlp_hidden_layers: int = 2,
        share_conv: bool = True,
        compress_grids: bool = True,
    ):
        super().__init__()
        self.compress_grids = compress_grids
        self.conv = nn.Conv1d(channels, conv_channels, kernel_size, padding=kernel_size // 2)
        self.conv_aux = None
        if not share_conv:
            self.conv_aux = nn.Conv1d(channels, conv_channels, kernel_size, padding=kernel_size // 2)
        self.mlp_weights = swish_mlp(conv_channels + 2, mlp_channels, num_heads, mlp_hidden_layers)
        self.mlp_aux = swish_mlp(conv_channels + 2, mlp_channels, num_aux_channels, mlp_hidden_layers)
        self.proj_weights = nn.Linear(num_heads * channels, channels)
        self.proj_aux = nn.Linear(num_heads * num_aux_channels, channels)
        if init_sharpness > 0:
            self.start_near_hard_path(init_sharpness)

    @torch.no_grad()
    def start_near_hard_path(self, sharpness: float) -> None:
        """Set two hidden units of the attention MLP so every head starts close to hard length regulation.

        With random weights the MLP is nearly flat over the compressed grids, so `W` starts almost uniform over all
        tokens: every frame then sees the average phoneme, the prior carries no text, and the gradients through that
        average are too weak to ever localise it (measured: mean largest weight 0.013 after 850 training steps,
        uniform would be 0.006). Here unit 0 reads `S` and unit 1 reads `E`, both with slope `-sharpness`, and every
        head subtracts both: the logit is about 0 for the token whose span holds the frame centre and about
        `-sharpness * log(1 + distance)` outside it, a soft boundary that still passes gradients to the durations.
        The other units keep their random weights, so the heads remain free to learn other shapes. Deeper MLPs pass
        the two units through every further hidden layer unchanged (swish is close to identity on the positive
        penalties and close to 0 inside the token).
        """
        first, *hidden, last = [layer for layer in self.mlp_weights if isinstance(layer, nn.Linear)]
        grid_columns = self.conv.out_channels  # the grids follow the token features in the MLP input
        first.weight[:2].zero_()
        first.bias[:2].zero_()
        first.weight[0, grid_columns] = -sharpness
        first.weight[1, grid_columns + 1] = -sharpness
        for layer in hidden:
            layer.weight[:2].zero_()
            layer.bias[:2].zero_()
            layer.weight[0, 0] = layer.weight[1, 1] = 1.0
        last.weight[:, :2] = -1.0

    def attention(self, h: Tensor, x_mask: Tensor, durations: Tensor, frame_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Attention weights `W` and auxiliary context `C`, computed in float32 (float64 for a double module).

        Shapes:
            - h: :math:`[B, C, T_text]`
            - x_mask: :math:`[B, 1, T_text]`
            - durations: :math:`[B, T_text]`
            - frame_mask: :math:`[B, 1, T_feats]`
            - weights: :math:`[B, q, T_feats, T_text]`, zero on padding tokens and padding frames
            - aux: :math:`[B, T_feats, T_text, p]`
        """
        dtype = self.conv.weight.dtype
        with torch.autocast(device_type=h.device.type, enabled=False):
            x_mask, frame_mask = x_mask.to(dtype), frame_mask.to(dtype)
            starts, ends = boundary_grids(durations.to(dtype) * x_mask[:, 0], frame_mask.size(2))
            h = h.to(dtype) * x_mask
            token_features = rearrange(self.conv(h), "b c t -> b 1 t c")
            aux_features = token_features if self.conv_aux is None else rearrange(self.conv_aux(h), "b c t -> b 1 t c")
            grids = torch.stack([starts, ends], dim=-1)
            if self.compress_grids:
                # Keeps the sign and the fine detail near a token's boundaries (what the attention needs) but stops
                # the raw distances to far tokens (hundreds of frames) from blowing up the auxiliary context C, and
                # with it the prior's log-std, early in training.
                grids = signed_log(grids)
            logits = rearrange(self._grid_mlp(self.mlp_weights, token_features, grids), "b f t q -> b q f t")
            logits = logits.masked_fill(rearrange(x_mask, "b 1 t -> b 1 1 t") == 0, float("-inf"))
            weights = torch.softmax(logits, dim=-1) * rearrange(frame_mask, "b 1 f -> b 1 f 1")
            aux = self._grid_mlp(self.mlp_aux, aux_features, grids)
        return weights, aux

    @staticmethod
    def _grid_mlp(mlp: nn.Sequential, token_features: Tensor, grids: Tensor) -> Tensor:
        """`mlp(concat([token_features, grids], -1))` for every (frame, token) cell, without building the concat.

        The first layer is linear, so its token part is computed once per token and broadcast over the frames
        instead of once per cell: the same function and parameters, a fraction of the work on the `[B, T_feats,
        T_text]` grid (the durator's hot spot at inference).

        Shapes:
            - token_features: :math:`[B, 1, T_text, C_conv]`
            - grids: :math:`[B, T_feats, T_text, 2]`
            - output: :math:`[B, T_feats, T_text, C_out]`
        """
        first, rest = mlp[0], mlp[1:]
        num_token_features = token_features.size(-1)
        hidden = F.linear(token_features, first.weight[:, :num_token_features], first.bias)
        hidden = hidden + F.linear(grids, first.weight[:, num_token_features:])
        return rest(hidden)

    def forward(self, h: Tensor, x_mask: Tensor, durations: Tensor, frame_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Expand phoneme states to frames: `O = Proj_W(concat_q(W H^T)) + Proj_C(concat_q(einsum(W, C)))`.

        Args:
            h: Phoneme hidden states.
            x_mask: Token mask.
            durations: Token durations in frames (float, differentiable).
            frame_mask: Frame mask; its length sets `T_feats`.

        Returns:
            The frame-level hidden states (zero on padding frames) and the attention weights `W` of every head.

        Shapes:
            - h: :math:`[B, C, T_text]`
            - x_mask: :math:`[B, 1, T_text]`
            - durations: :math:`[B, T_text]`
            - frame_mask: :math:`[B, 1, T_feats]`
            - frame_hidden: :math:`[B, C, T_feats]`
            - weights: :math:`[B, q, T_feats, T_text]`
        """
        weights, aux = self.attention(h, x_mask, durations, frame_mask)
        tokens = rearrange(h * x_mask, "b c t -> b 1 t c").to(weights.dtype)
        context = torch.matmul(weights, tokens)  # [B, q, T_feats, T_text] x [B, 1, T_text, C] -> [B, q, T_feats, C]
        aux_context = torch.einsum("bqft,bftp->bfqp", weights, aux)  # sum over tokens: [B, T_feats, q, p]
        out = self.proj_weights(rearrange(context, "b q f c -> b f (q c)"))
        out = out + self.proj_aux(rearrange(aux_context, "b f q p -> b f (q p)"))
        return rearrange(out, "b f c -> b c f") * frame_mask, weights


def hard_length_regulation(h: Tensor, durations: Tensor, x_mask: Tensor, frame_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Repeat every phoneme state by its integer duration.

    Shapes:
        - h: :math:`[B, C, T_text]`
        - durations: :math:`[B, T_text]` (integer-valued)
        - x_mask: :math:`[B, 1, T_text]`
        - frame_mask: :math:`[B, 1, T_feats]`
        - frame_hidden: :math:`[B, C, T_feats]`
        - path: :math:`[B, T_feats, T_text]`
    """
    pair_mask = rearrange(x_mask, "b 1 t -> b t 1") * frame_mask  # [B, T_text, T_feats]
    path = generate_path(durations * x_mask[:, 0], pair_mask.to(h.dtype))
    frame_hidden = torch.matmul(h, path)  # [B, C, T_text] x [B, T_text, T_feats] -> [B, C, T_feats]
    return frame_hidden, rearrange(path, "b t f -> b f t")


class Durator(nn.Module):
    """Duration predictor plus upsampling to the frame-level prior statistics p(z'|y).

    Args:
        in_channels: Channels `C` of the phoneme hidden states (and of the frame-level hidden states).
        latent_channels: Channels of the prior mean and log-std.
        hidden_channels_predictor: Channels of the duration predictor convolutions.
        num_layers_predictor: Convolution layers of the duration predictor.
        kernel_size_predictor: Kernel size of the duration predictor convolutions.
        dropout_p_predictor: Dropout of the duration predictor.
        use_learnable_upsampling: Learnable upsampling; False uses hard length regulation. Defaults to True.
        num_heads: Attention heads `q` of the upsampling. Defaults to 4.
        num_aux_channels: Auxiliary context channels `p` of the upsampling. Defaults to 2.
        conv_channels: Channels of the upsampling's per-token convolution. Defaults to 8.
        mlp_channels: Hidden channels of the upsampling's swish MLPs. Defaults to 16.
        kernel_size_upsampling: Kernel size of the upsampling's per-token convolution. Defaults to 3.
        init_sharpness_upsampling: Slope of the upsampling's start near hard length regulation; 0 for the plain
            random initialisation. Defaults to 8.0.
        mlp_hidden_layers_upsampling: Hidden layers of the upsampling's swish MLPs. Defaults to 2.
        share_conv_upsampling: One per-token convolution for both upsampling MLPs. Defaults to True.
        compress_grids_upsampling: Signed-log compression of the upsampling's boundary grids. Defaults to True.
        min_duration: Lower bound of a predicted duration in frames (before `length_scale`). Defaults to 1.0.
        max_duration: Upper bound of a predicted duration in frames (before `length_scale`). Defaults to 100.0.
        detach_predictor_input: Stop the duration predictor's gradients at `h`. Defaults to False.
        detach_predicted_durations: Stop the prior's gradients (the soft-DTW KL terms) at the predicted durations,
            so the duration predictor learns from the duration loss only; the upsampling still learns from the
            prior. The paper trains the durations through the prior (False). Defaults to False.
        mean_corrected_durations: Predict `exp(log d + var / 2)`, the mean duration under a log-normal residual,
            instead of `exp(log d)`, its median; `var` is the variance of the log-duration residual tracked in
            training (`track_log_duration_variance`). The paper predicts `exp(log d)`. Defaults to True.
        variance_momentum: Momentum of the tracked duration loss. Defaults to 0.99.
    """

    def __init__(
        self,
        in_channels: int,
        latent_channels: int,
        hidden_channels_predictor: int,
        num_layers_predictor: int,
        kernel_size_predictor: int,
        dropout_p_predictor: float,
        use_learnable_upsampling: bool = True,
        num_heads: int = 4,
        num_aux_channels: int = 2,
        conv_channels: int = 8,
        mlp_channels: int = 16,
        kernel_size_upsampling: int = 3,
        init_sharpness_upsampling: float = 8.0,
        mlp_hidden_layers_upsampling: int = 2,
        share_conv_upsampling: bool = True,
        compress_grids_upsampling: bool = True,
        min_duration: float = 1.0,
        max_duration: float = 100.0,
        detach_predictor_input: bool = False,
        detach_predicted_durations: bool = False,
        mean_corrected_durations: bool = True,
        variance_momentum: float = 0.99,
    ):
        super().__init__()
        if not 0 < min_duration <= max_duration:
            raise ValueError(f"need 0 < min_duration <= max_duration, got {min_duration} and {max_duration}")
        self.min_duration = min_duration
        self.max_duration = max_duration
        self.detach_predictor_input = detach_predictor_input
        self.detach_predicted_durations = detach_predicted_durations
        self.use_learnable_upsampling = use_learnable_upsampling
        self.duration_predictor = DurationPredictor(
            in_channels, hidden_channels_predictor, num_layers_predictor, kernel_size_predictor, dropout_p_predictor
        )
        self.upsampling = None
        if use_learnable_upsampling:
            self.upsampling = LearnableUpsampling(
                in_channels,
                num_heads=num_heads,
                num_aux_channels=num_aux_channels,
                conv_channels=conv_channels,
                mlp_channels=mlp_channels,
                kernel_size=kernel_size_upsampling,
                init_sharpness=init_sharpness_upsampling,
                mlp_hidden_layers=mlp_hidden_layers_upsampling,
                share_conv=share_conv_upsampling,
                compress_grids=compress_grids_upsampling,
            )
        self.proj_mean = nn.Conv1d(in_channels, latent_channels, 1)
        self.proj_log_std = nn.Conv1d(in_channels, latent_channels, 1)
        # A regression on log durations predicts E[log d] per token; exp() of it is the median duration, which falls
        # short of the mean by exp(-var/2) when the residual is log-normal with variance var. Early in training the
        # residual is large (~0.45 after 300 steps of the learning benchmark) and the utterances come out ~30 % short;
        # the correction vanishes as the predictor learns. The variance excludes the mean residual: a predictor whose
        # level is off is not a noisy one.
        self.mean_corrected_durations = mean_corrected_durations
        self.variance_momentum = variance_momentum
        self.register_buffer("log_duration_variance", torch.zeros(()))

    @classmethod
    def from_args(cls, args: NaturalspeechArgs) -> "Durator":
        """Build the durator from the model arguments (phoneme and latent channels are `args.hidden_channels`)."""
        return cls(
            in_channels=args.hidden_channels,
            latent_channels=args.hidden_channels,
            hidden_channels_predictor=args.hidden_channels_durator,
            num_layers_predictor=args.num_layers_durator,
            kernel_size_predictor=args.kernel_size_durator,
            dropout_p_predictor=args.dropout_p_durator,
            use_learnable_upsampling=args.use_learnable_upsampling,
            num_heads=args.num_heads_upsampling,
            num_aux_channels=args.num_aux_channels_upsampling,
            conv_channels=args.conv_channels_upsampling,
            mlp_channels=args.mlp_channels_upsampling,
            kernel_size_upsampling=args.kernel_size_upsampling,
            init_sharpness_upsampling=args.init_sharpness_upsampling,
            mlp_hidden_layers_upsampling=args.mlp_hidden_layers_upsampling,
            share_conv_upsampling=args.share_conv_upsampling,
            compress_grids_upsampling=args.compress_grids_upsampling,
            min_duration=args.min_duration_frames,
            max_duration=args.max_duration_frames,
            detach_predictor_input=args.detach_durator_input,
            detach_predicted_durations=args.detach_predicted_durations,
            mean_corrected_durations=args.mean_corrected_durations,
        )

    @torch.no_grad()
    def track_log_duration_variance(self, variance: Tensor) -> None:
        """Fold a training step's log-duration residual variance (`losses.log_duration_residual_variance`) into the
        tracked one."""
        variance = variance.detach().float()
        if not torch.isfinite(variance):
            return
        if self.log_duration_variance == 0:  # the first step: no history to average with
            self.log_duration_variance.copy_(variance)
        else:
            self.log_duration_variance.lerp_(variance, 1 - self.variance_momentum)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # checkpoints from before the tracked variance: no correction, as they were trained
        state_dict.setdefault(prefix + "log_duration_variance", torch.zeros(()))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def predicted_durations(self, log_durations: Tensor, x_mask: Tensor, length_scale: float | Tensor = 1.0) -> Tensor:
        """`clamp(exp(log_durations), min_duration, max_duration) * length_scale` in float32, zero on padding;
        `log_durations + var / 2` with `mean_corrected_durations`.

        The clamp is applied to the log durations, so `exp()` stays finite and its gradient never meets `inf`.

        Shapes:
            - log_durations: :math:`[B, 1, T_text]`
            - x_mask: :math:`[B, 1, T_text]`
            - durations: :math:`[B, T_text]`
        """
        dtype = torch.promote_types(log_durations.dtype, torch.float32)
        log_durations = log_durations[:, 0].to(dtype)
        if self.mean_corrected_durations:
            log_durations = log_durations + 0.5 * self.log_duration_variance
        log_durations = log_durations.clamp(math.log(self.min_duration), math.log(self.max_duration))
        return torch.exp(log_durations) * length_scale * x_mask[:, 0].to(dtype)

    @staticmethod
    def frame_lengths(durations: Tensor, max_frames: int | None = None) -> Tensor:
        """`round(sum(durations))`, at least 1 and at most `max_frames`: :math:`[B, T_text] -> [B]` (long)."""
        lengths = torch.round(durations.detach().sum(dim=1)).long().clamp(min=1)
        return lengths if max_frames is None else lengths.clamp(max=max_frames)

    def forward(
        self,
        h: Tensor,
        x_mask: Tensor,
        durations: Tensor | None = None,
        length_scale: float | Tensor = 1.0,
        max_frames: int | None = None,
    ) -> DuratorOutput:
        """Predict durations and expand the phoneme states to the frame-level prior.

        Args:
            h: Phoneme hidden states.
            x_mask: Token mask.
            durations: Token durations in frames (e.g. from monotonic alignment search), used as given; None uses
                the predicted ones. Hard length regulation rounds either to integers. Defaults to None.
            length_scale: Factor on predicted durations (a number or a 0-d tensor); larger is slower speech. Defaults
                to 1.0.
            max_frames: Most frames per item; None for no limit. Defaults to None.

        Returns:
            :class:`DuratorOutput`; every frame-level tensor is zero on padding frames.

        Shapes:
            - h: :math:`[B, C, T_text]`
            - x_mask: :math:`[B, 1, T_text]`
            - durations: :math:`[B, T_text]`
            - out.log_durations: :math:`[B, 1, T_text]`
            - out.durations: :math:`[B, T_text]`
            - out.frame_lengths: :math:`[B]`
            - out.frame_mask: :math:`[B, 1, T_feats]`
            - out.frame_hidden: :math:`[B, C, T_feats]`
            - out.prior_mean, out.prior_log_std: :math:`[B, C_latent, T_feats]`
            - out.attention: :math:`[B, T_feats, T_text]`
        """
        log_durations = self.duration_predictor(h.detach() if self.detach_predictor_input else h, x_mask)
        if durations is None:
            durations = self.predicted_durations(log_durations, x_mask, length_scale)
            if self.detach_predicted_durations:
                durations = durations.detach()
        else:
            durations = durations.to(torch.promote_types(durations.dtype, torch.float32)) * x_mask[:, 0]
        if self.upsampling is None:
            durations = torch.round(durations)
        frame_lengths = self.frame_lengths(durations, max_frames)
        # a tensor-valued length, not `int(...)`: traced for ONNX, the frame axis then follows the durations at run time
        frame_mask = sequence_mask(frame_lengths, frame_lengths.max()).unsqueeze(1).to(h.dtype)
        if self.upsampling is None:
            frame_hidden, attention = hard_length_regulation(h, durations, x_mask, frame_mask)
        else:
            frame_hidden, weights = self.upsampling(h, x_mask, durations, frame_mask)
            attention = weights.mean(dim=1)
        prior_mean = self.proj_mean(frame_hidden) * frame_mask
        prior_log_std = self.proj_log_std(frame_hidden) * frame_mask
        return DuratorOutput(
            log_durations, durations, frame_lengths, frame_mask, frame_hidden, prior_mean, prior_log_std, attention
        )
