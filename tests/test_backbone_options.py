"""Backbone options: `attn_implementation` reaches the model or is refused in one line naming
the key; `backbone=gpt_neo_125m_random` builds GPT-Neo 125M's published architecture offline."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig

from mtst.cli._hydra import report_user_errors
from mtst.cli.train import train_task
from mtst.errors import MtstError
from mtst.model.backbone import load_backbone, load_tokenizer
from tests.conftest import TINY, TINY_TRAIN, compose_config


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A BERT-architecture config (MiniLM's family), which has an SDPA attention path."""
    folder = tmp_path_factory.mktemp("tiny_bert")
    BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=64).save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("choice", ["eager", "sdpa"])
def test_the_chosen_attention_reaches_the_model(tiny_bert, choice) -> None:
    model = load_backbone(tiny_bert, pretrained=False, attn_implementation=choice)
    assert model.config._attn_implementation == choice
    other = load_backbone(tiny_bert, pretrained=False,
                          attn_implementation="sdpa" if choice == "eager" else "eager")
    other.load_state_dict(model.state_dict())
    ids = torch.tensor([[1, 5, 7, 2], [1, 9, 2, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    # the same weights through either kernel give the same states (float64: exact enough)
    states = [m.double().eval()(input_ids=ids, attention_mask=mask).last_hidden_state
              for m in (model, other)]
    assert states[0].shape == (2, 4, 32)
    assert torch.allclose(states[0][mask.bool()], states[1][mask.bool()], atol=1e-9)


def test_null_keeps_the_librarys_default(tiny_bert) -> None:
    assert load_backbone(tiny_bert, pretrained=False).config._attn_implementation == "sdpa"
    assert load_backbone(TINY, pretrained=False).config._attn_implementation == "eager"


def test_an_architecture_without_the_kernel_is_one_line_naming_the_key(tmp_path, capsys) -> None:
    with pytest.raises(MtstError) as caught:
        load_backbone(TINY, pretrained=False, attn_implementation="sdpa")
    assert str(caught.value) == ("backbone.attn_implementation='sdpa': the gpt_neo architecture "
                                 "does not support it; choose one of null, eager, sdpa (null: the "
                                 "library's default)")
    cfg = compose_config(tmp_path, TINY_TRAIN + ["backbone.attn_implementation=sdpa"])
    with pytest.raises(SystemExit):
        report_user_errors(train_task)(cfg)
    err = capsys.readouterr().err.strip()
    assert err == f"error: {caught.value}"
    with pytest.raises(MtstError, match="attn_implementation='flash': unknown; choose one of null"):
        load_backbone(TINY, pretrained=False, attn_implementation="flash")


def test_gpt_neo_125m_random_is_the_published_architecture(tmp_path) -> None:
    cfg = compose_config(tmp_path, ["backbone=gpt_neo_125m_random"])
    assert cfg.backbone.pretrained is False  # random weights: nothing is downloaded
    torch.manual_seed(0)
    model = load_backbone(cfg.backbone.name_or_path, pretrained=False)
    c = model.config
    assert (c.num_layers, c.hidden_size, c.num_heads, c.window_size) == (12, 768, 12, 256)
    assert (c.vocab_size, c.max_position_embeddings) == (50257, 2048)
    assert c.attention_layers == ["global", "local"] * 6
    params = sum(p.numel() for p in model.parameters())
    assert 124e6 < params < 126e6  # published: 125M (GPTNeoModel, embeddings included)
    tokenizer = load_tokenizer(cfg.backbone.name_or_path)
    ids = tokenizer(["Paris is in France ."], return_tensors="pt")
    assert int(ids["input_ids"].max()) < c.vocab_size
    with torch.no_grad():
        states = model(**ids).last_hidden_state
    assert states.shape[-1] == 768 and bool(torch.isfinite(states).all())
