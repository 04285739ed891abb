"""Security: remote code stays off unless configured, checkpoints load with weights_only=True
(also on Lightning's resume path), and nothing in a dataset is interpolated or evaluated."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import yaml

from mtst.cli._hydra import CONF_DIR
from mtst.errors import MtstError
from mtst.model.backbone import load_tokenizer
from mtst.model.multitask import MultiTaskModel
from mtst.training.pipeline import backbone_settings, build_model, evaluate, train
from tests.conftest import TINY_TRAIN, compose_config
from tests.reliability.helpers import sample_records

ONE_STEP = TINY_TRAIN + ["trainer.max_epochs=1", "trainer.limit_train_batches=1",
                         "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
                         "~callbacks.lr_monitor"]
HOSTILE = ["${oc.env:HOME}", "__import__('os').system('touch PWNED')",
           "!!python/object/apply:os.system ['touch PWNED']", "${mtst_root:}"]


class Payload:
    """Unpickling this runs a shell command: exactly what weights_only=True refuses."""

    def __reduce__(self):
        return (os.system, ("touch PWNED",))


@pytest.mark.parametrize("backbone", sorted(p.stem for p in (CONF_DIR / "backbone").glob("*.yaml")))
def test_every_backbone_config_keeps_remote_code_off(tmp_path, backbone) -> None:
    cfg = compose_config(tmp_path, [f"backbone={backbone}"])
    assert backbone_settings(cfg)["trust_remote_code"] is False


def test_the_pipeline_hands_trust_remote_code_false_to_transformers(tmp_path, monkeypatch) -> None:
    import transformers

    seen: list[object] = []
    for cls in (transformers.AutoTokenizer, transformers.AutoConfig):
        real = cls.from_pretrained

        def spy(*args, _real=real, **kwargs):
            seen.append(kwargs.get("trust_remote_code", "absent"))
            return _real(*args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", spy)
    cfg = compose_config(tmp_path, ONE_STEP)
    load_tokenizer(**backbone_settings(cfg))
    build_model(cfg, {"classes": ["a", "b"], "entity_types": ["LOC"]})
    assert seen and all(flag is False for flag in seen), seen
    cfg = compose_config(tmp_path, ONE_STEP + ["backbone.trust_remote_code=true"])
    assert backbone_settings(cfg)["trust_remote_code"] is True  # only when configured


def test_a_checkpoint_carrying_code_is_refused_on_resume_and_load(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "epoch": 0, "global_step": 0, "payload": Payload()}, evil)
    out = tmp_path / "run"
    out.mkdir()
    with pytest.raises(MtstError, match="could not be loaded safely"):
        train(compose_config(out, ONE_STEP + [f"ckpt_path={evil}"]))  # Lightning's resume path
    with pytest.raises(MtstError, match="could not be loaded safely"):
        MultiTaskModel.from_checkpoint(evil)
    with pytest.raises(MtstError, match="could not be loaded safely"):
        evaluate(compose_config(tmp_path / "eval", [f"ckpt_path={evil}"], config_name="eval"))
    assert not (tmp_path / "PWNED").exists()
    assert not (out / "metrics.json").exists()


def test_dataset_strings_are_plain_text_never_interpolated_or_evaluated(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    records = []
    for i, r in enumerate(sample_records("train", 24)):
        hostile = HOSTILE[i % len(HOSTILE)]
        records.append({"text": f"{hostile} {' '.join(r['tokens'])}", "label": hostile})
    for r in sample_records("train", 8):
        records.append({"tokens": r["tokens"] + [HOSTILE[0]], "ner_tags": r["ner_tags"] + ["O"]})
    data = tmp_path / "hostile.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    out = tmp_path / "run"
    out.mkdir()
    train(compose_config(out, ONE_STEP + [
        f"data.train_files=[{data}]", f"data.val_files=[{data}]", f"data.test_files=[{data}]",
        "data.labels.classes=null"]))

    ckpt = out / "checkpoints" / "last.ckpt"
    assert set(MultiTaskModel.from_checkpoint(ckpt).label_space.classes) == set(HOSTILE)
    saved = yaml.safe_load((out / "tensorboard" / "hparams.yaml").read_text())
    assert set(saved["labels"]["classes"]) == set(HOSTILE)
    # the evaluate path passes checkpoint labels to the data module: still literal
    eval_out = tmp_path / "eval"
    eval_out.mkdir()
    metrics = evaluate(compose_config(eval_out, [f"ckpt_path={ckpt}", f"data.test_files=[{data}]",
                                                 "trainer.accelerator=cpu"], config_name="eval"))
    assert "test/cls_acc" in metrics
    assert not (tmp_path / "PWNED").exists() and not Path("PWNED").exists()
    assert str(Path.home()) not in json.dumps(torch.load(ckpt, weights_only=True)["mtst"]["labels"])


def test_an_exported_model_loads_without_unpickling_anything(tmp_path, monkeypatch) -> None:
    import pickle

    import mtst
    from mtst.inference.export import export

    out = tmp_path / "run"
    out.mkdir()
    train(compose_config(out, ONE_STEP))
    folder = tmp_path / "exported"
    export(out / "checkpoints" / "last.ckpt", folder)
    expected = MultiTaskModel.from_checkpoint(out / "checkpoints" / "last.ckpt").eval()

    def refuse(*args, **kwargs):
        raise AssertionError("an exported model must load without pickle")

    for module, name in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"),
                         (torch, "load")):
        monkeypatch.setattr(module, name, refuse)
    model = mtst.load(folder)
    state = model.state_dict()
    assert [k for k, v in expected.state_dict().items() if not torch.equal(state[k], v)] == []
    assert model.predict(["Ada flew to Paris"])[0]["topic"]["label"] in model.label_space.classes
