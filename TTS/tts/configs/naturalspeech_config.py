"""Configuration of NaturalSpeech (Tan et al., 2022, arXiv 2205.04421).

Keep the imports of this module minimal: `TTS.config.load_config` swallows every `ModuleNotFoundError` raised
while importing a config module and reports "Config for naturalspeech cannot be found" instead.

Some fields were renamed after what they control (`RENAMED_ARGS`, `RENAMED_CONFIG_FIELDS`): a config that still
uses an old name fails with a `ValueError` naming the new one, instead of Coqpit silently ignoring the key and
training with the default.
"""

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

from coqpit import Coqpit

from TTS.config.shared_configs import BaseAudioConfig, ModelArgs
from TTS.tts.configs.shared_configs import BaseTTSConfig

# old name -> new name of the renamed phoneme encoder fields, shared by NaturalspeechArgs and the pre-training config
RENAMED_ENCODER_FIELDS = {
    "hidden_channels_ffn_text_encoder": "hidden_channels_ffn_phoneme_encoder",
    "num_heads_text_encoder": "num_heads_phoneme_encoder",
    "num_layers_text_encoder": "num_layers_phoneme_encoder",
    "kernel_size_text_encoder": "kernel_size_phoneme_encoder",
    "dropout_p_text_encoder": "dropout_p_phoneme_encoder",
}
RENAMED_ARGS = {"use_soft_dtw": "use_predicted_durations", **RENAMED_ENCODER_FIELDS}
RENAMED_CONFIG_FIELDS = {"dur_loss_alpha": "duration_loss_alpha"}


class RejectsRenamedFields:
    """Mixin for Coqpit configs: the old name of a renamed field is an error naming the new one.

    Coqpit's deserialisation reads only the fields it knows, so an old key in a config file would be dropped without
    a word and the run would train with the renamed field's default. Every way in is checked: `from_dict`,
    `load_json` (`deserialize`), `new_from_dict` and nested configs (`deserialize_immutable`), and attribute
    assignment (`config.model_args.use_soft_dtw = False` would otherwise add an attribute nothing reads).
    """

    renamed_fields: ClassVar[dict[str, str]] = {}

    def deserialize(self, data: dict[str, Any]) -> Any:
        if isinstance(data, dict):
            check_renamed_fields(type(self), data)
        return super().deserialize(data)

    @classmethod
    def deserialize_immutable(cls, data: dict[str, Any]) -> Any:
        if isinstance(data, dict):
            check_renamed_fields(cls, data)
        return super().deserialize_immutable(data)

    def __setattr__(self, name: str, value: Any) -> None:
        new_name = type(self).renamed_fields.get(name)
        if new_name is not None:
            msg = f"{type(self).__name__}.{name} was renamed to '{new_name}'."
            raise AttributeError(msg)
        super().__setattr__(name, value)


