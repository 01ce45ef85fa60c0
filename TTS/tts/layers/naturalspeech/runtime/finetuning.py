"""Fine-tuning a trained NaturalSpeech on a new voice: frozen parts, warm start, memory-bank re-fit.

- `freeze_modules` stops the training of named parts (`NaturalspeechArgs.freeze_modules`): `requires_grad=False`, and
  the model's `get_optimizer` leaves them out.
- `warm_start` copies a trained checkpoint's weights (generator and discriminator) into a new model whose config may
  have another phoneme set. The phoneme embedding is matched by symbol, not by id: a symbol both vocabularies have
  keeps its trained row wherever its id moved; a new symbol keeps the model's fresh row. Every other tensor is copied
  when its shape matches. The `WarmStartReport` lists the kept, new and dropped symbols and every tensor copied or
  skipped, with the reason.
- The memory bank is fitted again on the new voice by the model's own k-means initialisation
  (`Naturalspeech.init_memory_bank`, as at the end of warm-up): `warm_start` leaves the bank marked as not fitted, so
  the first training step that uses it fits it on the new data; `refit_memory_bank` does it at once.

The fine-tune starts at step 0 with fresh optimizers: the checkpoint's step and optimizer state are not copied.
"""

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from TTS.tts.layers.naturalspeech.runtime.checkpoints import CheckpointError, load_checkpoint_state

logger = logging.getLogger(__name__)

EMBEDDING_KEY = "phoneme_encoder.emb.weight"
# training progress of the source run: the fine-tune starts over at step 0 (and fits its bank unless told otherwise)
PROGRESS_KEYS = ("step", "memory_initialized")
# tensors that may legitimately change shape between runs; with another shape they start fresh instead of failing
REINITIALISABLE_PREFIXES = ("disc.", "duration_disc.", "speaker_embedding.", "sup_phonemes.")
_SHOWN = 8


##########################
# frozen parts
##########################


def freeze_modules(
    model: nn.Module, names: list[str], discriminator_prefixes: tuple[str, ...] = ("disc.", "duration_disc.")
) -> list[str]:
    """Set `requires_grad=False` on the parameters of the named parts of `model`; returns the frozen names.

    Args:
        model: The model.
        names: Sub-module names or dotted prefixes of parameter names (`durator`, `durator.duration_predictor`).
        discriminator_prefixes: Parameter name prefixes of the discriminator optimizer's parameters.

    Raises:
        ValueError: A name is no part of the model, or it would freeze every parameter of one optimizer (the
            discriminators' or the generator's: the Trainer cannot step an optimizer without parameters).
    """
    if not names:
        return []
    named = dict(model.named_parameters())
    frozen = []
    for name in names:
        top = name.split(".")[0]
        if hasattr(model, top) and getattr(model, top) is None:
            continue  # a part this model was built without (the discriminator of a synthesis model)
        matched = [n for n in named if n == name or n.startswith(name + ".")]
        if not matched:
            parts = ", ".join(n for n, m in model.named_children() if any(True for _ in m.parameters()))
            msg = f"model_args.freeze_modules: {name!r} names no part of the model with parameters; its parts: {parts}."
            raise ValueError(msg)
        for parameter_name in matched:
            named[parameter_name].requires_grad_(False)
        frozen += matched
    _check_optimizers_keep_parameters(named, names, discriminator_prefixes)
    logger.info("Frozen: %s (%d tensors)", ", ".join(names), len(frozen))
    return frozen


def _check_optimizers_keep_parameters(named: dict[str, nn.Parameter], names: list[str], prefixes: tuple) -> None:
    for label, is_disc in (("discriminator", True), ("generator", False)):
        group = [p for n, p in named.items() if n.startswith(prefixes) == is_disc]
        if group and not any(p.requires_grad for p in group):
            msg = (
                f"model_args.freeze_modules {names} freezes every {label} parameter: its optimizer would have nothing "
                "to train. Leave at least one part of it out of the list."
            )
            raise ValueError(msg)


##########################
# warm start
##########################


