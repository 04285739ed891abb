"""Tasks as plug-ins: a task added or removed from the command line alone trains, is validated
and scored, and travels through metrics.json, TensorBoard, the checkpoint and `predict`."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr, spearmanr

from mtst.checkpoints.file_io import load_checkpoint
from mtst.errors import MtstError
from mtst.inference.loading import load_checkpoint_network
from mtst.tasks import build_tasks
from mtst.tasks.metrics import Correlation
from mtst.training.entry import train
from tests.conftest import SAMPLE, TINY_TRAIN, compose_config
from tests.test_train import event_file

MOODS = ("calm", "lively")


def mood_of(text: str) -> str:
    return MOODS[("!" in text) or len(text) % 3 == 0]


@pytest.fixture(scope="module")
def mood_files(tmp_path_factory) -> dict[str, Path]:
    """The sample corpus with one more field per record, `mood`: a third sentence label."""
    folder = tmp_path_factory.mktemp("mood")
    files = {}
    for split in ("train", "val", "test"):
        rows = [json.loads(line) for line in (SAMPLE / f"{split}.jsonl").read_text("utf-8").splitlines()]
        text = "".join(json.dumps({**r, "mood": mood_of(r["text"])}) + "\n" for r in rows)
        files[split] = folder / f"{split}.jsonl"
        files[split].write_text(text, encoding="utf-8")
    return files


@pytest.fixture(scope="module")
def three_task_run(mood_files, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("three")
    overrides = [f"tasks.{t}.{s}_files=[{mood_files[s]}]" for t in ("topic", "ner") for s in mood_files]
    overrides += ["+tasks.mood.type=sentence_classification", "+tasks.mood.field=mood",
                  "+tasks.mood.labels=[calm,lively]", "+tasks.mood.weight=0.5"]
    overrides += [f"+tasks.mood.{s}_files=[{mood_files[s]}]" for s in mood_files]
    return out, train(compose_config(out, TINY_TRAIN + overrides))


def test_a_third_task_from_overrides_trains_and_is_scored_everywhere(three_task_run) -> None:
    out, metrics = three_task_run
    saved = json.loads((out / "metrics.json").read_text())["metrics"]
    for stage in ("val", "test"):
        assert {f"{stage}/{t}/{m}" for t in ("topic", "mood") for m in ("acc", "f1")} <= saved.keys()
        # score: the mean of the three tasks' main metrics
        mean = np.mean([saved[f"{stage}/topic/f1"], saved[f"{stage}/ner/f1"], saved[f"{stage}/mood/f1"]])
        assert saved[f"{stage}/score"] == pytest.approx(mean, abs=1e-6)
    events = event_file(out)
    tags = set(events.Tags()["scalars"])
    assert {"train/mood/loss", "train/mood/loss_epoch", "val/mood/f1", "test/mood/acc"} <= tags
    # the CUSTOM SCALARS tab: a section per task, whose charts show logged scalars
    from tensorboard.plugins.custom_scalar import layout_pb2

    (config,) = events.Tensors("custom_scalars__config__")
    layout = layout_pb2.Layout.FromString(config.tensor_proto.string_val[0])
    sections = {c.title: [t for chart in c.chart for t in chart.multiline.tag] for c in layout.category}
    assert list(sections) == ["run", "topic", "ner", "mood"]
    assert {"val/mood/f1", "test/mood/acc", "train/mood/loss"} <= set(sections["mood"])
    assert set(sections["mood"]) <= tags
    checkpoint = load_checkpoint(out / "checkpoints" / "best.ckpt")
    assert list(checkpoint["mtst"]["network"]["tasks"]) == ["topic", "ner", "mood"]
    assert checkpoint["mtst"]["network"]["tasks"]["mood"]["labels"] == {"kind": "label", "names": list(MOODS)}
    assert checkpoint["state_dict"]["net.heads.mood.out.weight"].shape[0] == 2
    model = load_checkpoint_network(out / "checkpoints" / "best.ckpt")
    (result,) = model.predict(["Ada Lovelace flew to Paris on Monday!"])
    assert set(result) == {"text", "topic", "ner", "mood"}
    assert result["mood"]["label"] in MOODS and set(result["mood"]["scores"]) == set(MOODS)
    assert sum(result["mood"]["scores"].values()) == pytest.approx(1.0, abs=1e-3)


def test_a_single_task_run_after_removing_one(tmp_path) -> None:
    metrics = train(compose_config(tmp_path, TINY_TRAIN + ["~tasks.topic"]))
    assert "val/ner/f1" in metrics and not [k for k in metrics if "/topic/" in k]
    assert metrics["val/score"] == pytest.approx(metrics["val/ner/f1"])
    checkpoint = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert list(checkpoint["mtst"]["network"]["tasks"]) == ["ner"]
    assert not [k for k in checkpoint["state_dict"] if k.startswith("net.heads.topic.")]


def pair_records(n: int, scored: bool, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    words = ["ferry", "island", "phone", "vote", "parliament", "laptop", "beach", "train"]
    rows = []
    for _ in range(n):
        a = " ".join(rng.choices(words, k=4))
        b = " ".join(rng.choices(words, k=4))
        overlap = len(set(a.split()) & set(b.split()))
        rows.append({"sentence1": a, "sentence2": b, "score": overlap} if scored
                    else {"anchor": a, "positive": b})
    return rows


@pytest.mark.parametrize("scored", [True, False], ids=["cosent", "ranking"])
def test_a_similarity_task_trains_and_reports_spearman(tmp_path, scored: bool) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in pair_records(40, scored)), "utf-8")
    scored_pairs = tmp_path / "scored.jsonl"
    scored_pairs.write_text("".join(json.dumps(r) + "\n" for r in pair_records(30, True, 1)), "utf-8")
    overrides = ["~tasks.topic", "~tasks.ner", "+tasks.sts.type=sentence_similarity",
                 f"+tasks.sts.train_files=[{pairs}]", f"+tasks.sts.val_files=[{scored_pairs}]",
                 "+tasks.sts.max_score=4", "~callbacks.model_checkpoint", "~callbacks.step_checkpoint"]
    cfg = compose_config(tmp_path, TINY_TRAIN + overrides)
    metrics = train(cfg)
    assert {"val/sts/spearman", "val/sts/pearson"} <= metrics.keys()
    assert metrics["val/score"] == pytest.approx(metrics["val/sts/spearman"])
    assert -1.0 <= metrics["val/sts/spearman"] <= 1.0


def test_correlation_metric_is_scipys_spearman_and_pearson_over_all_updates() -> None:
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 6, 200).astype(float)  # many ties, as in STS scores
    preds = gold + rng.normal(0, 2, 200)
    preds[:20] = preds[0]  # tied predictions too
    metric = Correlation()
    for start in range(0, 200, 64):  # batch by batch, as evaluation updates it
        metric.update(torch.tensor(preds[start : start + 64], dtype=torch.float32),
                      torch.tensor(gold[start : start + 64]))
    values = metric.compute()
    expected = spearmanr(preds.astype(np.float32).astype(np.float64), gold)[0]
    assert float(values["spearman"]) == pytest.approx(expected, abs=1e-12)
    assert float(values["pearson"]) == pytest.approx(
        pearsonr(preds.astype(np.float32).astype(np.float64), gold)[0], abs=1e-12)


def test_task_settings_are_checked_with_one_line_errors() -> None:
    with pytest.raises(MtstError, match=r"tasks\.x\.type='sentence_regression': no such task type; "
                                        r"choose one of sentence_classification, token_classification, "
                                        r"sentence_similarity"):
        build_tasks({"x": {"type": "sentence_regression"}})
    with pytest.raises(MtstError, match=r"tasks\.sts\.dropout: no such setting for a sentence_similarity"):
        build_tasks({"sts": {"type": "sentence_similarity", "dropout": 0.1}})
    for rate in (1.0, -0.1, "0.1", True):
        with pytest.raises(MtstError, match=rf"tasks\.ner\.dropout={rate!r}: expected a probability "
                                            r"in \[0, 1\)"):
            build_tasks({"ner": {"type": "token_classification", "dropout": rate}})
    assert build_tasks({"ner": {"type": "token_classification", "dropout": 0}})["ner"]
    with pytest.raises(MtstError, match=r"tasks\.ner\.main_metric='acc': a token_classification task "
                                        r"reports f1, precision, recall"):
        build_tasks({"ner": {"type": "token_classification", "main_metric": "acc"}})
    with pytest.raises(MtstError, match=r"tasks\.sts\.loss='mse': no such option; choose one of cosent, "
                                        r"cosine_mse"):
        build_tasks({"sts": {"type": "sentence_similarity", "loss": "mse"}})
    with pytest.raises(MtstError, match="tasks: no task is configured"):
        build_tasks({})


@pytest.mark.parametrize("scored", [True, False], ids=["cosent", "ranking"])
def test_pair_losses_reach_the_encoder_through_both_sentences(tmp_path, scored: bool) -> None:
    from tests.conftest import make_datamodule, make_module

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in pair_records(12, scored)), "utf-8")
    topic = tmp_path / "topic.jsonl"
    topic.write_text('{"text": "a ferry to the island", "label": "travel"}\n', "utf-8")
    tasks = {"sts": {"type": "sentence_similarity", "train_files": [str(pairs)]},
             "topic": {"type": "sentence_classification", "train_files": [str(topic)],
                       "labels": ["travel", "other"]}}
    dm = make_datamodule(tasks, batch_size=16, bucket_by_length=False, sampling="proportional")
    module = make_module(dm, tasks=tasks, dropout=0.0).double()
    batch = next(iter(dm.train_dataloader()))  # 12 pairs and one topic row in one batch
    assert len(batch["pair_rows"]) == 12 and int(batch["topic.has"].sum()) == 1
    module.freezer.apply(module, 0)
    outputs = module.encode_batch(batch)
    assert outputs["embeddings_b"].shape == (12, module.net.encoder.hidden_size)
    total, per_task = module.compute_loss(batch, outputs)
    assert set(per_task) == {"sts", "topic"} and float(per_task["sts"]) > 0
    per_task_sts = module.tasks["sts"].loss(batch, outputs)
    per_task_sts.backward()
    grad = module.net.encoder.backbone.wte.weight.grad
    ids_a = batch["input_ids"][batch["pair_rows"]].unique()
    ids_b = batch["input_ids_b"].unique()
    only_b = ids_b[~torch.isin(ids_b, ids_a)]
    assert float(grad.abs().sum()) > 0
    if len(only_b):  # a token seen only in second sentences still gets a gradient
        assert float(grad[only_b].abs().sum()) > 0
