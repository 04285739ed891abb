"""The benchmark package on tiny inputs: entry point without data, the plain reference loop against
the Lightning path, the independent metrics, scale child, padding shares and the report."""

from __future__ import annotations

import copy
import dataclasses
import os
import subprocess
import sys

import pytest
import torch

from benchmarks import quality, sections, training
from benchmarks.common import BENCH_OVERRIDES, QUICK, ROOT, compose, token_shares
from benchmarks.markdown import dvl_deltas
from benchmarks.report import (
    render,
    sum_checkpoint_bytes,
    sum_defaults_vs_loop,
    sum_frozen_epochs,
    sum_serve_peer,
)

# the benchmarks' own overrides, on the tiny backbone and the bundled sample corpus
TINY_BENCH = [
    *(o for o in BENCH_OVERRIDES if not o.startswith(("backbone=", "data="))),
    "backbone=gpt_neo_tiny",
    "data.batch_size=4",
]


def test_entry_point_without_data_exits_zero_with_a_message(tmp_path) -> None:
    missing = tmp_path / "no-such-folder"
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--data-dir", str(missing)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    assert f"no data folder at {missing}" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_overhead_row_runs_both_sides_on_identical_batches(tmp_path) -> None:
    budget = dataclasses.replace(QUICK, overhead_steps=2, overhead_warmup=1, overhead_repeats=1)
    result = training.run(budget, {}, overrides=TINY_BENCH, peak_sizes=(128,))
    losses = result["losses_repeat1"]
    assert len(losses["framework"]) == len(losses["plain"]) == 3
    # same weights, seed and first batch: the first step's loss is the same on both sides
    assert losses["framework"][0] == pytest.approx(losses["plain"][0], rel=1e-5)
    assert result["framework_samples_per_s"] > 0 and result["plain_samples_per_s"] > 0
    assert result["flop_model"]["layers"] == 2 and result["flop_model"]["hidden"] == 64
    assert result["efficiency"]["plain"] > 0
    assert result["profile_ops"] and result["profile_ops"][0]["self_ms"] >= 0


def test_step_flops_formula() -> None:
    fm = {"matmul_params": 10, "layers": 2, "hidden": 4}
    # 6*N*B*T + 12*L*d*B*T^2 for one batch of 3 x 5
    assert training.step_flops([(3, 5)], fm) == 6 * 10 * 15 + 12 * 2 * 4 * 3 * 25


def test_reference_metrics_match_the_framework_test_metrics(tmp_path) -> None:
    """The plain loop's scores (seqeval / scikit-learn) equal the project's test metrics."""
    from mtst.training.entry import build_trainer

    cfg = compose(tmp_path, TINY_BENCH)
    datamodule, model = training.build(cfg)
    datamodule.setup("test")
    loop = training.ReferenceLoop(model, training.optimizer_cfg(cfg), total_steps=3)
    for _, batch in zip(range(3), datamodule.train_dataloader(), strict=False):
        loop.step(batch)
    snapshot = copy.deepcopy(model.state_dict())
    ours = quality.evaluate(model, datamodule)
    model.load_state_dict(snapshot)
    trainer = build_trainer(cfg)
    trainer.test(model, datamodule=datamodule, verbose=False)
    theirs = {k: float(v) for k, v in trainer.callback_metrics.items()}
    assert ours["ner_f1"] == pytest.approx(100 * theirs["test/ner/f1"], abs=1e-4)
    assert ours["cls_acc"] == pytest.approx(100 * theirs["test/topic/acc"], abs=1e-4)
    assert ours["cls_macro_f1"] == pytest.approx(100 * theirs["test/topic/f1"], abs=1e-4)
    # the framework rows pick the same keys out of the test metrics
    assert quality._pick(theirs) == pytest.approx({k: ours[k] for k in quality._pick(theirs)},
                                                  abs=1e-4)
    assert set(quality._pick(theirs)) == {"ner_f1", "cls_acc", "cls_macro_f1"}


