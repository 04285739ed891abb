"""Security: remote code stays off unless configured, checkpoints load with weights_only=True
(also on Lightning's resume path), and nothing in a dataset is interpolated or evaluated."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from mtst.cli._hydra import CONF_DIR
from mtst.data.labels import LabelSpace
from mtst.errors import MtstError
from mtst.inference.loading import load_checkpoint_network
from mtst.model.backbone import load_tokenizer
from mtst.training.entry import backbone_settings, build_model, configured_tasks, evaluate, train
from tests.conftest import TINY_TRAIN, compose_config
from tests.reliability.helpers import default_task_files, run_python, sample_records

ONE_STEP = TINY_TRAIN + [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=1",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "~callbacks.lr_monitor",
]
HOSTILE = [
    "${oc.env:HOME}",
    "__import__('os').system('touch PWNED')",
    "!!python/object/apply:os.system ['touch PWNED']",
    "${mtst_root:}",
]


class Payload:
    """Unpickling this runs a shell command: exactly what weights_only=True refuses."""

    def __init__(self, marker: str = "PWNED") -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


SYSTEM = f"{os.system.__module__}.system"  # posix.system: the global a payload names


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
    build_model(
        cfg,
        configured_tasks(cfg),
        {
            "topic": LabelSpace("label", ["a", "b"], "topic"),
            "ner": LabelSpace("tags", ["LOC"], "ner"),
        },
    )
    assert seen and all(flag is False for flag in seen), seen
    cfg = compose_config(tmp_path, ONE_STEP + ["backbone.trust_remote_code=true"])
    assert backbone_settings(cfg)["trust_remote_code"] is True  # only when configured


def test_a_checkpoint_carrying_code_is_refused_on_resume_and_load(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "epoch": 0, "global_step": 0, "payload": Payload()}, evil)
    out = tmp_path / "run"
    out.mkdir()
    refused = f"could not be loaded safely: it holds code \\({SYSTEM}\\)"
    with pytest.raises(MtstError, match=refused):
        train(compose_config(out, ONE_STEP + [f"ckpt_path={evil}"]))  # Lightning's resume path
    with pytest.raises(MtstError, match=refused):
        load_checkpoint_network(evil)
    with pytest.raises(MtstError, match=refused):
        evaluate(compose_config(tmp_path / "eval", [f"ckpt_path={evil}"], config_name="eval"))
    assert not (tmp_path / "PWNED").exists()
    assert not (out / "metrics.json").exists()


def test_dataset_strings_are_plain_text_never_interpolated_or_evaluated(
    tmp_path, monkeypatch
) -> None:
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
    train(
        compose_config(
            out, ONE_STEP + default_task_files(data, data, data) + ["tasks.topic.labels=null"]
        )
    )

    ckpt = out / "checkpoints" / "last.ckpt"
    assert set(load_checkpoint_network(ckpt).label_spaces["topic"].names) == set(HOSTILE)
    network = torch.load(ckpt, weights_only=True)["mtst"]["network"]
    assert set(network["tasks"]["topic"]["labels"]["names"]) == set(HOSTILE)
    # the checkpoint's hyper-parameters hold the tasks config as given (classes inferred: null);
    # hparams.yaml (the loggers' flat run settings) is plain YAML data with no dataset string
    saved = torch.load(ckpt, weights_only=True)["hyper_parameters"]
    assert saved["tasks"]["topic"]["labels"] is None
    assert saved["tasks"]["topic"]["train_files"] == [str(data)]
    logged = yaml.safe_load((out / "tensorboard" / "hparams.yaml").read_text())
    assert logged["tasks"] == "topic,ner" and not set(map(str, logged.values())) & set(HOSTILE)
    # the evaluate path passes checkpoint labels to the data module: still literal
    eval_out = tmp_path / "eval"
    eval_out.mkdir()
    metrics = evaluate(
        compose_config(
            eval_out,
            [f"ckpt_path={ckpt}", "trainer.accelerator=cpu", *default_task_files(test=data)],
            config_name="eval",
        )
    )
    assert "test/topic/acc" in metrics and "test/ner/f1" in metrics
    assert not (tmp_path / "PWNED").exists() and not Path("PWNED").exists()
    assert str(Path.home()) not in json.dumps(network["tasks"])


# `mtst predict --checkpoint` on each path, in one fresh interpreter: every warning shown (not
# only the first from each place), each command's stderr captured on its own
PREDICT_EACH = """
import contextlib, io, json, logging, sys, warnings
from mtst.cli.main import main
warnings.simplefilter("always")
results = []
for path in sys.argv[1:]:
    logging.root.handlers.clear()  # main() binds its log handler to this command's stderr
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["predict", "--checkpoint", path, "A ferry to the islands."])
    results.append([code, err.getvalue()])
