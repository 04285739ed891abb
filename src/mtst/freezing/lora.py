"""`freeze=lora`: low-rank adapters (LoRA, Hu et al. 2021) through Hugging Face `peft`.

The backbone's linear layers inside its transformer blocks get a trainable update
`scaling * B @ A` (rank `r`, `scaling = alpha / r`) beside their frozen weight; the heads train
in full. Adapters are injected into the network once, when the LightningModule is built, so the
optimizer, DDP and a resumed checkpoint all see the same parameters. Checkpoints hold peft's
layout (`<layer>.base_layer.weight`, `<layer>.lora_A.default.weight`, ...) and the scaling under
`checkpoint["mtst"]["adapters"]`; `MultiTaskNetwork.from_checkpoint` folds the adapters into the
weights (`mtst.model.adapters`), so `mtst.load`, `mtst export` and the sentence-transformers
folder need no peft. The frozen base weights cost each checkpoint folder one write
(`tensor_store`): later checkpoints write the adapters and heads only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from mtst.errors import MtstError
from mtst.freezing.blocks import block_regex
from mtst.freezing.param_groups import head_and_backbone_groups
from mtst.freezing.strategies import ENCODER, FreezeStrategy
from mtst.model.adapters import ADAPTER_NAME, LORA_MARK

# the linear layers adapted by default, by `config.model_type`: attention and MLP projections
DEFAULT_TARGETS: dict[str, tuple[str, ...]] = {
    "gpt_neo": ("q_proj", "k_proj", "v_proj", "out_proj", "c_fc", "c_proj"),
    "bert": ("query", "key", "value", "dense"),
    "roberta": ("query", "key", "value", "dense"),
    "xlm-roberta": ("query", "key", "value", "dense"),
    "distilbert": ("q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"),
}
SETTINGS = ("r", "alpha", "dropout", "target_modules", "layers")


class Lora(FreezeStrategy):
    """`lora`: adapters on the backbone's block linears and every head train; nothing else.

    `freeze.lora.target_modules` names layers by their last name component (`q_proj`); null
    takes `DEFAULT_TARGETS` for the backbone's `model_type`, else every `nn.Linear` in the
    blocks. `freeze.lora.layers`: null = every block, N = the top N blocks, a list = those
    block numbers. Adapters train at `freeze.lr_backbone` (null: the optimizer's).

    Args:
        tasks: the module's tasks by name.
        lora: the adapters' `r`, `alpha`, `dropout`, `target_modules` and `layers`.
        lr_backbone: the adapters' learning rate; None: `model.optimizer.lr_backbone`.
        blocks_pattern: a regex over backbone parameter names with the block number as group 1,
            for architectures whose blocks are not listed automatically.
    """

    name = "lora"

    def __init__(self, tasks: Mapping[str, Any] | None = None, *, lora: Mapping[str, Any],
                 lr_backbone: float | None, blocks_pattern: str | None) -> None:
        super().__init__(tasks)
        lora = dict(lora)
        unknown = sorted(set(lora) - set(SETTINGS))
        if unknown:
            raise MtstError(f"freeze.lora.{unknown[0]}: no such setting; LoRA takes "
                            f"{', '.join(SETTINGS)}")
        missing = [key for key in SETTINGS if key not in lora]
        if missing:
            raise MtstError(f"freeze.lora.{missing[0]}: missing; LoRA takes {', '.join(SETTINGS)}")
        self.lr_backbone = lr_backbone
        self.blocks_pattern = blocks_pattern
        self.r = lora["r"]
        if not isinstance(self.r, int) or isinstance(self.r, bool) or self.r < 1:
            raise MtstError(f"freeze.lora.r={self.r!r}: expected an integer rank >= 1")
        self.alpha = lora["alpha"]
        if not isinstance(self.alpha, (int, float)) or not self.alpha > 0:
            raise MtstError(f"freeze.lora.alpha={self.alpha!r}: expected a number > 0")
        self.dropout = lora["dropout"]
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise MtstError(f"freeze.lora.dropout={self.dropout!r}: expected a probability in [0, 1)")
        self.targets = lora["target_modules"]
        if self.targets is not None and (isinstance(self.targets, str) or not all(
                isinstance(t, str) for t in self.targets) or not self.targets):
            raise MtstError(f"freeze.lora.target_modules={self.targets!r}: expected a list of "
                            "layer names such as [q_proj, v_proj], or null for the defaults")
        self.layers = lora["layers"]
        if not (self.layers is None or (isinstance(self.layers, int) and self.layers >= 1)
                or (isinstance(self.layers, (list, tuple)) and self.layers
                    and all(isinstance(i, int) and i >= 0 for i in self.layers))):
            raise MtstError(f"freeze.lora.layers={self.layers!r}: expected null (every block), "
                            "a number of top blocks >= 1, or a list of block numbers")

    @property
    def scaling(self) -> float:
        return float(self.alpha) / self.r

    def target_names(self, backbone: nn.Module) -> list[str]:
        """The backbone's modules (full names) that get adapters, checked against its blocks."""
        blocks = block_regex(backbone, self.blocks_pattern)
        linears: dict[str, int] = {}
        for name, module in backbone.named_modules():
            match = blocks.search(name + ".") if name else None
            if match and isinstance(module, nn.Linear):
                linears[name] = int(match.group(1))
        if not linears:
            raise MtstError(f"freeze=lora: {type(backbone).__name__} has no nn.Linear layer inside "
                            f"its blocks ('{blocks.pattern}') to adapt")
        numbers = sorted(set(linears.values()))
        chosen = self._blocks(numbers)
        leaf_names = self.targets or DEFAULT_TARGETS.get(getattr(backbone.config, "model_type", ""))
        names = [n for n, i in linears.items() if i in chosen
                 and (leaf_names is None or n.rsplit(".", 1)[-1] in leaf_names)]
        if self.targets:
            present = {n.rsplit(".", 1)[-1] for n in linears}
            missing = [t for t in self.targets if t not in present]
            if missing:
                raise MtstError(f"freeze.lora.target_modules: {missing[0]!r} is no linear layer in "
                                f"the blocks of {type(backbone).__name__}; they have "
                                f"{', '.join(sorted(present))}")
        if not names:
            raise MtstError(f"freeze=lora: no linear layer of {type(backbone).__name__} matches "
                            f"{', '.join(leaf_names or ())}; set freeze.lora.target_modules")
        return names

    def _blocks(self, numbers: list[int]) -> set[int]:
        if self.layers is None:
            return set(numbers)
        if isinstance(self.layers, int):
            if self.layers > len(numbers):
                raise MtstError(f"freeze.lora.layers={self.layers}: the backbone has "
                                f"{len(numbers)} blocks")
            return set(numbers[-self.layers:])
        absent = [i for i in self.layers if i not in numbers]
        if absent:
            raise MtstError(f"freeze.lora.layers: block {absent[0]} does not exist (blocks "
                            f"{numbers[0]}..{numbers[-1]})")
        return set(self.layers)

    def prepare(self, net: nn.Module) -> None:
        """Inject the adapters into `net.encoder.backbone`, in place (once)."""
        backbone = net.encoder.backbone
        if any(LORA_MARK in n for n, _ in backbone.named_parameters()):
            raise MtstError("freeze=lora: the network already has LoRA adapters; build it again "
                            "from its checkpoint or folder (merged weights)")
        from peft import LoraConfig, inject_adapter_in_model

        config = LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                            target_modules=self.target_names(backbone), bias="none")
        inject_adapter_in_model(config, backbone, adapter_name=ADAPTER_NAME)

    def trainable(self, name: str, net, epoch: int) -> bool:
        return not name.startswith(ENCODER) or LORA_MARK in name

    def param_groups(self, module, cfg: dict[str, Any]) -> list[dict[str, Any]]:
        lr = self.lr_backbone
        return head_and_backbone_groups(module, {**cfg, "lr_backbone": lr} if lr else cfg)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["mtst"]["adapters"] = {"kind": "lora", "scaling": self.scaling,
                                          "adapter": ADAPTER_NAME}