def test_reference_metrics_cover_a_third_task(tmp_path) -> None:
    """A third sentence task (`mood`, the sample's topic field under another name) is scored
    by the plain loop's metrics like the framework scores it."""
    from mtst.training.entry import build_trainer

    cfg = compose(tmp_path, [*TINY_BENCH, "+tasks.mood=${tasks.topic}"])
    datamodule, model = training.build(cfg)
    datamodule.setup("test")
    ours = quality.evaluate(model, datamodule)
    trainer = build_trainer(cfg)
    trainer.test(model, datamodule=datamodule, verbose=False)
    theirs = {k: float(v) for k, v in trainer.callback_metrics.items()}
    assert ours["mood_acc"] == pytest.approx(100 * theirs["test/mood/acc"], abs=1e-4)
    assert ours["mood_macro_f1"] == pytest.approx(100 * theirs["test/mood/f1"], abs=1e-4)
    assert quality._pick(theirs)["mood_acc"] == pytest.approx(ours["mood_acc"], abs=1e-4)


def test_reference_loss_skips_tasks_without_labels() -> None:
    batch = {"topic.labels": torch.tensor([-100, -100]), "ner.labels": torch.tensor([[1, -100], [0, 2]]),
             "mood.labels": torch.tensor([1, -100])}
    out = {"embeddings": torch.randn(2, 8), "topic": torch.randn(2, 4), "ner": torch.zeros(2, 2, 3),
           "mood": torch.zeros(2, 5)}
    loss = training.ReferenceLoop.loss(batch, out)  # topic has no label: left out
    expected = torch.log(torch.tensor(3.0)) + torch.log(torch.tensor(5.0))
    assert loss.item() == pytest.approx(expected.item())
    del batch["mood.labels"]  # nor a task the batch has no column for
    assert training.ReferenceLoop.loss(batch, out).item() == pytest.approx(torch.log(torch.tensor(3.0)).item())


def test_batch_shares() -> None:
    shares = token_shares([2, 4, 3, 3], [[0, 1], [2, 3]])  # batches 0.75 and 1.0 real
    assert shares["median_batch_share"] == 0.875 and shares["p10_batch_share"] == pytest.approx(0.775)
    assert shares["real_token_share"] == pytest.approx(12 / 14) and shares["batches"] == 2


def test_scale_child_counts_copies(tmp_path) -> None:
    from benchmarks.scale import child

    conll = tmp_path / "conll2003"
    conll.mkdir()
    (conll / "train.txt").write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n"
                                     "Peter NNP B-NP B-PER\n", encoding="utf-8")
    in_memory = child(tmp_path, 3, store=False, profile=False)
    on_disk = child(tmp_path, 3, store=True, profile=False)
    for result in (in_memory, on_disk):
        assert result["sentences"] == 6 and result["first_batches"] == 1
        assert result["peak_rss_mib"] >= result["rss_base_mib"] > 0
    assert on_disk["tokens"] == in_memory["tokens"] > 6
    assert on_disk["store_mib"] > in_memory["store_mib"]  # the folder also holds offsets + meta


def test_encode_compare_pairs_rounds_and_finds_the_worst_cosine() -> None:
    import numpy as np

    from benchmarks.encode_compare import compare

    a = np.eye(3, dtype=np.float32)
    b = a.copy()
    b[2] = [0.0, 0.6, 0.8]  # cosine 0.8 with a[2]
    result = compare(lambda: a, lambda: b, n=3, repeats=3)
    assert len(result["ratio_per_round"]) == len(result["mtst_rates"]) == 3
    assert result["min_cosine"] == pytest.approx(0.8)
    assert result["ratio"] == pytest.approx(sorted(result["ratio_per_round"])[1])


def test_freeze_speedups_skip_the_first_epoch() -> None:
    from benchmarks.freeze_cache import speedups

    plain = {"epoch_s": [10.0, 9.0, 11.0, 10.0], "train_s": [8.0, 8.0, 8.0, 8.0]}
    cache = {"epoch_s": [12.0, 1.0, 0.5, 1.0], "train_s": [10.0, 0.5, 0.5, 0.5]}
    got = speedups(plain, cache)
    assert got == {"speedup_epochs_2_on": 10.0, "speedup_train_part": 16.0,
                   "first_epoch_ratio": 1.2}


def test_scale_marginal_cost_per_copy() -> None:
    from benchmarks.scale import marginal

    points = [{"factor": 1, "s": 1.0}, {"factor": 10, "s": 4.0}, {"factor": 100, "s": 40.0}]
    assert marginal(points, "s") == pytest.approx([1 / 3, 0.4])