@dataclass
class NaturalspeechArgs(RejectsRenamedFields, ModelArgs):
    """NaturalSpeech model arguments, grouped by sub-module.

    Args:
        num_chars (int):
            Number of symbols in the vocabulary; set from the tokenizer when the model is built. Defaults to 100.
        out_channels (int):
            Number of linear spectrogram bins fed to the posterior encoder (`fft_size // 2 + 1`). Defaults to 513.
        spec_segment_size (int):
            Number of latent frames of the random slice decoded to a waveform in training. Defaults to 32.
        hidden_channels (int):
            Channels of the latent `z`, the phoneme hidden states and the memory bank. Defaults to 192.
        hidden_channels_ffn_phoneme_encoder (int):
            Channels of the feed-forward layers of the phoneme encoder transformer. Defaults to 768.
        num_heads_phoneme_encoder (int):
            Attention heads of the phoneme encoder transformer. Defaults to 2.
        num_layers_phoneme_encoder (int):
            Transformer blocks of the phoneme encoder. Defaults to 6.
        kernel_size_phoneme_encoder (int):
            Kernel size of the phoneme encoder's feed-forward convolutions. Defaults to 3.
        dropout_p_phoneme_encoder (float):
            Dropout of the phoneme encoder. Defaults to 0.1.
        pretrained_encoder_path (str | None):
            Checkpoint of a mixed-phoneme pre-training run whose encoder initialises the phoneme encoder. `None`
            trains the encoder from scratch (the "no pre-training" ablation). Read only when the Trainer starts a
            run from scratch: not when it resumes or restores a checkpoint, and not for synthesis. Defaults to None.
        use_sup_phonemes (bool):
            Feed the phoneme encoder the sup-phoneme of each phoneme as well, as in pre-training (paper, Section
            3.1): when `pretrained_encoder_path` is loaded and the checkpoint carries a sup-phoneme BPE, the encoder
            adds the pre-trained sup-phoneme embedding to the phoneme embedding, and the BPE and the embedding are
            saved with the model's checkpoints (synthesis needs no pre-training file). False, no pre-trained
            encoder, or an older pre-training checkpoint without a BPE (a warning) gives the phoneme-only encoder.
            A TTS checkpoint trained with sup-phonemes always loads with them: its weights expect them.
            Defaults to True.
        use_learnable_upsampling (bool):
            Expand phoneme states to frames with the learnable upsampling layer of the differentiable durator. False
            uses hard length regulation (the "no differentiable durator" ablation). Defaults to True.
        num_layers_durator (int):
            Convolution layers of the duration predictor. Defaults to 3.
        hidden_channels_durator (int):
            Channels of the duration predictor convolutions. Defaults to 256.
        kernel_size_durator (int):
            Kernel size of the duration predictor convolutions. Defaults to 3.
        dropout_p_durator (float):
            Dropout of the duration predictor. Defaults to 0.5.
        detach_durator_input (bool):
            Stop the duration loss gradients at the phoneme hidden states. Defaults to False.
        detach_predicted_durations (bool):
            After warm-up, stop the gradients of the KL terms (under soft-DTW) at the predicted durations: the
            duration predictor then learns from the duration loss alone. The paper's differentiable durator trains
            the durations through the prior (False); on the synthetic durator task of
            `benchmarks/durator_variants.py` that gradient made the duration error 3-14x worse than the duration
            loss alone. Defaults to False (the paper) until the learning benchmark has measured it.
        mean_corrected_durations (bool):
            Predict the mean duration `exp(log d + var / 2)` instead of the paper's `exp(log d)` (the median under a
            log-normal residual), with `var` the variance of the log-duration residual tracked in training. The
            duration predictor regresses log durations; while its residual is large the median falls short of the
            mean (the learning benchmark's utterances were 30 % short after 60 CPU-minutes, see
            `benchmarks/README.md`). The correction goes to zero as the predictor learns. Measured on the
            benchmark's checkpoints (20 held-out sentences): length ratio 0.70 -> 0.88 and phoneme duration error
            1.50 -> 1.24 frames, MCD within 0.1 dB. Checkpoints from before the switch load with no correction.
            Defaults to True.
        min_duration_frames (float):
            Lower bound of a predicted phoneme duration, in frames; keeps every output at least one frame long.
            Defaults to 1.0.
        max_duration_frames (float):
            Upper bound of a predicted phoneme duration, in frames; keeps `exp()` of the predicted log duration
            finite in half precision. Defaults to 100.0.
        num_heads_upsampling (int):
            Attention heads `q` of the learnable upsampling layer. Defaults to 4.
        num_aux_channels_upsampling (int):
            Channels `p` of the auxiliary context `C` of the learnable upsampling layer. Defaults to 2.
        conv_channels_upsampling (int):
            Channels of the convolution over the phoneme states inside the upsampling layer. Defaults to 8.
        mlp_channels_upsampling (int):
            Hidden channels of the swish MLPs of the upsampling layer. Defaults to 16.
        kernel_size_upsampling (int):
            Kernel size of the convolution inside the upsampling layer. Defaults to 3.
        init_sharpness_upsampling (float):
            Start the upsampling attention close to hard length regulation, with this slope of the logits outside a
            token's span (a departure from Parallel Tacotron 2's plain random initialisation, which leaves the
            attention uniform over all tokens; see `docs/paper_fidelity.md`). 0 restores the random start.
            Defaults to 8.0.
        mlp_hidden_layers_upsampling (int):
            Hidden layers of each swish MLP of the upsampling layer. Parallel Tacotron 2's "two-layer MLP" may mean
            two linear layers (1) or two hidden layers (2). Two reached a lower frame error on the synthetic durator
            task in 6 of 6 seeds (0.098 vs 0.114 mean MSE, `benchmarks/README.md` section 8) for 1.5x the durator's
            time. Defaults to 2.
        share_conv_upsampling (bool):
            One convolution over the phoneme states feeds both the attention MLP and the auxiliary-context MLP. False
            gives each its own. Defaults to True.
        compress_grids_upsampling (bool):
            Feed `sign(x) log(1 + |x|)` of the token boundary grids to the upsampling MLPs instead of the raw frame
            distances of Parallel Tacotron 2. Defaults to True.
        kernel_size_posterior_encoder (int):
            Kernel size of the posterior encoder's WaveNet layers. Defaults to 5.
        dilation_rate_posterior_encoder (int):
            Dilation rate of the posterior encoder's WaveNet layers. Defaults to 1.
        num_layers_posterior_encoder (int):
            WaveNet layers of the posterior encoder. Defaults to 16.
        num_flows (int):
            Volume-preserving coupling layers of the bidirectional prior/posterior flow. Defaults to 4.
        kernel_size_flow (int):
            Kernel size of the flow's WaveNet layers. Defaults to 5.
        dilation_rate_flow (int):
            Dilation rate of the flow's WaveNet layers. Defaults to 1.
        num_layers_flow (int):
            WaveNet layers inside each coupling layer. Defaults to 4.
        use_forward_kl (bool):
            Train with the forward loss L_fwd (prior sample mapped back, scored under the posterior) besides the
            backward loss L_bwd. False is the "no bidirectional prior/posterior" ablation. Defaults to True.
        use_memory_bank (bool):
            Decode from memory-bank attention over the latent instead of the latent itself. False is the "no
            memory VAE" ablation. Defaults to True.
        memory_bank_size (int):
            Number of memory slots `L`. Defaults to 1000.
        num_heads_memory_bank (int):
            Attention heads of the memory attention. Defaults to 1.
        memory_init_max_frames (int):
            Most posterior frames sampled for the k-means initialisation of the memory bank. Defaults to 200000.
        memory_init_batch_size (int):
            Mini-batch size of the k-means initialisation. Defaults to 4096.
        use_predicted_durations (bool):
            After warm-up, build the prior from the durator's predicted durations and compute the KL terms under
            soft-DTW (the paper's main and tuning stages). False keeps the durations of monotonic alignment search
            and frame-aligned KL terms as in warm-up (the "no soft-DTW" ablation). Defaults to True.
        soft_dtw_gamma (float):
            Smoothing temperature of soft-DTW. Defaults to 0.01.
        soft_dtw_warp (float):
            Warp penalty per latent channel (paper: 0.07). The KL cost is summed over the `hidden_channels`
            channels, so the penalty applied to the cost matrix is `soft_dtw_warp * hidden_channels` (13.44 at
            192 channels). Defaults to 0.07.
        soft_dtw_steps (str):
            Step pattern of the soft alignment. "posterior_once": every posterior frame is scored exactly once (in
            L_bwd and L_fwd alike), a prior frame used twice or skipped pays the warp penalty, so neither a longer
            nor a shorter prior is rewarded for its length (a departure from the paper, see
            `docs/paper_fidelity.md`). "symmetric": the paper's soft-DTW, one cost cell per step; single-sample KL
            cells can be negative, and then longer paths score better. Defaults to "posterior_once".
        soft_dtw_bandwidth (int | None):
            Sakoe-Chiba band half-width in frames; `None` searches the whole matrix (symmetric steps only).
            Defaults to None.
        soft_dtw_backend (str):
            "auto" (CUDA kernel for CUDA tensors, numba CPU otherwise), "cpu" or "cuda" (symmetric steps only).
            Defaults to "auto".
        resblock_type_decoder (str):
            Residual block type of the HiFi-GAN decoder. Defaults to "1".
        resblock_kernel_sizes_decoder (list[int]):
            Kernel sizes of the decoder's residual blocks. Defaults to `[3, 7, 11]`.
        resblock_dilation_sizes_decoder (list[list[int]]):
            Dilations of the decoder's residual blocks. Defaults to `[[1, 3, 5], [1, 3, 5], [1, 3, 5]]`.
        upsample_rates_decoder (list[int]):
            Upsampling rates of the decoder; their product must equal the hop length. Defaults to `[8, 8, 2, 2]`.
        upsample_initial_channel_decoder (int):
            Channels of the decoder's first upsampling layer. Defaults to 512.
        upsample_kernel_sizes_decoder (list[int]):
            Kernel sizes of the decoder's upsampling layers. Defaults to `[16, 16, 4, 4]`.
        periods_multi_period_discriminator (list[int]):
            Periods of the multi-period discriminator. Defaults to `[2, 3, 5, 7, 11]`.
        use_spectral_norm_discriminator (bool):
            Spectral instead of weight normalisation in the discriminators. Defaults to False.
        init_discriminator (bool):
            Build the discriminators; False for inference-only models. Defaults to True.
        inference_noise_scale (float):
            Standard deviation scale of the prior sample at inference. Defaults to 0.667.
        length_scale (float):
            Scale of the predicted durations at inference; larger is slower speech. Defaults to 1.0.
        max_inference_len (int | None):
            Largest number of frames generated at inference; `None` for no limit. Defaults to None.
        phonemize_in_process (bool):
            Let the tokenizer's espeak-ng phonemizer call libespeak-ng in-process instead of starting the `espeak-ng`
            program per text: the same phonemes and ids, about 0.2 ms instead of 12 ms per sentence. Falls back to
            the program when the library cannot be loaded. Defaults to True.
        num_speakers (int):
            Speakers of the speaker embedding when the config names none (`speakers`, `speakers_file`); the
            speaker manager's count wins when it has names. Defaults to 0.
        speakers_file (str | None):
            JSON file mapping speaker names to ids, for the toolkit's `SpeakerManager`; the config's `speakers` list
            (stored in the run's `config.json`) is read first. Defaults to None.
        use_speaker_embedding (bool):
            Learn one embedding per speaker id (`emb_g`), as the toolkit's VITS does; it conditions the durator,
            the alignment prior, the posterior encoder, the flow and the decoder. The memory bank stays shared by
            all speakers. Defaults to False.
        speaker_embedding_channels (int):
            Channels of the learned speaker embedding. Defaults to 256.
        use_d_vector_file (bool):
            Condition on external speaker embeddings (d-vectors) from `d_vector_file` instead of learned ones.
            Defaults to False.
        d_vector_file (str | list[str] | None):
            File(s) of pre-computed d-vectors per audio file, for the toolkit's `SpeakerManager`. Defaults to None.
        d_vector_dim (int):
            Channels of the d-vectors. Defaults to 0.
        use_speaker_conditioned_phoneme_encoder (bool):
            VITS2's speaker-conditioned text encoder (arXiv 2307.16430, Section 2.4): add a projection of the speaker
            embedding to the phoneme encoder's hidden states before block `speaker_block_phoneme_encoder`. Not in
            NaturalSpeech. Defaults to False.
        speaker_block_phoneme_encoder (int):
            Index (from 0) of the phoneme encoder block whose input gets the speaker embedding; VITS2 uses the third
            block (2). Larger than the last block means the last. Defaults to 2.
        use_duration_discriminator (bool):
            VITS2's adversarial duration discriminator (Section 2.2): a small convolutional discriminator tells the
            aligned durations from the predicted ones, given the phoneme states; LSGAN losses, trained with the
            waveform discriminators, and the generator gets `duration_adv_loss_alpha` times its adversarial loss.
            Not in NaturalSpeech. Learning benchmark, 20 CPU-minutes, one seed: duration error 1.23 vs 1.54 frames,
            MCD +0.20 dB. Defaults to False.
        hidden_channels_duration_discriminator (int):
            Channels of the duration discriminator's convolutions. Defaults to 192.
        kernel_size_duration_discriminator (int):
            Kernel size of the duration discriminator's convolutions. Defaults to 3.
        use_transformer_flow (bool):
            VITS2's transformer coupling layers (Section 2.3): each coupling layer of the flow runs a small
            self-attention block over its input half before the WaveNet that predicts the shift, so the flow sees
            long-range context. The flow stays volume preserving. Not in NaturalSpeech. Learning benchmark, 20
            CPU-minutes, one seed: duration error 1.32 vs 1.54 frames, CER 0.961 vs 0.997. Defaults to False.
        num_heads_transformer_flow (int):
            Attention heads of the flow's transformer blocks. Defaults to 2.
        mas_noise_scale (float):
            VITS2's noise in monotonic alignment search (Section 2.1): Gaussian noise is added to the alignment
            scores in training, so early training explores other alignments; its standard deviation is the scores'
            standard deviation times `mas_noise_scale * max(0, 1 - step / mas_noise_decay_steps)`. 0 is the plain
            search. VITS2's public implementation starts at 0.01. Not in NaturalSpeech. Learning benchmark, 20
            CPU-minutes, one seed, 0.01 decaying over 5000 steps: CER 0.925 vs 0.997, duration error 1.26 vs 1.54
            frames, MCD 4.72 vs 4.90 dB. Defaults to 0.0.
        mas_noise_decay_steps (int):
            Training steps over which the MAS noise decays linearly to zero. Defaults to 100000.
        freeze_modules (list[str]):
            Parts of the model that do not train: names of its sub-modules (`phoneme_encoder`, `alignment_prior`,
            `durator`, `posterior_encoder`, `flow`, `memory_bank`, `waveform_decoder`, `disc`, ...) or dotted
            prefixes of parameter names (`durator.duration_predictor`). Their parameters get `requires_grad=False`
            when the model is built and are left out of the optimizers, so they keep their values, and a resumed
            run (which builds the model from its saved config) freezes them again. One list instead of VITS's
            `freeze_*` booleans: NaturalSpeech has more parts than VITS (durator, alignment prior, memory bank) and
            the names are those of the state dict, which the fine-tuning report (`finetune_checkpoint_path`) lists.
            A name of a part the model was built without (e.g. `disc` for synthesis) is ignored; a name of no part
            is an error. Defaults to `[]` (everything trains).
        finetune_checkpoint_path (str | None):
            Checkpoint of a trained NaturalSpeech run (a Trainer checkpoint, discriminator included, or a weights-only
            file with its config) whose weights start this run (`layers/naturalspeech/runtime/finetuning.py`). The
            phoneme embedding is matched by symbol, so the new run may have another phoneme set: rows of symbols both
            vocabularies have are copied (wherever their ids moved), new symbols keep a fresh initialisation; every
            other tensor is copied when its shape matches. The report of what was kept is logged and written to the
            run folder (`finetune_report.json`). Read only when the Trainer starts a run from scratch, not when it
            resumes or restores one, and not for synthesis. Defaults to None.
        finetune_refit_memory_bank (bool):
            With `finetune_checkpoint_path`: fit the memory bank again by k-means over the posterior latents of the
            new training data, when the run first uses the bank (at its first step when warm-up is skipped), as at
            the end of warm-up. False keeps the checkpoint's bank. Defaults to True.
    """

    num_chars: int = 100
    out_channels: int = 513
    spec_segment_size: int = 32
    hidden_channels: int = 192

    # phoneme encoder
    hidden_channels_ffn_phoneme_encoder: int = 768
    num_heads_phoneme_encoder: int = 2
    num_layers_phoneme_encoder: int = 6
    kernel_size_phoneme_encoder: int = 3
    dropout_p_phoneme_encoder: float = 0.1
    pretrained_encoder_path: str | None = None
    use_sup_phonemes: bool = True

    # differentiable durator
    use_learnable_upsampling: bool = True
    num_layers_durator: int = 3
    hidden_channels_durator: int = 256
    kernel_size_durator: int = 3
    dropout_p_durator: float = 0.5
    detach_durator_input: bool = False
    detach_predicted_durations: bool = False
    mean_corrected_durations: bool = True
    min_duration_frames: float = 1.0
    max_duration_frames: float = 100.0
    num_heads_upsampling: int = 4
    num_aux_channels_upsampling: int = 2
    conv_channels_upsampling: int = 8
    mlp_channels_upsampling: int = 16
    kernel_size_upsampling: int = 3
    init_sharpness_upsampling: float = 8.0
    mlp_hidden_layers_upsampling: int = 2
    share_conv_upsampling: bool = True
    compress_grids_upsampling: bool = True

    # posterior encoder
    kernel_size_posterior_encoder: int = 5
    dilation_rate_posterior_encoder: int = 1
    num_layers_posterior_encoder: int = 16

    # bidirectional prior/posterior flow
    num_flows: int = 4
    kernel_size_flow: int = 5
    dilation_rate_flow: int = 1
    num_layers_flow: int = 4
    use_forward_kl: bool = True

    # memory-based VAE
    use_memory_bank: bool = True
    memory_bank_size: int = 1000
    num_heads_memory_bank: int = 1
    memory_init_max_frames: int = 200_000
    memory_init_batch_size: int = 4096

    # predicted durations and soft-DTW after warm-up
    use_predicted_durations: bool = True
    soft_dtw_gamma: float = 0.01
    soft_dtw_warp: float = 0.07
    soft_dtw_steps: str = "posterior_once"
    soft_dtw_bandwidth: int | None = None
    soft_dtw_backend: str = "auto"

    # waveform decoder (HiFi-GAN V1) and discriminators
    resblock_type_decoder: str = "1"
    resblock_kernel_sizes_decoder: list[int] = field(default_factory=lambda: [3, 7, 11])
    resblock_dilation_sizes_decoder: list[list[int]] = field(default_factory=lambda: [[1, 3, 5], [1, 3, 5], [1, 3, 5]])
    upsample_rates_decoder: list[int] = field(default_factory=lambda: [8, 8, 2, 2])
    upsample_initial_channel_decoder: int = 512
    upsample_kernel_sizes_decoder: list[int] = field(default_factory=lambda: [16, 16, 4, 4])
    periods_multi_period_discriminator: list[int] = field(default_factory=lambda: [2, 3, 5, 7, 11])
    use_spectral_norm_discriminator: bool = False
    init_discriminator: bool = True

    # inference
    inference_noise_scale: float = 0.667
    length_scale: float = 1.0
    max_inference_len: int | None = None
    phonemize_in_process: bool = True

    # speakers (the toolkit's VITS names)
    num_speakers: int = 0
    speakers_file: str | None = None
    use_speaker_embedding: bool = False
    speaker_embedding_channels: int = 256
    use_d_vector_file: bool = False
    d_vector_file: str | list[str] | None = None
    d_vector_dim: int = 0
    use_speaker_conditioned_phoneme_encoder: bool = False
    speaker_block_phoneme_encoder: int = 2

    # VITS2 options (arXiv 2307.16430), off by default
    use_duration_discriminator: bool = False
    hidden_channels_duration_discriminator: int = 192
    kernel_size_duration_discriminator: int = 3
    use_transformer_flow: bool = False
    num_heads_transformer_flow: int = 2
    mas_noise_scale: float = 0.0
    mas_noise_decay_steps: int = 100_000

    # fine-tuning (layers/naturalspeech/runtime/finetuning.py)
    freeze_modules: list[str] = field(default_factory=list)
    finetune_checkpoint_path: str | None = None
    finetune_refit_memory_bank: bool = True

    renamed_fields: ClassVar[dict[str, str]] = RENAMED_ARGS