@dataclass
class WarmStartReport:
    """What `warm_start` kept from a checkpoint, what starts fresh, and why.

    Attributes:
        checkpoint: The checkpoint read.
        source_step: The training step the checkpoint was saved at (None if it does not say).
        kept_symbols: Symbols of the model's vocabulary whose trained embedding row was copied.
        moved_symbols: Those of them whose id differs between the checkpoint and the model.
        new_symbols: Symbols only the model has: their rows keep the model's initialisation.
        dropped_symbols: Symbols only the checkpoint has.
        copied: Model tensors copied from the checkpoint.
        skipped: Model tensor -> why it was not copied (it keeps the model's initialisation).
        unused: Checkpoint tensor -> why the model has no use for it.
        refit_memory_bank: Whether the memory bank is fitted again on the new data.
    """

    checkpoint: str
    source_step: int | None = None
    kept_symbols: list[str] = field(default_factory=list)
    moved_symbols: list[str] = field(default_factory=list)
    new_symbols: list[str] = field(default_factory=list)
    dropped_symbols: list[str] = field(default_factory=list)
    copied: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    unused: dict[str, str] = field(default_factory=dict)
    refit_memory_bank: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")

    def summary(self) -> str:
        """A few lines for the log: symbols kept/new/dropped, tensors copied/skipped by reason."""
        lines = [
            f"Warm start from {self.checkpoint} (trained {self.source_step} steps): "
            f"{len(self.copied)} tensors copied, {len(self.skipped)} start fresh, {len(self.unused)} unused.",
            f"  symbols: {len(self.kept_symbols)} kept ({len(self.moved_symbols)} at another id), "
            f"{len(self.new_symbols)} new {_shown(self.new_symbols)}, "
            f"{len(self.dropped_symbols)} dropped {_shown(self.dropped_symbols)}",
        ]
        for title, reasons in (("start fresh", self.skipped), ("unused", self.unused)):
            for reason, names in _by_reason(reasons).items():
                lines.append(f"  {title}: {len(names)} ({reason}): {', '.join(names[:_SHOWN])}{_more(names)}")
        lines.append(
            "  memory bank: "
            + ("fitted again by k-means on the new data" if self.refit_memory_bank else "kept from the checkpoint")
        )
        return "\n".join(lines)


def _shown(symbols: list[str]) -> str:
    return f"{symbols[:_SHOWN]}{_more(symbols)}" if symbols else ""


def _more(items: list) -> str:
    return f" ... ({len(items)} in all)" if len(items) > _SHOWN else ""