def test_report_flags_missed_targets() -> None:
    sections = {
        "encode": {"sentences": 10, "batch_size": 32, "threads": 2, "repeats": 2, "mtst_per_s": 90.0,
                   "st_per_s": 100.0, "ratio": 0.9, "ratio_per_round": [0.9, 0.9],
                   "min_cosine": 0.99999},
        "freeze": {"error": "RuntimeError: boom"},
    }
    results = {"mode": "quick", "command": "python -m benchmarks --quick", "corpora": ["ag_news"],
               "data_dir": "/data", "budget": {"name": "quick"}, "sections": sections,
               "section_seconds": {"encode": 3.0}, "total_seconds": 10,
               "section_meta": {"encode": {"measured": "2026-01-01 10:00", "seconds": 3.0,
                                           "load_start": [0.5, 0, 0], "load_end": [1.5, 0, 0]}},
               "environment": {"cpu": "cpu", "logical_cpus": 2, "torch_threads": 2, "ram_gib": 1.0,
                               "platform": "linux", "load_average_start": [1, 1, 1],
                               "mtst_commit": "abc",
                               "versions": {k: "1" for k in ("python", "torch", "transformers",
                                                             "lightning", "tokenizers",
                                                             "sentence-transformers", "mtst")}}}
    text = render(results)
    assert "made on an unrecorded date and took 0.2 min" in text  # never the render's own time
    results["generated_at"] = "2026-01-01 09:00"
    text = render(results)
    assert "made on 2026-01-01 09:00 and took 0.2 min" in text
    assert "| 5 | encode: mtst / sentence-transformers sentences/s; min cosine | 0.900; 0.999990 |" in text
    assert "**no**" in text
    assert "Not measured: RuntimeError: boom" in text
    assert "Quick mode" in text
    assert "_Measured 2026-01-01 10:00 in 3 s; load average (1 min) 0.50 at the start, 1.50" in text


def test_report_opens_with_one_provenance_table_and_keeps_no_absolute_path(tmp_path) -> None:
    """The page shows the current figures: each section's date, commit, CPU and command in one
    table before anything else, no paragraph per past --update, and no path of the machine that
    measured (the data folder, a side environment's python under /tmp or a home)."""
    import json

    from benchmarks.__main__ import main
    from benchmarks.report import scrub

    encode = {"sentences": 10, "batch_size": 32, "threads": 2, "repeats": 2, "mtst_per_s": 90.0,
              "st_per_s": 100.0, "ratio": 0.9, "ratio_per_round": [0.9, 0.9], "min_cosine": 0.99999,
              "note": "read /home/someone/corpora/x.csv and "
                      f"{ROOT.parent / 'shared' / 'data' / 'ag_news' / 'test.csv'}"}
    side = "python -m benchmarks --update --only encode --st-onnx-python /tmp/stvenv/bin/python"
    results = {"mode": "full", "command": "python -m benchmarks", "corpora": ["ag_news"],
               "data_dir": str(ROOT.parent / "shared" / "data"), "budget": {"name": "full"},
               "generated_at": "2026-01-01", "total_seconds": 60,
               "sections": {"encode": encode, "freeze": {"skipped": "missing corpora: conll2003"}},
               "section_seconds": {"encode": 3.0},
               "section_meta": {"encode": {"measured": "2026-01-02 10:00", "seconds": 3.0,
                                           "commit": "def", "cpu": "AMD EPYC, 2 logical CPUs",
                                           "command": side, "load_start": [0.5, 0, 0],
                                           "load_end": [1.5, 0, 0]}},
               "updates": [{"command": side, "at": "2026-01-02 10:00", "commit": "def"}],
               "environment": {"cpu": "Intel(R) Xeon(R) Processor", "logical_cpus": 2,
                               "torch_threads": 2, "ram_gib": 1.0, "platform": "linux",
                               "mtst_commit": "abc",
                               "versions": {k: "1" for k in ("python", "torch", "transformers",
                                                             "lightning", "tokenizers",
                                                             "sentence-transformers", "mtst")}}}
    text = render(results)
    assert "Re-measured" not in text
    first_table = text.index("| figure | measured | commit | machine (CPU) | command |")
    assert first_table < text.index("## ") and first_table < text.index("| # | measure |")
    assert ("| 5. Encoding against sentence-transformers | 2026-01-02 10:00 | def | AMD EPYC, 2 "
            "logical CPUs | `python -m benchmarks --update --only encode --st-onnx-python "
            "<python of a side environment>` |") in text
    assert "| 4. Frozen backbone: feature cache | skipped | — |" in text
    assert "| 6. Memory | not run | — |" in text
    # the whole run's Xeon is not claimed for a section measured on another CPU
    assert "Intel(R) Xeon(R) Processor, 2 logical CPUs, torch threads" not in text
    assert "from `../shared/data`" in text
    for absolute in ("/tmp/stvenv", "/home/", str(ROOT.parent)):
        assert absolute not in text
    stored = json.dumps(scrub(results, results["data_dir"]))
    assert "/tmp/stvenv" not in stored and "/home/" not in stored and str(ROOT.parent) not in stored
    assert "../shared/data/ag_news/test.csv" in stored and "<local path>" in stored

    # --render writes the page from the JSON alone: no data folder, nothing measured
    (tmp_path / "r.json").write_text(json.dumps(results))
    assert main(["--render", "--json", str(tmp_path / "r.json"), "--out", str(tmp_path / "r.md"),
                 "--data-dir", str(tmp_path / "absent")]) == 0
    assert (tmp_path / "r.md").read_text() == text


