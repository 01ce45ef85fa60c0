"""NaturalSpeech: end-to-end text to speech synthesis with human-level quality.

Tan et al., 2022, https://arxiv.org/abs/2205.04421. The components live in `TTS/tts/layers/naturalspeech/`; this
module wires them and plugs them into the toolkit's Trainer and synthesizer.
"""

import logging
import os
from itertools import chain
from typing import Any, NamedTuple

import torch
import torch.distributed as dist
from coqpit import Coqpit
from torch import nn
from torch.utils.data import DataLoader
from trainer.trainer_utils import get_optimizer, get_scheduler
from trainer.utils.distributed import is_dist_avail_and_initialized

from TTS.tts.configs.naturalspeech_config import NaturalspeechConfig
from TTS.tts.configs.vits_config import VitsArgs
from TTS.tts.layers.naturalspeech.alignment import AlignmentPrior, load_duration_labels
from TTS.tts.layers.naturalspeech.duration_discriminator import (
    DurationDiscriminator,
    duration_discriminator_loss,
    duration_generator_loss,
)
from TTS.tts.layers.naturalspeech.durator import Durator
from TTS.tts.layers.naturalspeech.flows import BidirectionalFlow
from TTS.tts.layers.naturalspeech.losses import (
    FrameGaussians,
    NaturalspeechDiscriminatorLoss,
    NaturalspeechGeneratorLoss,
    PriorPosteriorKL,
    aligned_log_duration_variance,
    duration_loss,
    log_duration_residual_variance,
)
from TTS.tts.layers.naturalspeech.main_stage_gate import MainStageGate
from TTS.tts.layers.naturalspeech.memory_bank import MemoryBank
from TTS.tts.layers.naturalspeech.phoneme_encoder import PhonemeEncoder
from TTS.tts.layers.naturalspeech.runtime.checkpoints import check_state_dict, load_checkpoint_state
from TTS.tts.layers.naturalspeech.runtime.dataset import NaturalspeechDataset
from TTS.tts.layers.naturalspeech.runtime.espeak_inprocess import use_inprocess_espeak
from TTS.tts.layers.naturalspeech.runtime.finetuning import freeze_modules
from TTS.tts.layers.naturalspeech.runtime.finetuning import warm_start as warm_start_from_checkpoint
from TTS.tts.layers.naturalspeech.runtime.streaming import (
    DEFAULT_CHUNK_FRAMES,
    DecoderContext,
    SynthesisStream,
    decoder_context_from_args,
)
from TTS.tts.layers.naturalspeech.runtime.text_input import strip_control_characters
from TTS.tts.layers.naturalspeech.runtime.trainer_hooks import (
    TrainerHooks,
    mean_over_ranks,
    protect_checkpoint_saves,
    run_on_rank_zero_first,
)
from TTS.tts.layers.naturalspeech.speakers import SpeakerEmbedding, SpeakerToHidden, speaker_inputs
from TTS.tts.layers.naturalspeech.training_stages import StageSwitches, gather_training_latents, switches_at
from TTS.tts.layers.vits.discriminator import VitsDiscriminator
from TTS.tts.layers.vits.networks import PosteriorEncoder
from TTS.tts.models.base_tts import BaseTTSE2E
from TTS.tts.utils.helpers import rand_segments, segment, sequence_mask
from TTS.utils.audio.torch_transforms import spec_to_mel, wav_to_mel, wav_to_spec
from TTS.vocoder.models.hifigan_generator import HifiganGenerator

logger = logging.getLogger(__name__)

# name prefixes of the parameters optimizer 0 trains: the waveform discriminators and VITS2's duration discriminator
DISCRIMINATOR_PREFIXES = ("disc.", "duration_disc.")


class LatentSynthesis(NamedTuple):
    """Result of :meth:`Naturalspeech.synthesize_latents`: the decoder input and what timings need."""

    latents: torch.Tensor
    durations: torch.Tensor
    frame_lengths: torch.Tensor
    frame_mask: torch.Tensor
    attention: torch.Tensor
    speaker: torch.Tensor | None = None  # the speaker vector `g` [B, C_g, 1] the decoder reads (multi-speaker)


