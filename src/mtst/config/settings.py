"""Settings checked before a run does any work: a value outside its choices, or a key the code
would not read, is one line naming the config key and what it accepts.

The choices are those the code itself accepts (each tuple lives beside the code that reads it);
settings that Lightning validates (precision, accelerator, strategy, callback options) are
reported by `instantiated`, which turns Lightning's own message into the same one line.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch.distributed
from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf

from mtst.components import bind_component
from mtst.data.batching import SAMPLING_MODES
from mtst.errors import MtstError, choices_text, first_line, root_cause
from mtst.freezing.feature_cache import DTYPES
from mtst.freezing.param_groups import OPTIMIZER_KEYS
from mtst.freezing.strategies import FreezeStrategy
from mtst.model.backbone import ATTN_IMPLEMENTATIONS
from mtst.model.network import ENCODER_KEYS
from mtst.model.pooling import POOLING_MODES
from mtst.tasks import build_tasks
from mtst.weighting import GRAD_ON, LOSS_KEYS, weighting_partial

CHOICES: dict[str, tuple[Any, ...]] = {
    "backbone.pooling": POOLING_MODES,
    "backbone.attn_implementation": ATTN_IMPLEMENTATIONS,
    "model.net.pooling": POOLING_MODES,
    "model.loss.grad_on": GRAD_ON,
    "data.sampling": SAMPLING_MODES,
    "freeze.cache_dtype": tuple(DTYPES),
    "freeze.probe.class_weight": (None, "balanced"),
    "trainer.strategy.process_group_backend": tuple(
        b for b in torch.distributed.Backend.backend_list if b not in ("undefined", "fake")),
    # trainer=fsdp: torch's ShardingStrategy names and Lightning's state-dict kinds
    "trainer.strategy.sharding_strategy": ("FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD", "HYBRID_SHARD"),
    "trainer.strategy.state_dict_type": ("full", "sharded"),
}
# numbers whose sign torch's optimizers check only at their first step, or not at all: a
# negative learning rate trains away from the data without a word
NON_NEGATIVE = ("model.optimizer.lr_head", "model.optimizer.lr_backbone",
                "model.optimizer.weight_decay", "model.optimizer.eps")
# dictionaries whose keys the code reads one by one: any other key would be ignored silently
KNOWN_KEYS: dict[str, tuple[str, ...]] = {
    "model.optimizer": OPTIMIZER_KEYS,
    "model.loss": LOSS_KEYS,
    "model.net": ENCODER_KEYS,
}


def check_settings(cfg: DictConfig) -> None:
    """Raise MtstError for the first setting outside its choices or key nobody reads."""
    for key, choices in CHOICES.items():
        value = OmegaConf.select(cfg, key, default="__absent__")
        if value != "__absent__" and value not in choices:
            raise MtstError(f"{key}={value!r}: unknown; choose one of {choices_text(choices)}")
    for key in NON_NEGATIVE:
        value = OmegaConf.select(cfg, key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or value < 0):
            raise MtstError(f"{key}={value!r}: expected a number >= 0")
    for key, known in KNOWN_KEYS.items():
        node = OmegaConf.select(cfg, key)
        for name in node or {}:
            if name not in known:
                raise MtstError(f"{key}.{name}: no such setting; {key} has {', '.join(known)}")
    for key in ("data", "model"):
        if cfg.get(key) is not None:
            _check_target_keys(key, cfg[key])
    # the freeze and weighting nodes, as the module binds them: their settings, also a missing
    # one (the values are checked once the component is built)
    if cfg.get("freeze"):
        bind_component(OmegaConf.to_container(cfg.freeze, resolve=True), "freeze", FreezeStrategy)
    if cfg.get("weighting"):
        weighting_partial(OmegaConf.to_container(cfg.weighting, resolve=True))
    build_tasks(OmegaConf.to_container(cfg.tasks, resolve=True) if cfg.get("tasks") else None)


def _check_target_keys(key: str, node: DictConfig) -> None:
    """Keys of a `_target_` node must be arguments of the class it names."""
    from hydra.utils import get_class

    target = node.get("_target_")
    if not target:
        return
    try:
        params = inspect.signature(get_class(target)).parameters
    except Exception as err:  # not importable, or not a class
        raise MtstError(f"{key}._target_={target!r}: {first_line(err)}") from err
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    for name in node:
        if not str(name).startswith("_") and name not in params:
            accepted = ", ".join(n for n in params if n not in ("self", "tasks", "label_spaces",
                                                                   "tokenizer", "freeze",
                                                                   "weighting"))
            raise MtstError(f"{key}.{name}: no such setting; {key} has {accepted}")


@contextmanager
def lightning_setting_errors() -> Iterator[None]:
    """Settings Lightning can only check once a run is under way (a `monitor` metric that is
    never logged, say) end the run with Lightning's first line instead of a traceback."""
    try:
        yield
    except MisconfigurationException as err:
        raise MtstError(first_line(err)) from err


def instantiated(key: str, build: Callable[[], Any]) -> Any:
    """`build()`, with an error raised while constructing a configured object (a Trainer,
    a callback, a logger) turned into one line that names its config key: these are settings
    the library checks itself, and its message says what it accepts."""
    try:
        return build()
    except MtstError:
        raise
    except Exception as err:  # the library's own validation of a setting
        raise MtstError(f"{key}: {first_line(root_cause(err))}") from err