def test_frozen_epochs_row_from_run_times(tmp_path) -> None:
    from benchmarks import frozen_epochs

    assert "skipped" in frozen_epochs.run(QUICK, {})  # no CoNLL-2003: nothing runs
    assert frozen_epochs.EPOCHS == (0, 1, 13)
    # paired within each repeat: firsts 16.0, 16.0, 15.1; laters 0.5, 0.525, 0.55
    times = {0: [10.0, 10.4, 9.9], 1: [26.0, 26.4, 25.0], 13: [32.0, 32.7, 31.6]}
    box = frozen_epochs.black_box(times)
    assert box["first_epoch_s"] == pytest.approx(16.0)
    assert box["later_epoch_s"] == pytest.approx(6.3 / 12)
    assert box["repeat_ratios"] == pytest.approx([32.0, 16.0 / 0.525, 15.1 / 0.55])
    clocks = [[20.0, 1.0, 3.0, 1.2], [22.0, 0.9, 1.1, 1.0], [18.0, 2.0, 2.0, 2.0]]
    clock = frozen_epochs.in_run(clocks)  # run medians of epochs 2..: 1.2, 1.0, 2.0
    assert clock["first_epoch_s"] == 20.0 and clock["later_epoch_s"] == pytest.approx(1.2)
    assert clock["ratio"] == pytest.approx(20.0 / 1.2)
    fast = frozen_epochs.in_run([[26.0, 1.0, 1.0]])
    section = {"command": "python train.py ...", "examples": 3250, "repeats": 3, "cpu": "AMD EPYC",
               "load_1min": [0.5, 1.0], "target": 25.0, "last_epochs": 13,
               "black_box": {**box, "runs_s": {"0": [10.0]}},
               "in_run": {"default": fast, "no_checkpoints": clock, "bare": fast}}
    (row,) = sum_frozen_epochs(section)
    assert row[0] == "16" and row[2].startswith("black-box 30.5× (16.0 s / 0.53 s); in-run 26.0×")
    assert row[3:] == ["≥ 25×", "yes"]
    slow = {**section, "in_run": {**section["in_run"], "default": clock}}
    assert sum_frozen_epochs(slow)[0][3:] == ["≥ 25×", "**no**"]  # the worse of the two
    text = sections.md_frozen_epochs(slow)
    assert "| default callbacks | 20.00 | 1.200 | 16.7× | 1.00 3.00 1.20; 0.90 1.10 1.00; 2.00 2.00 2.00 |" in text
    assert "later epoch = (t13 − t1) / 12" in text and "16.00 s / 0.525 s = 30.5×" in text
    assert "First / later of each repeat: 32.0×, 30.5×, 27.5×." in text
    assert "AMD EPYC" in text
    # the 0-epoch run lifts Lightning's min_epochs=1, the others run as a user types them
    zero = frozen_epochs.command(tmp_path, 0, tmp_path, [])
    assert "trainer.max_epochs=0" in zero and "trainer.min_epochs=0" in zero
    assert not any(a.startswith("trainer.min_epochs") for a in frozen_epochs.command(tmp_path, 4, tmp_path, []))


def test_epoch_clock_times_every_epoch_of_a_run(tmp_path) -> None:
    """The callback the benchmark adds: one duration per epoch, written when training ends."""
    import json

    from benchmarks.training import EpochClock

    clock = EpochClock(str(tmp_path / "clock.json"))
    for _ in range(3):
        clock.on_train_epoch_start(None, None)
    clock.on_train_end(None, None)
    seconds = json.loads((tmp_path / "clock.json").read_text())["epochs_s"]
    assert len(seconds) == 3 and all(s >= 0 for s in seconds)

    in_process = EpochClock()  # no path: the figures stay on the object (benchmarks.freeze_cache)
    for _ in range(2):
        in_process.on_train_epoch_start(None, None)
        in_process.on_train_batch_end(None, None, None, None, 0)
        in_process.on_train_epoch_end(None, None)
    in_process.on_train_end(None, None)
    assert len(in_process.epoch_s) == len(in_process.train_s) == 2
    assert all(0 <= t <= e for t, e in zip(in_process.train_s, in_process.epoch_s, strict=True))


