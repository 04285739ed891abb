"""End to end on the tiny backbone: a run's outputs, TensorBoard scalars, checkpoint reload."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mtst.checkpoints.file_io import load_checkpoint
from mtst.cli._hydra import report_user_errors
from mtst.errors import MtstError
from mtst.inference.loading import load_checkpoint_network
from mtst.inference.model import MultiTaskModel
from mtst.training.entry import train
from tests.conftest import TINY_TRAIN, compose_config
from tests.reliability.helpers import CLI_TINY, run_cli, run_folders

ROOT = Path(__file__).resolve().parents[1]


def readme_metric_names() -> set[str]:
    """The names the README's "Metric names:" paragraph promises (`val/x` also means `test/x`)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    paragraph = text[text.index("Metric names:"):].split("\n\n", 1)[0]
    names = set(re.findall(r"`((?:train|val)/[a-z0-9_/]+|hp_metric)`", paragraph))
    return names | {"test/" + n.split("/", 1)[1] for n in names if n.startswith("val/")}


SENTENCES = ["Ada Lovelace flew to Paris on Monday.", "Parliament votes today"]


class FinalState(Callback):
    """Keeps the in-memory model's weights and outputs when fitting ends (before `test`
    reloads the best checkpoint into it); `last.ckpt` must hold exactly this model."""

    seen: dict = {}

    def on_train_end(self, trainer, pl_module) -> None:
        FinalState.seen["state"] = {k: v.detach().clone() for k, v in pl_module.net.state_dict().items()}
        was_training = pl_module.training
        pl_module.eval()
        with torch.inference_mode():
            FinalState.seen["outputs"] = pl_module(*encode(pl_module.net, SENTENCES))
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


def event_file(run_dir: Path) -> EventAccumulator:
    files = sorted((run_dir / "tensorboard").rglob("events.out.tfevents.*"))
    assert len(files) == 1, f"one event stream per run, found {[f.name for f in files]}"
    acc = EventAccumulator(str(files[0]), size_guidance={"scalars": 0})
    acc.Reload()
    return acc


def test_run_writes_metrics_checkpoints_and_tensorboard(tiny_run) -> None:
    out, metrics = tiny_run
    assert (out / "checkpoints" / "best.ckpt").is_file()
    assert (out / "checkpoints" / "last.ckpt").is_file()
    saved = json.loads((out / "metrics.json").read_text())["metrics"]
    assert saved["val/score"] == pytest.approx(metrics["val/score"])
    assert {"test/topic/acc", "test/topic/f1", "test/ner/f1", "test/score"} <= saved.keys()
    assert (out / "ner_report.txt").read_text().count("micro avg") == 1
    acc = event_file(out)
    tags = set(acc.Tags()["scalars"])
    promised = readme_metric_names()
    assert {"train/loss", "train/loss_epoch", "val/score", "test/ner/f1", "train/topic/loss",
            "hp_metric"} <= promised
    assert not promised - tags, f"README names missing from TensorBoard: {promised - tags}"
    assert not [t for t in tags if t.endswith("_step")], tags
    assert any(t.startswith("lr-AdamW/") for t in tags), tags  # learning rate per param group
    acc.PluginTagToContent("hparams")  # the HPARAMS tab has data


def test_hp_metric_is_logged_once_with_the_best_val_score(tiny_run) -> None:
    acc = event_file(tiny_run[0])
    hp = [e.value for e in acc.Scalars("hp_metric")]
    scores = [e.value for e in acc.Scalars("val/score")]
    assert len(scores) == 2 and hp == [max(scores)], (hp, scores)


def test_a_failed_run_records_why_in_its_folder(tmp_path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"tokens": ["Ada"], "ner_tags": ["B-PERSON"]}\n'
                   '{"tokens": ["x"], "ner_tags": ["B-SHIP"]}\n', "utf-8")
    logs = tmp_path / "logs"
    result = run_cli("train.py", [*CLI_TINY, f"paths.log_dir={logs}", f"tasks.ner.train_files=[{bad}]"])
    assert result.returncode == 2, result.stderr[-2000:]
    line = result.stderr.strip().removeprefix("error: ")
    assert line.startswith(f"{bad}:line 2") and "\n" not in line
    (run,) = run_folders(logs)
    assert (run / "error.txt").read_text(encoding="utf-8").strip() == line
    assert not (run / "metrics.json").exists()  # metrics.json marks a finished run
    assert f"run failed: {line}" in (run / "train.log").read_text(encoding="utf-8")


def test_a_crashed_run_keeps_its_traceback_in_the_folder(tmp_path) -> None:
    cfg = compose_config(tmp_path, TINY_TRAIN)

    def task(_cfg):
        raise RuntimeError("the kernel fell over")

    with pytest.raises(RuntimeError, match="the kernel fell over"):  # a bug is not hidden
        report_user_errors(task)(cfg)
    detail = (tmp_path / "error.txt").read_text(encoding="utf-8")
    assert detail.startswith("Traceback") and "RuntimeError: the kernel fell over" in detail
    assert not (tmp_path / "metrics.json").exists()


