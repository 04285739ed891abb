"""Fully sharded data parallel training (`trainer=fsdp`) for backbones too big for DDP replicas.

`HydraFSDPStrategy` is Lightning's `FSDPStrategy` with three things mtst needs:

- the shard units and the activation-checkpointed modules are the backbone's transformer blocks,
  found from the model when training starts (`block_classes: auto`: `GPTNeoBlock`, `BertLayer`,
  ...), so one config serves every backbone;
- extra ranks start as single runs of the current Hydra job (as under `trainer=ddp`), so a
  multirun is not replayed in every child and only rank 0 writes the run folder;
- CPU processes (gloo) work too, for tests: torch's FSDP needs the CPU named as its device.

Sharded checkpoints (`state_dict_type: sharded`) are folders (one file per rank plus Lightning's
`meta.pt`); `ckpt_path=<folder>` resumes from one, and Lightning's
`python -m lightning.pytorch.utilities.consolidate_checkpoint <folder>` turns one into a single
`.ckpt` file that `mtst.load`, `evaluate.py` and `mtst export` read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_class
from lightning.pytorch.strategies import FSDPStrategy
from torch import nn
from torchmetrics import Metric

from mtst.checkpoints.file_io import resolve_ckpt_path
from mtst.errors import MtstError
from mtst.freezing.blocks import block_classes
from mtst.training.distributed import HydraJobLaunch

log = logging.getLogger("mtst")

# Lightning writes this next to the per-rank shards: everything but the weights and optimizer state
SHARDED_METADATA = "meta.pt"


def model_block_classes(model: nn.Module, configured: str | Sequence[str] = "auto"
                        ) -> tuple[type[nn.Module], ...]:
    """The block classes FSDP shards by and recomputes: `auto` finds the backbone's own (the
    first Hugging Face model inside `model`); otherwise dotted class paths, e.g.
    `[transformers.models.gpt_neo.modeling_gpt_neo.GPTNeoBlock]`."""
    if configured != "auto":
        names = [configured] if isinstance(configured, str) else list(configured)
        try:
            return tuple(get_class(name) for name in names)
        except Exception as err:  # hydra wraps import errors in its own types
            raise MtstError(f"trainer.strategy.block_classes={names}: {err}".splitlines()[0]) from None
    from transformers import PreTrainedModel

    backbone = next((m for m in model.modules() if isinstance(m, PreTrainedModel)), None)
    if backbone is None:
        raise MtstError("trainer.strategy.block_classes=auto: the model holds no Hugging Face "
                        "backbone; list the block classes as dotted paths")
    return tuple(sorted(block_classes(backbone), key=lambda c: c.__name__))


class HydraFSDPStrategy(HydraJobLaunch, FSDPStrategy):
    """FSDP with the backbone's blocks as shard and checkpointing units (see the module doc).

    `block_classes`: `auto` or dotted class paths. `checkpoint_activations`: recompute each
    block's activations in the backward pass instead of keeping them (memory for about a third
    more compute)."""

    def __init__(self, *args: Any, block_classes: str | Sequence[str] = "auto",
                 checkpoint_activations: bool = True, **kwargs: Any) -> None:
        for key in ("auto_wrap_policy", "activation_checkpointing_policy"):
            if key in kwargs:
                raise MtstError(f"trainer.strategy.{key}: set trainer.strategy.block_classes "
                                "(auto or dotted class paths) instead")
        super().__init__(*args, **kwargs)
        self.block_classes = block_classes if isinstance(block_classes, str) else list(block_classes)
        self.checkpoint_activations = bool(checkpoint_activations)
        self.wrapped_blocks: tuple[type[nn.Module], ...] = ()
        self._root: nn.Module | None = None

    # private: the strategy's one step that wraps the model; the wrap policy (the blocks) is
    # known only from the model, torch's FSDP needs the CPU named as its device, and a later
    # stage must get the same root wrapper back, none of which Lightning's wrapping does
    def _setup_model(self, model: nn.Module) -> nn.Module:
        from torch.distributed.fsdp import FullyShardedDataParallel
        from torch.distributed.fsdp.wrap import ModuleWrapPolicy

        if self._root is not None and self._root.module is model:
            # a later stage of this Trainer (fit, then test): the model's parameters are views
            # into the root's flat shards, so the root wrapper must stay (wrapping again, or
            # dropping it, loses the weights outside the blocks)
            return self._root
        if any(isinstance(m, FullyShardedDataParallel) for m in model.modules()):
            raise MtstError("trainer=fsdp: the model is already FSDP-wrapped by another Trainer; "
                            "build a fresh model for each Trainer")
        classes = model_block_classes(model, self.block_classes)
        self.wrapped_blocks = classes
        device = self.root_device
        # torch's FSDP takes a CUDA device by index; the CPU (gloo, tests) must be named
        device_id: torch.device | int | None = device if device.type == "cpu" else device.index
        log.info("FSDP: sharding by %s%s", ", ".join(c.__name__ for c in classes),
                 " with activation checkpointing" if self.checkpoint_activations else "")
        wrapped = FullyShardedDataParallel(
            module=model, cpu_offload=self.cpu_offload, mixed_precision=self.mixed_precision_config,
            sharding_strategy=self.sharding_strategy, device_id=device_id,
            auto_wrap_policy=ModuleWrapPolicy(set(classes)), **self.kwargs)
        for metric in (m for m in wrapped.modules() if isinstance(m, Metric)):
            metric.to(device)  # FSDP moves modules with parameters only (metric states are not)
        if self.checkpoint_activations:  # after wrapping, as torch's FSDP documents
            recompute_in_backward(wrapped, classes)
        self._root = wrapped
        return wrapped


def recompute_in_backward(model: nn.Module, classes: tuple[type[nn.Module], ...]) -> int:
    """Activation checkpointing of the modules of `model` that are instances of `classes`: each
    one's forward runs under `torch.utils.checkpoint.checkpoint(..., use_reentrant=False)`, so
    what it computes inside is recomputed in the backward pass instead of kept. Returns how
    many modules recompute (those already recomputing are not wrapped twice).

    The forward is replaced on the module itself, with no wrapper module around it: the state
    dict keeps its keys, so checkpoints load with or without checkpointing (torch's
    `CheckpointWrapper`, which lives in a private module, inserts a module and strips its name
    again with state-dict hooks). Non-reentrant checkpointing takes keyword arguments, works
    with inputs that need no gradient, and is what that wrapper runs too. Under FSDP the
    module is inside its shard unit, so the recomputation runs in the unit's backward, with
    its parameters gathered. Hooks on the module itself run once, as without checkpointing;
    the modules inside it run again when it is recomputed."""
    count = 0
    for module in model.modules():
        if isinstance(module, classes):
            count += 1
            if not getattr(module.forward, "recomputed_in_backward", False):
                module.forward = _recomputed(module.forward)
    return count


def _recomputed(forward: Callable[..., Any]) -> Callable[..., Any]:
    from torch.utils.checkpoint import checkpoint

    def recomputed(*args: Any, **kwargs: Any) -> Any:
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)

    recomputed.recomputed_in_backward = True  # type: ignore[attr-defined]
    return recomputed


def clip_sharded_grad_norm(strategy: Any, max_norm: float) -> bool:
    """Clip by the global gradient norm across shards (each rank holds a slice of every
    gradient, so `torch.nn.utils.clip_grad_norm_` would use a per-rank norm); False when the
    model is not FSDP-wrapped and the usual clipping applies."""
    from torch.distributed.fsdp import FullyShardedDataParallel

    root = getattr(strategy, "model", None)
    if not isinstance(root, FullyShardedDataParallel):
        return False
    root.clip_grad_norm_(max_norm)
    return True


def is_sharded_checkpoint(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / SHARDED_METADATA).is_file()


def resolve_resume_path(ckpt_path: str | None, log_dir: str | Path) -> str | None:
    """`resolve_ckpt_path`, plus sharded checkpoint folders (written under `trainer=fsdp`)."""
    if ckpt_path and ckpt_path != "last" and Path(ckpt_path).is_dir():
        if not is_sharded_checkpoint(ckpt_path):
            raise MtstError(f"checkpoint folder '{ckpt_path}' has no {SHARDED_METADATA}: not a "
                            "sharded checkpoint written under trainer=fsdp")
        _refuse_renamed_keys(Path(ckpt_path))
        return str(ckpt_path)
    return resolve_ckpt_path(ckpt_path, log_dir)


def _refuse_renamed_keys(folder: Path) -> None:
    """A sharded checkpoint loads its tensors by key, straight into the module, without the
    `on_load_checkpoint` renaming that full checkpoints get: one written before the weighting's
    state was renamed (`loss_fn.*` -> `weighting.*`) is refused in one line rather than failing
    deep inside torch.distributed.checkpoint."""
    from torch.distributed.checkpoint import FileSystemReader

    if not (folder / ".metadata").is_file():
        return  # no tensors written through torch.distributed.checkpoint: nothing to rename
    keys = FileSystemReader(str(folder)).read_metadata().state_dict_metadata
    old = next((k for k in keys if k.startswith("model.loss_fn.")), None)
    if old is not None:
        raise MtstError(f"checkpoint folder '{folder}': written by an older mtst (it names the "
                        f"loss weighting's state {old[len('model.'):]!r}, now 'weighting.*'); a "
                        "sharded checkpoint cannot be renamed on load: resume it with the mtst "
                        "that wrote it, or consolidate it to one file first")
