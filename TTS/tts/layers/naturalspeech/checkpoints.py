"""Safe checkpoint loading and atomic checkpoint saving for NaturalSpeech training runs.

- `load_checkpoint_state` reads a checkpoint with `torch.load(..., weights_only=True)`: tensors, containers and plain
  Python values load; a pickle that asks to import or call anything (the `__reduce__` payload of a crafted file)
  is refused before it runs, with a `CheckpointError` that says so. A Trainer checkpoint (config dict, model and
  optimizer state dicts, scheduler state, step, epoch, date) is plain data and loads this way.
- `check_state_dict` compares a state dict with a model before `load_state_dict`, so a checkpoint of another model or
  another size fails with the names of the first missing/unexpected/mismatched keys, not a stack of shape errors.
- `make_trainer_saves_atomic` makes a Trainer write every checkpoint to a temporary file in the run folder, fsync it
  and rename it over the final name: a run killed during a save leaves the previous checkpoints intact and at most
  a `*.pth.tmp-<pid>` file that `--continue_path` ignores (it globs `*.pth`).
"""

import contextlib
import logging
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

logger = logging.getLogger(__name__)

_TMP_MARK = ".tmp-"
_SHOWN_KEYS = 5


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded safely or does not fit the model."""


def _is_local(path: str | os.PathLike) -> bool:
    scheme = urlparse(str(path)).scheme
    return not scheme or scheme == "file" or len(scheme) == 1  # `C:` drive letters


def load_checkpoint_state(path: str | os.PathLike, map_location: Any = "cpu", *, cache: bool = False) -> dict:
    """Load a checkpoint file without executing code from it.

    Raises:
        CheckpointError: The file holds pickled Python objects other than plain data (refused, not executed), or it
            is truncated/corrupt, or it is not a dict.
    """
    try:
        if _is_local(path):
            with open(path, "rb") as f:
                state = torch.load(f, map_location=map_location, weights_only=True)
        else:
            from trainer.io import _WEIGHTS_ONLY, load_fsspec

            if not _WEIGHTS_ONLY:  # pragma: no cover - torch < 2.4 is not supported by the toolkit any more
                msg = f"{path}: remote checkpoints need torch >= 2.4 for weights-only loading."
                raise CheckpointError(msg)
            state = load_fsspec(str(path), map_location=map_location, cache=cache)
    except pickle.UnpicklingError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        msg = (
            f"Refused to load {path}: it contains pickled Python objects that are not plain weights "
            f"({first_line}). Weights-only loading does not run them. Only load checkpoints from sources you trust; "
            "a NaturalSpeech/Trainer checkpoint holds only tensors, numbers, strings and dicts."
        )
        raise CheckpointError(msg) from error
    except (EOFError, RuntimeError, OSError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        msg = f"Cannot read checkpoint {path}: the file is truncated or corrupt ({type(error).__name__}: {error})."
        raise CheckpointError(msg) from error
    if not isinstance(state, dict):
        msg = f"{path} holds a {type(state).__name__}, not a checkpoint dict or a state dict."
        raise CheckpointError(msg)
    return state


def _first(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN_KEYS])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > _SHOWN_KEYS else "")


def check_state_dict(model: nn.Module, state: dict[str, Any], *, strict: bool = True, source: str = "") -> None:
    """Raise a `CheckpointError` naming the first missing, unexpected and wrongly-shaped keys of `state` for `model`.

    Shape mismatches are always errors (`load_state_dict` would fail on them even with `strict=False`); missing
    and unexpected keys are errors only when `strict`.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
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


def atomic_torch_save(state: Any, path: str | os.PathLike, **kwargs: Any) -> None:
    """`torch.save` to a temporary file in the same folder, fsync, then rename over `path` (atomic on POSIX)."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}{_TMP_MARK}{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f, **kwargs)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


@contextlib.contextmanager
def atomic_trainer_io() -> Iterator[None]:
    """Within the block, `trainer.io` writes local checkpoints through `atomic_torch_save`."""
    import trainer.io as trainer_io

    original = trainer_io.save_fsspec

    def save_fsspec(state: Any, path: str | os.PathLike, **kwargs: Any) -> None:
        if _is_local(path):
            atomic_torch_save(state, path, **kwargs)
        else:
            original(state, path, **kwargs)

    trainer_io.save_fsspec = save_fsspec
    try:
        yield
    finally:
        trainer_io.save_fsspec = original


def make_trainer_saves_atomic(trainer: Any) -> None:
    """Wrap this Trainer's `save_checkpoint`/`save_best_model` so their files appear atomically.

    Only this Trainer instance changes (instance attributes shadow the methods); `trainer.io.save_fsspec` is swapped
    for the duration of each save and restored afterwards. Calling it twice is harmless.
    """
    for name in ("save_checkpoint", "save_best_model"):
        method = getattr(trainer, name)
        if getattr(method, "_naturalspeech_atomic", False):
            continue

        def wrapped(*args: Any, _method=method, **kwargs: Any) -> Any:
            with atomic_trainer_io():
                return _method(*args, **kwargs)

        wrapped._naturalspeech_atomic = True
        setattr(trainer, name, wrapped)


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete `*.pth.tmp-*` files a killed save left in `folder`; returns the removed paths."""
    removed = []
    for tmp in Path(folder).glob(f"*.pth{_TMP_MARK}*"):
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed.append(tmp)
    if removed:
        logger.warning("Removed %d unfinished checkpoint file(s) of a killed save: %s", len(removed), removed)
    return removed
