"""Row 12: the embedding's yardstick, STS Benchmark test Spearman (cosine vs gold score).

- pretrained: all-MiniLM-L6-v2 through mtst (an evaluation-only similarity task on the frozen
  model) against sentence-transformers' `EmbeddingSimilarityEvaluator` on the same pairs;
- retention: the same figure after joint topic + NER training at row 7's budget (200 steps per
  task, round robin, batch 32), with `freeze=none` and `freeze=backbone`: how much of the
  pretrained embedding's quality each strategy keeps;
- three tasks: `experiment=minilm_three_tasks` (NER, topic and CoSENT on STS-B train, 200 steps
  each):
  STS-B test Spearman (the similarity task should improve the embedding) and topic / NER test
  scores against the two-task run.

Every training row is tested after its last step, on the whole test splits (no model selection).
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

from benchmarks.common import BENCH_OVERRIDES, MINILM, Budget, compose, scratch_dir

STS_COLUMNS = "format: tsv, header: false, quoting: false, label_column: 4, text_column: 5, text_pair_column: 6"


def sts_entry(folder: Path, split: str) -> str:
    return f"{{path: {folder / f'sts-{split}.csv'}, {STS_COLUMNS}}}"


def training_overrides(budget: Budget, steps_per_task: int, tasks: int) -> list[str]:
    overrides = [*BENCH_OVERRIDES, f"++trainer.max_steps={steps_per_task * tasks}",
                 "trainer.max_epochs=-1", "trainer.min_epochs=0", "trainer.limit_val_batches=0",
                 "data.sampling=round_robin"]
    if budget.quality_test_batches:
        overrides.append(f"trainer.limit_test_batches={budget.quality_test_batches}")
    return overrides


def scores(metrics: dict[str, float]) -> dict[str, float]:
    keys = {"test/sts/spearman": "sts_spearman", "test/ner/f1": "ner_f1",
            "test/topic/acc": "topic_acc", "test/topic/f1": "topic_macro_f1"}
    return {short: 100 * metrics[k] for k, short in keys.items() if metrics.get(k) is not None}


def train_row(overrides: list[str], prefix: str) -> dict[str, Any]:
    from mtst.training.pipeline import train

    with scratch_dir(prefix) as tmp:
        start = time.perf_counter()
        metrics = train(compose(Path(tmp), overrides))
        return {"seconds": time.perf_counter() - start, **scores(metrics)}


def pretrained_row(sts: Path) -> dict[str, Any]:
    """mtst's frozen-model figure and sentence-transformers' evaluator on sts-test.csv."""
    import lightning as L
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.evaluation import EmbeddingSimilarityEvaluator

    from mtst.model.backbone import resolve_name_or_path
    from mtst.tasks import build_tasks
    from mtst.training.module import MultiTaskModule
    from mtst.training.pipeline import build_datamodule, build_network

    with scratch_dir("sts-pretrained") as tmp:
        cfg = compose(Path(tmp), [*BENCH_OVERRIDES, "freeze=all", "~tasks.topic", "~tasks.ner",
                                  "+tasks.sts.type=sentence_similarity",
                                  f"+tasks.sts.val_files=[{sts_entry(sts, 'test')}]"])
        from omegaconf import OmegaConf

        task_config = OmegaConf.to_container(cfg.tasks, resolve=True)
        tasks = build_tasks(task_config)
        start = time.perf_counter()
        net = build_network(cfg, tasks, {"sts": _pair_space()})
        datamodule = build_datamodule(cfg, net.encoder.tokenizer, tasks, stage="validate")
        module = MultiTaskModule(net, task_config, freeze={"name": "all"})
        trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                            enable_model_summary=False, enable_checkpointing=False)
        trainer.validate(module, datamodule=datamodule, verbose=False)
        ours, ours_seconds = float(trainer.callback_metrics["val/sts/spearman"]), time.perf_counter() - start
    first, second, gold = [], [], []
    with (sts / "sts-test.csv").open(encoding="utf-8", newline="") as handle:
        for row in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
            gold.append(float(row[4]) / 5)
            first.append(row[5])
            second.append(row[6])
    start = time.perf_counter()
    evaluator = EmbeddingSimilarityEvaluator(first, second, gold, name="sts-test")
    theirs = evaluator(SentenceTransformer(resolve_name_or_path(MINILM), device="cpu"))
    reference = float(theirs.get("sts-test_spearman_cosine", theirs.get("spearman_cosine")))
    return {"pairs": len(gold), "mtst_spearman": 100 * ours, "mtst_seconds": ours_seconds,
            "sentence_transformers_spearman": 100 * reference,
            "sentence_transformers_seconds": time.perf_counter() - start,
            "difference": 100 * (ours - reference)}


def _pair_space() -> Any:
    from mtst.data.labels import LabelSpace

    return LabelSpace("pair", task="sts")


def run(budget: Budget, data_dir: Path) -> dict[str, Any]:
    sts = data_dir / "stsbenchmark"
    if not (sts / "sts-test.csv").is_file():
        return {"skipped": f"no STS Benchmark files in {sts}"}
    steps = budget.quality_steps
    yardstick = ["+tasks.sts.type=sentence_similarity", f"+tasks.sts.test_files=[{sts_entry(sts, 'test')}]",
                 "+tasks.sts.in_score=false"]
    rows: dict[str, Any] = {"pretrained": pretrained_row(sts)}
    for freeze in ("none", "backbone"):
        rows[f"joint_topic_ner/{freeze}"] = train_row(
            [*training_overrides(budget, steps, 2), f"freeze={freeze}", *yardstick], f"sts-{freeze}")
    # experiment=minilm_three_tasks sets what BENCH_OVERRIDES set, with the STS-B task added
    three = [o for o in training_overrides(budget, steps, 3)
             if o not in ("data=conll_agnews", "backbone=minilm")]
    rows["three_tasks"] = train_row(
        [*three, "experiment=minilm_three_tasks",
         f"tasks.sts.train_files=[{sts_entry(sts, 'train')}]",
         f"tasks.sts.val_files=[{sts_entry(sts, 'dev')}]",
         f"tasks.sts.test_files=[{sts_entry(sts, 'test')}]"], "sts-three")
    pretrained = rows["pretrained"]["mtst_spearman"]
    two, three = rows["joint_topic_ner/none"], rows["three_tasks"]
    return {"steps_per_task": steps, "batch_size": 32, "rows": rows,
            # quick runs test a few batches only, which may hold no STS pair: NaN then
            "retention": {k.split("/")[1]: rows[k].get("sts_spearman", float("nan")) / pretrained
                          for k in ("joint_topic_ner/none", "joint_topic_ner/backbone")},
            "three_vs_two": {key: three[key] - two[key] for key in ("ner_f1", "topic_acc", "topic_macro_f1")
                             if key in three and key in two}}


def summary_rows(section: dict[str, Any]) -> list[list[Any]]:
    """Row 12 of the summary table."""
    rows = section["rows"]
    p = rows["pretrained"]
    out = [["12", "STS-B test Spearman, pretrained MiniLM: mtst / sentence-transformers evaluator",
            f"{p['mtst_spearman']:.2f} / {p['sentence_transformers_spearman']:.2f}",
            "equal (0.01)", _yes(abs(p["difference"]) <= 0.01)]]
    for freeze, kept in section["retention"].items():
        score = rows[f"joint_topic_ner/{freeze}"].get("sts_spearman", float("nan"))
        out.append(["12", f"STS-B test after topic + NER training, freeze={freeze} (share of "
                    "pretrained kept)", f"{score:.2f} ({kept:.1%})", "—", "—"])
    three = rows["three_tasks"]
    deltas = section["three_vs_two"]
    out.append(["12", "three tasks (+ CoSENT on STS-B train): STS-B test Spearman",
                f"{three.get('sts_spearman', float('nan')):.2f}", "≥ 84",
                _yes(three.get("sts_spearman", 0) >= 84)])
    labels = {"ner_f1": "NER F1", "topic_acc": "topic acc", "topic_macro_f1": "topic macro-F1"}
    shown = "; ".join(f"{labels.get(k, k)} {v:+.2f}" for k, v in deltas.items())
    out.append(["12", "three tasks − two tasks: NER F1, topic acc / macro-F1 (points)", shown,
                "within ±1", _yes(all(abs(v) <= 1 for v in deltas.values()))])
    return out


def render(section: dict[str, Any], table: Any = None) -> str:
    """The section's Markdown: every row with its figures and time."""
    rows = section["rows"]
    p = rows["pretrained"]
    lines = [f"STS Benchmark test ({p['pairs']:,} pairs), Spearman's correlation ×100 of the cosine "
             "of the two sentence embeddings with the gold score. Training rows: "
             f"{section['steps_per_task']} steps of batch {section['batch_size']} per task, round "
             "robin, tested after the last step (no model selection).", "",
             "| row | STS-B test | NER F1 | topic acc | topic macro-F1 | seconds |",
             "|---|---:|---:|---:|---:|---:|",
             f"| pretrained, mtst (`freeze=all`, evaluation-only task) | {p['mtst_spearman']:.2f} "
             f"| | | | {p['mtst_seconds']:.0f} |",
             f"| pretrained, sentence-transformers `EmbeddingSimilarityEvaluator` "
             f"| {p['sentence_transformers_spearman']:.2f} | | | | {p['sentence_transformers_seconds']:.0f} |"]
    names = {"joint_topic_ner/none": "topic + NER, `freeze=none`",
             "joint_topic_ner/backbone": "topic + NER, `freeze=backbone`",
             "three_tasks": "topic + NER + STS-B train (`experiment=minilm_three_tasks`), `freeze=none`"}
    for key, name in names.items():
        r = rows[key]
        cells = [f"{r[k]:.2f}" if k in r else "" for k in ("sts_spearman", "ner_f1", "topic_acc",
                                                          "topic_macro_f1")]
        lines.append(f"| {name} | {' | '.join(cells)} | {r['seconds']:.0f} |")
    return "\n".join(lines)


def _yes(ok: bool) -> str:
    return "yes" if ok else "**no**"