def _naturalspeech_audio() -> BaseAudioConfig:
    """The VITS audio settings: 22050 Hz, 1024-point FFT and window, hop 256, 80 mel bands."""
    return BaseAudioConfig(
        sample_rate=22050,
        fft_size=1024,
        win_length=1024,
        hop_length=256,
        num_mels=80,
        mel_fmin=0.0,
        mel_fmax=None,
    )


@dataclass
class NaturalspeechConfig(RejectsRenamedFields, BaseTTSConfig):
    """Configuration of the NaturalSpeech model.

    Training runs in four stages driven by the global step (paper, Section 3.5):

    1. warm-up (`step < warmup_steps`): durations from monotonic alignment search; L_bwd + L_rec + duration loss +
       alignment-prior KL train the phoneme encoder, durator, posterior encoder, flow, decoder and discriminators;
    2. memory initialisation at `step == warmup_steps`: k-means over posterior latents fits the memory bank;
    3. main (`warmup_steps <= step < tuning_start_step`): the paper's objective L_bwd + L_fwd + L_rec + L_e2e (+
       duration loss + alignment-prior KL), the decoder reading the memory bank, the KL terms under soft alignment
       with predicted durations (each as its switch says); L_e2e trains the prior path through the decoder;
    4. tuning (`step >= tuning_start_step`): as main; L_e2e is on here even with `e2e_in_main_stage=False`.

    Args:
        model (str):
            Model name used by `setup_model`. Do not change. Defaults to "naturalspeech".
        model_args (NaturalspeechArgs):
            Model architecture arguments. Defaults to `NaturalspeechArgs()`.
        audio (BaseAudioConfig):
            Audio settings; the VITS defaults (22050 Hz, FFT 1024, hop 256, 80 mels).
        warmup_steps (int):
            Global step at which warm-up ends and the memory bank is initialised. Defaults to 100000.
        main_stage_min_duration_r2 (float):
            Hold the main stage back after `warmup_steps` until the duration predictor explains this fraction of
            the variance of the aligned log durations (R², tracked over training steps; `main_stage_gate.py`). The
            main stage lays the prior out on predicted durations; entered while they are one constant, the text
            encoder stopped learning phoneme structure in the learning benchmark. 0 is the paper's fixed step.
            Not in NaturalSpeech. Defaults to 0.0.
        tuning_start_step (int):
            Global step at which the end-to-end tuning stage starts (once the main stage has started). Defaults to
            1500000.
        e2e_in_main_stage (bool):
            Train with L_e2e from the main stage on, as the paper's objective L = L_bwd + L_fwd + L_rec + L_e2e
            does. False keeps it for the tuning stage only (about 1.7x the cost of a step without it). Defaults
            to True.
        grad_clip (list[float]):
            Gradient clipping thresholds of the discriminator and generator optimizers. Defaults to `[1000, 1000]`.
        lr_gen (float):
            Initial learning rate of the generator. Defaults to 0.0002.
        lr_disc (float):
            Initial learning rate of the discriminator. Defaults to 0.0002.
        lr_scheduler_gen (str):
            `torch.optim.lr_scheduler` class of the generator. Defaults to "ExponentialLR".
        lr_scheduler_gen_params (dict):
            Its parameters. Defaults to `{"gamma": 0.999875, "last_epoch": -1}`.
        lr_scheduler_disc (str):
            `torch.optim.lr_scheduler` class of the discriminator. Defaults to "ExponentialLR".
        lr_scheduler_disc_params (dict):
            Its parameters. Defaults to `{"gamma": 0.999875, "last_epoch": -1}`.
        scheduler_after_epoch (bool):
            Step the schedulers after each epoch rather than each step. Defaults to True.
        optimizer (str):
            `torch.optim` class of both optimizers. Defaults to "AdamW".
        optimizer_params (dict):
            Its parameters. Defaults to `{"betas": [0.8, 0.99], "eps": 1e-9, "weight_decay": 0.01}`.
        kl_bwd_loss_alpha (float):
            Weight of L_bwd, the KL of the posterior mapped forward under the prior. Defaults to 1.0.
        kl_fwd_loss_alpha (float):
            Weight of L_fwd, the KL of the prior sample mapped backward under the posterior. Defaults to 0.02.
        mel_loss_alpha (float):
            Weight of the mel L1 reconstruction loss. Defaults to 45.0.
        feat_loss_alpha (float):
            Weight of the feature matching loss. The toolkit's `feature_loss` already returns twice the mean
            absolute difference, so 1.0 is the effective weight 2 of VITS and HiFi-GAN. Defaults to 1.0.
        gen_loss_alpha (float):
            Weight of the adversarial loss on the posterior path. Defaults to 1.0.
        disc_loss_alpha (float):
            Weight of the discriminator loss on recordings and posterior-path fakes. Defaults to 1.0.
        disc_e2e_loss_alpha (float):
            Weight of the discriminator loss on prior-path (L_e2e) fakes, relative to the posterior-path fakes
            (the public reimplementation uses 0.1; the paper does not say). Defaults to 1.0.
        e2e_loss_alpha (float):
            Weight of the adversarial loss on the prior path, L_e2e. Defaults to 0.1.
        duration_loss_alpha (float):
            Weight of the log-duration loss `loss_duration`. Defaults to 5.0.
        align_loss_alpha (float):
            Weight of the KL between the posterior (mapped by the flow) and the phoneme-level alignment prior, the
            statistics that monotonic alignment search scores to find the durations. Defaults to 1.0.
        duration_adv_loss_alpha (float):
            Weight of the adversarial duration losses of `model_args.use_duration_discriminator` (the generator's
            and the duration discriminator's). Defaults to 1.0.
        duration_labels_path (str | None):
            Folder of `<audio file stem>.npy` arrays of per-token durations in frames from an external aligner,
            used in place of monotonic alignment search. Defaults to None.
        return_wav (bool):
            The data loader returns waveforms. Do not change. Defaults to True.
        compute_linear_spec (bool):
            The data loader computes linear spectrograms. Do not change. Defaults to True.
        r (int):
            Frames per decoder step. Do not change. Defaults to 1.
        add_blank (bool):
            Insert a blank token between phonemes. Defaults to True.
        test_sentences (list[list[str]]):
            Sentences synthesized by `test_run` at the end of each epoch.
    """

    model: str = "naturalspeech"
    model_args: NaturalspeechArgs = field(default_factory=NaturalspeechArgs)
    audio: BaseAudioConfig = field(default_factory=_naturalspeech_audio)

    # training stages
    warmup_steps: int = 100_000
    main_stage_min_duration_r2: float = 0.0
    tuning_start_step: int = 1_500_000
    e2e_in_main_stage: bool = True

    # optimizers
    grad_clip: list[float] = field(default_factory=lambda: [1000, 1000])
    lr_gen: float = 0.0002
    lr_disc: float = 0.0002
    lr_scheduler_gen: str = "ExponentialLR"
    lr_scheduler_gen_params: dict = field(default_factory=lambda: {"gamma": 0.999875, "last_epoch": -1})
    lr_scheduler_disc: str = "ExponentialLR"
    lr_scheduler_disc_params: dict = field(default_factory=lambda: {"gamma": 0.999875, "last_epoch": -1})
    scheduler_after_epoch: bool = True
    optimizer: str = "AdamW"
    optimizer_params: dict = field(default_factory=lambda: {"betas": [0.8, 0.99], "eps": 1e-9, "weight_decay": 0.01})

    # loss weights
    kl_bwd_loss_alpha: float = 1.0
    kl_fwd_loss_alpha: float = 0.02
    mel_loss_alpha: float = 45.0
    feat_loss_alpha: float = 1.0
    gen_loss_alpha: float = 1.0
    disc_loss_alpha: float = 1.0
    disc_e2e_loss_alpha: float = 1.0
    e2e_loss_alpha: float = 0.1
    duration_loss_alpha: float = 5.0
    align_loss_alpha: float = 1.0
    duration_adv_loss_alpha: float = 1.0

    # data
    duration_labels_path: str | None = None
    return_wav: bool = True
    compute_linear_spec: bool = True

    # overrides
    r: int = 1  # DO NOT CHANGE
    add_blank: bool = True

    test_sentences: list[str] | list[list[str]] = field(
        default_factory=lambda: [
            ["It took me quite a long time to develop a voice, and now that I have it I'm not going to be silent."],
            ["Be a voice, not an echo."],
            ["Prior to November 22, 1963."],
        ]
    )

    renamed_fields: ClassVar[dict[str, str]] = RENAMED_CONFIG_FIELDS

    def from_dict(self, data: dict) -> "NaturalspeechConfig":
        """Load the fields from `data`, rejecting renamed and unknown fields and values of the wrong type.

        Coqpit alone ignores unknown keys and replaces badly typed values with defaults, so a typo in a config
        file would silently train another model. Here every such problem raises one `ValueError` naming the field
        (for renamed fields, every old name in `data` with its new name).
        """
        check_config_dict(type(self), data)
        return super().from_dict(data)


