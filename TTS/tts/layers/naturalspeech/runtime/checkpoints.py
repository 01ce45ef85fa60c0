"""Safe checkpoint loading for NaturalSpeech models and training runs.

- `load_checkpoint_state` reads a checkpoint with `torch.load(..., weights_only=True)`: tensors, containers and plain
  Python values load; a pickle that asks to import or call anything (the `__reduce__` payload of a crafted file)
  is refused before it runs, with a `CheckpointError` naming what it asked for. A Trainer checkpoint (config dict,
  model and optimizer state dicts, scheduler state, step, epoch, date) is plain data and loads this way. A file that
  is neither a zip archive nor a pickle (an HTML page saved by a failed download, a Git LFS pointer) is reported as
  not a checkpoint, with what its first bytes look like.
- `check_state_dict` compares a state dict with a model before `load_state_dict`, so a checkpoint of another model or
  another size fails with the names of the first missing/unexpected/mismatched keys, not a stack of shape errors.

Atomic checkpoint saving patches the Trainer, so it lives with the other Trainer hooks in `trainer_hooks.py`.
"""

import os
import pickle
import re
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

_SHOWN_KEYS = 5
_HEAD_BYTES = 64  # enough to recognise a zip archive, a pickle, an HTML page or a Git LFS pointer
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default format is a zip archive
_PICKLE_PROTOCOLS = range(2, 6)  # the legacy torch.save format is a pickle stream opening with PROTO 2
# what torch's weights-only unpickler names in its refusals: a global it will not import, a function it will not call
_BLOCKED = re.compile(r"GLOBAL (\S+)|unrecognized function (.+?)(?: which belongs to |$)", re.MULTILINE)


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded safely or does not fit the model."""


def is_local_path(path: str | os.PathLike) -> bool:
    """Whether `path` is a local file rather than an fsspec URL (`s3://...`)."""
    scheme = urlparse(str(path)).scheme
    return not scheme or scheme == "file" or len(scheme) == 1  # `C:` drive letters


def load_checkpoint_state(path: str | os.PathLike, map_location: Any = "cpu", *, cache: bool = False) -> dict:
    """Load a checkpoint file without executing code from it.

    Raises:
        CheckpointError: The file holds pickled Python objects other than plain data (refused, not executed), or it
            is truncated/corrupt, or it is not a dict.
    """
    try:
        state = _weights_only_load(path, map_location, cache)
    except (CheckpointError, FileNotFoundError):
        raise
    except (pickle.UnpicklingError, EOFError, RuntimeError, OSError, ValueError) as error:
        raise _load_error(path, error) from error
    if not isinstance(state, dict):
        msg = f"{path} holds a {type(state).__name__}, not a checkpoint dict or a state dict."
        raise CheckpointError(msg)
    return state


def _weights_only_load(path: str | os.PathLike, map_location: Any, cache: bool) -> Any:
    if is_local_path(path):
        with open(path, "rb") as f:
            return torch.load(f, map_location=map_location, weights_only=True)
    from trainer.io import _WEIGHTS_ONLY, load_fsspec

    if not _WEIGHTS_ONLY:  # pragma: no cover - torch < 2.4 is not supported by the toolkit any more
        msg = f"{path}: remote checkpoints need torch >= 2.4 for weights-only loading."
        raise CheckpointError(msg)
    return load_fsspec(str(path), map_location=map_location, cache=cache)


def _load_error(path: str | os.PathLike, error: Exception) -> CheckpointError:
    """The `CheckpointError` for a failed load: not a checkpoint at all, refused pickle, or truncated/corrupt file.

    The first bytes are read only now, after the load failed, so a good checkpoint costs no extra read.
    """
    head = _read_head(path)
    if head is not None and not (head.startswith(_ZIP_MAGIC) or _is_pickle(head)):
        msg = (
            f"{path} is not a checkpoint: it is neither a zip archive (what torch.save writes) nor a pickle; "
            f"{_describe(head)}."
        )
        return CheckpointError(msg)
    if isinstance(error, pickle.UnpicklingError):
        return CheckpointError(_refusal(path, str(error)))
    msg = f"Cannot read checkpoint {path}: the file is truncated or corrupt ({type(error).__name__}: {error})."
    return CheckpointError(msg)


def _read_head(path: str | os.PathLike) -> bytes | None:
    """The first bytes of a local or fsspec file, or None when it cannot be opened."""
    try:
        if is_local_path(path):
            with open(path, "rb") as f:
                return f.read(_HEAD_BYTES)
        import fsspec

        with fsspec.open(str(path), "rb") as f:
            return f.read(_HEAD_BYTES)
    except (OSError, ValueError, ImportError):
        return None


def _is_pickle(head: bytes) -> bool:
    return len(head) >= 2 and head[0] == pickle.PROTO[0] and head[1] in _PICKLE_PROTOCOLS


def _describe(head: bytes) -> str:
    """What a file that is not a checkpoint looks like, from its first bytes."""
    if not head:
        return "the file is empty (0 bytes)"
    text = _as_text(head)
    if text is None:
        return f"its first bytes are binary data ({head[:16].hex(' ')})"
    preview = " ".join(text.split())[:48]
    lowered = text.lstrip("\ufeff").lstrip().lower()
    if lowered.startswith(("<!doctype html", "<html")) or "<html" in lowered:
        return f"its first bytes look like an HTML page ({preview!r}): a download saved a web page instead of the file"
    if lowered.startswith("version https://git-lfs"):
        return f"its first bytes look like a Git LFS pointer ({preview!r}): fetch the real file with `git lfs pull`"
    return f"its first bytes look like text ({preview!r})"


def _as_text(head: bytes) -> str | None:
    """`head` decoded as UTF-8 text, or None if it is not printable text."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.start < len(head) - 3:  # invalid inside, not just a character cut off by the read
            return None
        text = head[: error.start].decode("utf-8")
    return text if all(c.isprintable() or c.isspace() for c in text) else None


