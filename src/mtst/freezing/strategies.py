"""Freeze strategies: which parameters train, at which learning rate, epoch by epoch.

Every parameter sits in an optimizer group from the start (see
`mtst.training.optim.build_optimizer`); a strategy freezes by `requires_grad` only (AdamW skips
parameters without a gradient, Lightning zeroes gradients to None). Unfreezing later therefore never adds groups, the warm-up/decay
schedule covers every group, and a resumed run rebuilds the same optimizer layout. `apply`
depends on the epoch alone and the model calls it at `on_train_start` (after Lightning restored
the loops, so a resumed run sees its checkpoint's epoch, also mid-epoch) and at every epoch start.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from mtst.components import bind_component
from mtst.errors import MtstError, choices_text
from mtst.freezing.feature_cache import FeatureCache, select_rows
from mtst.freezing.param_groups import head_and_backbone_groups
from mtst.tasks.base import TOKEN_ROWS

ENCODER = "encoder."


class FreezeStrategy:
    """`none`: everything trains. Subclasses override `trainable` (and the hooks they need).

    Hydra builds a strategy from its `conf/freeze/<name>.yaml` (`_target_` and the class's
    keyword arguments, whose values live in that file only); the LightningModule passes `tasks`.
    Parameter names are the network's (`encoder.*`, `heads.<task>.*`); the loss weighting's own
    parameters (uncertainty weighting) always train. When the whole encoder is frozen for an
    epoch it runs in eval mode (no dropout) without autograd, and with a feature cache its
    outputs are served from it from the second visit of each example on (train and val splits;
    test runs once and is recomputed).

    Args:
        tasks: the module's tasks by name (`freeze=head` checks its `heads` against them).

    Example:
        >>> from hydra.utils import instantiate
        >>> strategy = instantiate({"_target_": "mtst.freezing.strategies.FreezeBackbone",
        ...                         "cache_features": False, "cache_dtype": "float16",
        ...                         "cache_max_mb": 1024})
        >>> strategy.name
        'backbone'
    """

    name = "none"
    trains_nothing = False

    def __init__(self, tasks: Mapping[str, Any] | None = None) -> None:
        self.task_names = list(tasks or ())
        self.encoder_frozen = False
        self.cache: FeatureCache | None = None
        self.config: dict[str, Any] = {"_target_": f"{type(self).__module__}.{type(self).__qualname__}"}

    def _cache_if(self, cache_features: bool, cache_dtype: str, cache_max_mb: int) -> None:
        """Serve the frozen encoder's outputs from a FeatureCache (`cache_features`)."""
        if cache_features:
            self.cache = FeatureCache(cache_dtype, cache_max_mb)

    # ---- what trains ---------------------------------------------------------------------
    def trainable(self, name: str, net, epoch: int) -> bool:
        """Whether network parameter `name` (as in `net.named_parameters()`) trains in `epoch`."""
        return True

    def prepare(self, net) -> None:
        """Change the network's structure before anything lists its parameters (the optimizer,
        DDP, a checkpoint being restored); called once, by the LightningModule's constructor.
        Only `lora` does (it injects adapters)."""

    def task_weights(self, weights: dict[str, float]) -> dict[str, float]:
        """The tasks' loss weights under this strategy (a frozen head may scale its task's)."""
        return dict(weights)

    def param_groups(self, module, cfg: dict[str, Any]) -> list[dict[str, Any]]:
        return head_and_backbone_groups(module, cfg)

    def apply(self, module, epoch: int) -> None:
        """Set `requires_grad` and train/eval modes for this epoch; depends on the epoch only."""
        net = module.net
        unused = {ENCODER + n for n in net.encoder.unused_parameter_names()}
        for name, param in net.named_parameters():
            param.requires_grad_(name not in unused and self.trainable(name, net, epoch))
        frozen = not any(p.requires_grad for p in net.encoder.parameters())
        if self.cache is not None and not frozen:
            self.cache.clear()  # the encoder changes from now on: cached outputs go stale
        self.encoder_frozen = frozen
        module.train()
        if frozen:
            net.encoder.eval()

    # ---- forward -------------------------------------------------------------------------
    def forward(self, module, batch: dict[str, torch.Tensor], token_rows: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
        """Network outputs of the batch, with `embeddings_b` ([P, H]) for its pair rows.
        `token_rows` (flattened [B * T] positions): token heads run at those rows only, their
        outputs are [N, ...], and `outputs[TOKEN_ROWS]` says which rows they are."""
        net = module.net
        states, embeddings = self.encoder_states(module, batch["input_ids"], batch["attention_mask"],
                                                 batch["example_index"], "", token_rows)
        outputs = net.run_heads(states, embeddings)
        if token_rows is not None:
            outputs[TOKEN_ROWS] = token_rows
        rows = batch["pair_rows"]
        if rows.numel():
            _, outputs["embeddings_b"] = self.encoder_states(
                module, batch["input_ids_b"], batch["attention_mask_b"],
                batch["example_index"][rows], "/b")
        else:
            outputs["embeddings_b"] = embeddings[:0]
        return outputs

    def encoder_states(self, module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       example_index: torch.Tensor, side: str, token_rows: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """(token states, pooled embeddings) of one side of the batch (`side` "" or "/b"):
        computed, or served from the feature cache when the encoder is frozen; the token states
        at `token_rows` only ([N, H]) when given."""
        encoder = module.net.encoder
        if not self.encoder_frozen:
            return select_rows(encoder(input_ids, attention_mask), token_rows)

        def compute() -> tuple[torch.Tensor, torch.Tensor]:
            encoder.eval()  # Lightning may have switched modes around validation
            with torch.no_grad():
                return encoder(input_ids, attention_mask)

        split = _cache_split(module)
        if self.cache is None or split is None:
            return select_rows(compute(), token_rows)
        rows = {"input_ids": input_ids, "attention_mask": attention_mask,
                "example_index": example_index}
        return self.cache.features(split + side, rows, compute, token_rows)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint.setdefault("mtst", {})["freeze"] = {"name": self.name, **self.config}


def _cache_split(module) -> str | None:
    """`train` while fitting, `val` during validation; None (no caching) otherwise."""
    if module.training:
        return "train"
    trainer = module.attached_trainer()  # None outside a run: nothing to cache for
    if trainer is not None and (trainer.validating or trainer.sanity_checking):
        return "val"
    return None


class FreezeAll(FreezeStrategy):
    """`all`: nothing in the network trains; `mtst.training.entry.train` fits linear probes instead.

    Args:
        tasks: the module's tasks by name.
        probe: the probes' settings (`mtst.freezing.probes.fit_probes`).
    """

    name = "all"
    trains_nothing = True

    def __init__(self, tasks: Mapping[str, Any] | None = None, *, probe: Mapping[str, Any]) -> None:
        super().__init__(tasks)
        self.probe = dict(probe)

    def trainable(self, name: str, net, epoch: int) -> bool:
        return False


class FreezeBackbone(FreezeStrategy):
    """`backbone`: the encoder is a fixed, eval-mode feature extractor; both heads train.

    Args:
        tasks: the module's tasks by name.
        cache_features: keep the encoder's outputs per example, so later epochs run the heads only.
        cache_dtype: the cached outputs' dtype (`mtst.freezing.feature_cache.DTYPES`).
        cache_max_mb: past this size the remaining examples are recomputed every epoch.
    """

    name = "backbone"

    def __init__(self, tasks: Mapping[str, Any] | None = None, *, cache_features: bool,
                 cache_dtype: str, cache_max_mb: int) -> None:
        super().__init__(tasks)
        self._cache_if(cache_features, cache_dtype, cache_max_mb)

    def trainable(self, name: str, net, epoch: int) -> bool:
        return not name.startswith(ENCODER)


class FreezeHead(FreezeStrategy):
    """`head` with `heads: [task, ...]` (presets `head_cls` / `head_ner` for the default topic /
    ner tasks): those heads stay fixed; their tasks' losses (weighted by `frozen_head_weight`)
    still reach the encoder, which keeps the features those heads read useful for their tasks.

    Args:
        tasks: the module's tasks by name (each head named must be one of theirs).
        heads: the task names whose heads stay fixed.
        frozen_head_weight: factor on a frozen head's task weight (>= 0).
    """

    name = "head"

    def __init__(self, tasks: Mapping[str, Any] | None = None, *, heads: Any,
                 frozen_head_weight: float) -> None:
        super().__init__(tasks)
        if isinstance(heads, str):
            heads = [heads]
        if not heads:
            raise MtstError("freeze.heads: name the task heads to freeze, e.g. freeze.heads=[topic]")
        for head in heads:
            task = (tasks or {}).get(head)
            if task is None:
                raise MtstError(f"freeze.heads: {head!r} is not a task; tasks are "
                                f"{choices_text(self.task_names)}")
            if task.head is None:
                raise MtstError(f"freeze.heads: task {head!r} ({task.type}) has no head to freeze")
        self.heads = [str(h) for h in heads]
        self.frozen_weight = float(frozen_head_weight)
        if not self.frozen_weight >= 0:
            raise MtstError(f"freeze.frozen_head_weight={self.frozen_weight}: expected a weight >= 0")

    def trainable(self, name: str, net, epoch: int) -> bool:
        return not any(name.startswith(f"heads.{head}.") for head in self.heads)

    def task_weights(self, weights: dict[str, float]) -> dict[str, float]:
        return {n: w * self.frozen_weight if n in self.heads else w for n, w in weights.items()}


class BitFit(FreezeStrategy):
    """`bitfit`: only the encoder's bias terms train (Ben Zaken et al. 2022; SGPT), plus heads.

    Args:
        tasks: the module's tasks by name.
        lr_backbone: the biases' learning rate; None: `model.optimizer.lr_backbone`.
    """

    name = "bitfit"

    def __init__(self, tasks: Mapping[str, Any] | None = None, *, lr_backbone: float | None) -> None:
        super().__init__(tasks)
        self.lr_backbone = lr_backbone

    def trainable(self, name: str, net, epoch: int) -> bool:
        return not name.startswith(ENCODER) or name.endswith("bias")

    def param_groups(self, module, cfg: dict[str, Any]) -> list[dict[str, Any]]:
        lr = self.lr_backbone
        return head_and_backbone_groups(module, {**cfg, "lr_backbone": lr} if lr else cfg)


def build_freeze_strategy(cfg: Mapping[str, Any] | None, tasks: Mapping[str, Any] | None = None
                          ) -> FreezeStrategy:
    """The strategy the `freeze` node builds (`_target_` and its arguments), for these tasks;
    None: `none` (everything trains). A key the class does not take is one line naming it."""
    if not cfg:
        return FreezeStrategy(tasks)
    build = bind_component(cfg, "freeze", FreezeStrategy)
    strategy = build(tasks)
    strategy.config = dict(cfg)
    return strategy


def trainable_params(module) -> int:
    """Parameters that receive updates now (after `apply`)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def trainable_names(module) -> list[str]:
    """Names (as in `module.state_dict()`) of the parameters that receive updates now: the
    tensors an optimizer may write, fused ones without bumping their version counter."""
    return [name for name, param in module.named_parameters() if param.requires_grad]


def run_record(module, train_seconds: float) -> dict[str, Any]:
    """What `mtst report` compares across runs, merged into each run's metrics.json."""
    return {"freeze": module.freezer.name, "trainable_params": trainable_params(module),
            "train_seconds": round(float(train_seconds), 3)}