class Naturalspeech(BaseTTSE2E):
    """NaturalSpeech text-to-speech model.

    Training graph (posterior path above, prior path below; `f` is the volume-preserving flow)::

        spectrogram -> posterior encoder -> z ~ q(z|x) ----------> memory attention -> HiFi-GAN -> waveform slice
                                             |  f                       ^
                                             v                          | L_e2e (tuning)
        phonemes -> phoneme encoder -> durator -> p(z'|y) <- L_bwd/L_fwd -> f^-1(z') -> memory attention -> HiFi-GAN

    Inference: phonemes -> phoneme encoder -> durator (predicted durations) -> z' ~ p(z'|y) -> f^-1 -> memory
    attention -> HiFi-GAN -> waveform. The posterior encoder is used only in training. With a pre-trained encoder
    whose checkpoint carries sup-phonemes (`use_sup_phonemes`), the phoneme encoder also reads the sup-phoneme of
    each phoneme, as in pre-training (`encode_phonemes`).

    A multi-speaker model (`use_speaker_embedding` or `use_d_vector_file`, beyond the paper) conditions the durator,
    the alignment prior, the posterior encoder, the flow and the decoder on a speaker vector; the memory bank is
    shared (`layers/naturalspeech/speakers.py`). VITS2's options (duration discriminator, transformer flow, noise in
    alignment search) are switches, off by default.

    Every component of the paper's ablation study has a switch in `NaturalspeechArgs`; the training stage (warm-up,
    main, tuning) follows from the global step and `NaturalspeechConfig.warmup_steps`/`tuning_start_step`, and
    with `main_stage_min_duration_r2` from how well the duration predictor has learned (`main_stage_gate.py`).

    Examples:
        >>> from TTS.tts.configs.naturalspeech_config import NaturalspeechConfig
        >>> from TTS.tts.models.naturalspeech import Naturalspeech
        >>> model = Naturalspeech(NaturalspeechConfig())
    """

    config: NaturalspeechConfig

    def __init__(self, config: Coqpit, ap=None, tokenizer=None, speaker_manager=None, language_manager=None):
        super().__init__(config, ap, tokenizer, speaker_manager, language_manager)
        args = self.args
        _check_decoder_matches_audio(args, config.audio)
        if args.phonemize_in_process:  # the same ids as the toolkit's espeak-ng program, without a process per text
            use_inprocess_espeak(self.tokenizer)
        self.num_embedded_speakers, self.embedded_speaker_dim = self._speaker_dims(args)
        # The same initial weights in every process and on every DDP rank, so a run is reproducible from its seed;
        # the caller's global random state is left as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.training_seed)
            self._build_networks(args)
        # parts that do not train (fine-tuning): applied again whenever the model is built, so a resumed run keeps them
        freeze_modules(self, args.freeze_modules, DISCRIMINATOR_PREFIXES)
        # Training progress is model state, saved with every checkpoint: a resumed run continues in its stage
        # with its fitted memory bank instead of starting over with a random one.
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.register_buffer("memory_initialized", torch.zeros((), dtype=torch.bool))
        self.main_stage_gate = MainStageGate(config.main_stage_min_duration_r2)
        self.noise_scale = args.inference_noise_scale
        self.length_scale = args.length_scale
        # gradient averaging over ranks and the non-finite step guard (plain state, not in the state dict)
        self.trainer_hooks = TrainerHooks(discriminator_prefix=DISCRIMINATOR_PREFIXES)
        # the log-duration residual and aligned variances of the step in progress, tracked by the durator and the
        # main-stage gate once the step is taken
        self._step_duration_variance: tuple[torch.Tensor, torch.Tensor] | None = None
        self._skipped_before_step = 0
        # the generator optimizer while the Trainer sets up (`on_init_start` to `on_init_end`): parameters created
        # then (the sup-phoneme input, from the pre-training or a restored checkpoint) join it
        self._setup_optimizer: torch.optim.Optimizer | None = None
        # `pretrained_encoder_path` and `finetune_checkpoint_path` are read when a training run starts
        # (`on_init_start`), not here: synthesis builds the model too, and a published run loads without those files.

    def _build_networks(self, args) -> None:
        """The sub-networks, in the order of the data flow."""
        hidden = args.hidden_channels
        g_channels = self.embedded_speaker_dim  # 0 for a single-speaker model: no conditioning layer anywhere
        self.phoneme_encoder = PhonemeEncoder(
            args.num_chars,
            hidden,
            args.hidden_channels_ffn_phoneme_encoder,
            args.num_heads_phoneme_encoder,
            args.num_layers_phoneme_encoder,
            args.kernel_size_phoneme_encoder,
            args.dropout_p_phoneme_encoder,
            cond_channels=g_channels if args.use_speaker_conditioned_phoneme_encoder else 0,
            cond_block=args.speaker_block_phoneme_encoder,
        )
        # phoneme-level Gaussians scored by alignment search (durations for warm-up and the duration loss)
        self.alignment_prior = AlignmentPrior(hidden)
        self.durator = Durator.from_args(args)
        self.posterior_encoder = PosteriorEncoder(
            args.out_channels,
            hidden,
            hidden,
            kernel_size=args.kernel_size_posterior_encoder,
            dilation_rate=args.dilation_rate_posterior_encoder,
            num_layers=args.num_layers_posterior_encoder,
            cond_channels=g_channels,
        )
        self.flow = BidirectionalFlow(
            hidden,
            hidden,
            args.kernel_size_flow,
            args.dilation_rate_flow,
            args.num_layers_flow,
            args.num_flows,
            cond_channels=g_channels,
            use_transformer=args.use_transformer_flow,
            num_heads_transformer=args.num_heads_transformer_flow,
        )
        self.memory_bank = (
            MemoryBank(hidden, args.memory_bank_size, args.num_heads_memory_bank) if args.use_memory_bank else None
        )
        self.waveform_decoder = HifiganGenerator(
            hidden,
            1,
            args.resblock_type_decoder,
            args.resblock_dilation_sizes_decoder,
            args.resblock_kernel_sizes_decoder,
            args.upsample_kernel_sizes_decoder,
            args.upsample_initial_channel_decoder,
            args.upsample_rates_decoder,
            inference_padding=0,
            conv_pre_weight_norm=False,
            conv_post_weight_norm=False,
            conv_post_bias=False,
            cond_channels=g_channels,
        )
        self.disc = (
            VitsDiscriminator(args.periods_multi_period_discriminator, args.use_spectral_norm_discriminator)
            if args.init_discriminator
            else None
        )
        self.prior_posterior_kl = PriorPosteriorKL(
            args.soft_dtw_gamma,
            args.soft_dtw_warp,
            hidden,
            args.soft_dtw_steps,
            args.soft_dtw_bandwidth,
            args.soft_dtw_backend,
        )
        # Multi-speaker: the speaker vector `g`, and its projection onto the phoneme states the durator and the
        # alignment prior read (see `layers/naturalspeech/speakers.py`); None for a single-speaker model.
        self.speaker_embedding = SpeakerEmbedding(self.num_embedded_speakers, g_channels) if g_channels else None
        self.cond_durator = SpeakerToHidden(g_channels, hidden) if g_channels else None
        # VITS2's duration discriminator (optimizer 0 with the waveform discriminators); None unless switched on
        self.duration_disc = None
        if args.init_discriminator and args.use_duration_discriminator:
            self.duration_disc = DurationDiscriminator(
                hidden, args.hidden_channels_duration_discriminator, args.kernel_size_duration_discriminator
            )
        # The sup-phoneme input of the phoneme encoder (`SupPhonemeEmbedding`) comes from trained state only: the
        # pre-training checkpoint (`load_pretrained_encoder`) or a TTS checkpoint (`load_state_dict`). Its slot is
        # registered last, so its parameters come last in the generator optimizer whether they exist when the
        # optimizer is built or are appended to it later (`_set_sup_phonemes`): a resumed optimizer state fits.
        self.add_module("sup_phonemes", None)

    def _speaker_dims(self, args) -> tuple[int, int]:
        """Speakers of the learned embedding (0 for d-vectors) and channels of `g` (0 for a single-speaker model).

        The speaker count is the speaker manager's (the config's `speakers` or `speakers_file`, as the toolkit's VITS
        reads them), else `num_speakers`.
        """
        if args.use_d_vector_file:
            if args.d_vector_dim < 1:
                msg = "model_args.use_d_vector_file needs model_args.d_vector_dim (the channels of the d-vectors)."
                raise ValueError(msg)
            return 0, args.d_vector_dim
        if not args.use_speaker_embedding:
            return 0, 0
        manager = self.speaker_manager
        num_speakers = manager.num_speakers if manager is not None and manager.name_to_id else args.num_speakers
        if num_speakers < 1:
            msg = (
                "model_args.use_speaker_embedding needs the speakers: set the config's `speakers` (a list of names), "
                "model_args.speakers_file or model_args.num_speakers."
            )
            raise ValueError(msg)
        return num_speakers, args.speaker_embedding_channels

    @property
    def is_multi_speaker(self) -> bool:
        return self.speaker_embedding is not None

    def speaker_vector(self, aux_input: dict[str, Any] | None) -> torch.Tensor | None:
        """The speaker vector `g` `[B, C_g, 1]` of `aux_input` (`speaker_ids` or `d_vectors`); None if one speaker."""
        if self.speaker_embedding is None:
            return None
        speaker_ids, d_vectors = speaker_inputs(aux_input)
        device = self.cond_durator.weight.device
        return self.speaker_embedding(
            None if speaker_ids is None else speaker_ids.to(device),
            None if d_vectors is None else d_vectors.to(device),
        )

    def _condition_durator_input(self, h: torch.Tensor, x_mask: torch.Tensor, g: torch.Tensor | None) -> torch.Tensor:
        """The phoneme states the durator and the alignment prior read: `h`, plus the projected speaker vector."""
        return h if self.cond_durator is None else self.cond_durator.condition(h, x_mask, g)

    @property
    def mas_noise_scale(self) -> float:
        """VITS2's noise on the alignment search scores at this step (training only): decays linearly to 0."""
        args = self.args
        if not self.training or args.mas_noise_scale <= 0:
            return 0.0
        return args.mas_noise_scale * max(0.0, 1.0 - int(self.step) / max(1, args.mas_noise_decay_steps))

    @property
    def switches(self) -> StageSwitches:
        """The current training stage and the components and losses it uses."""
        step = int(self.step)
        return switches_at(step, self.config, self.main_stage_gate.is_open(step, self.config.warmup_steps))

    ##########################
    # forward passes
    ##########################

    def forward(
        self,
        tokens: torch.Tensor,
        token_lengths: torch.Tensor,
        spec: torch.Tensor,
        spec_lengths: torch.Tensor,
        waveform: torch.Tensor,
        aux_input: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Training forward pass of the generator in the current stage.

        Args:
            tokens: Phoneme ids.
            token_lengths: Valid tokens per item.
            spec: Linear spectrograms (posterior encoder input).
            spec_lengths: Valid frames per item.
            waveform: Recordings.
            aux_input: `{"durations": [B, T_text]}` to use given durations instead of alignment search;
                `speaker_ids` (`[B]`) or `d_vectors` (`[B, C_g]`) for a multi-speaker model.

        Returns:
            The tensors the losses and the logs need (see `Return Shapes`).

        Shapes:
            - tokens: :math:`[B, T_text]`
            - token_lengths: :math:`[B]`
            - spec: :math:`[B, C_spec, T_feats]`
            - spec_lengths: :math:`[B]`
            - waveform: :math:`[B, 1, T_wav]`

        Return Shapes:
            - model_outputs: :math:`[B, 1, T_slice * hop]` decoded posterior slice
            - waveform_seg: :math:`[B, 1, T_slice * hop]` matching recording slice
            - e2e_outputs: :math:`[B, 1, T_slice * hop]` decoded prior slice (tuning stage only)
            - alignments: :math:`[B, T_prior, T_text]`
            - durations: :math:`[B, T_text]` durations used for the prior
            - kl_terms: dict of unweighted KL and duration losses of this stage
            - duration_disc_inputs: with `use_duration_discriminator`, `h` `[B, C, T_text]` (detached), `x_mask`, and
              the `real` (aligned) and `fake` (predicted) log durations `[B, 1, T_text]`
        """
        switches = self.switches
        g = self.speaker_vector(aux_input)
        h, x_mask = self.encode_phonemes(tokens, token_lengths, g=g)
        h = self._condition_durator_input(h, x_mask, g)
        z, m_q, logs_q, y_mask = self.posterior_encoder(spec, spec_lengths, g=g)
        z_p = self.flow(z, y_mask, g)

        aligned_durations, loss_align = self.alignment_prior.align(
            h,
            x_mask,
            z_p,
            logs_q,
            y_mask,
            self.prior_posterior_kl,
            durations=(aux_input or {}).get("durations"),
            noise_scale=self.mas_noise_scale,
        )
        kl_terms = {"loss_align": loss_align}
        prior = self.durator(h, x_mask, durations=None if switches.use_predicted_durations else aligned_durations)
        kl_terms["loss_duration"] = duration_loss(prior.log_durations, aligned_durations, x_mask)
        if self.training:  # tracked when the step is taken (`on_train_step_end`); the same on every rank
            residual_variance = log_duration_residual_variance(prior.log_durations, aligned_durations, x_mask)
            aligned_variance = aligned_log_duration_variance(aligned_durations, x_mask)
            self._step_duration_variance = (mean_over_ranks(residual_variance), mean_over_ranks(aligned_variance))
        aligned = not switches.use_predicted_durations
        posterior = FrameGaussians(m_q, logs_q, spec_lengths)
        prior_frames = FrameGaussians(prior.prior_mean, prior.prior_log_std, prior.frame_lengths)
        # L_bwd: the posterior sample mapped forward, scored under the prior
        kl_terms["loss_kl_bwd"] = self.prior_posterior_kl(
            sample=posterior._replace(values=z_p), target=prior_frames, num_frames=spec_lengths, aligned=aligned
        )
        prior_sample = None
        if switches.use_forward_kl or switches.use_e2e:
            prior_sample = self._sample_prior(prior.prior_mean, prior.prior_log_std, prior.frame_mask, 1.0, g)
        if switches.use_forward_kl:
            # L_fwd: the prior sample mapped back, scored under the posterior
            kl_terms["loss_kl_fwd"] = self.prior_posterior_kl(
                sample=prior_frames._replace(values=prior_sample),
                target=posterior,
                num_frames=spec_lengths,
                aligned=aligned,
                posterior="target",
            )

        z_slice, slice_ids = rand_segments(z, spec_lengths, self.args.spec_segment_size, True, True)
        slice_mask = torch.ones_like(z_slice[:, :1])
        hop = self.config.audio.hop_length
        outputs = {
            "model_outputs": self.waveform_decoder(self._decoder_input(z_slice, slice_mask, switches), g=g),
            "waveform_seg": segment(waveform, slice_ids * hop, self.args.spec_segment_size * hop, pad_short=True),
            "slice_ids": slice_ids,
            "alignments": prior.attention,
            "durations": prior.durations,
            "prior_mean": prior.prior_mean,
            "posterior_mean": m_q,
            "kl_terms": kl_terms,
        }
        if self.duration_disc is not None:
            # what the duration discriminator compares: aligned (real) and predicted (fake) log durations given `h`
            outputs["duration_disc_inputs"] = {
                "h": h.detach(),
                "x_mask": x_mask,
                "real": torch.log(aligned_durations.float().unsqueeze(1) + 1e-6).detach() * x_mask,
                "fake": prior.log_durations,
            }
        if switches.use_e2e:
            e2e_slice, _ = rand_segments(prior_sample, prior.frame_lengths, self.args.spec_segment_size, True, True)
            outputs["e2e_outputs"] = self.waveform_decoder(self._decoder_input(e2e_slice, slice_mask, switches), g=g)
        return outputs

    def encode_phonemes(
        self,
        tokens: torch.Tensor,
        token_lengths: torch.Tensor,
        sup_ids: torch.Tensor | None = None,
        g: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Phoneme encoder over the phoneme ids, plus their sup-phonemes when the model has the sup-phoneme input.

        The sup-phoneme ids are computed here from the phoneme ids, in training and synthesis alike, so both always
        segment with the BPE stored in the model. `sup_ids` given instead are used as they are: the BPE runs in
        Python, so a traced graph (ONNX) takes them as an input. The speaker vector `g` is read only by a phoneme
        encoder built with `use_speaker_conditioned_phoneme_encoder`.

        Shapes:
            - tokens: :math:`[B, T_text]`
            - token_lengths: :math:`[B]`
            - sup_ids: :math:`[B, T_text]`
            - g: :math:`[B, C_g, 1]`
            - h: :math:`[B, C, T_text]`
            - x_mask: :math:`[B, 1, T_text]`
        """
        extra = None
        if self.sup_phonemes is not None:
            extra = self.sup_phonemes(tokens, token_lengths) if sup_ids is None else self.sup_phonemes.emb(sup_ids)
        return self.phoneme_encoder(tokens, token_lengths, extra_embedding=extra, g=g)

    def _decoder_input(self, z: torch.Tensor, mask: torch.Tensor, switches: StageSwitches) -> torch.Tensor:
        """The memory-bank reading of `z` when the memory VAE is active, else `z` itself."""
        if switches.use_memory_bank and self.memory_bank is not None:
            return self.memory_bank(z, mask)
        return z * mask

    def _sample_prior(self, mean, log_std, mask, noise_scale: float, g: torch.Tensor | None = None) -> torch.Tensor:
        """Sample z' ~ p(z'|y) and map it back to the posterior space with f^-1."""
        z_prior = (mean + torch.randn_like(mean) * torch.exp(log_std) * noise_scale) * mask
        return self.flow.inverse(z_prior, mask, g)

    @torch.no_grad()
    def synthesize_latents(
        self,
        tokens: torch.Tensor,
        token_lengths: torch.Tensor,
        noise_scale: float | torch.Tensor | None = None,
        length_scale: float | torch.Tensor | None = None,
        *,
        durations: torch.Tensor | None = None,
        sup_ids: torch.Tensor | None = None,
        speaker_ids: torch.Tensor | None = None,
        d_vectors: torch.Tensor | None = None,
    ) -> LatentSynthesis:
        """Everything of synthesis before the waveform decoder: the decoder's input and the token durations.

        The one inference path: :meth:`inference` decodes its latents, the ONNX export traces it (scales as tensors,
        the frame axis follows the durations at run time), and streaming (`runtime/streaming.py`) decodes its latents
        window by window. The flow and the memory bank run here once over the whole sentence; what is left, the
        HiFi-GAN decoder, is convolutional, so it can decode any window of the latents given enough context.

        Args:
            tokens: Phoneme ids.
            token_lengths: Valid tokens per item (each at least 1; checked by :meth:`inference`, not here).
            noise_scale: Prior sampling temperature (0 is deterministic); None for the model's.
            length_scale: Factor on the predicted durations (larger is slower speech); None for the model's.
            durations: Frames per token to use instead of the durator's prediction.
            sup_ids: Sup-phoneme ids instead of running the stored BPE (see :meth:`encode_phonemes`).
            speaker_ids: Speaker ids of a model with a learned speaker embedding (checked by :meth:`inference`).
            d_vectors: Speaker d-vectors of a model conditioned on d-vectors.

        Shapes:
            - tokens: :math:`[B, T_text]`
            - token_lengths: :math:`[B]`
            - out.latents: :math:`[B, C, T_feats]` (zero after each item's frames)
            - out.durations: :math:`[B, T_text]` (frames, float)
            - out.frame_lengths: :math:`[B]`
            - out.frame_mask: :math:`[B, 1, T_feats]`
            - out.attention: :math:`[B, T_feats, T_text]`
            - out.speaker: :math:`[B, C_g, 1]`, the decoder's conditioning (None for a single-speaker model)
        """
        noise_scale = self.noise_scale if noise_scale is None else noise_scale
        length_scale = self.length_scale if length_scale is None else length_scale
        g = self.speaker_vector({"speaker_ids": speaker_ids, "d_vectors": d_vectors})
        h, x_mask = self.encode_phonemes(tokens, token_lengths, sup_ids, g=g)
        prior = self.durator(
            self._condition_durator_input(h, x_mask, g),
            x_mask,
            durations=durations,
            length_scale=length_scale,
            max_frames=self.args.max_inference_len,
        )
        z = self._sample_prior(prior.prior_mean, prior.prior_log_std, prior.frame_mask, noise_scale, g)
        z = self._decoder_input(z, prior.frame_mask, self._inference_switches())
        return LatentSynthesis(z, prior.durations, prior.frame_lengths, prior.frame_mask, prior.attention, g)

    @torch.inference_mode()
    def inference(self, x: torch.Tensor, aux_input: dict[str, Any] | None = None) -> dict[str, Any]:
        """Synthesize waveforms from phoneme ids: :meth:`synthesize_latents`, then the decoder on each item.

        Args:
            x: Phoneme ids.
            aux_input: Optional `x_lengths` (defaults to the full length, batch size 1), `noise_scale`,
                `length_scale`, and `durations` (frames per token, replaces the durator's prediction); a
                multi-speaker model needs `speaker_ids` (`[B]`) or `d_vectors` (`[B, C_g]`).

        Raises:
            ValueError: An item has no token, or a speaker id is out of range or missing.

        Shapes:
            - x: :math:`[B, T_text]`

        Return Shapes:
            - model_outputs: :math:`[B, 1, T_wav]` (zero after each item's length)
            - alignments: :math:`[B, T_feats, T_text]`
            - durations: :math:`[B, T_text]`
            - frame_lengths: :math:`[B]`
            - y_mask: :math:`[B, 1, T_feats]`
        """
        aux_input = aux_input or {}
        x_lengths = self._checked_lengths(x, aux_input.get("x_lengths"))
        speaker_ids, d_vectors = speaker_inputs(aux_input)
        if self.speaker_embedding is not None:
            self.speaker_embedding.check_ids(speaker_ids, self._speaker_names())
        out = self.synthesize_latents(
            x,
            x_lengths,
            aux_input.get("noise_scale"),
            aux_input.get("length_scale"),
            durations=aux_input.get("durations"),
            speaker_ids=speaker_ids,
            d_vectors=d_vectors,
        )
        return {
            "model_outputs": self._decode_each(out.latents, out.frame_lengths, out.speaker),
            "alignments": out.attention,
            "durations": out.durations,
            "frame_lengths": out.frame_lengths,
            "y_mask": out.frame_mask,
        }

    @staticmethod
    def _checked_lengths(x: torch.Tensor, x_lengths: torch.Tensor | None) -> torch.Tensor:
        """`x_lengths`, or the full length of every row; a ValueError if an item has no token."""
        if x_lengths is None:
            x_lengths = torch.full((x.size(0),), x.size(1), dtype=torch.long, device=x.device)
        if x.size(1) == 0 or bool((x_lengths < 1).any()):
            msg = f"NaturalSpeech.inference: every item needs at least one token, got lengths {x_lengths.tolist()}."
            raise ValueError(msg)
        return x_lengths

    def synthesize(self, text: str, *args, **kwargs) -> dict[str, Any]:
        """`BaseTTS.synthesize`, but text that leaves nothing to speak is a clear error, not a click or a crash.

        Control characters are removed first (with a warning): espeak-ng would drop everything after a NUL.
        """
        text = strip_control_characters(text)
        self.speakable_ids(text, language=kwargs.get("language"))
        if "speaker" in kwargs:
            kwargs["speaker"] = self.checked_speaker(kwargs["speaker"])
        return super().synthesize(text, *args, **kwargs)

    def _speaker_names(self) -> list[str]:
        """Speaker names in id order (empty if the model has ids without names)."""
        manager = self.speaker_manager
        if manager is None or not manager.name_to_id:
            return []
        return [name for name, _ in sorted(manager.name_to_id.items(), key=lambda item: item[1])]

    def checked_speaker(self, speaker: str | int | None) -> str | int | None:
        """The speaker name for `speaker` (a name, or an id as a number); a ValueError naming the valid speakers.

        The toolkit's `synthesize` raises a bare `KeyError` for an unknown name; this names the choices instead.
        """
        if speaker is None or self.speaker_embedding is None:
            return speaker
        if speaker == "":  # the synthesizer's "no speaker": the toolkit then asks for one
            return None
        if self.args.use_d_vector_file:
            manager = self.speaker_manager
            names = sorted(manager.embedding_names) if manager is not None and manager.embeddings else []
            if names and speaker not in names and (manager is None or manager.encoder is None):
                msg = f"Speaker {speaker!r} has no d-vector in this model; its speakers are: {', '.join(names)}."
                raise ValueError(msg)
            return speaker
        names = self._speaker_names()
        if isinstance(speaker, int) and not isinstance(speaker, bool):
            self.speaker_embedding.check_ids(torch.tensor([speaker]), names)
            return names[speaker] if names else speaker
        if speaker not in names:
            msg = f"Speaker {speaker!r} is not a speaker of this model; its speakers are: {', '.join(names)}."
            raise ValueError(msg)
        return speaker

    def inference_stream(
        self,
        text: str,
        *,
        chunk_frames: int = DEFAULT_CHUNK_FRAMES,
        noise_scale: float | None = None,
        length_scale: float | None = None,
        language: str | None = None,
        speaker: str | int | None = None,
    ) -> SynthesisStream:
        """Synthesize `text` (one sentence, or a text to speak without pauses) as a stream of audio chunks.

        The latents are computed once, up front; then each chunk is the decoder over `chunk_frames` latent frames and
        their context (:attr:`decoder_context`). The joined chunks equal the waveform of :meth:`inference` for the
        same latents (to float rounding). See `runtime/streaming.py`.

        Args:
            text: Text to speak; it must have something speakable (see :meth:`speakable_ids`).
            chunk_frames: Latent frames per chunk (a chunk is `chunk_frames * hop_length` samples; the last one is
                shorter).
            noise_scale: Prior sampling temperature; None for the model's.
            length_scale: Factor on the predicted durations; None for the model's.
            language: Language of the text for the phonemizer, if the model has several.
            speaker: Speaker name or id of a multi-speaker model (learned speaker embedding).

        Returns:
            An iterator over 1-D float32 numpy chunks, which also carries the durations, the total length and
            `timings()` before the first chunk is decoded.

        Examples:
            >>> stream = model.inference_stream("Hello world.")
            >>> for chunk in stream:
            ...     player.write(chunk)
        """
        ids = self.speakable_ids(text, language=language)
        speaker_id = self.speaker_id_of(speaker)
        return SynthesisStream(
            self, ids, chunk_frames, noise_scale, length_scale, text=text, language=language, speaker_id=speaker_id
        )

    def speaker_id_of(self, speaker: str | int | None) -> int | None:
        """The speaker id of a speaker name or id (checked); None for a single-speaker model.

        Raises:
            ValueError: The model is multi-speaker and `speaker` is missing, unknown or out of range, or the model is
                conditioned on d-vectors (no speaker ids).
        """
        if self.speaker_embedding is None:
            return None
        if self.speaker_embedding.emb_g is None:
            raise ValueError("This model is conditioned on d-vectors, not speaker ids: use `synthesize`.")
        name = self.checked_speaker(speaker)
        if name is None:
            names = self._speaker_names()
            msg = f"This multi-speaker model needs a speaker: one of {', '.join(names) or 'its speaker ids'}."
            raise ValueError(msg)
        return self._speaker_names().index(name) if isinstance(name, str) else int(name)

    @property
    def decoder_context(self) -> DecoderContext:
        """Latent frames of context the decoder needs on each side of a window (its receptive field)."""
        return decoder_context_from_args(self.args)

    def speakable_ids(self, text: str, language: str | None = None) -> list[int]:
        """Token ids of `text` without control characters; a ValueError if nothing in it can be spoken.

        Raises:
            ValueError: The text is empty or only whitespace, or its ids are only blanks, padding and spaces.
        """
        text = strip_control_characters(text)
        if not text.strip():  # before the tokenizer, which would phonemize nothing and report it less clearly
            msg = f"text is empty or only whitespace: {text!r}"
            raise ValueError(msg)
        chars = self.tokenizer.characters
        silent = {chars.char_to_id(c) for c in (chars.blank, chars.pad, " ") if c and c in chars.vocab}
        ids = self.tokenizer.text_to_ids(text, language=language)
        if all(i in silent for i in ids):
            msg = f"text has no speakable characters after cleaning: {text!r}"
            raise ValueError(msg)
        return ids

    def _inference_switches(self) -> StageSwitches:
        # A fitted memory bank is used from the main stage on, whatever step the checkpoint was saved at.
        return self.switches._replace(use_memory_bank=bool(self.memory_initialized) and self.args.use_memory_bank)

    def _decode_each(self, z: torch.Tensor, frame_lengths: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        """Decode every item at its own length, so batched synthesis equals synthesis one sentence at a time.

        Shapes:
            - z: :math:`[B, C, T_feats]`
            - g: :math:`[B, C_g, 1]`
            - output: :math:`[B, 1, T_feats * hop]`
        """
        hop = self.config.audio.hop_length
        wav = z.new_zeros(z.size(0), 1, z.size(2) * hop)
        for index, length in enumerate(frame_lengths.tolist()):
            g_item = None if g is None else g[index : index + 1]
            wav[index, :, : length * hop] = self.waveform_decoder(z[index : index + 1, :, :length], g=g_item)[0]
        return wav

    ##########################
    # training with the Trainer
    ##########################

    def on_train_step_start(self, trainer) -> None:
        """Follow the Trainer's global step; fit the memory bank once when the main stage begins.

        The global RNG is re-seeded from `training_seed` and the step, so the random slices, prior samples and dropout
        of a step do not depend on how many steps this process ran: a run resumed from a checkpoint repeats the
        uninterrupted run's losses exactly (deterministic CPU mode).
        """
        torch.manual_seed(self.config.training_seed + trainer.total_steps_done)
        self._skipped_before_step, self._step_duration_variance = self.num_skipped_steps, None
        previous = self.switches.stage
        self.step.fill_(trainer.total_steps_done)
        self.main_stage_gate.update(trainer.total_steps_done, self.config.warmup_steps)
        if self.switches.stage is not previous:
            logger.info("NaturalSpeech training stage: %s (step %d)", self.switches.stage.value, int(self.step))
        if self.switches.use_memory_bank and not bool(self.memory_initialized):
            self.init_memory_bank(trainer.train_loader)

    def on_train_step_end(self, trainer) -> None:
        """Track the step's duration variance if the generator update did not (no `before_gradient_clipping` call)."""
        self._track_step_duration_variance()

    def _track_step_duration_variance(self) -> None:
        """Fold the step's log-duration variances into the durator's and the gate's, unless the step was skipped (a
        skipped step leaves the model as it was); once per step."""
        if self._step_duration_variance is not None and self.num_skipped_steps == self._skipped_before_step:
            residual_variance, aligned_variance = self._step_duration_variance
            self.durator.track_log_duration_variance(residual_variance)
            self.main_stage_gate.track(residual_variance, aligned_variance)
        self._step_duration_variance = None

    def on_init_start(self, trainer) -> None:
        """Warm-start from `finetune_checkpoint_path`, or initialise the phoneme encoder from `pretrained_encoder_path`,
        when a training run starts from scratch.

        The Trainer calls this after creating the optimizers (the weights are copied into the same parameters, so the
        optimizers hold them) and before it restores a checkpoint (`--restore_path`, `--continue_path`) or wraps
        the model in DDP (every rank loads the same file). A run that restores a checkpoint, or a model that was
        already trained (`step` > 0), keeps its own weights and never reads the files.
        """
        super().on_init_start(trainer)
        # The optimizers exist already: the sup-phoneme input, created by the pre-trained encoder below or by the
        # checkpoint the Trainer restores next, joins the generator's (the restored optimizer state expects it).
        self._setup_optimizer = trainer.optimizer[1]
        restoring = bool(getattr(trainer.args, "restore_path", None))
        if self.args.finetune_checkpoint_path and not restoring and int(self.step) == 0:
            self.warm_start(self.args.finetune_checkpoint_path, report_dir=trainer.output_path)
        elif self.args.pretrained_encoder_path and not restoring and int(self.step) == 0:
            self.load_pretrained_encoder()

    def warm_start(self, path: str, report_dir: str | None = None):
        """Start from the weights of a trained run with (possibly) another phoneme set: `finetuning.warm_start`.

        The trained encoder is the checkpoint's, so `pretrained_encoder_path` is not read. The report of what was kept
        is logged and, with `report_dir`, written there as `finetune_report.json` (rank 0).
        """
        report = warm_start_from_checkpoint(self, path, refit_memory_bank=self.args.finetune_refit_memory_bank)
        if report_dir and (not is_dist_avail_and_initialized() or dist.get_rank() == 0):
            report.save(os.path.join(report_dir, "finetune_report.json"))
        return report

    def load_pretrained_encoder(self, path: str | None = None) -> None:
        """Load the encoder of a mixed-phoneme pre-training checkpoint (default: `pretrained_encoder_path`).

        With `use_sup_phonemes`, the checkpoint's sup-phoneme BPE and embedding become the encoder's sup-phoneme
        input (`sup_phonemes`), saved with the model from then on. The Trainer path calls this from `on_init_start`
        and adds the new parameters to its optimizer; call it yourself before building the optimizers of a training
        loop of your own.

        Raises:
            ValueError: No path given or configured, or the checkpoint's phoneme vocabulary differs from the model's.
        """
        from TTS.tts.layers.naturalspeech.pretraining.model import load_pretrained_encoder
        from TTS.tts.layers.naturalspeech.pretraining.sup_phoneme_embedding import SupPhonemeEmbedding

        path = path or self.args.pretrained_encoder_path
        if not path:
            msg = "load_pretrained_encoder: no path given and model_args.pretrained_encoder_path is not set."
            raise ValueError(msg)
        pretrained = load_pretrained_encoder(self.phoneme_encoder, path, self.tokenizer.characters.vocab)
        logger.info("Phoneme encoder initialised from %s", path)
        if not self.args.use_sup_phonemes:
            return
        if pretrained is None:
            logger.warning(
                "%s carries no sup-phoneme BPE (written before pre-training stored it): sup-phonemes are unavailable, "
                "the phoneme encoder reads phonemes only. `add_sup_phonemes_to_checkpoint` in "
                "TTS/tts/layers/naturalspeech/pretraining/model.py adds the run's BPE file to the checkpoint.",
                path,
            )
            return
        self._set_sup_phonemes(SupPhonemeEmbedding(pretrained.tokenizer, pretrained.embedding))
        logger.info("Sup-phoneme input initialised from %s (%d sup-phonemes)", path, pretrained.embedding.size(0))

    def _set_sup_phonemes(self, module: nn.Module | None) -> None:
        """Install (or remove) the sup-phoneme input on the model's device, and in the optimizer being set up."""
        old = self.sup_phonemes
        if module is not None:
            module = module.to(next(self.phoneme_encoder.parameters()).device)
        self.sup_phonemes = module
        if module is not None:  # frozen if `freeze_modules` names it, as every other part
            freeze_modules(self, [n for n in self.args.freeze_modules if n.split(".")[0] == "sup_phonemes"])
        if self._setup_optimizer is None:
            return
        group = self._setup_optimizer.param_groups[0]
        stale = {id(p) for p in old.parameters()} if old is not None else set()
        group["params"] = [p for p in group["params"] if id(p) not in stale]
        group["params"].extend(p for p in (module.parameters() if module is not None else []) if p.requires_grad)

    def _match_sup_phonemes(self, state: dict[str, Any], strict: bool) -> None:
        """Give the model the sup-phoneme input `state` has: built from its stored BPE, or none.

        The state, not the config, decides: a TTS checkpoint's weights were trained with (or without) it.

        Raises:
            ValueError: The stored BPE was learned over another phoneme vocabulary than the model's tokenizer's.
        """
        from TTS.tts.layers.naturalspeech.pretraining.model import vocabulary_mismatch
        from TTS.tts.layers.naturalspeech.pretraining.sup_phoneme_embedding import SupPhonemeEmbedding

        key = "sup_phonemes.bpe"
        if key not in state:
            if strict and self.sup_phonemes is not None:
                self._set_sup_phonemes(None)
            return
        current = self.sup_phonemes
        if current is not None and torch.equal(current.bpe.cpu(), state[key].cpu()):
            return
        module = SupPhonemeEmbedding.from_state_dict(state, prefix="sup_phonemes.")
        if self.tokenizer is not None:
            difference = vocabulary_mismatch(module.vocabulary, self.tokenizer.characters.vocab)
            if difference:
                msg = f"The checkpoint's sup-phoneme BPE is over another phoneme vocabulary: {difference}."
                raise ValueError(msg)
        self._set_sup_phonemes(module)

    def load_state_dict(self, state_dict: dict[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """`nn.Module.load_state_dict`, after giving the model the sup-phoneme input of `state_dict` (or none).

        The Trainer restores checkpoints (`--continue_path`, `--restore_path`) through this.
        """
        self._match_sup_phonemes(state_dict, strict)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def on_init_end(self, trainer) -> None:
        """Make the Trainer's checkpoint writes atomic and clear temporaries a killed save left behind."""
        self._setup_optimizer = None
        protect_checkpoint_saves(trainer)

    @torch.no_grad()
    def init_memory_bank(self, data_loader: DataLoader) -> None:
        """Fit the memory bank by k-means over posterior latents of (a bounded sample of) the training data.

        Runs on rank 0 and is broadcast under distributed training. Callable on its own for an existing checkpoint.
        """
        if self.memory_bank is None:
            msg = "init_memory_bank: this model has no memory bank (use_memory_bank is False)."
            raise ValueError(msg)
        if not is_dist_avail_and_initialized() or dist.get_rank() == 0:
            logger.info("Initialising the memory bank from posterior latents (k-means).")
            latents = gather_training_latents(
                (self.format_batch_on_device(self._to_device(self.format_batch(b))) for b in data_loader),
                self._encode_posterior,
                self.args.memory_init_max_frames,
            )
            self.memory_bank.init_from_latents(
                latents, self.args.memory_init_max_frames, self.args.memory_init_batch_size
            )
        if is_dist_avail_and_initialized():
            for tensor in self.memory_bank.parameters():
                dist.broadcast(tensor.data, src=0)
        self.memory_initialized.fill_(True)

    def _encode_posterior(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        z, _, _, y_mask = self.posterior_encoder(batch["spec"], batch["spec_lens"], g=self.speaker_vector(batch))
        return z, y_mask

    def _to_device(self, batch: dict) -> dict:
        return {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    def train_step(self, batch: dict, criterion: list[nn.Module], optimizer_idx: int) -> tuple[dict, dict]:
        """One step of optimizer 0 (discriminator) or 1 (generator); the generator pass is cached in between.

        A non-finite loss returns an empty loss dict, which makes the Trainer skip backward, optimizer and scheduler
        steps; non-finite gradients are dropped in `before_gradient_clipping`. Under distributed training the
        gradients are averaged over ranks as the backward pass ends (`before_backward_pass`). See `TrainerHooks`.
        """
        self.trainer_hooks.optimizer_idx = optimizer_idx
        if optimizer_idx == 0:
            outputs, loss_dict = self._train_step_discriminator(batch, criterion)
        elif optimizer_idx == 1:
            outputs, loss_dict = self._train_step_generator(batch, criterion)
        else:
            msg = f"Unexpected optimizer_idx {optimizer_idx}: NaturalSpeech has two optimizers (0: disc, 1: gen)."
            raise ValueError(msg)
        return outputs, self.trainer_hooks.skip_non_finite_loss(loss_dict, training=self.training, step=self.step)

    def before_backward_pass(self, loss_dict: dict[str, Any], optimizer: list[torch.optim.Optimizer]) -> None:
        """Under distributed training, have this backward pass end by averaging the gradients over the ranks."""
        self.trainer_hooks.arm_gradient_averaging(self, loss_dict)

    def before_gradient_clipping(self) -> None:
        """Drop the gradients if any is non-finite, so the optimizer skips this update (on every rank alike).

        A generator update that goes ahead also tracks the step's log-duration variance: here, before the Trainer
        saves the step's checkpoint, so a resumed run has the same tracked variance as an uninterrupted one.
        """
        self.trainer_hooks.drop_non_finite_gradients(self, step=self.step)
        if self.trainer_hooks.optimizer_idx == 1:
            self._track_step_duration_variance()

    @property
    def num_skipped_steps(self) -> int:
        """Training steps skipped so far for a non-finite loss or gradient (also logged with the losses)."""
        return self.trainer_hooks.num_skipped_steps

    def _train_step_discriminator(self, batch: dict, criterion: nn.Module) -> tuple[dict, dict]:
        aux_input = {
            "durations": self._duration_labels(batch),
            "speaker_ids": batch.get("speaker_ids"),
            "d_vectors": batch.get("d_vectors"),
        }
        outputs = self.forward(
            batch["tokens"], batch["token_lens"], batch["spec"], batch["spec_lens"], batch["waveform"], aux_input
        )
        self.model_outputs_cache = outputs
        fake, real = outputs["model_outputs"].detach(), outputs["waveform_seg"]
        scores_fake, _, scores_real, _ = self.disc(fake, real)
        scores_e2e = self.disc(outputs["e2e_outputs"].detach())[0] if "e2e_outputs" in outputs else None
        with torch.autocast(device_type=fake.device.type, enabled=False):
            loss_dict = criterion(scores_real, scores_fake, scores_e2e)
            if "duration_disc_inputs" in outputs:
                inputs = outputs["duration_disc_inputs"]
                real_durations = self.duration_disc(inputs["h"], inputs["x_mask"], inputs["real"])
                fake_durations = self.duration_disc(inputs["h"], inputs["x_mask"], inputs["fake"].detach())
                loss = duration_discriminator_loss(real_durations, fake_durations, inputs["x_mask"])
                loss_dict["loss_duration_disc"] = loss
                loss_dict["loss"] = loss_dict["loss"] + self.config.duration_adv_loss_alpha * loss
        return outputs, loss_dict

    def _train_step_generator(self, batch: dict, criterion: nn.Module) -> tuple[dict, dict]:
        outputs = self.model_outputs_cache
        audio = self.config.audio
        with torch.autocast(device_type=batch["mel"].device.type, enabled=False):
            mel_slice = segment(batch["mel"].float(), outputs["slice_ids"], self.args.spec_segment_size, pad_short=True)
            mel_slice_hat = wav_to_mel(
                outputs["model_outputs"].float(),
                n_fft=audio.fft_size,
                num_mels=audio.num_mels,
                sample_rate=audio.sample_rate,
                hop_length=audio.hop_length,
                win_length=audio.win_length,
                fmin=audio.mel_fmin,
                fmax=audio.mel_fmax,
                center=False,
            )
        scores_fake, feats_fake, _, feats_real = self.disc(outputs["model_outputs"], outputs["waveform_seg"])
        scores_e2e = None
        if "e2e_outputs" in outputs:
            scores_e2e, _, _, _ = self.disc(outputs["e2e_outputs"], outputs["waveform_seg"])
        loss_dict = criterion(
            mel_slice, mel_slice_hat, scores_fake, feats_fake, feats_real, outputs["kl_terms"], scores_e2e
        )
        if "duration_disc_inputs" in outputs:
            inputs = outputs["duration_disc_inputs"]
            with torch.autocast(device_type=batch["mel"].device.type, enabled=False):
                scores = self.duration_disc(inputs["h"], inputs["x_mask"], inputs["fake"].float())
                loss = duration_generator_loss(scores, inputs["x_mask"])
            loss_dict["loss_duration_gen"] = loss
            loss_dict["loss"] = loss_dict["loss"] + self.config.duration_adv_loss_alpha * loss
        return outputs, loss_dict

    def _duration_labels(self, batch: dict) -> torch.Tensor | None:
        if not self.config.duration_labels_path:
            return None
        return load_duration_labels(
            self.config.duration_labels_path, batch["audio_files"], batch["token_lens"], batch["spec_lens"]
        )

    @torch.no_grad()
    def eval_step(self, batch: dict, criterion: list[nn.Module], optimizer_idx: int) -> tuple[dict, dict]:
        return self.train_step(batch, criterion, optimizer_idx)

    def get_criterion(self) -> list[nn.Module]:
        return [NaturalspeechDiscriminatorLoss(self.config), NaturalspeechGeneratorLoss(self.config)]

    def get_optimizer(self) -> list[torch.optim.Optimizer]:
        """Optimizer 0 trains the discriminators (waveform, and duration with VITS2's option), optimizer 1 everything
        else (memory bank included from step 0); frozen parts (`freeze_modules`) are in neither."""
        config = self.config
        trained = [(name, p) for name, p in self.named_parameters() if p.requires_grad]
        disc_parameters = chain(p for name, p in trained if name.startswith(DISCRIMINATOR_PREFIXES))
        disc = get_optimizer(config.optimizer, config.optimizer_params, config.lr_disc, parameters=disc_parameters)
        gen_parameters = chain(p for name, p in trained if not name.startswith(DISCRIMINATOR_PREFIXES))
        gen = get_optimizer(config.optimizer, config.optimizer_params, config.lr_gen, parameters=gen_parameters)
        return [disc, gen]

    def get_lr(self) -> list[float]:
        return [self.config.lr_disc, self.config.lr_gen]

    def get_scheduler(self, optimizer: list[torch.optim.Optimizer]) -> list:
        config = self.config
        return [
            get_scheduler(config.lr_scheduler_disc, config.lr_scheduler_disc_params, optimizer[0]),
            get_scheduler(config.lr_scheduler_gen, config.lr_scheduler_gen_params, optimizer[1]),
        ]

    ##########################
    # data
    ##########################

    def get_data_loader(
        self, config: Coqpit, *, is_eval: bool = False, samples: list | None = None, verbose: bool = True, **kwargs
    ) -> DataLoader:
        """Token ids plus raw waveforms (bad clips skipped up front); spectrograms are computed on the device."""
        if config.phoneme_cache_path:
            # The toolkit's phoneme dataset checks for the folder, then creates it: two DDP ranks race there.
            os.makedirs(config.phoneme_cache_path, exist_ok=True)
        dataset = NaturalspeechDataset(
            # VitsDataset reads only `encoder_sample_rate` from its args: NaturalSpeech trains at the audio rate.
            model_args=VitsArgs(),
            samples=samples,
            batch_group_size=0 if is_eval else config.batch_group_size * config.batch_size,
            min_text_len=config.min_text_len,
            max_text_len=config.max_text_len,
            min_audio_len=config.min_audio_len,
            max_audio_len=config.max_audio_len,
            phoneme_cache_path=config.phoneme_cache_path,
            precompute_num_workers=config.precompute_num_workers,
            tokenizer=self.tokenizer,
            start_by_longest=config.start_by_longest,
            sample_rate=config.audio.sample_rate,
            min_audio_samples=self.args.spec_segment_size * config.audio.hop_length + config.audio.fft_size,
        )
        run_on_rank_zero_first(dataset.preprocess_samples)
        sampler = torch.utils.data.DistributedSampler(dataset) if is_dist_avail_and_initialized() else None
        return DataLoader(
            dataset,
            batch_size=config.eval_batch_size if is_eval else config.batch_size,
            shuffle=False,  # the dataset sorts and groups by length itself
            sampler=sampler,
            collate_fn=dataset.collate_fn,
            drop_last=False,
            num_workers=config.num_eval_loader_workers if is_eval else config.num_loader_workers,
            pin_memory=False,
        )

    def format_batch(self, batch: dict) -> dict:
        """Speaker ids (from the speaker names) or d-vectors (by audio file) for a multi-speaker model, as VITS does.

        Raises:
            ValueError: A sample's speaker is not one of the model's speakers (or has no d-vector).
        """
        batch["speaker_ids"], batch["d_vectors"] = None, None
        if self.speaker_embedding is None:
            return batch
        manager = self.speaker_manager
        if self.args.use_d_vector_file:
            missing = [name for name in batch["audio_unique_names"] if name not in manager.embeddings]
            if missing:
                msg = f"No d-vector for {missing[0]} in model_args.d_vector_file."
                raise ValueError(msg)
            vectors = [manager.embeddings[name]["embedding"] for name in batch["audio_unique_names"]]
            batch["d_vectors"] = torch.tensor(vectors, dtype=torch.float)
            return batch
        names = self._speaker_names()
        unknown = sorted({name for name in batch["speaker_names"] if name not in names})
        if unknown:
            msg = f"Training samples of speaker(s) {unknown} that the model does not have (its speakers: {names})."
            raise ValueError(msg)
        batch["speaker_ids"] = torch.tensor([names.index(name) for name in batch["speaker_names"]], dtype=torch.long)
        return batch

    def format_batch_on_device(self, batch: dict) -> dict:
        """Linear spectrogram (posterior input) and mel spectrogram (reconstruction target) of the waveforms."""
        audio = self.config.audio
        spec = wav_to_spec(batch["waveform"], audio.fft_size, audio.hop_length, audio.win_length, center=False)
        mel = spec_to_mel(
            spec=spec,
            n_fft=audio.fft_size,
            num_mels=audio.num_mels,
            sample_rate=audio.sample_rate,
            fmin=audio.mel_fmin,
            fmax=audio.mel_fmax,
        )
        lengths = (spec.shape[2] * batch["waveform_rel_lens"]).int()
        mask = sequence_mask(lengths, spec.shape[2]).unsqueeze(1)
        batch.update(spec=spec * mask, mel=mel * mask, spec_lens=lengths, mel_lens=lengths)
        return batch

    ##########################
    # logging
    ##########################

    def _create_logs(self, batch: dict, outputs: dict) -> tuple[dict, dict]:
        """Figures and audio for the dashboard from the generator outputs the Trainer merged as `<key>_1`."""
        from TTS.tts.layers.naturalspeech.runtime.plots import plot_training_figures

        generator_outputs = {k[: -len("_1")]: v for k, v in outputs.items() if k.endswith("_1")}
        figures = plot_training_figures(generator_outputs, self.ap)
        audios = {"audio": generator_outputs["model_outputs"][0].float().squeeze(0).detach().cpu().numpy()}
        return figures, audios

    @torch.inference_mode()
    def test_run(self, trainer) -> dict:
        """Synthesize the config's test sentences for the dashboard."""
        from TTS.tts.utils.visual import plot_alignment

        audios, figures = {}, {}
        for index, sentence in enumerate(self.config.test_sentences):
            text = sentence[0] if isinstance(sentence, list) else sentence
            speaker = sentence[1] if isinstance(sentence, list) and len(sentence) > 1 else None
            if speaker is None and self.is_multi_speaker and self._speaker_names():
                speaker = self._speaker_names()[0]  # the same voice at every epoch, so the samples compare
            result = self.synthesize(text, speaker=speaker)
            audios[f"{index}-audio"] = result["wav"]
            figures[f"{index}-alignment"] = plot_alignment(result["alignments"][0].cpu().numpy(), output_fig=False)
        return {"figures": figures, "audios": audios}

    ##########################
    # checkpoints
    ##########################

    def load_checkpoint(
        self, config: Coqpit, checkpoint_path: str, *, eval: bool = False, strict: bool = True, cache: bool = False
    ) -> None:
        """Load model weights (and the training stage state) from a Trainer checkpoint or a bare state dict.

        Loading is weights-only (no code in the file runs); a checkpoint of another model or size raises a
        `CheckpointError` naming the first missing/unexpected/mismatched keys. A checkpoint trained with sup-phonemes
        carries their BPE and embedding: the model rebuilds its sup-phoneme input from them (no pre-training file).
        """
        state = load_checkpoint_state(checkpoint_path, map_location="cpu", cache=cache)
        model_state = state["model"] if isinstance(state.get("model"), dict) else state
        if eval or self.disc is None:
            model_state = {k: v for k, v in model_state.items() if not k.startswith(DISCRIMINATOR_PREFIXES)}
            self.disc = None
            self.duration_disc = None
        self._match_sup_phonemes(model_state, strict)  # before the check: the sup-phoneme input is in the state
        check_state_dict(self, model_state, strict=strict, source=str(checkpoint_path))
        self.load_state_dict(model_state, strict=strict)
        if eval:
            self.eval()

    ##########################
    # ONNX (see TTS/tts/layers/naturalspeech/runtime/onnx_export.py)
    ##########################

    def export_onnx(
        self,
        output_path: str = "coqui_naturalspeech.onnx",
        verbose: bool = False,
        *,
        quantize: bool = False,
        calibration_texts: list[str] | None = None,
    ) -> None:
        """Export the inference path (no discriminator) to ONNX; this model is left unchanged.

        `quantize=True` makes the convolutions of the HiFi-GAN decoder and of the flow int8 for faster CPU synthesis,
        calibrated on `calibration_texts` (default: the config's `test_sentences`); the durations stay float32. With
        the sup-phoneme input, the graph takes the sup-phoneme ids as a fourth input, `sup_ids`, and stores the BPE in
        its metadata; a multi-speaker model's graph takes the speaker ids as its last input, `sid` (see
        `runtime/onnx_export.py`).
        """
        from TTS.tts.layers.naturalspeech.runtime.onnx_export import export_onnx

        export_onnx(self, output_path, quantize=quantize, calibration_texts=calibration_texts, verbose=verbose)

    def load_onnx(self, model_path: str, cuda: bool = False) -> None:
        """Open an exported model with ONNX Runtime for :meth:`inference_onnx`."""
        from TTS.tts.layers.naturalspeech.runtime.onnx_export import load_onnx

        self.onnx_sess = load_onnx(model_path, cuda=cuda)

    def inference_onnx(self, x, x_lengths=None, speaker_id=None):
        """Synthesize with the ONNX session at the model's noise and length scales: numpy `[B, 1, T_wav]`.

        The sup-phoneme ids of a graph that takes them are computed from the BPE in the ONNX file; a multi-speaker
        graph needs `speaker_id` (one id, or one per item).
        """
        from TTS.tts.layers.naturalspeech.runtime.onnx_export import inference_onnx

        return inference_onnx(self.onnx_sess, x, x_lengths, self.noise_scale, self.length_scale, sid=speaker_id)

    @staticmethod
    def init_from_config(config: NaturalspeechConfig, samples: list | None = None) -> "Naturalspeech":
        return Naturalspeech(config)


NaturalSpeech = Naturalspeech


def _check_decoder_matches_audio(args, audio) -> None:
    product = 1
    for rate in args.upsample_rates_decoder:
        product *= rate
    if product != audio.hop_length:
        msg = (
            f"model_args.upsample_rates_decoder multiply to {product} but audio.hop_length is {audio.hop_length}: "
            "the decoder must produce exactly one hop of samples per latent frame."
        )
        raise ValueError(msg)