print(json.dumps(results))
"""


def test_refused_checkpoints_and_exports_get_one_line_and_run_nothing(
    reference_run, tmp_path
) -> None:
    from mtst.inference.export import export

    marker = tmp_path / "PWNED"
    real = reference_run[0] / "checkpoints" / "last.ckpt"
    files = {
        name: tmp_path / name
        for name in ("payload.ckpt", "payload.pkl", "truncated.ckpt", "notes.ckpt", "foreign.ckpt")
    }
    torch.save({"state_dict": {}, "payload": Payload(str(marker))}, files["payload.ckpt"])
    files["payload.pkl"].write_bytes(pickle.dumps(Payload(str(marker)), protocol=4))
    files["truncated.ckpt"].write_bytes(real.read_bytes()[: real.stat().st_size // 2])
    files["notes.ckpt"].write_text("weights are in the other folder\n")
    torch.save({"weights": torch.zeros(3)}, files["foreign.ckpt"])
    export(real, tmp_path / "export")
    exports = {}
    for name in ("truncated", "pickled", "config"):
        exports[name] = tmp_path / f"export_{name}"
        shutil.copytree(tmp_path / "export", exports[name])
    weights = "mtst/model.safetensors"
    data = (exports["truncated"] / weights).read_bytes()
    (exports["truncated"] / weights).write_bytes(data[: len(data) // 2])
    shutil.copy(files["payload.ckpt"], exports["pickled"] / weights)
    (exports["config"] / "mtst" / "mtst_config.json").write_text('{"labels": ')
    expected = [
        f"{files['payload.ckpt']}: could not be loaded safely: it holds code ({SYSTEM})",
        f"{files['payload.pkl']}: could not be loaded safely: it holds code ({SYSTEM})",
        f"{files['truncated.ckpt']}: not an mtst checkpoint (truncated or corrupt PyTorch file: ",
        f"{files['notes.ckpt']}: not an mtst checkpoint (not a PyTorch file)",
        f"{files['foreign.ckpt']}: not an mtst checkpoint (no 'state_dict' / 'mtst' entry)",
        f"{exports['truncated'] / weights}: not an mtst model (truncated or corrupt safetensors",
        f"{exports['pickled'] / weights}: not an mtst model (a PyTorch or pickle file, not "
        "safetensors; it was not unpickled)",
        f"{exports['config'] / 'mtst' / 'mtst_config.json'}: not an mtst model (invalid JSON: ",
    ]
    paths = [*files.values(), *exports.values()]
    result = run_python(["-c", PREDICT_EACH, *map(str, paths)])
    assert result.returncode == 0, result.stderr[-3000:]
    outcomes = json.loads(result.stdout.strip().splitlines()[-1])
    for (code, stderr), start in zip(outcomes, expected, strict=True):
        assert code == 2 and len(stderr.splitlines()) == 1, stderr  # no warning, no traceback
        assert stderr.startswith(f"error: {start}"), stderr
    assert not marker.exists()


def test_an_exported_model_loads_without_unpickling_anything(tmp_path, monkeypatch) -> None:
    import pickle

    import mtst
    from mtst.inference.export import export

    out = tmp_path / "run"
    out.mkdir()
    train(compose_config(out, ONE_STEP))
    folder = tmp_path / "exported"
    export(out / "checkpoints" / "last.ckpt", folder)
    expected = load_checkpoint_network(out / "checkpoints" / "last.ckpt").eval()

    def refuse(*args, **kwargs):
        raise AssertionError("an exported model must load without pickle")

    for module, name in (
        (pickle, "load"),
        (pickle, "loads"),
        (pickle, "Unpickler"),
        (torch, "load"),
    ):
        monkeypatch.setattr(module, name, refuse)
    model = mtst.load(folder)
    state = model.state_dict()
    assert [k for k, v in expected.state_dict().items() if not torch.equal(state[k], v)] == []
    assert (
        model.predict(["Ada flew to Paris"])[0]["topic"]["label"]
        in model.label_spaces["topic"].names
    )
