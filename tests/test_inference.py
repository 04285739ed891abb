"""A trained tiny model in users' hands: encode, export (sentence-transformers and mtst folders),
mtst.load, the predict/export CLIs and their errors, evaluation pictures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import mtst
from mtst.cli.main import main
from mtst.inference import export as export_module
from mtst.model import encoder as encoder_module
from mtst.model.encoder import SentenceEncoder
from mtst.training.entry import evaluate, train
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
    assert from_export.label_spaces == from_ckpt.label_spaces
    assert from_export.predict(SENTENCES) == from_ckpt.predict(SENTENCES)
    batch = from_ckpt.encoder.tokenizer(SENTENCES[:3], padding=True, return_tensors="pt")
    with torch.inference_mode():
        a = from_ckpt(batch["input_ids"], batch["attention_mask"])
        b = from_export(batch["input_ids"], batch["attention_mask"])
    assert set(a) == {"embeddings", "topic", "ner"}
    for key in a:
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

    monkeypatch.setattr(export_module.MultiTaskModel, "save", broken)  # after the ST folder
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
    assert set(rows[0]) == {"text", "topic", "ner"}
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
    for name in ("topic_confusion_matrix.png", "ner_report.png", "ner_report.txt"):
        assert (tmp_path / name).stat().st_size > 1000 or name.endswith(".txt")
    table = (tmp_path / "topic_confusion_matrix.txt").read_text().splitlines()
    counts = np.array([[int(v) for v in line.split()[1:]] for line in table[1:]])
    assert counts.sum() > 0
    assert np.trace(counts) / counts.sum() == pytest.approx(metrics["test/topic/acc"], abs=1e-6)
    images, texts = set(), set()
    for event_file in (tmp_path / "tensorboard").rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(event_file))
        acc.Reload()
        images |= set(acc.Tags()["images"])
        texts |= set(acc.Tags()["tensors"])
    assert {"test/topic/confusion_matrix", "test/ner/report_figure"} <= images
    assert any("topic/confusion_matrix" in t for t in texts) and any("ner/report" in t for t in texts)


def test_export_writes_a_model_card_with_the_runs_metrics(exported, run_dir, ckpt) -> None:
    from mtst.inference.card import split_front_matter

    card, body = split_front_matter((exported / "README.md").read_text(encoding="utf-8"))
    recorded = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    assert recorded  # a real run: val/ and test/ metrics of both tasks
    in_card = {m["name"]: m["value"] for result in card["model-index"][0]["results"]
               for m in result["metrics"]}
    assert in_card == recorded
    tasks = {r["task"]["type"]: {m["name"] for m in r["metrics"]} for r in card["model-index"][0]["results"]}
    assert "test/topic/acc" in tasks["text-classification"]
    assert "test/ner/f1" in tasks["token-classification"]
    assert card["library_name"] == "mtst" and card["base_model"] == "package:mtst/assets/gpt_neo_tiny"
    assert card["datasets"] == ["sample/test.jsonl", "sample/train.jsonl", "sample/val.jsonl"]
    spaces = mtst.load(ckpt).label_spaces
    assert ", ".join(spaces["topic"].names) in body and " ".join(spaces["ner"].ids) in body
    assert f"{recorded['test/ner/f1']:.4f}" in body  # the evaluation table
    assert "causal" in body and "mtst serve" in body and "SentenceTransformer(" in body


# ---- any number of named tasks: save / load / export / similarity / mtst 0.1 checkpoints ------
def three_task_network(seed: int = 0):
    """topic + ner + `mood` (a third sentence-classification task with its own labels), every
    head randomly initialised (biases too, so a head mixed up with another would show)."""
    from mtst.data.labels import LabelSpace
    from tests.conftest import make_network, sample_tasks

    tasks = sample_tasks()
    tasks["mood"] = {**tasks["topic"], "labels": ["calm", "tense", "cheerful"]}
    spaces = {"topic": LabelSpace("label", tasks["topic"]["labels"], "topic"),
              "ner": LabelSpace("tags", tasks["ner"]["labels"], "ner"),
              "mood": LabelSpace("label", tasks["mood"]["labels"], "mood")}
    net = make_network(spaces, tasks, seed=seed).eval()
    with torch.no_grad():
        for head in net.heads.values():
            head.out.bias.normal_()
    return net


def head_outputs(model, texts: list[str]) -> dict[str, torch.Tensor]:
    batch = model.encoder.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        return model(batch["input_ids"], batch["attention_mask"])


def test_a_three_task_network_saves_and_loads_with_every_head(tmp_path) -> None:
    net = three_task_network()
    loaded = mtst.load(net.save(tmp_path / "net"))
    assert isinstance(loaded, mtst.MultiTaskModel)
    assert list(loaded.heads) == ["topic", "ner", "mood"]
    assert loaded.label_spaces == net.label_spaces
    ours, theirs = head_outputs(net, SENTENCES), head_outputs(loaded, SENTENCES)
    assert set(ours) == set(theirs) == {"embeddings", "topic", "ner", "mood"}
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key
    predictions = loaded.predict(SENTENCES)
    assert predictions == net.predict(SENTENCES)
    assert set(predictions[0]) == {"text", "topic", "ner", "mood"}
    assert set(predictions[0]["mood"]["scores"]) == {"calm", "tense", "cheerful"}
    assert predictions[0]["mood"]["scores"] != predictions[0]["topic"]["scores"]


def test_export_of_a_three_task_model_keeps_every_head_and_the_plain_encoder(tmp_path) -> None:
    from sentence_transformers import SentenceTransformer

    from mtst.inference.model import MultiTaskModel

    net = three_task_network()
    net.save(tmp_path / "net")
    assert main(["export", "--checkpoint", str(tmp_path / "net"), "--out", str(tmp_path / "three")]) == 0
    exported = mtst.load(tmp_path / "three")
    assert list(exported.heads) == ["topic", "ner", "mood"]
    ours, theirs = head_outputs(net, SENTENCES), head_outputs(exported, SENTENCES)
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key
    assert exported.predict(SENTENCES) == net.predict(SENTENCES)
    # the sentence-transformers folder is the encoder alone: byte for byte what a model with
    # the same encoder and only the two default heads exports (a fresh copy: a tokenizer that
    # has run with truncation on writes that setting into its tokenizer.json)
    fresh = MultiTaskModel.load(tmp_path / "net")
    two = MultiTaskModel(fresh.encoder, {n: s for n, s in fresh.tasks.items() if n != "mood"})
    export_module.export_model(two, tmp_path / "two")
    st_three, st_two = tmp_path / "three" / export_module.ST_FOLDER, tmp_path / "two" / export_module.ST_FOLDER
    files = sorted(p.relative_to(st_three) for p in st_three.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(st_two) for p in st_two.rglob("*") if p.is_file())
    for name in files:
        assert (st_three / name).read_bytes() == (st_two / name).read_bytes(), name
    st_embeddings = SentenceTransformer(str(st_three), device="cpu").encode(SENTENCES, batch_size=4)
    np.testing.assert_allclose(st_embeddings, net.encode(SENTENCES, batch_size=3), atol=1e-5)


def test_similarity_is_the_cosine_of_the_embeddings() -> None:
    net = three_task_network()
    first, second = SENTENCES[:3], SENTENCES[2:5]
    expected = cosine(net.encode(first), net.encode(second))
    np.testing.assert_allclose(net.similarity(first, second), expected, atol=1e-5)
    assert abs(net.similarity(first[0], first[0]) - 1.0) < 1e-5  # one pair: a number
    assert -1.0 <= float(net.similarity(first[0], second[1])) <= 1.0


def write_v1_checkpoint(path: Path, drop: str | None = None, seed: int = 0) -> dict[str, Any]:
    """A checkpoint laid out as mtst 0.1 wrote it: one LightningModule with `encoder`,
    `cls_head` and `ner_head`, its settings in `hyper_parameters`, its backbone files and labels
    under `mtst` (no version). Returns the heads' weights to compute their outputs by hand."""
    from mtst.model.heads import ClassificationHead, TokenClassificationHead
    from tests.conftest import TINY

    labels = {"classes": ["travel", "politics", "other"], "entity_types": ["PER", "LOC"]}
    torch.manual_seed(seed)
    encoder = SentenceEncoder.from_pretrained(TINY, pretrained=False, pooling="weighted_mean",
                                              max_length=40)
    cls_head = ClassificationHead(encoder.hidden_size, len(labels["classes"]))
    ner_head = TokenClassificationHead(encoder.hidden_size, 1 + 2 * len(labels["entity_types"]))
    state = {**{f"encoder.{k}": v for k, v in encoder.state_dict().items()},
             **{f"cls_head.{k}": v.normal_() for k, v in cls_head.state_dict().items()},
             **{f"ner_head.{k}": v.normal_() for k, v in ner_head.state_dict().items()},
             "loss_fn.log_vars": torch.zeros(2)}  # training-only state the old module kept
    if drop:
        state.pop(drop)
    torch.save({"state_dict": state, "epoch": 1, "global_step": 10,
                "hyper_parameters": {"backbone": {"name_or_path": TINY}, "labels": labels,
                                     "pooling": "weighted_mean", "normalize": False,
                                     "max_length": 40, "dropout": 0.1},
                "mtst": {"encoder_files": encoder.to_files(), "labels": labels, "config": None}},
               path)
    return {"encoder": encoder.eval(), "cls_head": cls_head.eval(), "ner_head": ner_head.eval(),
            "labels": labels}


