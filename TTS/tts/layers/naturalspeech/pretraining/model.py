"""Mixed-phoneme pre-training of the phoneme encoder θ_pho (paper, Section 3.1; Mixed-Phoneme BERT).

The encoder reads phonemes plus the embedding of the sup-phoneme (a BPE merge of phonemes) each phoneme belongs
to. 15% of the sup-phoneme spans are selected; all tokens of a selected span are replaced by `[MASK]` (or random
tokens, or kept, 80/10/10 as in BERT), and two heads predict the original phonemes and sup-phonemes there. Only the
encoder, the sup-phoneme embedding and the BPE are kept afterwards: `load_pretrained_encoder` loads the encoder into
NaturalSpeech's `PhonemeEncoder` and returns the other two, which NaturalSpeech keeps as the encoder's sup-phoneme
input (`sup_phoneme_embedding.py`). The BPE travels in the checkpoint as the uint8 buffer `sup_phoneme_bpe` (the
tokenizer's JSON); checkpoints written before it was added load with the encoder only.

The phoneme vocabulary has no mask symbol, and the NaturalSpeech encoder must load the pre-trained embedding table
unchanged, so the phoneme `[MASK]` is the pad id: the pad row of the embedding is never seen otherwise, because the
encoder zeroes padded positions.
"""

import logging
from typing import Any, NamedTuple

import fsspec
import torch
from einops import rearrange
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader
from trainer.logging import BaseDashboardLogger
from trainer.model import TrainerModel
from trainer.trainer_utils import get_optimizer, get_scheduler

from TTS.tts.layers.naturalspeech.phoneme_encoder import PhonemeEncoder
from TTS.tts.layers.naturalspeech.pretraining.config import MixedPhonemePretrainingConfig
from TTS.tts.layers.naturalspeech.pretraining.corpus import PhonemeMLMDataset, SupPhonemeTokenizer

logger = logging.getLogger(__name__)

_FIRST_SUP_PHONEME = 3  # ids 0-2 are [PAD], [MASK], [BLNK]


class MaskedBatch(NamedTuple):
    """Encoder inputs after masking.

    Attributes:
        tokens: Phoneme ids with the selected spans replaced, `[B, T_text]`.
        sup_ids: Sup-phoneme ids with the selected spans replaced, `[B, T_text]`.
        selected: Tokens of the selected spans, `[B, T_text]`.
        selected_spans: The selected spans, `[B, S]`.
    """

    tokens: torch.Tensor
    sup_ids: torch.Tensor
    selected: torch.Tensor
    selected_spans: torch.Tensor


class SupPhonemeSpanMasker:
    """Selects whole sup-phoneme spans and replaces their tokens (BERT's 80/10/10 rule, per span).

    Args:
        mask_prob: Probability that a maskable span is selected.
        mask_token_prob: Probability that a selected span is replaced by `[MASK]`.
        random_token_prob: Probability that a selected span is replaced by random phonemes and a random sup-phoneme.
        phoneme_mask_id: Phoneme id of `[MASK]`.
        sup_mask_id: Sup-phoneme id of `[MASK]`.
        phoneme_ids: Ids that random replacement draws from (the real phonemes).
        num_sup_phonemes: Sup-phoneme vocabulary size.
    """

    def __init__(
        self,
        mask_prob: float,
        mask_token_prob: float,
        random_token_prob: float,
        phoneme_mask_id: int,
        sup_mask_id: int,
        phoneme_ids: list[int],
        num_sup_phonemes: int,
    ):
        self.mask_prob = mask_prob
        self.mask_token_prob = mask_token_prob
        self.random_token_prob = random_token_prob
        self.phoneme_mask_id = phoneme_mask_id
        self.sup_mask_id = sup_mask_id
        self.phoneme_ids = torch.tensor(phoneme_ids, dtype=torch.long)
        self.num_sup_phonemes = num_sup_phonemes

    def __call__(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None) -> MaskedBatch:
        """Mask a collated batch (see `PhonemeMLMDataset.collate`); padding and blank spans are never selected."""
        tokens, sup_ids, span_index = batch["tokens"], batch["sup_ids"], batch["span_index"]
        maskable = batch["span_maskable"]
        device = tokens.device
        selected_spans = (torch.rand(maskable.shape, generator=generator, device=device) < self.mask_prob) & maskable
        action = torch.rand(maskable.shape, generator=generator, device=device)
        mask_spans = selected_spans & (action < self.mask_token_prob)
        random_spans = selected_spans & ~mask_spans & (action < self.mask_token_prob + self.random_token_prob)

        valid = span_index >= 0
        index = span_index.clamp(min=0)
        selected = selected_spans.gather(1, index) & valid  # [B, T_text]
        to_mask = mask_spans.gather(1, index) & valid
        to_random = random_spans.gather(1, index) & valid

        pool = self.phoneme_ids.to(device)
        random_phonemes = pool[torch.randint(len(pool), tokens.shape, generator=generator, device=device)]
        random_sups = torch.randint(
            _FIRST_SUP_PHONEME, self.num_sup_phonemes, maskable.shape, generator=generator, device=device
        ).gather(1, index)  # one random sup-phoneme per span
        is_phoneme = torch.isin(tokens, pool)
        new_tokens = torch.where(to_mask, self.phoneme_mask_id, tokens)
        new_tokens = torch.where(to_random & is_phoneme, random_phonemes, new_tokens)
        new_sup_ids = torch.where(to_mask, self.sup_mask_id, sup_ids)
        new_sup_ids = torch.where(to_random, random_sups, new_sup_ids)
        return MaskedBatch(new_tokens, new_sup_ids, selected, selected_spans)


