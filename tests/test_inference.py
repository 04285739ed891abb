"""A trained tiny model in users' hands: encode, export (sentence-transformers and mtst folders),
mtst.load, the predict/export CLIs and their errors, evaluation pictures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import mtst
from mtst.cli.main import main
from mtst.inference import export as export_module
from mtst.model import encoder as encoder_module
from mtst.model.encoder import SentenceEncoder
from mtst.training.pipeline import evaluate, train
from tests.conftest import TINY_TRAIN, compose_config

SENTENCES = [
    "Ada Lovelace flew to Paris on Monday.",
    "x",
    "Parliament votes on the new budget today, after a long and noisy debate in the chamber.",
    "Zoë  found São Paulo 🙂 hot!",
    "The phone update broke my laptop.",
    "",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    train(compose_config(out, TINY_TRAIN))
    return out


@pytest.fixture(scope="module")
def ckpt(run_dir) -> Path:
    return run_dir / "checkpoints" / "best.ckpt"


@pytest.fixture(scope="module")
def exported(ckpt, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "model"
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    return out


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_encode_restores_order_across_chunks_and_matches_one_by_one(ckpt, monkeypatch) -> None:
    model = mtst.load(ckpt)
    monkeypatch.setattr(encoder_module, "ENCODE_CHUNK", 4)  # several tokenisation chunks
    batched = model.encode(SENTENCES, batch_size=2)
    single = np.stack([model.encode(s) for s in SENTENCES])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    assert np.abs(batched[0] - batched[2]).max() > 1e-3  # rows differ: a permutation would show


def test_saved_encoder_reloads_through_from_pretrained(ckpt, tmp_path) -> None:
    model = mtst.load(ckpt)
    model.encoder.save_pretrained(tmp_path / "encoder")
    reloaded = SentenceEncoder.from_pretrained(str(tmp_path / "encoder"))
    assert reloaded.pooling.mode == model.encoder.pooling.mode == "weighted_mean"
    np.testing.assert_allclose(reloaded.encode(SENTENCES), model.encode(SENTENCES), atol=1e-6)


def test_sentence_transformers_loads_the_export_with_the_same_embeddings(ckpt, exported) -> None:
    from sentence_transformers import SentenceTransformer

    folder = exported / "sentence-transformers"
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_weightedmean_tokens"] is True
    assert sum(v is True for k, v in pooling.items() if k.startswith("pooling_mode")) == 1
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    assert tokenizer_config["padding_side"] == "right" and tokenizer_config["pad_token"]
    st_model = SentenceTransformer(str(folder), device="cpu")
    theirs = st_model.encode(SENTENCES, batch_size=4)
    ours = mtst.load(ckpt).encode(SENTENCES, batch_size=3)
    assert cosine(theirs[:-1], ours[:-1]).min() >= 0.9999
    np.testing.assert_allclose(theirs[-1], ours[-1], atol=1e-6)  # "" has no token in either
    # the same folder also loads as an mtst encoder, pooling kept
    assert SentenceEncoder.from_pretrained(str(folder)).pooling.mode == "weighted_mean"


@pytest.mark.parametrize("mode", ["mean", "weighted_mean", "last_token", "first", "max"])
def test_every_pooling_mode_exports_to_sentence_transformers(mode, tiny_model_dir, tmp_path) -> None:
    from sentence_transformers import SentenceTransformer

    encoder = SentenceEncoder.from_pretrained(str(tiny_model_dir), pooling=mode,
                                              normalize=mode == "max", max_length=32)
    export_module.write_sentence_transformers(encoder, tmp_path / "st")
    theirs = SentenceTransformer(str(tmp_path / "st"), device="cpu").encode(SENTENCES[:5], batch_size=5)
    ours = encoder.encode(SENTENCES[:5], batch_size=2)
    assert cosine(theirs, ours).min() >= 0.9999, mode
    if mode == "max":  # normalising encoders get a Normalize module
        assert np.allclose(np.linalg.norm(theirs, axis=1), 1.0, atol=1e-5)


def test_mtst_load_of_export_predicts_like_the_checkpoint(ckpt, exported, run_dir) -> None:
    from_ckpt, from_export = mtst.load(ckpt), mtst.load(exported)
    assert from_export.label_space == from_ckpt.label_space
    assert from_export.predict(SENTENCES) == from_ckpt.predict(SENTENCES)
    batch = from_ckpt.encoder.tokenizer(SENTENCES[:3], padding=True, return_tensors="pt")
    with torch.inference_mode():
        a = from_ckpt(batch["input_ids"], batch["attention_mask"])
        b = from_export(batch["input_ids"], batch["attention_mask"])
    for key in ("embeddings", "cls_logits", "ner_logits"):
        assert torch.equal(a[key], b[key]), key
    assert mtst.load(exported / "mtst").predict(SENTENCES[:2]) == from_ckpt.predict(SENTENCES[:2])
    assert mtst.load(run_dir).predict(SENTENCES[:2]) == from_ckpt.predict(SENTENCES[:2])


def test_export_refuses_to_clobber_and_never_leaves_half_a_folder(ckpt, tmp_path, monkeypatch,
                                                                  capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"
    missing = tmp_path / "missing.ckpt"
    assert main(["export", "--checkpoint", str(missing), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing.ckpt' does not exist" in err
    assert not (tmp_path / "x").exists()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(export_module, "save_folder", broken)
    target = tmp_path / "never"
    with pytest.raises(OSError, match="disk full"):
        export_module.export(ckpt, target)
    with pytest.raises(OSError, match="disk full"):
        export_module.export(ckpt, out, overwrite=True)
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folder left
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]  # old contents intact


def test_predict_cli_writes_one_json_line_per_text(ckpt, tmp_path, monkeypatch, capsys) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(json.dumps({"text": t}) for t in SENTENCES) + "\n", encoding="utf-8")
    output = tmp_path / "out.jsonl"
    assert main(["predict", "-c", str(ckpt), "--input", str(source), "--output", str(output)]) == 0
    rows = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert rows == mtst.load(ckpt).predict(SENTENCES)
    assert set(rows[0]) == {"text", "topic", "entities"}
    assert set(rows[0]["topic"]) == {"label", "score", "scores"}
    capsys.readouterr()
    # positional texts go to stdout; with nothing given, stdin is read line by line
    assert main(["predict", "-c", str(ckpt), "Paris in May", "x"]) == 0
    assert [json.loads(x)["text"] for x in capsys.readouterr().out.splitlines()] == ["Paris in May", "x"]
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("first line\n\nthird 🙂\n"))
    assert main(["predict", "-c", str(ckpt)]) == 0
    texts = [json.loads(x)["text"] for x in capsys.readouterr().out.splitlines()]
    assert texts == ["first line", "", "third 🙂"]


@pytest.mark.parametrize("problem", ["missing_checkpoint", "missing_input", "not_utf8", "bad_jsonl",
                                     "no_text"])
def test_predict_cli_errors_are_one_line_and_leave_no_output(problem, ckpt, tmp_path, capsys) -> None:
    output = tmp_path / "out.jsonl"
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "fine"}\n{"text": "broken"\n', encoding="utf-8")
    checkpoint = str(ckpt)
    if problem == "missing_checkpoint":
        checkpoint, expected = str(tmp_path / "nope.ckpt"), "nope.ckpt' does not exist"
        source.write_text('{"text": "fine"}\n', encoding="utf-8")
    elif problem == "missing_input":
        source, expected = tmp_path / "absent.txt", "absent.txt: file not found"
    elif problem == "not_utf8":
        source.write_bytes(b'{"text": "fine"}\n{"text": "caf\xe9"}\n')  # line 2 is Latin-1
        expected = f"{source}:line 2: byte 0xe9 at column 14 is not valid UTF-8"
    elif problem == "bad_jsonl":
        expected = f"{source}:line 2: not valid JSON"
    else:
        source.write_text('{"text": "fine"}\n{"body": "no text"}\n', encoding="utf-8")
        expected = f"{source}:line 2: field 'text' is missing"
    code = main(["predict", "-c", checkpoint, "--input", str(source), "--output", str(output)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and expected in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]  # no output, no temp file


def test_prediction_inputs_and_training_files_name_a_bad_byte_the_same_way(tmp_path) -> None:
    from mtst.data.readers import read_text
    from mtst.errors import DataError
    from mtst.inference.inputs import read_texts

    source = tmp_path / "mixed.jsonl"
    source.write_bytes(b'{"text": "one"}\n{"text": "two"}\n{"text": "\xff three"}\n')
    messages = []
    for read in (read_texts, read_text):
        with pytest.raises(DataError) as caught:
            read(str(source))
        messages.append(str(caught.value))
    assert messages[0] == messages[1] == (
        f"{source}:line 3: byte 0xff at column 11 is not valid UTF-8; re-save the file as UTF-8")


def test_plot_embeddings_of_a_run_checkpoint_writes_the_projector_into_the_run(
    ckpt, run_dir, tmp_path, capsys
) -> None:
    source = tmp_path / "s.txt"
    source.write_text("travel\tA ferry to the islands\ntechnology\tA new phone\npolitics\tA vote\n")
    assert main(["plot-embeddings", "-c", str(ckpt), "--input", str(source), "--out",
                 str(tmp_path / "plots"), "--tsne-iter", "250"]) == 0
    assert (run_dir / "tensorboard" / "projector" / "projector_config.pbtxt").is_file()
    assert (tmp_path / "plots" / "tsne.png").is_file()


def test_evaluate_writes_confusion_matrix_and_ner_pictures(ckpt, tmp_path) -> None:
    overrides = [f"ckpt_path={ckpt}", "trainer.accelerator=cpu", "trainer.limit_test_batches=2",
                 "trainer.enable_progress_bar=false", "data.batch_size=8"]
    metrics = evaluate(compose_config(tmp_path, overrides, config_name="eval"))
    for name in ("confusion_matrix.png", "ner_report.png", "ner_report.txt"):
        assert (tmp_path / name).stat().st_size > 1000 or name.endswith(".txt")
    table = (tmp_path / "confusion_matrix.txt").read_text().splitlines()
    counts = np.array([[int(v) for v in line.split()[1:]] for line in table[1:]])
    assert counts.sum() > 0
    assert np.trace(counts) / counts.sum() == pytest.approx(metrics["test/cls_acc"], abs=1e-6)
    images, texts = set(), set()
    for event_file in (tmp_path / "tensorboard").rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(event_file))
        acc.Reload()
        images |= set(acc.Tags()["images"])
        texts |= set(acc.Tags()["tensors"])
    assert {"test/confusion_matrix", "test/ner_report"} <= images
    assert any("confusion_matrix" in t for t in texts) and any("ner_report" in t for t in texts)


def test_export_writes_a_model_card_with_the_runs_metrics(exported, run_dir, ckpt) -> None:
    from mtst.inference.card import split_front_matter

    card, body = split_front_matter((exported / "README.md").read_text(encoding="utf-8"))
    recorded = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    assert recorded  # a real run: val/ and test/ metrics of both tasks
    in_card = {m["name"]: m["value"] for result in card["model-index"][0]["results"]
               for m in result["metrics"]}
    assert in_card == recorded
    tasks = {r["task"]["type"]: {m["name"] for m in r["metrics"]} for r in card["model-index"][0]["results"]}
    assert "test/cls_acc" in tasks["text-classification"] and "test/ner_f1" in tasks["token-classification"]
    assert card["library_name"] == "mtst" and card["base_model"] == "package:mtst/assets/gpt_neo_tiny"
    assert card["datasets"] == ["sample/test.jsonl", "sample/train.jsonl", "sample/val.jsonl"]
    space = mtst.load(ckpt).label_space
    assert ", ".join(space.classes) in body and " ".join(space.tags) in body
    assert f"{recorded['test/ner_f1']:.4f}" in body  # the evaluation table
    assert "causal" in body and "mtst serve" in body and "SentenceTransformer(" in body