def test_a_run_that_finishes_in_a_failed_folder_clears_the_error(tmp_path) -> None:
    cfg = compose_config(tmp_path, TINY_TRAIN)
    calls = iter([MtstError("data went missing"), None])

    def task(_cfg):
        error = next(calls)
        if error:
            raise error
        return 1.0

    with pytest.raises(SystemExit):
        report_user_errors(task)(cfg)
    assert (tmp_path / "error.txt").read_text(encoding="utf-8") == "data went missing\n"
    assert report_user_errors(task)(cfg) == 1.0
    assert not (tmp_path / "error.txt").exists()


def test_checkpoint_reloads_without_config_and_predicts_identically(tiny_run) -> None:
    out, _ = tiny_run
    checkpoint = load_checkpoint(out / "checkpoints" / "best.ckpt")  # plain data only: safe to load
    assert {"version", "network", "files", "config"} <= checkpoint["mtst"].keys()
    assert set(checkpoint["mtst"]["network"]["tasks"]) == {"topic", "ner"}
    run_config = checkpoint["mtst"]["config"]
    assert run_config["backbone"]["name_or_path"] == "package:mtst/assets/gpt_neo_tiny"
    assert run_config["data"]["batch_size"] == 8  # the resolved override, not the default
    assert any(k.startswith("net.encoder.backbone.") for k in checkpoint["state_dict"])
    assert any(k.startswith("net.heads.topic.") for k in checkpoint["state_dict"])
    assert any(k.startswith("net.heads.ner.") for k in checkpoint["state_dict"])
    # the final weights, reloaded from last.ckpt alone, are the trained in-memory network's
    reloaded = load_checkpoint_network(out / "checkpoints" / "last.ckpt")
    assert isinstance(reloaded, MultiTaskModel)
    trained = FinalState.seen["state"]
    state = reloaded.state_dict()
    assert state.keys() == trained.keys()
    assert [k for k in trained if not torch.equal(state[k], trained[k])] == []
    with torch.inference_mode():
        outputs = reloaded(*encode(reloaded, SENTENCES))
    for key in ("embeddings", "topic", "ner"):
        assert torch.equal(outputs[key], FinalState.seen["outputs"][key]), key


def test_evaluate_reports_test_metrics_of_a_checkpoint(tiny_run, tmp_path) -> None:
    from mtst.training.entry import evaluate

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
    assert result["test/ner/f1"] == pytest.approx(metrics["test/ner/f1"])
    assert result["test/topic/acc"] == pytest.approx(metrics["test/topic/acc"])
    assert "micro avg" in (tmp_path / "ner_report.txt").read_text()
    assert (tmp_path / "topic_confusion_matrix.txt").is_file()
    # the loggers get the evaluation's settings: the checkpoint tested, tasks, batching
    hparams = yaml.safe_load(next((tmp_path / "tensorboard").rglob("hparams.yaml")).read_text())
    assert hparams == {"checkpoint": str(ckpt), "tasks": "topic,ner", "batch_size": 8,
                       "precision": "32-true", "seed": 42}


def test_tasks_with_a_baseline_log_delta_m_for_selection_and_optuna(tmp_path) -> None:
    from mtst.cli.train import train_task

    cfg = compose_config(tmp_path, [*TINY_TRAIN, "+tasks.topic.baseline=0.5", "+tasks.ner.baseline=0.25",
                                    "optimized_metric=val/delta_m",
                                    "callbacks.model_checkpoint.monitor=val/delta_m"])
    returned = train_task(cfg)
    metrics = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())["metrics"]
    for split in ("val", "test"):
        expected = 100 * ((metrics[f"{split}/topic/f1"] - 0.5) / 0.5
                          + (metrics[f"{split}/ner/f1"] - 0.25) / 0.25) / 2
        assert metrics[f"{split}/delta_m"] == pytest.approx(expected, rel=1e-5, abs=1e-4)
    assert returned == metrics["val/delta_m"]



def test_the_conflict_monitor_writes_each_measurement_once_at_its_step(tmp_path) -> None:
    cfg = compose_config(tmp_path, [*TINY_TRAIN, "trainer.limit_train_batches=5",
                                    "model.loss.monitor_every=2", "run_test=false"])
    train(cfg)
    events = event_file(Path(cfg.paths.output_dir))
    for tag in ("train/grad_cos/topic__ner", "train/grad_norm/topic", "train/grad_norm/ner"):
        assert [e.step for e in events.Scalars(tag)] == [0, 2, 4], tag