class MixedPhonemeMLMLoss(nn.Module):
    """Cross-entropy of the original phonemes and sup-phonemes at the selected positions, in fp32.

    Args:
        phoneme_loss_alpha: Weight of the phoneme term.
        sup_phoneme_loss_alpha: Weight of the sup-phoneme term.
    """

    def __init__(self, phoneme_loss_alpha: float = 1.0, sup_phoneme_loss_alpha: float = 1.0):
        super().__init__()
        self.phoneme_loss_alpha = phoneme_loss_alpha
        self.sup_phoneme_loss_alpha = sup_phoneme_loss_alpha

    def forward(
        self, outputs: dict[str, torch.Tensor], tokens: torch.Tensor, sup_ids: torch.Tensor, loss_mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Loss terms and masked-token accuracies.

        Shapes:
            - outputs["phoneme_logits"]: :math:`[B, T_text, V_pho]`
            - outputs["sup_phoneme_logits"]: :math:`[B, T_text, V_sup]`
            - tokens, sup_ids, loss_mask: :math:`[B, T_text]`
        """
        with torch.autocast(tokens.device.type, enabled=False):
            pho_logits = outputs["phoneme_logits"][loss_mask].float()  # [N, V_pho]
            sup_logits = outputs["sup_phoneme_logits"][loss_mask].float()  # [N, V_sup]
            pho_target, sup_target = tokens[loss_mask], sup_ids[loss_mask]
            zero = outputs["phoneme_logits"].sum() * 0.0  # keeps the graph when nothing is masked
            loss_pho = F.cross_entropy(pho_logits, pho_target) if len(pho_target) else zero
            loss_sup = F.cross_entropy(sup_logits, sup_target) if len(sup_target) else zero
        count = max(len(pho_target), 1)
        return {
            "loss": self.phoneme_loss_alpha * loss_pho + self.sup_phoneme_loss_alpha * loss_sup,
            "loss_phoneme": loss_pho,
            "loss_sup_phoneme": loss_sup,
            "acc_phoneme": (pho_logits.argmax(-1) == pho_target).sum().float() / count,
            "acc_sup_phoneme": (sup_logits.argmax(-1) == sup_target).sum().float() / count,
        }


class _PredictionHead(nn.Sequential):
    """BERT's prediction head: dense, GELU, layer norm, projection to the vocabulary."""

    def __init__(self, channels: int, vocab_size: int):
        super().__init__(
            nn.Linear(channels, channels), nn.GELU(), nn.LayerNorm(channels), nn.Linear(channels, vocab_size)
        )


class MixedPhonemePretraining(TrainerModel):
    """Mixed-phoneme masked-LM around NaturalSpeech's `PhonemeEncoder`, trainable with `trainer.Trainer`.

    ::

        phonemes ──► emb ─┐
                          + ─► PhonemeEncoder (relative-position transformer) ─► h ─┬─► phoneme head
        sup-phonemes ─► sup_phoneme_emb ─┘                                           └─► sup-phoneme head

    Args:
        config: The pre-training config; its `phoneme_vocabulary` is set from `sup_phonemes`.
        sup_phonemes: The sup-phoneme tokenizer of the corpus (it carries the phoneme vocabulary).
        pad_id: Phoneme id of padding, also used as the phoneme `[MASK]`. Defaults to 0 (the toolkit's `<PAD>`).
    """

    def __init__(self, config: MixedPhonemePretrainingConfig, sup_phonemes: SupPhonemeTokenizer, pad_id: int = 0):
        super().__init__()
        if config.phoneme_vocabulary and list(config.phoneme_vocabulary) != sup_phonemes.vocabulary:
            msg = "config.phoneme_vocabulary differs from the sup-phoneme tokenizer's vocabulary."
            raise ValueError(msg)
        config.phoneme_vocabulary = list(sup_phonemes.vocabulary)
        self.config = config
        self.sup_phonemes = sup_phonemes
        self.pad_id = pad_id
        channels, num_phonemes = config.hidden_channels, len(sup_phonemes.vocabulary)
        self.encoder = PhonemeEncoder(
            num_chars=num_phonemes,
            hidden_channels=channels,
            hidden_channels_ffn=config.hidden_channels_ffn_phoneme_encoder,
            num_heads=config.num_heads_phoneme_encoder,
            num_layers=config.num_layers_phoneme_encoder,
            kernel_size=config.kernel_size_phoneme_encoder,
            dropout_p=config.dropout_p_phoneme_encoder,
        )
        self.sup_phoneme_emb = nn.Embedding(
            sup_phonemes.num_sup_phonemes, channels, padding_idx=sup_phonemes.pad_sup_id
        )
        nn.init.normal_(self.sup_phoneme_emb.weight, 0.0, channels**-0.5)
        # the merges that index `sup_phoneme_emb`, in the state dict: a checkpoint is usable without the BPE file
        self.register_buffer("sup_phoneme_bpe", sup_phonemes.to_tensor())
        self.phoneme_head = _PredictionHead(channels, num_phonemes)
        self.sup_phoneme_head = _PredictionHead(channels, sup_phonemes.num_sup_phonemes)
        phoneme_ids = [i for i in range(num_phonemes) if i not in sup_phonemes.special_phoneme_ids]
        self.register_buffer("phoneme_ids", torch.tensor(phoneme_ids), persistent=False)
        self.masker = SupPhonemeSpanMasker(
            config.mask_prob,
            config.mask_token_prob,
            config.random_token_prob,
            phoneme_mask_id=pad_id,
            sup_mask_id=sup_phonemes.mask_sup_id,
            phoneme_ids=phoneme_ids,
            num_sup_phonemes=sup_phonemes.num_sup_phonemes,
        )

    def load_state_dict(self, state_dict: dict[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """`nn.Module.load_state_dict`; a checkpoint written before the BPE was stored in it keeps this run's BPE.

        A resumed run rebuilds its BPE from the same cached file, so the old checkpoint's embedding still fits it.
        """
        if "sup_phoneme_bpe" not in state_dict:
            state_dict = {**state_dict, "sup_phoneme_bpe": self.sup_phoneme_bpe}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def forward(
        self, tokens: torch.Tensor, token_lengths: torch.Tensor, sup_ids: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Predict phonemes and sup-phonemes at every position.

        Shapes:
            - tokens, sup_ids: :math:`[B, T_text]`
            - token_lengths: :math:`[B]`
            - phoneme_logits: :math:`[B, T_text, V_pho]`
            - sup_phoneme_logits: :math:`[B, T_text, V_sup]`
            - hidden: :math:`[B, C, T_text]`
        """
        h, x_mask = self.encoder(tokens, token_lengths, extra_embedding=self.sup_phoneme_emb(sup_ids))
        h_t = rearrange(h, "b c t -> b t c")
        return {
            "phoneme_logits": self.phoneme_head(h_t),
            "sup_phoneme_logits": self.sup_phoneme_head(h_t),
            "hidden": h,
            "x_mask": x_mask,
        }

    def _step(
        self, batch: dict[str, torch.Tensor], criterion: nn.Module, generator: torch.Generator | None
    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        masked = self.masker(batch, generator)
        outputs = self.forward(masked.tokens, batch["token_lengths"], masked.sup_ids)
        loss_mask = masked.selected & torch.isin(batch["tokens"], self.phoneme_ids)  # blanks are not predicted
        outputs["loss_mask"] = loss_mask
        return outputs, criterion(outputs, batch["tokens"], batch["sup_ids"], loss_mask)

    def train_step(
        self, batch: dict[str, torch.Tensor], criterion: nn.Module, optimizer_idx: int | None = None
    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """Mask afresh (dynamic masking) and compute the losses."""
        return self._step(batch, criterion, generator=None)

    @torch.inference_mode()
    def eval_step(
        self, batch: dict[str, torch.Tensor], criterion: nn.Module, optimizer_idx: int | None = None
    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """Like `train_step`, with masks drawn from `config.eval_mask_seed` so epochs are comparable."""
        generator = torch.Generator(device=batch["tokens"].device).manual_seed(self.config.eval_mask_seed)
        return self._step(batch, criterion, generator)

    @staticmethod
    def masked_accuracy(batch: dict[str, torch.Tensor], outputs: dict[str, torch.Tensor]) -> dict[str, float]:
        """Accuracy of both heads over the masked phoneme positions of a step."""
        mask = outputs["loss_mask"]
        count = max(int(mask.sum()), 1)
        pho = outputs["phoneme_logits"].argmax(-1)[mask] == batch["tokens"][mask]
        sup = outputs["sup_phoneme_logits"].argmax(-1)[mask] == batch["sup_ids"][mask]
        return {
            "masked_phoneme_accuracy": pho.sum().item() / count,
            "masked_sup_phoneme_accuracy": sup.sum().item() / count,
        }

    def train_log(
        self, batch: dict[str, Any], outputs: dict[str, Any], logger: BaseDashboardLogger, steps: int
    ) -> None:
        """Write the masked-token accuracies of the step to the dashboard."""
        logger.add_scalars("TrainMLM", self.masked_accuracy(batch, outputs), steps)

    def eval_log(self, batch: dict[str, Any], outputs: dict[str, Any], logger: BaseDashboardLogger, steps: int) -> None:
        """Write the masked-token accuracies of the last evaluation batch to the dashboard."""
        logger.add_scalars("EvalMLM", self.masked_accuracy(batch, outputs), steps)

    def get_data_loader(
        self, config: MixedPhonemePretrainingConfig, *, is_eval: bool = False, samples: list | None = None, **kwargs
    ) -> DataLoader:
        """Batches of `samples` (token id lists), shuffled for training."""
        dataset = PhonemeMLMDataset(samples or [], self.sup_phonemes, self.pad_id)
        return DataLoader(
            dataset,
            batch_size=config.eval_batch_size if is_eval else config.batch_size,
            shuffle=not is_eval,
            collate_fn=dataset.collate,
            num_workers=config.num_eval_loader_workers if is_eval else config.num_loader_workers,
        )

    def get_criterion(self) -> nn.Module:
        return MixedPhonemeMLMLoss(self.config.phoneme_loss_alpha, self.config.sup_phoneme_loss_alpha)

    def get_optimizer(self) -> torch.optim.Optimizer:
        return get_optimizer(self.config.optimizer, self.config.optimizer_params, self.config.lr, model=self)

    def get_lr(self) -> float:
        return self.config.lr

    def get_scheduler(self, optimizer: torch.optim.Optimizer | list) -> Any:
        optimizer = optimizer[0] if isinstance(optimizer, list) else optimizer
        return get_scheduler(self.config.lr_scheduler, self.config.lr_scheduler_params, optimizer)


def vocabulary_mismatch(pretrained: list[str], vocabulary: list[str]) -> str | None:
    """Describe how two phoneme vocabularies differ, or `None` when they are identical."""
    if list(pretrained) == list(vocabulary):
        return None
    missing = [s for s in vocabulary if s not in pretrained]
    extra = [s for s in pretrained if s not in vocabulary]
    moved = [
        f"{s!r} (id {pretrained.index(s)} in the checkpoint, {i} in the model)"
        for i, s in enumerate(vocabulary)
        if s in pretrained and pretrained.index(s) != i
    ]
    parts = [
        f"missing from the checkpoint: {missing}" if missing else "",
        f"not in the model's vocabulary: {extra}" if extra else "",
        f"reordered: {', '.join(moved)}" if moved else "",
    ]
    return "; ".join(p for p in parts if p)


class PretrainedSupPhonemes(NamedTuple):
    """The sup-phoneme half of a pre-training checkpoint: what the TTS encoder needs to read sup-phonemes too.

    Attributes:
        tokenizer: The BPE of the pre-training run.
        embedding: The trained sup-phoneme embedding table, `[V_sup, C]`.
    """

    tokenizer: SupPhonemeTokenizer
    embedding: torch.Tensor


def load_pretrained_encoder(
    encoder: PhonemeEncoder, checkpoint_path: str, vocabulary: list[str]
) -> PretrainedSupPhonemes | None:
    """Initialise `encoder` from a mixed-phoneme pre-training checkpoint (the `encoder.*` weights).

    Args:
        encoder: The NaturalSpeech phoneme encoder, built with the pre-training's encoder shape.
        checkpoint_path: A checkpoint written by `trainer.Trainer` for `MixedPhonemePretraining` (local or fsspec).
        vocabulary: The NaturalSpeech tokenizer's `tokenizer.characters.vocab`.

    Returns:
        The checkpoint's sup-phoneme BPE and embedding table, or None for a checkpoint written before the BPE was
        stored in it (it holds no sup-phonemes; `add_sup_phonemes_to_checkpoint` can add them).

    Raises:
        ValueError: The checkpoint has no phoneme vocabulary, or it differs from `vocabulary` (the message names
            the missing, extra and reordered symbols).
        RuntimeError: The encoder's keys or shapes differ from the checkpoint's (strict loading; only the speaker
            input of a speaker-conditioned encoder, `cond.*`, may be missing from the checkpoint).
    """
    with fsspec.open(checkpoint_path, "rb") as f:
        checkpoint = torch.load(f, map_location="cpu", weights_only=True)
    _check_vocabulary(checkpoint, checkpoint_path, vocabulary)
    model_state = checkpoint["model"]
    state = {k.removeprefix("encoder."): v for k, v in model_state.items() if k.startswith("encoder.")}
    # strict, except for the speaker input of a speaker-conditioned encoder, which pre-training (text only) never has
    missing, unexpected = encoder.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("cond.")]
    if missing or unexpected:
        msg = f"{checkpoint_path}: encoder keys differ from the model's: missing {missing}, unexpected {unexpected}."
        raise RuntimeError(msg)
    logger.info("Loaded %d pre-trained phoneme encoder tensors from %s.", len(state), checkpoint_path)
    if "sup_phoneme_bpe" not in model_state:
        return None
    tokenizer = SupPhonemeTokenizer.from_tensor(model_state["sup_phoneme_bpe"])
    return PretrainedSupPhonemes(tokenizer, model_state["sup_phoneme_emb.weight"])


def _check_vocabulary(checkpoint: dict, checkpoint_path: str, vocabulary: list[str]) -> None:
    pretrained = (checkpoint.get("config") or {}).get("phoneme_vocabulary")
    if not pretrained:
        msg = f"{checkpoint_path} stores no phoneme vocabulary: not a mixed-phoneme pre-training checkpoint."
        raise ValueError(msg)
    difference = vocabulary_mismatch(pretrained, vocabulary)
    if difference:
        msg = f"Phoneme vocabulary of {checkpoint_path} differs from the model's: {difference}."
        raise ValueError(msg)


def add_sup_phonemes_to_checkpoint(checkpoint_path: str, sup_phonemes_path: str, output_path: str) -> None:
    """Write a copy of an older pre-training checkpoint that carries its sup-phoneme BPE, as new ones do.

    Args:
        checkpoint_path: A pre-training checkpoint without the `sup_phoneme_bpe` buffer.
        sup_phonemes_path: The run's BPE file: `sup_phonemes-<hash>.json` in the pre-training's `phoneme_cache_path`.
        output_path: Where to write the completed checkpoint (local or fsspec).

    Raises:
        ValueError: The BPE's phoneme vocabulary or size does not fit the checkpoint (another run's file).
    """
    with fsspec.open(checkpoint_path, "rb") as f:
        checkpoint = torch.load(f, map_location="cpu", weights_only=True)
    tokenizer = SupPhonemeTokenizer.load(sup_phonemes_path)
    _check_vocabulary(checkpoint, checkpoint_path, tokenizer.vocabulary)
    rows = checkpoint["model"]["sup_phoneme_emb.weight"].size(0)
    if rows != tokenizer.num_sup_phonemes:
        msg = (
            f"{sup_phonemes_path} has {tokenizer.num_sup_phonemes} sup-phonemes but the embedding of "
            f"{checkpoint_path} has {rows}: the BPE file is from another run."
        )
        raise ValueError(msg)
    checkpoint["model"]["sup_phoneme_bpe"] = tokenizer.to_tensor()
    with fsspec.open(output_path, "wb") as f:
        torch.save(checkpoint, f)
    logger.info("Wrote %s: %s with the sup-phonemes of %s.", output_path, checkpoint_path, sup_phonemes_path)