def _refusal(path: str | os.PathLike, unpickler_message: str) -> str:
    """The refusal of a pickle payload, naming the global torch's weights-only unpickler blocked when it says."""
    match = _BLOCKED.search(unpickler_message)
    if match:
        detail = f"it asks to import or call `{match.group(1) or match.group(2)}`"
    else:
        lines = [line.strip() for line in unpickler_message.splitlines() if line.strip()]
        core = [line for line in lines if not line.startswith(("Weights only load failed", "Check the documentation"))]
        detail = core[-1] if core else "unsupported pickle content"
    return (
        f"Refused to load {path}: it contains pickled Python objects that are not plain weights ({detail}). "
        "Weights-only loading does not run them. Only load checkpoints from sources you trust; a "
        "NaturalSpeech/Trainer checkpoint holds only tensors, numbers, strings and dicts."
    )


def _first(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN_KEYS])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > _SHOWN_KEYS else "")


# Buffers added after checkpoints were published; their modules fill them in when a checkpoint lacks them.
BUFFERS_WITH_DEFAULTS = (
    "durator.log_duration_variance",
    "main_stage_gate.residual_variance",
    "main_stage_gate.aligned_variance",
    "main_stage_gate.opened_at_step",
)


def check_state_dict(model: nn.Module, state: dict[str, Any], *, strict: bool = True, source: str = "") -> None:
    """Raise a `CheckpointError` naming the first missing, unexpected and wrongly-shaped keys of `state` for `model`.

    Shape mismatches are always errors (`load_state_dict` would fail on them even with `strict=False`); missing
    and unexpected keys are errors only when `strict`.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith(BUFFERS_WITH_DEFAULTS)]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and isinstance(state[k], torch.Tensor) and state[k].shape != v.shape
    ]
    problems = []
    if mismatched:
        problems.append(f"{len(mismatched)} keys with another shape (checkpoint vs model): {_first(mismatched)}")
    if strict and missing:
        problems.append(f"{len(missing)} missing keys: {_first(missing)}")
    if strict and unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_first(unexpected)}")
    if problems:
        hint = (
            "The checkpoint is not from this model"
            if len(missing) > len(expected) // 2
            else "The checkpoint is from a model with another configuration (sizes or switches)"
        )
        msg = f"{hint}{' ' + str(source) if source else ''}: " + "; ".join(problems) + "."
        raise CheckpointError(msg)