def test_an_mtst_0_1_checkpoint_loads_into_topic_and_ner(tmp_path) -> None:
    old = write_v1_checkpoint(tmp_path / "old.ckpt")
    model = mtst.load(tmp_path / "old.ckpt")
    assert list(model.heads) == ["topic", "ner"]
    assert model.label_spaces["topic"].names == old["labels"]["classes"]
    assert model.label_spaces["ner"].ids == ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    assert (model.encoder.pooling.mode, model.encoder.max_length) == ("weighted_mean", 40)
    batch = model.encoder.tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.inference_mode():
        states, embeddings = old["encoder"](batch["input_ids"], batch["attention_mask"])
        by_hand = {"embeddings": embeddings, "topic": old["cls_head"](embeddings),
                   "ner": old["ner_head"](states)}
        loaded = model(batch["input_ids"], batch["attention_mask"])
    for key, value in by_hand.items():
        torch.testing.assert_close(loaded[key], value, rtol=1e-5, atol=1e-5)
    assert set(model.predict(SENTENCES[0])[0]) == {"text", "topic", "ner"}


@pytest.mark.parametrize("drop", ["ner_head.out.weight", "settings"])
def test_a_damaged_mtst_0_1_checkpoint_fails_with_one_line(drop, tmp_path, capsys) -> None:
    from mtst.errors import MtstError

    path = tmp_path / "old.ckpt"
    write_v1_checkpoint(path, drop=None if drop == "settings" else drop)
    if drop == "settings":  # the settings the network is rebuilt from are gone
        checkpoint = torch.load(path, weights_only=True)
        del checkpoint["hyper_parameters"]["labels"]
        torch.save(checkpoint, path)
    with pytest.raises(MtstError, match="mtst 0.1") as caught:
        mtst.load(path)
    assert len(str(caught.value).splitlines()) == 1 and str(path) in str(caught.value)
    assert main(["predict", "-c", str(path), "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "mtst 0.1" in err, err
