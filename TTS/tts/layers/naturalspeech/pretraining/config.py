"""Configuration of mixed-phoneme pre-training of the NaturalSpeech phoneme encoder (paper, Section 3.1).

The text settings mirror `NaturalspeechConfig`'s so that pre-training and TTS training tokenize identically; build
this config with `MixedPhonemePretrainingConfig.from_naturalspeech_config` to copy them (and the encoder shape)
from the NaturalSpeech config that will load the pre-trained encoder.
"""

from dataclasses import dataclass, field
from typing import ClassVar

from TTS.config.shared_configs import BaseTrainingConfig
from TTS.tts.configs.naturalspeech_config import RENAMED_ENCODER_FIELDS, NaturalspeechConfig, RejectsRenamedFields
from TTS.tts.configs.shared_configs import CharactersConfig

_TEXT_FIELDS = ("text_cleaner", "use_phonemes", "phonemizer", "phoneme_language", "add_blank", "enable_eos_bos_chars")
# the phoneme encoder's shape: the same names in `NaturalspeechArgs`
ENCODER_FIELDS = (
    "hidden_channels",
    "hidden_channels_ffn_phoneme_encoder",
    "num_heads_phoneme_encoder",
    "num_layers_phoneme_encoder",
    "kernel_size_phoneme_encoder",
    "dropout_p_phoneme_encoder",
)


