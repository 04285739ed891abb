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
from omegaconf import DictConfig, OmegaConf
from transformers import GPTNeoConfig, GPTNeoModel

from mtst.cli._hydra import compose_in_process
from mtst.model.backbone import load_tokenizer, resolve_name_or_path

TINY = "package:mtst/assets/gpt_neo_tiny"
FREEZE_DIR = Path(__file__).resolve().parents[1] / "conf" / "freeze"
FREEZE_OPTIONS = tuple(sorted(p.stem for p in FREEZE_DIR.glob("*.yaml")))


def optimizer_config(**changes) -> dict:
    """`model.optimizer` of conf/model/multitask.yaml (every value a run has), `changes` over it."""
    node = OmegaConf.load(FREEZE_DIR.parent / "model" / "multitask.yaml").optimizer
    return OmegaConf.to_container(OmegaConf.merge(node, changes))


def freeze_config(name: str, **changes) -> dict:
    """`conf/freeze/<name>.yaml` as the module gets it (its defaults list merged first), with
    `changes` merged over it: the settings' values come from the YAML, as in a run."""
    node = OmegaConf.load(FREEZE_DIR / f"{name}.yaml")
    bases = [freeze_config(base) for base in node.pop("defaults", [])]
    return OmegaConf.to_container(OmegaConf.merge(*bases, node, changes))


WEIGHTING_DIR = Path(__file__).resolve().parents[1] / "conf" / "weighting"
WEIGHTING_OPTIONS = tuple(sorted(p.stem for p in WEIGHTING_DIR.glob("*.yaml")))


def weighting_config(name: str, **changes) -> dict:
    """`conf/weighting/<name>.yaml` as the module gets it, with `changes` merged over it: the
    method's settings come from the YAML, as in a run."""
    node = OmegaConf.load(WEIGHTING_DIR / f"{name}.yaml")
    return OmegaConf.to_container(OmegaConf.merge(node, changes))


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


def force_tag(model, tag: str, task: str = "ner") -> None:
    """Make tag `tag` of token task `task` win on every sub-token, whatever the encoder's states."""
    with torch.no_grad():
        head = model.heads[task]
        head.out.bias.zero_()
        head.out.bias[model.label_spaces[task].to_id[tag]] = 100.0


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
# last.ckpt after every optimizer step, however short the step (reliability tests kill, poison
# and resume at a chosen step)
SAVE_EVERY_STEP = ["callbacks.step_checkpoint.every_n_train_steps=1",
                   "callbacks.step_checkpoint.min_interval_s=0"]


SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


def sample_tasks(train: object = None, val: object = None, test: object = None,
                 classes: list[str] | None = None, entity_types: list[str] | None = None
                 ) -> dict[str, dict]:
    """The default `topic` + `ner` task config on the sample corpus (file entries overridable),
    as the `tasks` node of a composed config holds it."""
    files = {"train_files": [str(SAMPLE / "train.jsonl")] if train is None else train,
             "val_files": [str(SAMPLE / "val.jsonl")] if val is None else val,
             "test_files": [str(SAMPLE / "test.jsonl")] if test is None else test}
    return {
        "topic": {"type": "sentence_classification", **files,
                  "labels": classes or ["travel", "technology", "politics", "other"]},
        "ner": {"type": "token_classification", **files,
                "labels": entity_types or ["PERSON", "LOC", "ORG", "DATE"]},
    }


def make_datamodule(tasks: dict[str, dict] | None = None, tokenizer: object = TINY,
                    stage: str = "fit", **options: object):
    """A data module for a `tasks` config (default `sample_tasks()`), set up for `stage`."""
    from mtst.data.datamodule import MultiTaskDataModule
    from mtst.tasks import build_tasks

    built = build_tasks(tasks or sample_tasks())
    dm = MultiTaskDataModule({n: t.data for n, t in built.items()}, **{"seed": 0, **options})
    dm.set_tokenizer(load_tokenizer(tokenizer) if isinstance(tokenizer, str) else tokenizer)
    dm.setup(stage)
    return dm


def make_network(label_spaces: dict, tasks: dict[str, dict] | None = None, backbone: str = TINY,
                 pooling: str = "weighted_mean", dropout: float = 0.1, seed: int = 0):
    """A MultiTaskNetwork (random tiny backbone unless `backbone` says otherwise) with one head
    per task of `tasks` (default `sample_tasks()`)."""
    from mtst.inference.model import MultiTaskModel
    from mtst.model.encoder import SentenceEncoder
    from mtst.tasks import build_tasks

    torch.manual_seed(seed)
    encoder = SentenceEncoder.from_pretrained(backbone, pretrained=backbone != TINY, pooling=pooling)
    built = build_tasks(tasks or sample_tasks())
    specs = {n: {**t.network_spec(label_spaces[n]), **({"dropout": dropout} if t.head else {})}
             for n, t in built.items()}
    return MultiTaskModel(encoder, specs)


def make_module(dm, freeze: dict | None = None, tasks: dict[str, dict] | None = None,
                optimizer: dict | None = None, loss: dict | None = None, seed: int = 0,
                weighting: str | dict | None = None, **net_options):
    """A MultiTaskModule around `make_network(dm.label_spaces, tasks)`; `weighting` names a
    conf/weighting option (built from its YAML) or is the node itself; `optimizer` holds the
    settings that differ from conf/model/multitask.yaml's."""
    from mtst.training.module import MultiTaskModule

    tasks = tasks or sample_tasks()
    net = make_network(dm.label_spaces, tasks, seed=seed, **net_options)
    if isinstance(weighting, str):
        weighting = weighting_config(weighting)
    return MultiTaskModule(net, tasks, loss=loss, optimizer=optimizer_config(**(optimizer or {})),
                           freeze=freeze,
                           weighting=weighting)
