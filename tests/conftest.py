"""Shared fixtures: tiny models built from configs and saved locally (never the hub), and
in-process Hydra composition of the real conf/ tree."""

from __future__ import annotations

import os

# before transformers / huggingface_hub are imported: they read these once, at import
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig
from transformers import GPTNeoConfig, GPTNeoModel

from mtst.cli._hydra import compose_in_process
from mtst.model.backbone import load_tokenizer, resolve_name_or_path

TINY = "package:mtst/assets/gpt_neo_tiny"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny GPTNeoModel saved with save_pretrained, loaded back through from_pretrained."""
    directory = tmp_path_factory.mktemp("tiny_gpt_neo")
    config = GPTNeoConfig.from_pretrained(resolve_name_or_path(TINY))
    torch.manual_seed(0)
    GPTNeoModel(config).save_pretrained(directory)
    load_tokenizer(TINY).save_pretrained(directory)
    return directory


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Tests use tiny tensors: one intra-op thread is faster than two fighting over 2 cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def force_tag(model, tag: str) -> None:
    """Make NER tag `tag` win on every sub-token, whatever the encoder's states."""
    with torch.no_grad():
        model.ner_head.out.bias.zero_()
        model.ner_head.out.bias[model.label_space.tag_to_id[tag]] = 100.0


def compose_config(
    tmp_path: Path, overrides: list[str] | None = None, config_name: str = "train"
) -> DictConfig:
    """Compose the real config in-process, with outputs redirected into tmp_path."""
    return compose_in_process(tmp_path, overrides, config_name)


TINY_TRAIN = [
    "backbone=gpt_neo_tiny",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.accelerator=cpu",
    "trainer.log_every_n_steps=1",
    "trainer.enable_progress_bar=false",
    "~callbacks.rich_progress_bar",
    "~callbacks.model_summary",
    "data.batch_size=8",
]
