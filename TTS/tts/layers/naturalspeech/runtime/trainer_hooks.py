"""What NaturalSpeech does at the toolkit Trainer's callbacks to keep a run alive, apart from the paper's training.

- Gradient averaging over DDP ranks (`TrainerHooks.arm_gradient_averaging`). The Trainer wraps the model in
  `DistributedDataParallel` but calls `train_step` on the inner module, so DDP's own gradient hooks never run (they
  are armed only by `DDP.forward`): the model averages its gradients itself, as each backward pass ends.
- Non-finite steps (`TrainerHooks.skip_non_finite_loss`, `TrainerHooks.drop_non_finite_gradients`). A step whose
  loss or gradients are not finite leaves the weights unchanged, on every rank alike, and is counted and logged.
- Atomic checkpoint saves (`protect_checkpoint_saves`). The Trainer writes every checkpoint to a temporary file in
  the run folder, fsyncs it and renames it over the final name: a run killed during a save leaves the previous
  checkpoints intact and at most a `*.pth.tmp-<pid>` file that `--continue_path` ignores (it globs `*.pth`) and the
  next start deletes.
- Data preparation under distributed training (`run_on_rank_zero_first`).

The model's Trainer callbacks (`train_step`, `before_backward_pass`, `before_gradient_clipping`, `on_init_end`)
delegate here, so the model file reads as the paper's wiring.
"""

import contextlib
import functools
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from trainer.utils.distributed import is_dist_avail_and_initialized

from TTS.tts.layers.naturalspeech.runtime.checkpoints import is_local_path

logger = logging.getLogger(__name__)

_TMP_MARK = ".tmp-"


