"""Fold LoRA adapters into plain weights, so a trained model loads without peft.

A LoRA-trained linear layer is stored in peft's layout: `<layer>.base_layer.weight` (and
`.bias`), `<layer>.lora_A.<adapter>.weight` ([r, in]) and `<layer>.lora_B.<adapter>.weight`
([out, r]). Its output is `x W^T + b + scaling * x A^T B^T`, which is exactly the plain layer
with weight `W + scaling * B @ A`. Only `nn.Linear` layers are adapted (mtst never targets
GPT-2's transposed Conv1D), so no transposition is needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from mtst.errors import MtstError

ADAPTER_NAME = "default"
LORA_MARK = ".lora_"  # in every adapter parameter name (`lora_A`, `lora_B`, ...)
BASE = ".base_layer."


def merge_lora(state: Mapping[str, torch.Tensor], adapters: Mapping[str, Any], where: str
               ) -> dict[str, torch.Tensor]:
    """`state` with every adapted layer replaced by its merged plain weights (computed in
    float64, stored in the base weight's dtype); any other entry passes through unchanged."""
    if adapters.get("kind") != "lora":
        raise MtstError(f"{where}: unknown adapter kind {adapters.get('kind')!r} (this mtst "
                        "merges 'lora')")
    scaling, name = float(adapters["scaling"]), str(adapters.get("adapter", ADAPTER_NAME))
    merged: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if LORA_MARK in key:
            continue
        if BASE not in key:
            merged[key] = value
            continue
        layer, field = key.split(BASE, 1)
        if field == "weight":
            try:
                a, b = state[f"{layer}.lora_A.{name}.weight"], state[f"{layer}.lora_B.{name}.weight"]
            except KeyError as err:
                raise MtstError(f"{where}: LoRA layer {layer} lacks {err}") from None
            delta = b.to(torch.float64) @ a.to(torch.float64)
            value = (value.to(torch.float64) + scaling * delta).to(value.dtype)
        merged[f"{layer}.{field}"] = value
    return merged