def test_defaults_vs_loop_row_and_the_naive_loop(tmp_path) -> None:
    from benchmarks import defaults_vs_loop as dvl

    assert "skipped" in dvl.run(QUICK, {})
    settings = {"batch_size": 16, "lr_head": 2e-3, "lr_backbone": 5e-5, "warmup_ratio": 0.1,
                "clip": 1.0, "dropout": 0.1}
    rows = {"ner_mtst": {"ner_f1": 74.0, "seconds": 90.0, "settings": settings}, "ner_loop": {"ner_f1": 73.5, "seconds": 80.0},
            "topic_mtst": {"cls_acc": 88.0, "cls_macro_f1": 87.9, "seconds": 200.0},
            "topic_loop": {"cls_acc": 88.5, "cls_macro_f1": 87.0, "seconds": 190.0}}
    section = {"examples": {"ner": 4000, "topic": 6000}, "loop": dvl.LOOP,
               "epochs": {"ner": 1, "topic": 3}, "rows": rows}
    assert dvl_deltas(section) == pytest.approx({"ner_f1": 0.5, "cls_acc": -0.5, "cls_macro_f1": 0.9})
    (row,) = sum_defaults_vs_loop(section)
    assert row[2] == "ner_f1 +0.50; cls_acc -0.50; cls_macro_f1 +0.90" and row[4] == "**no**"
    text = sections.md_defaults_vs_loop(section)
    assert "| topic | plain loop | accuracy | 88.50 | 190 |" in text and "batch 32" in text
    assert "(batch 16, heads 0.002, encoder 5e-05, 10% warm-up" in text

    ner = dvl.row_config(tmp_path / "ner", "ner", QUICK)
    assert list(ner.tasks) == ["ner"] and ner.trainer.max_epochs == 1 and ner.data.batch_size == 16
    (entry,) = ner.tasks.ner.train_files
    assert entry.path.endswith("conll2003/train.txt") and entry.stop == dvl.EXAMPLES["quick"]["ner"]
    topic = dvl.row_config(tmp_path / "topic", "topic", QUICK, ("data.batch_size=32",))
    (entry,) = topic.tasks.topic.train_files
    assert (entry.start, entry.stop, entry.text_column) == (0, dvl.EXAMPLES["quick"]["topic"], 1)
    assert topic.trainer.max_epochs == 3 and topic.data.batch_size == 32

    # the loop: one AdamW group over every parameter at 5e-5, no schedule; a step moves them all
    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder, self.head = torch.nn.Embedding(10, 4), torch.nn.Linear(4, 3)

        def forward(self, input_ids, attention_mask):
            states = self.encoder(input_ids)
            return {"embeddings": states.mean(1), "ner": self.head(states)}

    net = Net()
    loop = dvl.NaiveLoop(net, dvl.LOOP["lr"])
    (group,) = loop.optimizer.param_groups
    assert group["lr"] == 5e-5 and len(group["params"]) == len(list(net.parameters()))
    before = [p.detach().clone() for p in net.parameters()]
    ids = torch.tensor([[1, 2, 3]])
    loop.step({"input_ids": ids, "attention_mask": torch.ones_like(ids),
               "ner.labels": torch.tensor([[0, 2, -100]])})
    assert all(not torch.equal(b, p) for b, p in zip(before, net.parameters(), strict=True))
    assert loop.optimizer.param_groups[0]["lr"] == 5e-5


