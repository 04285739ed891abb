"""`freeze=gradual`: gradual unfreezing with discriminative learning rates (ULMFiT, Howard &
Ruder 2018). The trainable set depends on the epoch alone, so a resumed run trains what the
uninterrupted one did (tests/reliability/test_resume_freezing.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mtst.components import check_integer
from mtst.errors import MtstError
from mtst.freezing.blocks import encoder_units
from mtst.freezing.param_groups import head_parameters, named_groups
from mtst.freezing.strategies import ENCODER, FreezeStrategy


class Gradual(FreezeStrategy):
    """`gradual` (ULMFiT): heads alone for `stage1_epochs`, then the top `top_blocks` blocks,
    then one more block every `every_epochs` epochs down to the embeddings. Block k from the
    top trains at `lr_backbone * layer_decay**k`, the embeddings lowest, the heads at `lr_head`.

    Args:
        tasks: the module's tasks by name.
        stage1_epochs: epochs in which the heads alone train.
        top_blocks: blocks unfrozen (with the final norm) when stage 1 ends.
        every_epochs: one more block unfreezes every this many epochs.
        layer_decay: the learning-rate factor per block below the top one, in (0, 1].
        blocks_pattern, embeddings_pattern: regexes over backbone parameter names for an
            architecture `mtst.freezing.blocks` does not know (None: its known layouts).
        cache_features, cache_dtype, cache_max_mb: the feature cache of stage 1, as for
            `FreezeBackbone`.
    """

    name = "gradual"

    def __init__(self, tasks: Mapping[str, Any] | None = None, *, stage1_epochs: int,
                 top_blocks: int, every_epochs: int, layer_decay: float,
                 blocks_pattern: str | None, embeddings_pattern: str | None,
                 cache_features: bool, cache_dtype: str, cache_max_mb: int) -> None:
        super().__init__(tasks)
        self.stage1 = check_integer("freeze.stage1_epochs", stage1_epochs, low=0)
        self.top_blocks = check_integer("freeze.top_blocks", top_blocks, low=1)
        self.every = check_integer("freeze.every_epochs", every_epochs, low=1)
        self.decay = float(layer_decay)
        if not 0 < self.decay <= 1:
            raise MtstError(f"freeze.layer_decay={self.decay}: expected a factor in (0, 1]")
        self.patterns = (blocks_pattern, embeddings_pattern)
        self._cache_if(cache_features, cache_dtype, cache_max_mb)
        self._units: dict[str, int] | None = None  # parameter name -> unfreeze rank

    def units(self, net):
        return encoder_units(net.encoder, *self.patterns)

    def unfrozen_count(self, epoch: int) -> int:
        """How many units (blocks, then the embeddings) below the heads train in `epoch`."""
        if epoch < self.stage1:
            return 0
        return self.top_blocks + (epoch - self.stage1) // self.every

    def trainable(self, name: str, net, epoch: int) -> bool:
        if not name.startswith(ENCODER):
            return True
        if self._units is None:
            # `final` (norms above the blocks) shares rank 1 with the top block
            self._units = {n: u.depth + 1 for u in self.units(net) for n, _ in u.params}
        return self._units[name] <= self.unfrozen_count(epoch)

    def param_groups(self, module, cfg: dict[str, Any]) -> list[dict[str, Any]]:
        wd, lr_backbone = cfg["weight_decay"], cfg["lr_backbone"]
        groups = named_groups("heads", head_parameters(module), cfg["lr_head"], wd)
        for unit in self.units(module.net):
            lr = lr_backbone * self.decay ** unit.depth
            groups += named_groups(f"backbone.{unit.name}", unit.params, lr, wd)
        return groups
