"""The model card (`README.md`) that `mtst export` writes next to the exported model.

Hugging Face style: YAML front matter (library, pipeline tags, base model, datasets, and the
run's `metrics.json` values under `model-index`) for the hub's widgets and search, then sections
a person reads before using the model: tasks and label spaces, training data and config,
evaluation per task, intended use, limitations, how to load it. Everything comes from the model
and its run folder, so the card cannot drift from what was trained.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from mtst.inference.metadata import describe

# backbones whose attention is causal: a token state sees only the tokens to its left
CAUSAL_TYPES = {"gpt_neo", "gpt2", "gptj", "gpt_neox", "llama", "mistral", "qwen2", "opt", "bloom",
                "falcon", "phi", "gemma"}
METRIC_TYPES = {"acc": "accuracy"}  # mtst's short names -> Hugging Face metric ids
# task type -> (Hugging Face pipeline tag, what a reader calls it)
TASK_OF = {"sentence_classification": ("text-classification", "sentence classification"),
           "token_classification": ("token-classification", "token classification (BIO spans)"),
           "sentence_similarity": ("sentence-similarity", "sentence similarity (cosine)")}


def find_run(source: str | Path | None) -> Path | None:
    """The run folder behind a checkpoint or run folder (`.../checkpoints/best.ckpt`), if any."""
    if source is None:
        return None
    source = Path(source)
    for folder in (source, source.parent.parent if source.is_file() else source):
        if (folder / "metrics.json").is_file() or (folder / ".hydra" / "config.yaml").is_file():
            return folder
    return None


def run_metrics(run: Path | None) -> dict[str, float]:
    if run is None or not (run / "metrics.json").is_file():
        return {}
    record = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    return {k: float(v) for k, v in (record.get("metrics") or {}).items()}


def run_config(run: Path | None) -> dict[str, Any]:
    """The run's composed config, resolved where possible (paths), raw where not."""
    if run is None or not (run / ".hydra" / "config.yaml").is_file():
        return {}
    from omegaconf import OmegaConf

    from mtst.config.runs import register_resolvers

    register_resolvers()  # the resolvers conf/ uses
    config = OmegaConf.load(run / ".hydra" / "config.yaml")
    try:
        return OmegaConf.to_container(config, resolve=True)
    except Exception:  # an interpolation that only resolves inside the original run
        return OmegaConf.to_container(config, resolve=False)


def _files(tasks: dict[str, Any], split: str) -> list[str]:
    names = []
    entries = [e for task in tasks.values() for e in (task or {}).get(f"{split}_files") or []]
    for entry in entries:
        path = entry.get("path", "") if isinstance(entry, dict) else str(entry)
        names.append("/".join(Path(str(path)).parts[-2:]))
    return list(dict.fromkeys(names))


def _metric_type(short: str) -> str:
    return METRIC_TYPES.get(short, short)


def front_matter(info: dict[str, Any], metrics: dict[str, float], datasets: list[str]) -> dict[str, Any]:
    results = []
    for name, task in info["tasks"].items():
        values = [{"type": _metric_type(key.split("/")[-1]), "name": key, "value": value}
                  for key, value in sorted(metrics.items()) if key.split("/")[1:2] == [name]]
        if values:
            tag, kind = TASK_OF.get(task["type"], (task["type"], task["type"]))
            results.append({"task": {"type": tag, "name": f"{name} ({kind})"}, "metrics": values})
    rest = [{"type": key.split("/")[-1], "name": key, "value": value}
            for key, value in sorted(metrics.items()) if key.count("/") == 1]
    if rest:
        results.append({"task": {"type": "multi-task", "name": "All tasks (score: mean of task scores)"},
                        "metrics": rest})
    types = [TASK_OF.get(t["type"], (t["type"],))[0] for t in info["tasks"].values()]
    card: dict[str, Any] = {
        "library_name": "mtst",
        "pipeline_tag": types[0] if len(set(types)) == 1 else "feature-extraction",
        "tags": ["sentence-transformers", "sentence-similarity", "feature-extraction",
                 *dict.fromkeys(types), "multi-task", "mtst"],
        "base_model": info["backbone"]["name_or_path"],
        "datasets": datasets,
        "metrics": sorted({m["type"] for r in results for m in r["metrics"]}),
    }
    if results:
        card["model-index"] = [{"name": "mtst multi-task model", "results": results}]
    return card


def _task_line(name: str, task: dict[str, Any]) -> str:
    kind = TASK_OF.get(task["type"], (None, task["type"]))[1]
    if task["type"] == "token_classification":
        return f"- **{name}** ({kind}): types {', '.join(task['labels'])}; tags {' '.join(task['tags'])}"
    if task["type"] == "sentence_similarity":
        return f"- **{name}** ({kind}): trains the embedding itself (no head)"
    return f"- **{name}** ({kind}): {', '.join(task['labels'])}"