def test_checkpoint_bytes_row_shows_before_and_after_per_epoch() -> None:

    def row(before: float, first: float, later: float) -> dict:
        epoch = {"before_bytes": before, "after_bytes": later, "before_s": 1.0, "after_s": 0.1,
                 "saves": 3}
        return {"per_epoch": [epoch, epoch], "before_first_epoch_bytes": before,
                "before_later_epoch_bytes": before,
                "after_first_epoch_bytes": first, "after_later_epoch_bytes": later,
                "before_later_epoch_s": 1.0, "after_later_epoch_s": 0.1,
                "checkpoint_folder_bytes": 2 * first, "tensor_files": 40}

    section = {"examples": 8, "epochs": 2, "rows": {"backbone": row(273e6, 91.5e6, 0.5e6),
                                                      "none": row(273e6, 91.5e6, 91.5e6)}}
    (summary,) = sum_checkpoint_bytes(section)
    assert summary[0] == "16" and summary[2] == "backbone 273.0 / 0.50 MB; none 273.0 / 91.5 MB"
    table = sections.md_checkpoint_bytes(section)
    assert "| backbone | 3/3 | 273.0 → 91.5 | 273.0 → 0.50 | 546× | 1.00 → 0.10 | 183.0 (40) |" in table


def _peer_rows(mtst_rps: list[float], infinity_rps: list[float]) -> dict:
    def server(rps: float) -> dict:
        run = {"requests": int(rps * 2), "errors": 0, "seconds": 2.0, "throughput_rps": rps,
               "p50_ms": 1000 / rps, "p99_ms": 3000 / rps, "load_1min": [0.5, 0.6]}
        return {"vectors": [[1.0, 0.0], [0.6, 0.8]],
                "runs": {c: run for c in ("1", "16", "64")}, "startup_s": 4.0}

    return {"mtst": [server(r) for r in mtst_rps], "infinity": [server(r) for r in infinity_rps]}


def test_serving_peer_pairs_rounds_and_renders_ratios_and_p99() -> None:
    from benchmarks import serving_peer

    summary = serving_peer.summarize(_peer_rows([100.0, 90.0, 120.0], [50.0, 60.0, 40.0]))
    # the median of the per-round ratios (2, 1.5, 3), not the ratio of medians (100 / 50)
    assert summary["16"]["ratio"] == 2.0 and summary["16"]["ratio_per_round"] == [2.0, 1.5, 3.0]
    assert summary["16"]["mtst"]["throughput_rps"] == 100.0 and summary["64"]["infinity"]["p99_ms"] == 60.0
    assert summary["min_cosine"] == pytest.approx(1.0) and summary["1"]["mtst"]["startup_s"] == [4.0] * 3
    section = {"duration_s": 2.0, "rounds": 3, "threads": 2, "concurrency": [1, 16, 64],
               "cpu": "AMD EPYC, 2 logical CPUs", "command": "python -m benchmarks.serving_peer",
               "versions": {"mtst": {"mtst": "0.1.0"}, "infinity": {"infinity_emb": "0.0.78"}},
               "options": {b: {"mtst": ["--backend", b], "infinity": ["--engine", b]}
                           for b in serving_peer.BACKENDS},
               "torch": summary, "onnx": summary}
    (row,) = sum_serve_peer(section)
    assert row[2] == "torch 2.00 / 2.00 / 2.00; onnx 2.00 / 2.00 / 2.00"
    text = sections.md_serve_peer(section)
    assert "| torch | 16 | **2.00×** (2.00, 1.50, 3.00) | 100.0 | 50.0 | 10 / 30 ms | 20 / 60 ms | 0 / 0 |" in text
    assert "infinity_emb 0.0.78" in text


def test_serving_peer_skips_without_infinity(tmp_path) -> None:
    from benchmarks import serving_peer

    assert "--infinity" in serving_peer.run(None, 1.0, 1, tmp_path)["skipped"]
    assert "AG News" in serving_peer.run(tmp_path / "venv", 1.0, 1, tmp_path)["skipped"]


@pytest.mark.skipif(not os.environ.get("MTST_BENCH_INFINITY"),
                    reason="MTST_BENCH_INFINITY names no environment with infinity-emb")
def test_serving_peer_end_to_end_against_infinity() -> None:
    """Both servers on both backends, one round of 1 s runs (about a minute on 2 cores)."""
    from benchmarks import serving_peer
    from benchmarks.common import DEFAULT_DATA

    if not (DEFAULT_DATA / "ag_news" / "test.csv").is_file():
        pytest.skip("no AG News data beside the checkout")
    result = serving_peer.run(os.environ["MTST_BENCH_INFINITY"], 1.0, 1, DEFAULT_DATA)
    for backend in serving_peer.BACKENDS:
        assert result[backend]["min_cosine"] > 0.9999
        for clients in ("1", "16", "64"):
            for side in serving_peer.SIDES:
                row = result[backend][clients][side]
                assert row["errors"] == 0 and row["throughput_rps"] > 0
