"""The whole pipeline (compose -> data -> model -> fit -> outputs) fed malformed and adversarial
datasets and configs. Each case ends in a one-line error naming the problem, or in correct
handling; never a hang, a traceback, or a half-written run folder.

Reader-level errors (each message's file/line/field) are covered by tests/data/test_errors.py;
here they must also surface through `train` without leaving output behind.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from mtst.cli._hydra import _user_error
from mtst.data.sources import load_split
from mtst.errors import MtstError
from mtst.inference.loading import load_checkpoint_network
from mtst.tasks import build_tasks
from mtst.training.entry import evaluate, train
from tests.conftest import TINY_TRAIN, compose_config, sample_tasks
from tests.reliability.helpers import CLI_TINY, default_task_files, run_cli, sample_records

ONE_STEP = TINY_TRAIN + [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=1",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "~callbacks.lr_monitor",
]
OUTPUTS = ("metrics.json", "checkpoints", "tensorboard", "ner_report.txt")


def fit(tmp_path: Path, *overrides: str) -> dict[str, float]:
    out = tmp_path / "run"
    out.mkdir(exist_ok=True)
    return train(compose_config(out, ONE_STEP + list(overrides)))


def fails_cleanly(tmp_path: Path, *overrides: str, match: str) -> str:
    """The run raises an MtstError (possibly wrapped by Hydra's instantiate) whose one-line
    message contains `match`, and leaves no run output."""
    with pytest.raises(Exception) as info:
        fit(tmp_path, *overrides)
    err = _user_error(info.value)
    assert err is not None, f"not a user error: {info.value!r}"
    message = str(err)
    assert "\n" not in message and match in message, message
    leftovers = [name for name in OUTPUTS if (tmp_path / "run" / name).exists()]
    assert not leftovers, leftovers
    return message


def data_file(tmp_path: Path, name: str, content: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(content)
    return str(path)


def jsonl_bytes(records) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def test_a_10000_word_sentence_trains_and_is_scored_on_every_word(tmp_path, caplog) -> None:
    words = ["Paris" if i % 100 == 0 else "word" for i in range(10_000)]
    tags = ["B-LOC" if w == "Paris" else "O" for w in words]
    huge = {"tokens": words, "ner_tags": tags, "label": "travel"}
    train_file = data_file(
        tmp_path, "train.jsonl", jsonl_bytes(sample_records("train", 15) + [huge])
    )
    val_file = data_file(tmp_path, "val.jsonl", jsonl_bytes([huge]))
    metrics = fit(
        tmp_path,
        *default_task_files(train_file, val_file),
        "+callbacks.force._target_=tests.reliability.helpers.ForceTag",
        "+callbacks.force.tag=B-LOC",
    )  # every kept word is predicted a LOC entity
    assert "val data: 1 of 1 example(s) exceed max_length=128" in caplog.text
    # 100 gold entities, 2 of them (words 0 and 100) inside the first 128 sub-tokens and found:
    # the cut words stay in the gold standard (predicted O); dropping them would give 2/2
    assert metrics["val/ner/recall"] == pytest.approx(2 / 100)
    assert 0 < metrics["val/ner/precision"] < 0.05  # ~127 predicted, 2 right
    assert (tmp_path / "run" / "metrics.json").is_file()


def read_train(path: str) -> list:
    """The train split of the default tasks, both reading `path`."""
    tasks = build_tasks(sample_tasks(train=[path]))
    return load_split({n: t.data for n, t in tasks.items()}, "train")


def fastest_read(path: str, repeats: int = 5) -> float:
    """Best of `repeats` wall times of `load_split` (the minimum is the least disturbed)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        examples = read_train(path)
        times.append(time.perf_counter() - started)
    assert examples
    return min(times)


def test_a_file_with_100k_empty_lines_is_read_quickly_and_trains(tmp_path) -> None:
    records = sample_records("train", 16)
    content = (
        jsonl_bytes(records[:8]) + b"\n" * 100_000 + b"  \r\n" * 1000 + jsonl_bytes(records[8:])
    )
    train_file = data_file(tmp_path, "train.jsonl", content)
    one_line = data_file(tmp_path, "one.jsonl", jsonl_bytes(records[:1]))
    assert len(read_train(train_file)) == 16
    # skipping an empty line costs a fraction of a microsecond (about 200x a 1-line file in
    # all); 2000x leaves room for slow machines and catches any per-line parse or rescan
    ratio = fastest_read(train_file) / fastest_read(one_line)
    assert ratio < 2000, f"100k empty lines read {ratio:.0f}x slower than a 1-line file"
    fit(tmp_path, *default_task_files(train_file))
    assert (tmp_path / "run" / "metrics.json").is_file()


def test_a_file_of_only_empty_lines_is_an_error(tmp_path) -> None:
    empty = data_file(tmp_path, "empty.jsonl", b"\n" * 100_000)
    fails_cleanly(tmp_path, *default_task_files(empty), match=f"{empty}: file is empty")


def test_a_raw_nul_byte_is_an_error_naming_the_line(tmp_path) -> None:
    content = (
        jsonl_bytes(sample_records("train", 3)) + b'{"text": "bad\x00byte", "label": "other"}\n'
    )
    bad = data_file(tmp_path, "nul.jsonl", content)
    fails_cleanly(tmp_path, *default_task_files(bad), match=f"{bad}:line 4: invalid JSON")


def test_an_escaped_nul_character_is_plain_text(tmp_path) -> None:
    record = {"text": "Ada\u0000Lovelace writes code", "label": "technology"}
    train_file = data_file(
        tmp_path, "train.jsonl", jsonl_bytes(sample_records("train", 15) + [record])
    )
    fit(tmp_path, *default_task_files(train_file))
    assert (tmp_path / "run" / "metrics.json").is_file()


@pytest.mark.parametrize("suffix", ["jsonl", "json"])
def test_deeply_nested_json_is_an_error_not_a_recursion_crash(tmp_path, suffix) -> None:
    nested = b"[" * 200_000 + b"]" * 200_000
    content = (
        nested if suffix == "json" else jsonl_bytes(sample_records("train", 2)) + nested + b"\n"
    )
    bad = data_file(tmp_path, f"nested.{suffix}", content)
    where = ":line 3" if suffix == "jsonl" else ""
    fails_cleanly(
        tmp_path, *default_task_files(bad), match=f"{bad}{where}: invalid JSON: nested too deeply"
    )


def test_a_lone_surrogate_is_an_error_naming_line_and_field(tmp_path) -> None:
    """A `\\ud800` escape without its pair decodes to a string no tokenizer takes (a TypeError
    traceback before)."""
    content = (
        jsonl_bytes(sample_records("train", 3))
        + b'{"text": "bad \\ud800 text", "label": "other"}\n'
    )
    bad = data_file(tmp_path, "surrogate.jsonl", content)
    fails_cleanly(
        tmp_path,
        *default_task_files(bad),
        match=f"{bad}:line 4: text: character 5 is a lone surrogate (U+D800)",
    )


def test_mixed_encodings_are_an_error_naming_line_and_byte(tmp_path) -> None:
    latin1 = json.dumps({"text": "café au lait", "label": "travel"}, ensure_ascii=False).encode(
        "latin-1"
    )
    bad = data_file(
        tmp_path, "mixed.jsonl", jsonl_bytes(sample_records("train", 4)) + latin1 + b"\n"
    )
    fails_cleanly(tmp_path, *default_task_files(bad), match=f"{bad}:line 5: byte 0xe9")


def test_label_names_with_unusual_characters_round_trip(tmp_path) -> None:
    names = {
        "travel": "Sci/Tech & Travel",
        "technology": "naïve 'quoted' \"label\"",
        "politics": "a b=c, d: e",
        "other": "🙂 émoji – dash",
    }
    records = []
    for r in sample_records("train", 24):
        r = dict(r, label=names[r["label"]])
        records.append(r)
    train_file = data_file(tmp_path, "train.jsonl", jsonl_bytes(records))
    val_file = data_file(tmp_path, "val.jsonl", jsonl_bytes(records[:8]))
    fit(tmp_path, *default_task_files(train_file, val_file, "null"), "tasks.topic.labels=null")
    model = load_checkpoint_network(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert set(model.label_spaces["topic"].names) == set(names.values())


def test_negative_eval_batch_size_is_refused_before_anything_runs(tmp_path) -> None:
    fails_cleanly(tmp_path, "data.eval_batch_size=-4", match="data.eval_batch_size=-4")


def test_a_missing_resume_checkpoint_is_an_error(tmp_path) -> None:
    missing = tmp_path / "nope" / "last.ckpt"
    fails_cleanly(tmp_path, f"ckpt_path={missing}", match=f"checkpoint '{missing}' does not exist")


def test_ckpt_path_last_without_any_run_is_an_error(tmp_path) -> None:
    fails_cleanly(tmp_path, "ckpt_path=last", match="ckpt_path=last: no run under")


@pytest.mark.parametrize("target", ["last", "missing.ckpt"])
def test_nothing_to_resume_on_the_command_line_is_one_line_and_leaves_no_folder(
    tmp_path, target
) -> None:
    log = tmp_path / "logs"
    ckpt = target if target == "last" else str(tmp_path / target)
    result = run_cli(
        "train.py", [*CLI_TINY, f"paths.log_dir={log}", f"ckpt_path={ckpt}"], timeout=120
    )
    assert result.returncode == 2
    expected = (
        f"ckpt_path=last: no run under '{log / 'runs'}'"
        if target == "last"
        else f"checkpoint '{ckpt}' does not exist"
    )
    assert result.stderr.startswith(f"error: {expected}") and result.stderr.count("\n") == 1, (
        result.stderr
    )
    assert not log.exists()  # Hydra never got to create a run folder


def test_evaluate_with_a_missing_checkpoint_is_an_error(tmp_path) -> None:
    cfg = compose_config(tmp_path, [f"ckpt_path={tmp_path / 'missing.ckpt'}"], config_name="eval")
    with pytest.raises(MtstError, match="does not exist"):
        evaluate(cfg)
    assert not (tmp_path / "metrics.json").exists()


def test_unknown_config_option_lists_the_valid_choices(tmp_path) -> None:
    result = run_cli(
        "train.py", ["backbone=gpt_neo_huge", f"paths.log_dir={tmp_path}"], timeout=120
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: backbone=gpt_neo_huge: no such option; choose one of "
        "gpt_neo_125m, gpt_neo_125m_random, gpt_neo_1_3b, "
        "gpt_neo_1_3b_random, gpt_neo_tiny, minilm"
    )
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_negative_batch_size_on_the_command_line_is_one_line_exit_2(tmp_path) -> None:
    result = run_cli("train.py", [*CLI_TINY, "data.batch_size=-8", f"paths.log_dir={tmp_path}"])
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("error: data.max_length=128 / data.batch_size=-8")
    )
    assert "Traceback" not in result.stderr
    (run,) = (tmp_path / "runs").iterdir()
    assert not [n for n in OUTPUTS if (run / n).exists()]