# Keys the Trainer adds to a run folder's config.json when a run is continued or restored (trainer/io.py
# `copy_model_files`); they are not config fields, and `load_config` must still read that file on resume.
TRAINER_ADDED_KEYS = frozenset({"restore_path", "github_branch"})


def renamed_fields_in(config_class: type, data: dict, prefix: str = "") -> list[tuple[str, str]]:
    """The old and new dotted names of every renamed field `data` uses for `config_class`, nested configs included."""
    renamed = getattr(config_class, "renamed_fields", {})
    known = {f.name: f for f in dataclasses.fields(config_class)}
    hints = typing.get_type_hints(config_class)
    found = []
    for key, value in data.items():
        if key in renamed:
            found.append((f"{prefix}{key}", f"{prefix}{renamed[key]}"))
        elif key in known and isinstance(value, dict):
            nested = _nested_config_class(known[key], hints[key])
            if nested is not None:
                found += renamed_fields_in(nested, value, prefix=f"{prefix}{key}.")
    return found


def check_renamed_fields(config_class: type, data: dict) -> None:
    """Raise a `ValueError` naming every renamed field `data` still uses and its new name."""
    renamed = renamed_fields_in(config_class, data)
    if renamed:
        listing = ", ".join(f"'{old}' is now '{new}'" for old, new in renamed)
        msg = (
            f"Renamed config fields for {config_class.__name__}: {listing}. Rename them in the config; "
            "the old names are not read any more."
        )
        raise ValueError(msg)


