"""Callbacks that make long runs safe: stop on a non-finite loss, never checkpoint non-finite
weights, save `last.ckpt` on SIGTERM, and restore the random state on resume.

`reliability_callbacks()` is added to every trainer by `training/entry.py`, whatever `callbacks=` says:
these are guarantees, not preferences.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.utilities import CombinedLoader
from lightning.pytorch.utilities.exceptions import SIGTERMException

from mtst.checkpoints.step_checkpoint import StepCheckpoint  # noqa: F401  (older run configs name it here)
from mtst.checkpoints.writes import WriteWatch, watch
from mtst.errors import MtstError
from mtst.freezing.strategies import trainable_names
from mtst.training.distributed import any_rank

log = logging.getLogger("mtst")


class NonFiniteLossError(MtstError):
    """Training produced a NaN or infinite loss; the message names the step and loss terms."""


class TrainingStopped(MtstError):
    """The run was asked to stop (SIGTERM); `last.ckpt` holds its state. In a multirun the
    request is for the whole sweep (a scheduler preempting it, a user's `kill`): no later job
    starts, whatever `sweep.continue_on_error` says."""

    ends_sweep = True


class NonFiniteGuard(Callback):
    """Stops before the optimizer step of a batch whose loss is NaN/inf (the weights stay finite),
    and refuses to write any checkpoint holding non-finite weights (best and last stay intact).

    Both checks stay off the per-step path: the loss check reads one number, and a checkpoint
    re-checks the parameters that train now and any other tensor written since its last check.
    A frozen backbone is checked once: a `WriteWatch` (`mtst.checkpoints.writes`) asks
    autograd's public in-place check, which sees any in-place write to the tensor or to a view
    of it (its `state_dict` entry): `load_state_dict`, a LoRA merge into a base weight, user
    code updating a frozen weight under `no_grad`. Trained parameters are checked at every save
    because a fused optimizer (AdamW's default here) writes them without autograd seeing it;
    a tensor that starts training (gradual unfreezing) is checked at every save from then on,
    and one frozen after training is checked afresh at its first frozen save.
    """

    def __init__(self) -> None:
        self._batch_idx = 0
        self._checked: dict[str, WriteWatch] = {}  # frozen tensors seen finite, by name

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._batch_idx = batch_idx

    def on_before_backward(self, trainer, pl_module, loss: torch.Tensor) -> None:
        loss = loss.detach()
        bad = not (math.isfinite(float(loss)) if loss.numel() == 1 else bool(torch.isfinite(loss).all()))
        if trainer.world_size > 1:  # every rank must stop together, or the others hang
            bad = any_rank([bad], loss.device)[0]
        if not bad:
            return
        # the module keeps the step's loss terms (logged to Lightning on logging steps only)
        terms = {k: float(v) for k, v in (getattr(pl_module, "step_values", None) or {}).items()}
        terms.setdefault("train/loss", float(loss.float().mean()))
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(terms.items()) if "loss" in k)
        raise NonFiniteLossError(
            f"non-finite loss at step {trainer.global_step} (epoch {trainer.current_epoch}, "
            f"batch {self._batch_idx}): {shown}; stopped before the optimizer step, checkpoints "
            "keep the last finite weights (lower the learning rate or check the data)"
        )

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("state_dict", {})
        trained = _trained_names(pl_module)
        bad = [name for name, t in state.items()
               if not all(self._finite(f"{name}#{i}", x, trained is not None and name not in trained)
                          for i, x in enumerate(_local_float_tensors(t)))]
        # sharded weights (FSDP): each rank sees its own slices, so the ranks decide together
        # (a sharded save is collective anyway); replicated weights decide alike on every rank
        # without one, which a rank-0 save after SIGTERM relies on
        if any(_is_sharded(t) for t in state.values()):
            found = any_rank([bool(bad)], pl_module.device)[0]
            bad = bad or (["(on another rank)"] if found else [])
        if bad:
            raise NonFiniteLossError(
                f"refusing to write a checkpoint at step {trainer.global_step}: non-finite "
                f"weights in {len(bad)} tensors (first: {bad[0]}); earlier checkpoints are kept"
            )

    def _finite(self, name: str, tensor: torch.Tensor, reuse: bool = True) -> bool:
        """Whether `tensor` is all finite; `reuse`: it does not train, so a check since which
        nothing wrote it stands (a trained tensor drops its watch: see the class doc)."""
        seen = self._checked.pop(name, None)
        if reuse and seen is not None and seen.unwritten(tensor):
            self._checked[name] = seen
            return True
        finite = bool(torch.isfinite(tensor).all())
        if finite and reuse:
            held = watch(tensor)  # None where autograd cannot save it: checked again next time
            if held is not None:
                self._checked[name] = held
        return finite


def _trained_names(pl_module: Any) -> set[str] | None:
    """State-dict names of the parameters that train now (None without a module to ask: then
    every tensor is checked at every save)."""
    if getattr(pl_module, "named_parameters", None) is None:
        return None
    return set(trainable_names(pl_module))


def _is_sharded(value: Any) -> bool:
    """A ShardedTensor or DTensor: this rank holds a slice only."""
    return hasattr(value, "local_shards") or hasattr(value, "to_local")


def _local_float_tensors(value: Any) -> list[torch.Tensor]:
    """The floating-point tensors this rank holds of a state-dict entry: the tensor itself, or
    its local shards (FSDP's sharded state dicts hold ShardedTensor / DTensor values)."""
    if hasattr(value, "local_shards"):
        tensors = [shard.tensor for shard in value.local_shards()]
    elif _is_sharded(value):
        tensors = [value.to_local()]
    else:
        tensors = [value] if torch.is_tensor(value) else []
    return [t for t in tensors if t.is_floating_point()]


def _fmt(value: float) -> str:
    return str(value) if not math.isfinite(value) else f"{value:.6g}"


class ExactResume(Callback):
    """Makes a resumed run continue exactly where the saved one stopped.

    The checkpoint keeps the random generators (dropout after a resume draws what the
    uninterrupted run drew) and the training data position (epoch, batches taken). Both are
    applied at `on_train_start`, after the dataloaders are built: Lightning builds the train
    loader before it restores the loops when `configure_optimizers` asks for the step count, so
    its own restore of a stateful loader comes too late.
    """

    KEY = "mtst_resume"

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        state: dict[str, Any] = {"rng": _rng_state()}
        loaders = _train_loaders(trainer)
        if len(loaders) == 1 and hasattr(loaders[0], "state_dict"):
            state["data"] = loaders[0].state_dict()
        checkpoint[self.KEY] = state

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        self._pending = checkpoint.get(self.KEY)

    def on_train_start(self, trainer, pl_module) -> None:
        state, self._pending = self._pending, None
        if not state:
            return
        _set_rng_state(state["rng"])
        loaders = _train_loaders(trainer)
        if "data" in state and len(loaders) == 1 and hasattr(loaders[0], "load_state_dict"):
            # the loader makes its iterator at the first batch, after this (`data/loaders.py`)
            loaders[0].load_state_dict(state["data"])


def _train_loaders(trainer: L.Trainer) -> list[Any]:
    """The training loaders the fit loop iterates (after Lightning's re-instantiation, e.g.
    with a distributed sampler), flat; none before they are built."""
    loaders = trainer.train_dataloader
    return [] if loaders is None else CombinedLoader(loaders).flattened


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    name, keys, *rest = np.random.get_state()
    state["numpy"] = (name, torch.from_numpy(keys.astype(np.int64)), *rest)
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def last_checkpoint_path(trainer: L.Trainer) -> Path:
    """Where `last.ckpt` lives: the folder of the first ModelCheckpoint that keeps one."""
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.save_last and callback.dirpath:
            return Path(callback.dirpath) / f"{callback.CHECKPOINT_NAME_LAST}{callback.FILE_EXTENSION}"
    return Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"


class SaveOnSigterm(Callback):
    """Cluster schedulers send SIGTERM before killing a job. Lightning stops after the current
    batch and raises `SIGTERMException`; this writes `last.ckpt` at that point (atomically,
    rank 0 only, no barrier: the other ranks may already be gone). A stop during validation
    keeps the previous `last.ckpt`: a half-finished validation cannot be resumed exactly."""

    def __init__(self) -> None:
        self.saved: Path | None = None

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != "fit":
            return
        path = last_checkpoint_path(trainer)
        if trainer.validating or trainer.sanity_checking:
            log.warning("SIGTERM during validation: keeping the previous %s", path)
            return
        # private: `trainer.save_checkpoint` ends with a barrier, which would wait forever for
        # ranks already gone; the checkpoint connector builds the same dict without one
        checkpoint = trainer._checkpoint_connector.dump_checkpoint(weights_only=False)
        trainer.strategy.save_checkpoint(checkpoint, path)
        self.saved = path
        log.info("SIGTERM: saved %s at step %d", path, trainer.global_step)


def reliability_callbacks() -> list[Callback]:
    return [NonFiniteGuard(), ExactResume(), SaveOnSigterm()]


@contextmanager
def stop_signals_as_errors(trainer: L.Trainer) -> Iterator[None]:
    """SIGTERM ends `fit` with a one-line error naming the checkpoint to resume from."""
    try:
        yield
    except SIGTERMException:
        saver = next((c for c in trainer.callbacks if isinstance(c, SaveOnSigterm)), None)
        where = saver.saved if saver is not None and saver.saved else last_checkpoint_path(trainer)
        raise TrainingStopped(
            f"training stopped by SIGTERM at step {trainer.global_step}; resume with "
            f"ckpt_path={where}"
        ) from None
