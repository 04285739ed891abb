"""conf/data/*.yaml (presets holding `tasks` and `data`) give a working data module, and
benchmarks/data_pipeline.py runs on a tiny corpus."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf

from mtst.data.datamodule import MultiTaskDataModule
from mtst.data.sources import load_split
from mtst.tasks import build_tasks

ROOT = Path(__file__).resolve().parents[2]


def compose(name: str, root: Path):
    preset = OmegaConf.load(ROOT / "conf" / "data" / f"{name}.yaml")
    return OmegaConf.merge({"paths": {"root_dir": str(root)}, "seed": 7}, preset)


def module_from(cfg) -> MultiTaskDataModule:
    settings = OmegaConf.to_container(cfg, resolve=True)
    data = settings["data"]
    data.pop("_target_")
    tasks = build_tasks(settings["tasks"])
    return MultiTaskDataModule(tasks={n: t.data for n, t in tasks.items()}, **data)


def test_sample_yaml(tmp_path, bpe_tokenizer):
    sample = tmp_path / "data" / "sample"
    sample.mkdir(parents=True)
    row = {"tokens": ["Ann", "flew"], "ner_tags": ["B-PERSON", "O"], "label": "travel"}
    for split in ("train", "val", "test"):
        (sample / f"{split}.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")
    dm = module_from(compose("sample", tmp_path))
    dm.set_tokenizer(bpe_tokenizer)
    dm.setup("fit")
    assert [s.path for s in dm.source_specs("train")] == [str(sample / "train.jsonl")]
    assert dm.seed == 7 and dm.has_split("test")
    assert dm.label_spaces["ner"].ids[1] == "B-PERSON"
    assert len(list(dm.train_dataloader())) == 1


def test_conll_agnews_yaml(tmp_path, monkeypatch):
    conll, ag = tmp_path / "conll", tmp_path / "ag"
    conll.mkdir(), ag.mkdir()
    for name in ("train.txt", "valid.txt", "test.txt"):
        text = "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\n"
        (conll / name).write_text(text, encoding="utf-8")
    lines = [f'"{i % 4 + 1}","Title {i}","Description {i}"' for i in range(7600)]
    (ag / "test.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    monkeypatch.setenv("MTST_CONLL_DIR", str(conll))
    monkeypatch.setenv("MTST_AGNEWS_DIR", str(ag))
    dm = module_from(compose("conll_agnews", tmp_path / "nowhere"))
    spaces = dm.resolve_label_spaces()
    assert spaces["topic"].names == ["World", "Sports", "Business", "Sci/Tech"]
    assert spaces["ner"].ids == ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC",
                                 "I-MISC"]
    examples = {split: load_split(dm.tasks, split) for split in ("train", "val", "test")}
    assert {split: len(e) for split, e in examples.items()} == {"train": 6000 + 2, "val": 800 + 2,
                                                                 "test": 800 + 2}
    train = examples["train"]  # topic's AG News rows first (task order), then ner's CoNLL
    assert [e.source for e in (train[0], train[6000])] == [0, 1]
    assert train[0].words == ["Title", "0"] and train[0].labels == {"topic": "World"}
    assert train[0].tags == {} and examples["val"][0].words == ["Title", "6000"]
    assert train[6000].tags == {"ner": ["B-ORG", "O"]} and train[6000].labels == {}


def test_bench_script_runs(tmp_path, write, bpe_tokenizer):
    tok_dir = tmp_path / "tok"
    bpe_tokenizer.save_pretrained(str(tok_dir))
    rows = [{"text": f"hello world number {i} from paris", "label": "travel"} for i in range(30)]
    data = write("tiny.jsonl", rows)
    script = ["-m", "benchmarks.data_pipeline"]
    out = subprocess.run([sys.executable, *script, "--files", data, "--tokenizer", str(tok_dir),
                          "--repeats", "1", "--batch-size", "4", "--kinds", "label"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    table = out.stdout
    assert "sentences/s (median)" in table and "padded share, bucketing" in table
    assert "peak RSS (MiB)" in table
    assert any(line.split()[-1] == "30" for line in table.splitlines() if line.startswith("sentences "))
    bad = subprocess.run([sys.executable, *script, "--files", str(tmp_path / "missing.jsonl"),
                          "--tokenizer", str(tok_dir), "--repeats", "1"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert bad.returncode != 0 and "missing.jsonl: file not found" in bad.stderr