def check_config_dict(config_class: type, data: dict, prefix: str = "") -> None:
    """Raise a `ValueError` naming the renamed fields of `data`, else its first unknown field or badly typed value."""
    if not prefix:
        check_renamed_fields(config_class, data)
    known = {f.name: f for f in dataclasses.fields(config_class)}
    hints = typing.get_type_hints(config_class)
    for key, value in data.items():
        name = f"{prefix}{key}"
        if not prefix and key in TRAINER_ADDED_KEYS:
            continue
        if key not in known:
            msg = f"Unknown config field '{name}' for {config_class.__name__}."
            raise ValueError(msg)
        hint = hints[key]
        default = _default_of(known[key])
        nested = _nested_config_class(known[key], hint)
        if nested is not None and isinstance(value, dict):
            check_config_dict(nested, value, prefix=f"{name}.")
        elif not _matches(value, hint) and not _matches(value, type(default)):
            msg = f"Config field '{name}' expects {_type_name(hint)}, got {value!r} ({type(value).__name__})."
            raise ValueError(msg)


def _nested_config_class(f: dataclasses.Field, hint: Any) -> type | None:
    """The config class of a field holding a nested config (its default's class, which may be a subclass), or None."""
    if not (isinstance(hint, type) and issubclass(hint, Coqpit)):
        return None
    default = _default_of(f)
    return type(default) if isinstance(default, Coqpit) else hint


def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _matches(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a type hint; hints this check cannot read are accepted."""
    if hint is Any or hint is typing.Any:
        return True
    if value is None:
        return hint is type(None) or _is_optional(hint)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if origin is not None:
        hint = origin
    if not isinstance(hint, type):
        return True
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if issubclass(hint, Coqpit):
        return isinstance(value, dict | Coqpit)
    return isinstance(value, hint)


def _is_optional(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint)
