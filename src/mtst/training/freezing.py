"""Freeze strategies: which parameters train, at which learning rate, epoch by epoch.

Every parameter sits in an optimizer group from the start (see `optim.build_optimizer`); a
strategy freezes by `requires_grad` only (AdamW skips parameters without a gradient, Lightning
zeroes gradients to None). Unfreezing later therefore never adds groups, the warm-up/decay
schedule covers every group, and a resumed run rebuilds the same optimizer layout. `apply`
depends on the epoch alone and the model calls it at `on_train_start` (after Lightning restored
the loops, so a resumed run sees its checkpoint's epoch, also mid-epoch) and at every epoch start.
"""

from __future__ import annotations

from typing import Any

import torch

from mtst.errors import MtstError
from mtst.training.blocks import encoder_units
from mtst.training.feature_cache import FeatureCache
from mtst.training.optim import head_and_backbone_groups, named_groups

ENCODER = "encoder."


class FreezeStrategy:
    """`none`: everything trains. Subclasses override `trainable` (and the hooks they need).

    When the whole encoder is frozen for an epoch it runs in eval mode (no dropout) without
    autograd, and with `cache_features` its outputs are served from a `FeatureCache` from the
    second visit of each example on (train and val splits; test runs once and is recomputed).
    """

    name = "none"
    trains_nothing = False

    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.encoder_frozen = False
        self.cache: FeatureCache | None = None
        if settings.get("cache_features"):
            self.cache = FeatureCache(settings.get("cache_dtype", "float16"),
                                      settings.get("cache_max_mb", 1024))

    # ---- what trains ---------------------------------------------------------------------
    def trainable(self, name: str, model, epoch: int) -> bool:
        """Whether parameter `name` (as in `model.named_parameters()`) trains in `epoch`."""
        return True

    def loss_settings(self, loss: dict[str, Any]) -> dict[str, Any]:
        return dict(loss)

    def param_groups(self, model, cfg: dict[str, Any]) -> list[dict[str, Any]]:
        return head_and_backbone_groups(model, cfg)

    def apply(self, model, epoch: int) -> None:
        """Set `requires_grad` and train/eval modes for this epoch; depends on the epoch only."""
        for name, param in model.named_parameters():
            param.requires_grad_(self.trainable(name, model, epoch))
        frozen = not any(p.requires_grad for p in model.encoder.parameters())
        if self.cache is not None and not frozen:
            self.cache.clear()  # the encoder changes from now on: cached outputs go stale
        self.encoder_frozen = frozen
        model.train()
        if frozen:
            model.encoder.eval()

    # ---- forward -------------------------------------------------------------------------
    def forward(self, model, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not self.encoder_frozen:
            return model(batch["input_ids"], batch["attention_mask"])
        model.encoder.eval()  # Lightning may have switched modes around validation

        def compute() -> tuple[torch.Tensor, torch.Tensor]:
            with torch.no_grad():
                return model.encoder(batch["input_ids"], batch["attention_mask"])

        split = _cache_split(model)
        if self.cache is None or split is None:
            states, embeddings = compute()
        else:
            states, embeddings = self.cache.features(split, batch, compute)
        dtype = model.cls_head.out.weight.dtype
        return model.heads(states.to(dtype), embeddings.to(dtype))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint.setdefault("mtst", {})["freeze"] = {"name": self.name, **self.settings}


def _cache_split(model) -> str | None:
    """`train` while fitting, `val` during validation; None (no caching) otherwise."""
    if model.training:
        return "train"
    trainer = getattr(model, "_trainer", None)
    if trainer is not None and (trainer.validating or trainer.sanity_checking):
        return "val"
    return None


class FreezeAll(FreezeStrategy):
    """`all`: nothing in the network trains; `pipeline.train` fits linear probes instead."""

    name = "all"
    trains_nothing = True

    def trainable(self, name: str, model, epoch: int) -> bool:
        return False


class FreezeBackbone(FreezeStrategy):
    """`backbone`: the encoder is a fixed, eval-mode feature extractor; both heads train."""

    name = "backbone"

    def trainable(self, name: str, model, epoch: int) -> bool:
        return not name.startswith(ENCODER)


class FreezeHead(FreezeStrategy):
    """`head_cls` / `head_ner`: one head fixed; its loss (weighted by `frozen_head_weight`) still
    reaches the encoder, which keeps the features that head reads useful for its task."""

    head = "cls"

    def trainable(self, name: str, model, epoch: int) -> bool:
        return not name.startswith(f"{self.head}_head.")

    def loss_settings(self, loss: dict[str, Any]) -> dict[str, Any]:
        loss = dict(loss)
        weight = float(self.settings.get("frozen_head_weight", 1.0))
        if weight < 0:
            raise MtstError(f"freeze.frozen_head_weight={weight}: expected a weight >= 0")
        key = f"{self.head}_weight"
        loss[key] = float(loss.get(key, 1.0)) * weight
        return loss


class FreezeClsHead(FreezeHead):
    name, head = "head_cls", "cls"


class FreezeNerHead(FreezeHead):
    name, head = "head_ner", "ner"


class BitFit(FreezeStrategy):
    """`bitfit`: only the encoder's bias terms train (Ben Zaken et al. 2022; SGPT), plus heads."""

    name = "bitfit"

    def trainable(self, name: str, model, epoch: int) -> bool:
        return not name.startswith(ENCODER) or name.endswith("bias")

    def param_groups(self, model, cfg: dict[str, Any]) -> list[dict[str, Any]]:
        lr = self.settings.get("lr_backbone")
        return head_and_backbone_groups(model, {**cfg, "lr_backbone": lr} if lr else cfg)


class Gradual(FreezeStrategy):
    """`gradual` (ULMFiT): heads alone for `stage1_epochs`, then the top `top_blocks` blocks,
    then one more block every `every_epochs` epochs down to the embeddings. Block k from the
    top trains at `lr_backbone * layer_decay**k`, the embeddings lowest, the heads at `lr_head`.
    """

    name = "gradual"

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.stage1 = self._int("stage1_epochs", 1, minimum=0)
        self.top_blocks = self._int("top_blocks", 1, minimum=1)
        self.every = self._int("every_epochs", 1, minimum=1)
        self.decay = float(settings.get("layer_decay", 1 / 2.6))
        if not 0 < self.decay <= 1:
            raise MtstError(f"freeze.layer_decay={self.decay}: expected a factor in (0, 1]")
        self._units: dict[str, int] | None = None  # parameter name -> unfreeze rank

    def _int(self, key: str, default: int, minimum: int) -> int:
        value = self.settings.get(key, default)
        if not isinstance(value, int) or value < minimum:
            raise MtstError(f"freeze.{key}={value!r}: expected an integer >= {minimum}")
        return value

    def units(self, model):
        return encoder_units(model.encoder, self.settings.get("blocks_pattern"),
                             self.settings.get("embeddings_pattern"))

    def unfrozen_count(self, epoch: int) -> int:
        """How many units (blocks, then the embeddings) below the heads train in `epoch`."""
        if epoch < self.stage1:
            return 0
        return self.top_blocks + (epoch - self.stage1) // self.every

    def trainable(self, name: str, model, epoch: int) -> bool:
        if not name.startswith(ENCODER):
            return True
        if self._units is None:
            # `final` (norms above the blocks) shares rank 1 with the top block
            self._units = {n: u.depth + 1 for u in self.units(model) for n, _ in u.params}
        return self._units[name] <= self.unfrozen_count(epoch)

    def param_groups(self, model, cfg: dict[str, Any]) -> list[dict[str, Any]]:
        wd = cfg.get("weight_decay", 0.01)
        lr_backbone = cfg.get("lr_backbone", 5e-5)
        heads = [(n, p) for n, p in model.named_parameters() if not n.startswith(ENCODER)]
        groups = named_groups("heads", heads, cfg.get("lr_head", 1e-3), wd)
        for unit in self.units(model):
            lr = lr_backbone * self.decay ** unit.depth
            groups += named_groups(f"backbone.{unit.name}", unit.params, lr, wd)
        return groups


STRATEGIES: dict[str, type[FreezeStrategy]] = {
    cls.name: cls
    for cls in (FreezeStrategy, FreezeAll, FreezeBackbone, FreezeClsHead, FreezeNerHead,
                BitFit, Gradual)
}


def build_freeze_strategy(cfg: dict[str, Any]) -> FreezeStrategy:
    settings = dict(cfg)
    name = settings.pop("name", "none")
    if name not in STRATEGIES:
        raise MtstError(f"freeze strategy '{name}' unknown; choose one of {', '.join(STRATEGIES)}")
    return STRATEGIES[name](**settings)


def trainable_params(model) -> int:
    """Parameters that receive updates now (after `apply`)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def run_record(model, train_seconds: float) -> dict[str, Any]:
    """What `mtst report` compares across runs, merged into each run's metrics.json."""
    return {"freeze": model.freezer.name, "trainable_params": trainable_params(model),
            "train_seconds": round(float(train_seconds), 3)}