class TrainerHooks:
    """Per-run state of the gradient averaging and of the non-finite step guard; holds no weights.

    A plain object, not a module, so it adds nothing to the model's state dict. Optimizer 0 steps the parameters
    whose names start with `discriminator_prefix`, optimizer 1 all the others; `optimizer_idx` records which of them
    the current step is for (the model sets it in `train_step`).

    Args:
        discriminator_prefix: Name prefix of the parameters optimizer 0 steps. Defaults to "disc.".
    """

    def __init__(self, discriminator_prefix: str | tuple[str, ...] = "disc."):
        self.discriminator_prefix = discriminator_prefix
        self.optimizer_idx: int | None = None
        self.num_skipped_steps = 0  # training steps skipped for a non-finite loss or gradient (logged)

    def current_gradients(self, model: nn.Module) -> list[nn.Parameter]:
        """The parameters of the optimizer being stepped that have a gradient (the same list on every rank)."""
        is_disc = self.optimizer_idx == 0
        return [
            p
            for n, p in model.named_parameters()
            if n.startswith(self.discriminator_prefix) == is_disc and p.grad is not None
        ]

    def skip_non_finite_loss(self, loss_dict: dict, *, training: bool, step: torch.Tensor | int) -> dict:
        """`loss_dict`, or `{}` (the Trainer then skips the step) when its total loss is not finite on any rank.

        Args:
            loss_dict: The losses of this step, with the total under `"loss"`; gets `num_skipped_steps` for the logs.
            training: Whether the model is in training mode; evaluation losses pass through unchanged.
            step: The global step, for the warning.
        """
        if not training:
            return loss_dict
        finite = torch.isfinite(loss_dict["loss"].detach()).all().float()
        if is_dist_avail_and_initialized():  # every rank skips together, or the gradient all-reduce would hang
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        if bool(finite):
            loss_dict["num_skipped_steps"] = float(self.num_skipped_steps)
            return loss_dict
        bad = [k for k, v in loss_dict.items() if isinstance(v, torch.Tensor) and not torch.isfinite(v).all()]
        self.num_skipped_steps += 1
        logger.warning(
            "Non-finite loss at step %d (optimizer %d, %s): step skipped, weights unchanged (%d skipped so far).",
            int(step),
            self.optimizer_idx,
            ", ".join(bad) or "on another rank",
            self.num_skipped_steps,
        )
        return {}

    def arm_gradient_averaging(self, model: nn.Module, loss_dict: dict[str, Any]) -> None:
        """Under distributed training, have the coming backward pass of `loss_dict["loss"]` end by averaging the
        gradients of `model` over the ranks.

        Armed before every backward pass (the Trainer's `before_backward_pass`) rather than in
        `before_gradient_clipping`: with a GradScaler (fp16 mixed precision) the Trainer calls that only when
        `grad_clip > 0`, and the ranks would drift apart silently. The averaging runs as the backward pass ends, as
        DDP's own does, so before unscaling, clipping, the non-finite check and the optimizer step, and every rank
        sees the same gradients there.
        """
        loss = loss_dict.get("loss")
        if not (is_dist_avail_and_initialized() and dist.get_world_size() > 1) or not isinstance(loss, torch.Tensor):
            return
        if loss.requires_grad:
            loss.register_hook(functools.partial(self._queue_gradient_averaging, model))

    def _queue_gradient_averaging(self, model: nn.Module, grad: torch.Tensor) -> None:
        # A hook on the loss runs first in its backward pass; a callback queued from inside a backward pass runs
        # once every gradient of that pass is accumulated (the autograd engine's hook DDP uses for the same purpose).
        torch.autograd.Variable._execution_engine.queue_callback(
            functools.partial(self._average_gradients_over_ranks, model)
        )

    def _average_gradients_over_ranks(self, model: nn.Module) -> None:
        params = self.current_gradients(model)
        if params:
            average_gradients(params)

    def drop_non_finite_gradients(self, model: nn.Module, *, step: torch.Tensor | int) -> None:
        """Drop the gradients if any is non-finite, so the optimizer skips this update (on every rank alike).

        The gradients are already averaged over ranks (`arm_gradient_averaging`), so every rank decides the same.
        """
        params = self.current_gradients(model)
        if not params or bool(torch.stack([torch.isfinite(p.grad).all() for p in params]).all()):
            return
        for p in params:
            p.grad = None
        self.num_skipped_steps += 1
        logger.warning(
            "Non-finite gradient at step %d (optimizer %d): update skipped, weights unchanged (%d skipped so far).",
            int(step),
            self.optimizer_idx,
            self.num_skipped_steps,
        )


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The mean of a detached tensor over the ranks of distributed training (the tensor itself without)."""
    value = value.detach().clone()
    if is_dist_avail_and_initialized():
        dist.all_reduce(value)
        value /= dist.get_world_size()
    return value


def average_gradients(params: list[nn.Parameter]) -> None:
    """All-reduce the gradients of `params` (the same list on every rank) to their mean, in one flat buffer."""
    grads = [p.grad for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for grad in grads:
        grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
        offset += grad.numel()


def run_on_rank_zero_first(fn: Callable[[], Any]) -> None:
    """Run `fn` on rank 0, then on the other ranks (just `fn` without distributed training).

    The dataset check phonemizes every sample on every rank through the toolkit's phoneme cache, whose writes are not
    atomic: ranks checking at the same time write the same files and one can load another's half-written file
    (`EOFError: No data left in file`). After rank 0 the other ranks only read the cache.
    """
    if not is_dist_avail_and_initialized():
        fn()
        return
    if dist.get_rank() == 0:
        fn()
    dist.barrier()
    if dist.get_rank() != 0:
        fn()


##########################
# atomic checkpoint saves
##########################


def protect_checkpoint_saves(trainer: Any) -> None:
    """Make `trainer`'s checkpoint writes atomic; rank 0 removes what a killed save left in the run folder."""
    make_trainer_saves_atomic(trainer)
    if getattr(trainer.args, "rank", 0) == 0 and trainer.output_path:
        remove_stale_temporaries(trainer.output_path)


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
        if is_local_path(path):
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
