"""`freeze=lora`: which layers get adapters, settings errors, and the trained model without peft:
a checkpoint's adapters fold into plain weights that give the unmerged model's outputs, and the
exported folders load in `mtst.load` and sentence-transformers with peft unimportable."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mtst.checkpoints.file_io import load_checkpoint
from mtst.errors import MtstError
from mtst.freezing.strategies import build_freeze_strategy
from mtst.model.adapters import merge_lora
from mtst.training.entry import train
from tests.conftest import TINY_TRAIN, compose_config, freeze_config, make_datamodule, make_module

ROOT = Path(__file__).resolve().parents[1]
PER_BLOCK = ("attn.attention.q_proj", "attn.attention.k_proj", "attn.attention.v_proj",
             "attn.attention.out_proj", "mlp.c_fc", "mlp.c_proj")


@pytest.fixture(scope="module")
def dm():
    return make_datamodule()


def adapted(module) -> set[str]:
    """Backbone module names holding a LoRA adapter, read from the parameters."""
    return {n.split(".lora_A.")[0].removeprefix("net.encoder.backbone.")
            for n, _ in module.named_parameters() if ".lora_A." in n}


def test_gpt_neo_defaults_adapt_attention_and_mlp_of_the_chosen_blocks(dm) -> None:
    everything = make_module(dm, freeze_config("lora"))
    blocks = len(everything.net.encoder.backbone.h)
    assert blocks >= 2
    assert adapted(everything) == {f"h.{i}.{leaf}" for i in range(blocks) for leaf in PER_BLOCK}
    top = make_module(dm, freeze_config("lora", lora={"layers": 1}))
    assert adapted(top) == {f"h.{blocks - 1}.{leaf}" for leaf in PER_BLOCK}
    chosen = make_module(dm, freeze_config("lora", lora={"layers": [0], "target_modules": ["q_proj", "c_fc"]}))
    assert adapted(chosen) == {"h.0.attn.attention.q_proj", "h.0.mlp.c_fc"}
    # the adapters' shapes follow the rank; the base weights keep their names under base_layer
    names = dict(chosen.named_parameters())
    hidden = chosen.net.encoder.hidden_size
    assert names["net.encoder.backbone.h.0.attn.attention.q_proj.lora_A.default.weight"].shape == (8, hidden)
    assert "net.encoder.backbone.h.0.attn.attention.q_proj.base_layer.weight" in names


def test_bert_defaults_leave_the_unused_pooler_alone() -> None:
    from transformers import BertConfig, BertModel

    backbone = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2,
                                    num_attention_heads=2, intermediate_size=32))
    names = build_freeze_strategy(freeze_config("lora")).target_names(backbone)
    leaves = ("attention.self.query", "attention.self.key", "attention.self.value",
              "attention.output.dense", "intermediate.dense", "output.dense")
    assert set(names) == {f"encoder.layer.{i}.{leaf}" for i in range(2) for leaf in leaves}


@pytest.mark.parametrize(("settings", "message"), [
    ({"r": 0}, "freeze.lora.r=0: expected an integer rank >= 1"),
    ({"rank": 4}, "freeze.lora.rank: no such setting; LoRA takes r, alpha, dropout"),
    ({"alpha": -1}, "freeze.lora.alpha=-1"),
    ({"dropout": 1.0}, r"freeze.lora.dropout=1.0: expected a probability in \[0, 1\)"),
    ({"dropout": False}, r"freeze.lora.dropout=False: expected a probability in \[0, 1\)"),
    ({"layers": 0}, "freeze.lora.layers=0"),
    ({"target_modules": "q_proj"}, "freeze.lora.target_modules='q_proj': expected a list"),
])
def test_bad_settings_are_one_line_errors(settings, message) -> None:
    with pytest.raises(MtstError, match=message):
        build_freeze_strategy(freeze_config("lora", lora=settings))


def test_settings_that_do_not_fit_the_backbone_name_what_it_has(dm) -> None:
    with pytest.raises(MtstError, match=r"'query' is no linear layer in the blocks of GPTNeoModel; "
                                        r"they have c_fc, c_proj, k_proj"):
        make_module(dm, freeze_config("lora", lora={"target_modules": ["query"]}))
    with pytest.raises(MtstError, match=r"freeze.lora.layers=9: the backbone has 2 blocks"):
        make_module(dm, freeze_config("lora", lora={"layers": 9}))
    with pytest.raises(MtstError, match=r"freeze.lora.layers: block 5 does not exist \(blocks 0..1\)"):
        make_module(dm, freeze_config("lora", lora={"layers": [5]}))


def test_merging_is_the_layer_plus_the_scaled_low_rank_update() -> None:
    generator = torch.Generator().manual_seed(0)
    layer = torch.nn.Linear(6, 5).double()
    a, b = torch.randn(2, 6, generator=generator, dtype=torch.float64), torch.randn(5, 2, generator=generator, dtype=torch.float64)
    state = {"l.base_layer.weight": layer.weight.detach(), "l.base_layer.bias": layer.bias.detach(),
             "l.lora_A.default.weight": a, "l.lora_B.default.weight": b, "other": torch.ones(3)}
    merged = merge_lora(state, {"kind": "lora", "scaling": 0.5}, "x.ckpt")
    assert set(merged) == {"l.weight", "l.bias", "other"}
    x = torch.randn(4, 6, generator=generator, dtype=torch.float64)
    unmerged = layer(x) + 0.5 * (x @ a.T) @ b.T
    torch.testing.assert_close(x @ merged["l.weight"].T + merged["l.bias"], unmerged)
    with pytest.raises(MtstError, match="x.ckpt: LoRA layer l lacks 'l.lora_B.default.weight'"):
        merge_lora({k: v for k, v in state.items() if "lora_B" not in k},
                   {"kind": "lora", "scaling": 0.5}, "x.ckpt")


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory) -> Path:
    """A tiny LoRA run (adapters trained 6 steps, so B @ A is not zero)."""
    run = tmp_path_factory.mktemp("lora_run")
    train(compose_config(run, TINY_TRAIN + ["freeze=lora", "freeze.lora.r=4",
                                            "trainer.max_epochs=2", "run_test=false"]))
    return run


def test_the_checkpoint_merges_into_the_model_it_trained(lora_run) -> None:
    import mtst
    from mtst.training.entry import build_model, configured_tasks

    checkpoint = load_checkpoint(lora_run / "checkpoints" / "last.ckpt")
    state = checkpoint["state_dict"]
    deltas = [k for k in state if ".lora_B." in k]
    assert deltas and all(float(state[k].abs().max()) > 0 for k in deltas)  # trained adapters
    assert checkpoint["mtst"]["adapters"] == {"kind": "lora", "scaling": 16 / 4, "adapter": "default"}
    merged = mtst.load(lora_run / "checkpoints" / "last.ckpt")
    assert not any(".lora_" in n or "base_layer" in n for n, _ in merged.named_parameters())
    # the unmerged model: the LightningModule as training builds it, with the checkpoint's state
    cfg = compose_config(lora_run, TINY_TRAIN + ["freeze=lora", "freeze.lora.r=4"])
    module = build_model(cfg, configured_tasks(cfg), merged.label_spaces)
    module.load_state_dict(state)
    module.eval()
    sentences = ["Paris is lovely in spring .", "The senate passed the bill on Monday ."]
    batch = merged.encoder.tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        want = module.net(batch["input_ids"], batch["attention_mask"])
        got = merged(batch["input_ids"], batch["attention_mask"])
    compared = [k for k in want if want[k].is_floating_point() and want[k].ndim >= 2]
    assert "embeddings" in compared and len(compared) >= 3  # the embedding and each head
    for key in compared:
        a, b = want[key].flatten(1).double(), got[key].flatten(1).double()
        assert float(F.cosine_similarity(a, b).min()) >= 0.99999, key


def test_exported_lora_model_loads_without_peft(lora_run, tmp_path) -> None:
    from mtst.cli.main import main

    out = tmp_path / "export"
    assert main(["export", "--checkpoint", str(lora_run / "checkpoints" / "last.ckpt"), "--out", str(out)]) == 0
    script = textwrap.dedent(f"""
        import json, sys
        sys.modules["peft"] = None  # `import peft` now fails: nothing below may need it
        import mtst
        from sentence_transformers import SentenceTransformer
        sentences = ["Paris is lovely in spring ."]
        a = mtst.load({str(out)!r}).encode(sentences)
        b = mtst.load({str(lora_run / 'checkpoints' / 'last.ckpt')!r}).encode(sentences)
        c = SentenceTransformer({str(out / 'sentence-transformers')!r}, device="cpu").encode(sentences)
        assert "peft" not in {{m.split(".")[0] for m in sys.modules if sys.modules[m] is not None}}
        print(json.dumps([a.tolist(), b.tolist(), c.tolist()]))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
                          env={"HF_HUB_OFFLINE": "1", "PATH": "", "PYTHONWARNINGS": "ignore"},
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    a, b, c = (torch.tensor(v, dtype=torch.float64) for v in json.loads(proc.stdout.splitlines()[-1]))
    assert float(F.cosine_similarity(a, b).min()) >= 0.99999  # export = the checkpoint
    assert float(F.cosine_similarity(a, c).min()) >= 0.99999  # sentence-transformers = mtst
