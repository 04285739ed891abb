"""Row 12: the embedding's yardstick, STS Benchmark test Spearman (cosine vs gold score).

Pretrained MiniLM through mtst against sentence-transformers' evaluator (the metric agrees), then
how much of it joint topic + NER training keeps, and what CoSENT on STS-B as a third task buys.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

from benchmarks.common import BENCH_OVERRIDES, MINILM, Budget, compose, fixed_steps, scratch_dir

STS_COLUMNS = "format: tsv, header: false, quoting: false, label_column: 4, text_column: 5, text_pair_column: 6"
SCORES = {"test/sts/spearman": "sts_spearman", "test/ner/f1": "ner_f1",
          "test/topic/acc": "topic_acc", "test/topic/f1": "topic_macro_f1"}


def sts_entry(folder: Path, split: str) -> str:
    return f"{{path: {folder / f'sts-{split}.csv'}, {STS_COLUMNS}}}"


def train_row(budget: Budget, tasks: int, extra: list[str], prefix: str) -> dict[str, Any]:
    """`train` for `quality_steps` steps per task, round robin, tested after the last step."""
    from mtst.training.entry import train

    overrides = [*BENCH_OVERRIDES, *fixed_steps(budget.quality_steps * tasks, budget.quality_test_batches),
                 "data.sampling=round_robin"]
    if any(o.startswith("experiment=") for o in extra):  # it sets the backbone and data itself
        overrides = [o for o in overrides if o not in ("data=conll_agnews", "backbone=minilm")]
    with scratch_dir(prefix) as tmp:
        start = time.perf_counter()
        metrics = train(compose(Path(tmp), [*overrides, *extra]))
    return {"seconds": time.perf_counter() - start,
            **{short: 100 * metrics[k] for k, short in SCORES.items() if metrics.get(k) is not None}}


def pretrained_row(sts: Path) -> dict[str, Any]:
    """mtst's frozen-model figure and sentence-transformers' evaluator on sts-test.csv."""
    import lightning as L
    from omegaconf import OmegaConf
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.evaluation import EmbeddingSimilarityEvaluator

    from mtst.data.labels import LabelSpace
    from mtst.model.backbone import resolve_name_or_path
    from mtst.tasks import build_tasks
    from mtst.training.entry import build_datamodule, build_network
    from mtst.training.module import MultiTaskModule

    with scratch_dir("sts-pretrained") as tmp:
        cfg = compose(Path(tmp), [*BENCH_OVERRIDES, "freeze=all", "~tasks.topic", "~tasks.ner",
                                  "+tasks.sts.type=sentence_similarity",
                                  f"+tasks.sts.val_files=[{sts_entry(sts, 'test')}]"])
        task_config = OmegaConf.to_container(cfg.tasks, resolve=True)
        tasks = build_tasks(task_config)
        start = time.perf_counter()
        net = build_network(cfg, tasks, {"sts": LabelSpace("pair", task="sts")})
        datamodule = build_datamodule(cfg, net.encoder.tokenizer, tasks, stage="validate")
        trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                            enable_model_summary=False, enable_checkpointing=False)
        freeze = OmegaConf.to_container(cfg.freeze, resolve=True)
        trainer.validate(MultiTaskModule(net, task_config, freeze=freeze),
                         datamodule=datamodule, verbose=False)
        ours, ours_seconds = float(trainer.callback_metrics["val/sts/spearman"]), time.perf_counter() - start
    with (sts / "sts-test.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    start = time.perf_counter()
    evaluator = EmbeddingSimilarityEvaluator([r[5] for r in rows], [r[6] for r in rows],
                                             [float(r[4]) / 5 for r in rows], name="sts-test")
    theirs = evaluator(SentenceTransformer(resolve_name_or_path(MINILM), device="cpu"))
    reference = float(theirs.get("sts-test_spearman_cosine", theirs.get("spearman_cosine")))
    return {"pairs": len(rows), "mtst_spearman": 100 * ours, "mtst_seconds": ours_seconds,
            "sentence_transformers_spearman": 100 * reference,
            "sentence_transformers_seconds": time.perf_counter() - start,
            "difference": 100 * (ours - reference)}


def run(budget: Budget, data_dir: Path) -> dict[str, Any]:
    sts = data_dir / "stsbenchmark"
    if not (sts / "sts-test.csv").is_file():
        return {"skipped": f"no STS Benchmark files in {sts}"}
    yardstick = ["+tasks.sts.type=sentence_similarity",
                 f"+tasks.sts.test_files=[{sts_entry(sts, 'test')}]", "+tasks.sts.in_score=false"]
    rows: dict[str, Any] = {"pretrained": pretrained_row(sts)}
    for freeze in ("none", "backbone"):
        rows[f"joint_topic_ner/{freeze}"] = train_row(budget, 2, [f"freeze={freeze}", *yardstick],
                                                      f"sts-{freeze}")
    rows["three_tasks"] = train_row(budget, 3, [
        "experiment=minilm_three_tasks", f"tasks.sts.train_files=[{sts_entry(sts, 'train')}]",
        f"tasks.sts.val_files=[{sts_entry(sts, 'dev')}]",
        f"tasks.sts.test_files=[{sts_entry(sts, 'test')}]"], "sts-three")
    pretrained, two, three = (rows["pretrained"]["mtst_spearman"], rows["joint_topic_ner/none"],
                              rows["three_tasks"])
    return {"steps_per_task": budget.quality_steps, "batch_size": 32, "rows": rows,
            # quick runs test a few batches only, which may hold no STS pair: NaN then
            "retention": {k.split("/")[1]: rows[k].get("sts_spearman", float("nan")) / pretrained
                          for k in ("joint_topic_ner/none", "joint_topic_ner/backbone")},
            "three_vs_two": {k: three[k] - two[k] for k in ("ner_f1", "topic_acc", "topic_macro_f1")
                             if k in three and k in two}}