def model_card(model: Any, run: Path | None = None) -> str:
    """The README.md text for `model`; `run` (its training run folder) adds data and metrics."""
    info, metrics = describe(model), run_metrics(run)
    config = getattr(model, "run_config", None) or run_config(run)
    data, task_config = config.get("data") or {}, config.get("tasks") or {}
    datasets = sorted({name for split in ("train", "val", "test") for name in _files(task_config, split)})
    head = yaml.safe_dump(front_matter(info, metrics, datasets), sort_keys=False, allow_unicode=True)
    tasks = info["tasks"]
    lines = [f"---\n{head}---", "", "# mtst multi-task sentence transformer", "",
             f"One shared `{info['backbone']['model_type']}` encoder "
             f"(`{info['backbone']['name_or_path']}`, hidden size {info['backbone']['hidden_size']}) "
             f"with `{info['pooling']}` pooling and {len(tasks)} task(s) trained jointly on it "
             f"with mtst {info['mtst_version']}.", "",
             "## Tasks and label spaces", "",
             *(_task_line(name, task) for name, task in tasks.items()),
             f"- **embeddings**: {info['embedding_dimension']} dimensions, cosine similarity"
             + (", L2-normalised" if info["normalize"] else ""), "",
             "## Training data and config", ""]
    if config:
        for split in ("train", "val", "test"):
            lines.append(f"- {split}: {', '.join(_files(task_config, split)) or 'none'}")
        summary = {"backbone": config.get("backbone"), "model": config.get("model"),
                   "freeze": config.get("freeze"), "seed": config.get("seed"),
                   "max_epochs": (config.get("trainer") or {}).get("max_epochs"),
                   "batch_size": data.get("batch_size"), "max_length": data.get("max_length")}
        lines += ["", "```yaml", yaml.safe_dump(summary, sort_keys=False).rstrip(), "```"]
    else:
        lines.append("Not recorded: the model was exported without its training run folder.")
    lines += ["", "## Evaluation results", ""]
    if metrics:
        lines += ["| task | metric | validation | test |", "|---|---|---|---|"]
        names = sorted({key.split("/", 1)[1] for key in metrics})
        for name in names:
            task, _, metric = name.rpartition("/")
            cells = [f"{metrics[f'{s}/{name}']:.4f}" if f"{s}/{name}" in metrics else "" for s in ("val", "test")]
            lines.append(f"| {task or 'all tasks'} | {metric} | {cells[0]} | {cells[1]} |")
        lines += ["", "Token-classification scores are entity-level micro averages (seqeval) on "
                  "words; similarity scores are Spearman / Pearson correlations of the cosine with "
                  "the gold score; `score` is the mean of the tasks' main metrics."]
    else:
        lines.append("No `metrics.json` was found for this model.")
    lines += ["", "## Intended use", "",
              "The tasks above (classes, entity spans of the types above) and sentence "
              "embeddings for search and similarity, on text like the training data "
              "(language, domain, length). Scores are softmax probabilities of this model, not "
              "calibrated confidences. Not for decisions about people without human review.", "",
              "## Limitations", ""]
    if info["backbone"]["model_type"] in CAUSAL_TYPES:
        lines.append("- The backbone's attention is **causal**: each token sees only the tokens to "
                     "its left, so the NER tag of a word is decided without the words after it "
                     "(\"Jordan\" before \"River\" and before \"said\" look the same). Expect lower NER "
                     "accuracy than a bidirectional encoder; sentence embeddings use "
                     f"`{info['pooling']}` pooling to make up for early tokens knowing little.")
    lines += [f"- Texts longer than {info['max_length']} sub-tokens are read by `predict` in "
              "overlapping windows; `encode` truncates them (`mtst serve`'s /embed asks for `truncate`).",
              "- Label spaces are fixed at training time; unseen topics fall into the nearest class.",
              "- Only what the training data covers: other languages and domains were not evaluated.",
              "", "## How to load it", "", "```python", "import mtst",
              'model = mtst.load("PATH")               # this folder (the whole multi-task model)',
              'model.predict(["Ada Lovelace flew to Paris on Monday."])',
              'model.encode(["A ferry to the islands."])',
              "", "from sentence_transformers import SentenceTransformer",
              'st = SentenceTransformer("PATH/sentence-transformers")   # the encoder only',
              "```", "", "```bash", "mtst predict --checkpoint PATH \"Ada Lovelace flew to Paris.\"",
              "mtst serve PATH                          # HTTP on 127.0.0.1:8000",
              "```", ""]
    return "\n".join(lines)


def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """(front matter, body) of a card: what the hub reads, and what people read."""
    if not text.startswith("---\n"):
        return {}, text
    head, _, body = text[4:].partition("\n---")
    return yaml.safe_load(head) or {}, body
