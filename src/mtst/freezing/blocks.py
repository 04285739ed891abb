"""List a backbone's transformer blocks and embeddings, so gradual unfreezing works on any model.

Parameter names are taken relative to the backbone (`h.3.attn...` for GPT-Neo,
`encoder.layer.3...` for BERT). Known layouts are tried in order; any other architecture is
declared with `freeze.blocks_pattern` (a regex with one group capturing the block number) and
`freeze.embeddings_pattern`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from torch import nn

from mtst.errors import MtstError

# (layout, blocks regex with the block number as group 1, embeddings regex)
KNOWN_LAYOUTS: tuple[tuple[str, str, str], ...] = (
    ("GPT-Neo / GPT-2 (h.N)", r"^h\.(\d+)\.", r"^(wte|wpe)\."),
    ("BERT / RoBERTa / MiniLM (encoder.layer.N)", r"^encoder\.layer\.(\d+)\.", r"^embeddings\."),
    ("DistilBERT (transformer.layer.N)", r"^transformer\.layer\.(\d+)\.", r"^embeddings\."),
    ("Llama / Mistral / Qwen (layers.N)", r"^layers\.(\d+)\.", r"^embed_tokens\."),
    ("GPT-NeoX / Pythia (layers.N)", r"^layers\.(\d+)\.", r"^embed_in\."),
)

HOOK_HELP = (
    "declare it with freeze.blocks_pattern='<regex, group 1 = block number>' and "
    "freeze.embeddings_pattern='<regex>', matched against backbone parameter names "
    "(e.g. freeze.blocks_pattern='^layers\\.(\\d+)\\.' freeze.embeddings_pattern='^embed_tokens\\.')"
)


@dataclass
class Unit:
    """A slice of the encoder unfrozen as one piece, with its depth from the top (0 = top)."""

    name: str
    depth: int
    params: list[tuple[str, nn.Parameter]] = field(default_factory=list)


def _compile(pattern: str, field_name: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as err:
        raise MtstError(f"freeze.{field_name}='{pattern}' is not a valid regular expression: {err}") from None


def _layout(
    names: list[str], blocks_pattern: str | None, embeddings_pattern: str | None, arch: str
) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """The configured patterns, else the first known layout whose blocks and embeddings match."""
    if blocks_pattern:
        blocks = _compile(blocks_pattern, "blocks_pattern")
        if blocks.groups < 1:
            raise MtstError(f"freeze.blocks_pattern='{blocks_pattern}' needs one group capturing "
                            "the block number, e.g. '^layers\\.(\\d+)\\.'")
        if not any(blocks.search(n) for n in names):
            raise MtstError(f"freeze.blocks_pattern='{blocks_pattern}' matches no parameter of "
                            f"{arch} (first names: {', '.join(names[:4])})")
        if embeddings_pattern:
            return blocks, _compile(embeddings_pattern, "embeddings_pattern")
        for _, _, emb in KNOWN_LAYOUTS:
            if any(re.search(emb, n) for n in names):
                return blocks, re.compile(emb)
        raise MtstError(f"freeze.embeddings_pattern is not set and no known embeddings layout "
                        f"matches {arch}; {HOOK_HELP}")
    for _, block_re, emb_re in KNOWN_LAYOUTS:
        if any(re.search(block_re, n) for n in names) and any(re.search(emb_re, n) for n in names):
            emb = _compile(embeddings_pattern, "embeddings_pattern") if embeddings_pattern else None
            return re.compile(block_re), emb or re.compile(emb_re)
    raise MtstError(f"freeze=gradual cannot list the transformer blocks of {arch} "
                    f"(parameters such as {', '.join(names[:3])}); {HOOK_HELP}")


def encoder_units(
    encoder: nn.Module,
    blocks_pattern: str | None = None,
    embeddings_pattern: str | None = None,
    prefix: str = "encoder.",
) -> list[Unit]:
    """Units from the top down: `final` (norms/poolers above the blocks, unfrozen with the top
    block at its rate), `block_<N>` for N from last to first, then `embeddings` (lowest rate).

    Parameter names in the units carry `prefix` so they match the model's `named_parameters()`.
    """
    backbone = getattr(encoder, "backbone", encoder)
    inner = "backbone." if backbone is not encoder else ""
    named = list(backbone.named_parameters())
    arch = type(backbone).__name__
    blocks_re, emb_re = _layout([n for n, _ in named], blocks_pattern, embeddings_pattern, arch)
    blocks: dict[int, list[tuple[str, nn.Parameter]]] = {}
    embeddings, final = [], []
    for name, param in named:
        full = f"{prefix}{inner}{name}"
        match = blocks_re.search(name)
        if match:
            blocks.setdefault(int(match.group(1)), []).append((full, param))
        elif emb_re.search(name):
            embeddings.append((full, param))
        else:
            final.append((full, param))
    if not embeddings:
        raise MtstError(f"freeze.embeddings_pattern='{emb_re.pattern}' matches no parameter of "
                        f"{arch}; {HOOK_HELP}")
    # encoder parameters outside the backbone (none today) train with the top block
    if inner:
        final += [(f"{prefix}{n}", p) for n, p in encoder.named_parameters()
                  if not n.startswith("backbone.")]
    order = sorted(blocks, reverse=True)
    units = [Unit("final", 0, final)] if final else []
    units += [Unit(f"block_{i}", k, blocks[i]) for k, i in enumerate(order)]
    units.append(Unit("embeddings", len(order), embeddings))
    return units


def block_regex(backbone: nn.Module, blocks_pattern: str | None = None) -> re.Pattern[str]:
    """The regex of the backbone's block names (group 1 = block number), as gradual unfreezing
    finds it; matches parameter and module names relative to the backbone (`h.3.`)."""
    names = [n for n, _ in backbone.named_parameters()]
    return _layout(names, blocks_pattern, None, type(backbone).__name__)[0]


def block_classes(backbone: nn.Module, blocks_pattern: str | None = None) -> set[type[nn.Module]]:
    """The module classes of the backbone's transformer blocks (`GPTNeoBlock`, `BertLayer`, ...):
    what FSDP wraps as one shard unit and activation checkpointing recomputes. A block is a
    submodule whose name is a whole match of the layout's block prefix (`h.3`, `encoder.layer.3`),
    found the same way gradual unfreezing finds them."""
    blocks_re = block_regex(backbone, blocks_pattern)
    found = set()
    for name, module in backbone.named_modules():
        match = blocks_re.search(f"{name}.") if name else None
        if match and match.end() == len(name) + 1:
            found.add(type(module))
    if not found:
        raise MtstError(f"no transformer block module matches '{blocks_re.pattern}' in "
                        f"{type(backbone).__name__}; {HOOK_HELP}")
    return found