@dataclass
class MixedPhonemePretrainingConfig(RejectsRenamedFields, BaseTrainingConfig):
    """Mixed-phoneme masked-LM pre-training of the phoneme encoder.

    Args:
        model (str):
            Name of the model. Do not change. Defaults to "mixed_phoneme_pretraining".
        corpus_path (str):
            Text corpus: one sentence per line, or LJSpeech `id|text[|normalized]` lines. Defaults to "".
        corpus_format (str):
            "text", "ljspeech" or "auto" (LJSpeech when a line holds a `|`). Defaults to "auto".
        excluded_id_prefixes (list[str]):
            LJSpeech ids starting with one of these are left out (the LJ050 test chapter). Defaults to `["LJ050-"]`.
        max_sentences (int | None):
            Use only the first sentences of the corpus; `None` uses all. Defaults to None.
        num_eval_sentences (int):
            Sentences held out (the last ones of the corpus) for evaluation. Defaults to 200.
        phoneme_cache_path (str):
            Folder of the cached phonemized corpus and sup-phoneme BPE model. Defaults to "phoneme_corpus_cache".
        num_phonemize_workers (int):
            Processes running espeak while phonemizing. Defaults to 2.
        text_cleaner (str):
            Text cleaner, as in `NaturalspeechConfig`. Defaults to "english_cleaners".
        use_phonemes (bool):
            Phonemize the text. Do not change. Defaults to True.
        phonemizer (str):
            Phonemizer name, as in `NaturalspeechConfig`. Defaults to "espeak".
        phoneme_language (str):
            Phonemizer language. Defaults to "en-us".
        add_blank (bool):
            Insert a blank token around every phoneme, as NaturalSpeech does. Defaults to True.
        enable_eos_bos_chars (bool):
            Add BOS/EOS tokens, as in `NaturalspeechConfig`. Defaults to False.
        characters (CharactersConfig | None):
            Phoneme set; `None` is the toolkit's default IPA set (what `NaturalspeechConfig` uses). Defaults to None.
        phoneme_vocabulary (list[str]):
            The phoneme symbols by id, filled in from the tokenizer when the model is built; saved with every
            checkpoint and checked by `load_pretrained_encoder`. Defaults to `[]`.
        sup_phoneme_vocab_size (int):
            Sup-phoneme vocabulary size of the BPE model, including the phonemes and 3 special tokens (paper:
            ~30k on a large corpus; LJSpeech alone supports far fewer merges). Defaults to 2000.
        sup_phoneme_min_frequency (int):
            Least count of a phoneme pair to be merged. Defaults to 2.
        mask_prob (float):
            Fraction of sup-phoneme spans selected for prediction. Defaults to 0.15.
        mask_token_prob (float):
            Of the selected spans, the fraction replaced by `[MASK]` (BERT: 0.8). Defaults to 0.8.
        random_token_prob (float):
            Of the selected spans, the fraction replaced by random phonemes and a random sup-phoneme (BERT: 0.1);
            the rest stays unchanged. Defaults to 0.1.
        hidden_channels (int):
            Channels of the encoder, as `NaturalspeechArgs.hidden_channels`. Defaults to 192.
        hidden_channels_ffn_phoneme_encoder (int):
            Channels of the encoder's feed-forward layers. Defaults to 768.
        num_heads_phoneme_encoder (int):
            Attention heads of the encoder. Defaults to 2.
        num_layers_phoneme_encoder (int):
            Transformer blocks of the encoder. Defaults to 6.
        kernel_size_phoneme_encoder (int):
            Kernel size of the encoder's feed-forward convolutions. Defaults to 3.
        dropout_p_phoneme_encoder (float):
            Dropout of the encoder. Defaults to 0.1.
        phoneme_loss_alpha (float):
            Weight of the masked phoneme cross-entropy. Defaults to 1.0.
        sup_phoneme_loss_alpha (float):
            Weight of the masked sup-phoneme cross-entropy. Defaults to 1.0.
        lr (float):
            Peak learning rate. Defaults to 0.0005.
        optimizer (str):
            `torch.optim` class. Defaults to "AdamW".
        optimizer_params (dict):
            Its parameters. Defaults to `{"betas": [0.9, 0.98], "eps": 1e-9, "weight_decay": 0.01}`.
        lr_scheduler (str | None):
            Scheduler class (a `torch.optim.lr_scheduler` name or "NoamLR"). Defaults to "NoamLR".
        lr_scheduler_params (dict):
            Its parameters. Defaults to `{"warmup_steps": 4000}`.
        scheduler_after_epoch (bool):
            Step the scheduler after each epoch instead of each step. Defaults to False.
        grad_clip (float):
            Gradient norm clipping threshold. Defaults to 1.0.
        batch_size (int):
            Sentences per training batch. Defaults to 32.
        eval_batch_size (int):
            Sentences per evaluation batch. Defaults to 32.
        epochs (int):
            Training epochs. Defaults to 300.
        eval_mask_seed (int):
            Seed of the masks drawn at evaluation, so evaluation losses are comparable between epochs.
            Defaults to 1234.
    """

    model: str = "mixed_phoneme_pretraining"

    # corpus
    corpus_path: str = ""
    corpus_format: str = "auto"
    excluded_id_prefixes: list[str] = field(default_factory=lambda: ["LJ050-"])
    max_sentences: int | None = None
    num_eval_sentences: int = 200
    phoneme_cache_path: str = "phoneme_corpus_cache"
    num_phonemize_workers: int = 2

    # text processing (same names and values as NaturalspeechConfig)
    text_cleaner: str = "english_cleaners"
    use_phonemes: bool = True
    phonemizer: str = "espeak"
    phoneme_language: str = "en-us"
    add_blank: bool = True
    enable_eos_bos_chars: bool = False
    characters: CharactersConfig | None = None
    phoneme_vocabulary: list[str] = field(default_factory=list)

    # sup-phonemes and masking
    sup_phoneme_vocab_size: int = 2000
    sup_phoneme_min_frequency: int = 2
    mask_prob: float = 0.15
    mask_token_prob: float = 0.8
    random_token_prob: float = 0.1

    # encoder (same names as NaturalspeechArgs)
    hidden_channels: int = 192
    hidden_channels_ffn_phoneme_encoder: int = 768
    num_heads_phoneme_encoder: int = 2
    num_layers_phoneme_encoder: int = 6
    kernel_size_phoneme_encoder: int = 3
    dropout_p_phoneme_encoder: float = 0.1

    # losses
    phoneme_loss_alpha: float = 1.0
    sup_phoneme_loss_alpha: float = 1.0

    # optimization
    lr: float = 5e-4
    optimizer: str = "AdamW"
    optimizer_params: dict = field(default_factory=lambda: {"betas": [0.9, 0.98], "eps": 1e-9, "weight_decay": 0.01})
    lr_scheduler: str | None = "NoamLR"
    lr_scheduler_params: dict = field(default_factory=lambda: {"warmup_steps": 4000})
    scheduler_after_epoch: bool = False
    grad_clip: float = 1.0
    batch_size: int = 32
    eval_batch_size: int = 32
    epochs: int = 300
    eval_mask_seed: int = 1234

    renamed_fields: ClassVar[dict[str, str]] = RENAMED_ENCODER_FIELDS

    @classmethod
    def from_naturalspeech_config(cls, tts_config: NaturalspeechConfig, **overrides) -> "MixedPhonemePretrainingConfig":
        """A pre-training config with the text settings and encoder shape of `tts_config`; keywords override."""
        values = {name: getattr(tts_config, name) for name in _TEXT_FIELDS}
        values |= {name: getattr(tts_config.model_args, name) for name in ENCODER_FIELDS}
        if tts_config.characters is not None:
            values["characters"] = CharactersConfig(**tts_config.characters.to_dict())
        return cls(**(values | overrides))

    def tokenizer_config(self) -> NaturalspeechConfig:
        """A `NaturalspeechConfig` with this config's text settings, for `TTSTokenizer.init_from_config`."""
        values = {name: getattr(self, name) for name in _TEXT_FIELDS}
        if self.characters is not None:
            values["characters"] = CharactersConfig(**self.characters.to_dict())
        return NaturalspeechConfig(**values)