def _by_reason(reasons: dict[str, str]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for name, reason in reasons.items():
        grouped.setdefault(reason, []).append(name)
    return grouped


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict | None, int | None]:
    """The model state, config dict (None if absent) and step of a NaturalSpeech checkpoint.

    The config is the run folder's `config.json` beside the file, as the `tts` CLI reads it (a run trained before a
    config field was renamed has its names updated there), else the config stored in the checkpoint (Trainer
    checkpoints and the learning benchmark's budget files carry one).

    Raises:
        FileNotFoundError: No file at `path`.
        CheckpointError: The file is not a checkpoint, or not one of a NaturalSpeech model.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"Fine-tuning checkpoint not found: {path}"
        raise FileNotFoundError(msg)
    state = load_checkpoint_state(path)
    model_state = state["model"] if isinstance(state.get("model"), dict) else state
    config = state.get("config") if isinstance(state.get("config"), dict) else None
    if (path.parent / "config.json").is_file():
        config = json.loads((path.parent / "config.json").read_text(encoding="utf-8"))
    model_name = (config or {}).get("model")
    if model_name is not None and model_name != "naturalspeech":
        msg = f"{path} is a checkpoint of a '{model_name}' model, not of NaturalSpeech: it cannot start a fine-tune."
        raise CheckpointError(msg)
    if EMBEDDING_KEY not in model_state:
        keys = ", ".join(list(model_state)[:5])
        msg = f"{path} holds no NaturalSpeech weights (no {EMBEDDING_KEY}; its first keys: {keys or 'none'})."
        raise CheckpointError(msg)
    step = state.get("step")
    if step is None and isinstance(model_state.get("step"), torch.Tensor):
        step = int(model_state["step"])
    return model_state, config, step


def vocabulary_of(config: dict) -> list[str]:
    """The token vocabulary (id order) of a run's config dict, built as the toolkit's tokenizer builds it.

    Only the text settings are read (characters, phonemes or graphemes, blanks, EOS/BOS), so no phonemizer is started.
    """
    from TTS.tts.configs.naturalspeech_config import NaturalspeechConfig
    from TTS.tts.configs.shared_configs import CharactersConfig
    from TTS.tts.utils.text.characters import Graphemes, IPAPhonemes
    from TTS.utils.generic_utils import import_class

    text = NaturalspeechConfig()
    for key in ("use_phonemes", "add_blank", "enable_eos_bos_chars"):
        if key in config:
            setattr(text, key, config[key])
    characters = config.get("characters")
    text.characters = CharactersConfig(**characters) if isinstance(characters, dict) else None
    if text.characters is not None and text.characters.characters_class:
        vocabulary, _ = import_class(text.characters.characters_class).init_from_config(text)
    elif text.use_phonemes:
        vocabulary, _ = IPAPhonemes().init_from_config(text)
    else:
        vocabulary, _ = Graphemes().init_from_config(text)
    return list(vocabulary.vocab)


@torch.no_grad()
def warm_start(
    model: nn.Module,
    checkpoint_path: str | os.PathLike,
    *,
    source_vocabulary: list[str] | None = None,
    refit_memory_bank: bool = True,
    strict: bool = True,
) -> WarmStartReport:
    """Copy a trained NaturalSpeech checkpoint into `model` (built for the new run), matching symbols by name.

    The tensors are copied in place, so optimizers already holding the model's parameters train the copied values.
    The model's `step` is left at 0; with `refit_memory_bank` its bank is marked as not fitted, so the model fits it by
    k-means over the new data's posterior latents when training first uses it (`Naturalspeech.init_memory_bank`).

    Args:
        model: A `Naturalspeech` with its tokenizer.
        checkpoint_path: A Trainer checkpoint or a weights file of a trained run.
        source_vocabulary: The checkpoint's vocabulary in id order; None reads it from the checkpoint's config.
        refit_memory_bank: Fit the memory bank again on the new data (else keep the checkpoint's).
        strict: A generator tensor whose shape differs (other than the phoneme embedding's rows, the speaker
            embedding and the sup-phoneme input) is an error: the two configs differ in size. False lets such
            tensors start fresh (listed in the report).

    Returns:
        The report of what was kept (also logged).

    Raises:
        FileNotFoundError: No checkpoint file.
        CheckpointError: Not a NaturalSpeech checkpoint, no vocabulary for it, or sizes that do not fit the model.
    """
    source, config, step = read_checkpoint(checkpoint_path)
    report = WarmStartReport(checkpoint=str(checkpoint_path), source_step=step, refit_memory_bank=refit_memory_bank)
    if source_vocabulary is None:
        if config is None:
            msg = (
                f"{checkpoint_path} carries no config and has no config.json beside it: its phoneme vocabulary is "
                "unknown, so the embedding rows cannot be matched by symbol. Pass source_vocabulary."
            )
            raise CheckpointError(msg)
        source_vocabulary = vocabulary_of(config)
    target_vocabulary = list(model.tokenizer.characters.vocab)
    _check_embedding(source[EMBEDDING_KEY], len(source_vocabulary), model, checkpoint_path)
    same_vocabulary = source_vocabulary == target_vocabulary
    if "sup_phonemes.bpe" in source and same_vocabulary:
        model._match_sup_phonemes(source, strict=False)  # builds the sup-phoneme input the weights expect
    target = model.state_dict()
    mismatched = []
    for name, tensor in target.items():
        if name == EMBEDDING_KEY:
            _copy_rows(tensor, source[name], source_vocabulary, target_vocabulary, report)
            report.copied.append(name)
        elif name in PROGRESS_KEYS:
            report.skipped[name] = "training progress: the fine-tune starts at step 0"
        elif name not in source:
            report.skipped[name] = "not in the checkpoint"
        elif source[name].shape != tensor.shape:
            shapes = f"{tuple(source[name].shape)} in the checkpoint, {tuple(tensor.shape)} in the model"
            if name == "memory_bank.bank" and refit_memory_bank:
                report.skipped[name] = "fitted again by k-means (another bank size)"
            elif name.startswith(REINITIALISABLE_PREFIXES) or not strict:
                report.skipped[name] = f"another shape ({shapes})"
            else:
                mismatched.append(f"{name} ({shapes})")
        else:
            tensor.copy_(source[name].to(dtype=tensor.dtype))
            report.copied.append(name)
    if mismatched:
        msg = (
            f"{checkpoint_path} does not fit the model: {len(mismatched)} tensors have another shape: "
            f"{', '.join(mismatched[:5])}{_more(mismatched)}. Fine-tune with the sizes of the checkpoint's config."
        )
        raise CheckpointError(msg)
    for name in source:
        if name in target:
            continue
        if name.startswith(("disc.", "duration_disc.")) and getattr(model, name.split(".")[0], None) is None:
            report.unused[name] = "the model has no such discriminator (init_discriminator or its switch is off)"
        elif name.startswith("sup_phonemes.") and not same_vocabulary:
            report.unused[name] = "the sup-phoneme BPE is over the checkpoint's phoneme vocabulary, not the model's"
        else:
            report.unused[name] = "not in the model"
    if not refit_memory_bank and "memory_initialized" in source:
        model.memory_initialized.copy_(source["memory_initialized"])
        report.skipped.pop("memory_initialized", None)
        report.copied.append("memory_initialized")
    _note_missing_discriminator(model, source, report)
    logger.info("%s", report.summary())
    return report


def _check_embedding(embedding: torch.Tensor, vocabulary_size: int, model: nn.Module, path) -> None:
    if embedding.size(0) != vocabulary_size:
        msg = (
            f"{path}: its phoneme embedding has {embedding.size(0)} rows but its config's vocabulary has "
            f"{vocabulary_size} symbols: the config does not belong to this checkpoint."
        )
        raise CheckpointError(msg)
    channels = model.phoneme_encoder.emb.weight.size(1)
    if embedding.size(1) != channels:
        msg = (
            f"{path} has hidden size {embedding.size(1)}, the model {channels}: a fine-tune needs the sizes of the "
            "checkpoint's config (model_args.hidden_channels and the other sizes)."
        )
        raise CheckpointError(msg)


def _copy_rows(
    target: torch.Tensor, source: torch.Tensor, source_vocabulary: list[str], target_vocabulary: list[str], report
) -> None:
    """Copy the source row of every symbol the target vocabulary shares, wherever its id is."""
    source_ids = {symbol: index for index, symbol in enumerate(source_vocabulary)}
    for index, symbol in enumerate(target_vocabulary):
        if symbol in source_ids:
            target[index].copy_(source[source_ids[symbol]].to(dtype=target.dtype))
            report.kept_symbols.append(symbol)
            if source_ids[symbol] != index:
                report.moved_symbols.append(symbol)
        else:
            report.new_symbols.append(symbol)
    shared = set(target_vocabulary)
    report.dropped_symbols = [symbol for symbol in source_vocabulary if symbol not in shared]


def _note_missing_discriminator(model: nn.Module, source: dict, report: WarmStartReport) -> None:
    if getattr(model, "disc", None) is not None and not any(k.startswith("disc.") for k in source):
        logger.warning(
            "%s has no discriminator weights (a weights-only file): the discriminator starts from scratch. A Trainer "
            "checkpoint of the run (checkpoint_<step>.pth) carries it.",
            report.checkpoint,
        )


def refit_memory_bank(model: nn.Module, data_loader) -> None:
    """Fit the memory bank now by k-means over the posterior latents of `data_loader` (the new voice's data).

    The model's own initialisation (`Naturalspeech.init_memory_bank`), as at the end of warm-up.
    """
    model.init_memory_bank(data_loader)
