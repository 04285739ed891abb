"""End to end on the tiny backbone: a run's outputs, TensorBoard scalars, checkpoint reload."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mtst.model.multitask import MultiTaskModel
from mtst.training.pipeline import train
from tests.conftest import TINY_TRAIN, compose_config

EXPECTED_SCALARS = {
    "train/loss_step", "train/loss_cls_step", "train/loss_ner_step",
    "val/cls_acc", "val/cls_f1", "val/ner_precision", "val/ner_recall", "val/ner_f1", "val/score",
    "test/cls_acc", "test/cls_f1", "test/ner_f1", "test/score",
    "train/trainable_params", "hp_metric", "hparams",
}


SENTENCES = ["Ada Lovelace flew to Paris on Monday.", "Parliament votes today"]


class FinalState(Callback):
    """Keeps the in-memory model's weights and outputs when fitting ends (before `test`
    reloads the best checkpoint into it); `last.ckpt` must hold exactly this model."""

    seen: dict = {}

    def on_train_end(self, trainer, pl_module) -> None:
        FinalState.seen["state"] = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
        was_training = pl_module.training
        pl_module.eval()
        with torch.inference_mode():
            FinalState.seen["outputs"] = pl_module(*encode(pl_module, SENTENCES))
        pl_module.train(was_training)


def encode(model: MultiTaskModel, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    batch = model.encoder.tokenizer(texts, padding=True, return_tensors="pt")
    return batch["input_ids"], batch["attention_mask"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("run")
    cfg = compose_config(out, TINY_TRAIN + ["trainer.max_epochs=2",
                                            "+callbacks.final._target_=tests.test_train.FinalState"])
    return out, train(cfg)


def scalar_tags(run_dir: Path) -> set[str]:
    """Scalar tags, plus `hparams` when the HPARAMS plugin has data, over all event files."""
    tags: set[str] = set()
    for event_file in (run_dir / "tensorboard").rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(event_file))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
        try:
            acc.PluginTagToContent("hparams")
            tags.add("hparams")
        except KeyError:
            pass
    return tags


def test_run_writes_metrics_checkpoints_and_tensorboard(tiny_run) -> None:
    out, metrics = tiny_run
    assert (out / "checkpoints" / "best.ckpt").is_file()
    assert (out / "checkpoints" / "last.ckpt").is_file()
    saved = json.loads((out / "metrics.json").read_text())["metrics"]
    assert saved["val/score"] == pytest.approx(metrics["val/score"])
    assert {"test/cls_acc", "test/ner_f1", "test/score"} <= saved.keys()
    assert (out / "ner_report.txt").read_text().count("micro avg") == 1
    tags = scalar_tags(out)
    missing = EXPECTED_SCALARS - tags
    assert not missing, f"missing TensorBoard scalars: {missing}"
    assert any(t.startswith("lr-AdamW/") for t in tags), tags  # learning rate per param group


def test_checkpoint_reloads_without_config_and_predicts_identically(tiny_run) -> None:
    out, _ = tiny_run
    checkpoint = torch.load(out / "checkpoints" / "best.ckpt", weights_only=True)  # plain data only: safe to load
    assert {"encoder_files", "labels"} <= checkpoint["mtst"].keys()
    run_config = checkpoint["mtst"]["config"]
    assert run_config["backbone"]["name_or_path"] == "package:mtst/assets/gpt_neo_tiny"
    assert run_config["data"]["batch_size"] == 8  # the resolved override, not the default
    assert any(k.startswith("encoder.backbone.") for k in checkpoint["state_dict"])
    assert any(k.startswith("cls_head.") for k in checkpoint["state_dict"])
    assert any(k.startswith("ner_head.") for k in checkpoint["state_dict"])
    # the final weights, reloaded from last.ckpt alone, are the trained in-memory model's
    reloaded = MultiTaskModel.from_checkpoint(out / "checkpoints" / "last.ckpt")
    trained = FinalState.seen["state"]
    state = reloaded.state_dict()
    assert state.keys() == trained.keys()
    assert [k for k in trained if not torch.equal(state[k], trained[k])] == []
    with torch.inference_mode():
        outputs = reloaded(*encode(reloaded, SENTENCES))
    for key in ("embeddings", "cls_logits", "ner_logits"):
        assert torch.equal(outputs[key], FinalState.seen["outputs"][key]), key


def test_evaluate_reports_test_metrics_of_a_checkpoint(tiny_run, tmp_path) -> None:
    from mtst.training.pipeline import evaluate

    out, metrics = tiny_run
    ckpt = out / "checkpoints" / "best.ckpt"
    cfg = compose_config(
        tmp_path,
        [f"ckpt_path={ckpt}", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
         "trainer.limit_test_batches=2", "data.batch_size=8"],
        config_name="eval",
    )
    result = evaluate(cfg)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["metrics"] == pytest.approx(result)
    # the same checkpoint on the same test split gives the training run's test figures
    assert result["test/ner_f1"] == pytest.approx(metrics["test/ner_f1"])
    assert result["test/cls_acc"] == pytest.approx(metrics["test/cls_acc"])
    assert "micro avg" in (tmp_path / "ner_report.txt").read_text()
