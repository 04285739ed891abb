"""Feature cache of a frozen encoder: the heads get exactly the gradients recomputation gives
(float32 cache; fp16 up to its rounding), later epochs are served from memory, the cache is
dropped when the encoder starts training, and its size cap holds."""

from __future__ import annotations

import pytest
import torch

from mtst.data.store import IGNORE
from mtst.freezing.feature_cache import FeatureCache
from mtst.freezing.strategies import build_freeze_strategy
from tests.conftest import freeze_config
from tests.test_freezing import (
    make_datamodule,
    make_model,
    make_trainer,
)


@pytest.fixture(scope="module")
def dm():
    return make_datamodule(train_stop=24, val_stop=16)  # 3 train batches, 2 val batches of 8


def head_grads(model, strategy, batch, seed: int = 7, token_rows: bool = False
               ) -> dict[str, torch.Tensor]:
    """Gradients of the heads for one batch, with the encoder outputs from `strategy` (the token
    head at the labelled sub-tokens only with `token_rows`)."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # same dropout masks in the heads every time
    rows = labelled_rows(batch) if token_rows else None
    model.compute_loss(batch, strategy.forward(model, batch, rows))[0].backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def labelled_rows(batch) -> torch.Tensor:
    return (batch["ner.labels"] != IGNORE).flatten().nonzero().flatten()


@pytest.mark.parametrize("token_rows", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_cached_features_give_the_gradients_of_recomputation(dm, dtype: str, token_rows: bool) -> None:
    model = make_model(dm, freeze_config("backbone"))
    recompute = build_freeze_strategy(freeze_config("backbone", cache_features=False))
    cached = build_freeze_strategy(freeze_config("backbone", cache_features=True, cache_dtype=dtype))
    recompute.apply(model, 0)
    cached.apply(model, 0)
    for batch in dm.train_dataloader():
        expected = head_grads(model, recompute, batch, token_rows=token_rows)
        assert expected and all(not n.startswith("net.encoder.") for n in expected)
        assert {n.split(".")[2] for n in expected} == {"topic", "ner", "mood"}, "every head learns"
        head_grads(model, cached, batch, token_rows=token_rows)  # fills the cache
        misses = cached.cache.misses
        served = head_grads(model, cached, batch, token_rows=token_rows)
        assert cached.cache.misses == misses, "the second visit is served from the cache"
        assert served.keys() == expected.keys()
        for name, grad in expected.items():
            if dtype == "float32":
                assert torch.equal(served[name], grad), name
            else:
                torch.testing.assert_close(served[name], grad, rtol=2e-2, atol=2e-3)
    assert cached.cache.hits == 3


def test_epochs_after_the_first_are_served_from_the_cache(dm) -> None:
    model = make_model(dm, freeze_config("backbone", cache_features=True))
    make_trainer(3, limit_val_batches=2).fit(model, datamodule=dm)
    cache = model.freezer.cache
    assert cache.count("train") == 24 and cache.count("val") == 16
    # epoch 1 computes (3 train + 2 val batches); epochs 2 and 3 are served
    assert (cache.misses, cache.hits) == (5, 10)
    # fp16 token states of every real token plus one embedding per example
    hidden = model.net.encoder.hidden_size
    tokens = sum(int(b["attention_mask"].sum()) + len(b["attention_mask"])
                 for loader in (dm.train_dataloader(), dm.val_dataloader()) for b in loader)
    assert cache.nbytes == tokens * hidden * 2


def test_a_frozen_encoder_runs_the_token_head_at_the_labelled_subtokens_only(dm) -> None:
    model = make_model(dm, freeze_config("backbone", cache_features=True), dropout=0.0)
    model.freezer.apply(model, 0)
    for visit in range(2):  # computed (the full pass; the packed one is then served), then served
        for batch in dm.train_dataloader():
            rows = model.loss_rows(batch)
            assert torch.equal(rows, labelled_rows(batch))
            assert 0 < len(rows) < batch["ner.labels"].numel()
            full, packed = model.encode_batch(batch), model.encode_batch(batch, for_loss=True)
            assert packed["ner"].shape == (len(rows), full["ner"].size(-1))
            torch.testing.assert_close(packed["ner"], full["ner"].flatten(0, 1)[rows])
            for task in ("topic", "mood"):
                assert torch.equal(packed[task], full[task])
            grads = []
            for outputs in (full, packed):
                model.zero_grad(set_to_none=True)
                total, terms = model.compute_loss(batch, outputs)
                total.backward()
                grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
                grads[-1]["loss"] = terms["ner"]
            assert grads[0].keys() == grads[1].keys()
            for name, grad in grads[0].items():  # the same sums, in another order
                torch.testing.assert_close(grads[1][name], grad, rtol=1e-5, atol=1e-7)
        assert model.freezer.cache.hits == 3 + 6 * visit


def test_the_token_head_runs_on_every_position_while_the_encoder_trains(dm) -> None:
    model = make_model(dm, freeze_config("none"))
    model.freezer.apply(model, 0)
    batch = next(iter(dm.train_dataloader()))
    assert model.loss_rows(batch) is None
    assert model.encode_batch(batch, for_loss=True)["ner"].shape[:2] == batch["ner.labels"].shape


def test_cache_is_dropped_when_the_encoder_starts_training(dm) -> None:
    model = make_model(dm, freeze_config("gradual", stage1_epochs=1, cache_features=True))
    batch = next(iter(dm.train_dataloader()))
    strategy = model.freezer
    strategy.apply(model, 0)
    strategy.forward(model, batch)
    assert len(strategy.cache) == 8 and not model.net.encoder.training
    strategy.apply(model, 1)  # stage 2: the top block trains
    assert len(strategy.cache) == 0 and model.net.encoder.training
    out = strategy.forward(model, batch)
    assert all(out[task].grad_fn is not None for task in ("topic", "ner", "mood"))
    out["mood"].sum().backward()
    assert model.net.encoder.backbone.h[1].mlp.c_fc.weight.grad is not None
    assert len(strategy.cache) == 0, "nothing is cached while the encoder trains"


def test_size_cap_stores_what_fits_and_recomputes_the_rest(dm) -> None:
    batch = next(iter(dm.train_dataloader()))
    states = torch.randn(8, batch["input_ids"].size(1), 64)
    emb = torch.randn(8, 64)
    row_bytes = [(int(n) + 1) * 64 * 2 for n in batch["attention_mask"].sum(1)]  # fp16 states + emb
    cache = FeatureCache("float16", max_mb=(sum(row_bytes[:3]) + 1) / 2**20)
    calls = []

    def compute():
        calls.append(1)
        return states, emb

    first = cache.features("train", batch, compute)
    assert len(cache) == 3 and cache.nbytes == sum(row_bytes[:3]) <= cache.max_bytes
    again = cache.features("train", batch, compute)  # not all examples cached: recomputed
    assert len(calls) == 2
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a, b)
        assert torch.equal(a, a.half().float())  # what the heads see is the stored precision


def test_other_examples_under_the_same_index_are_recomputed_not_served(dm) -> None:
    batch = next(iter(dm.train_dataloader()))
    other = dict(batch, input_ids=batch["input_ids"].flip(0), attention_mask=batch["attention_mask"].flip(0))
    hidden = 64
    cache = FeatureCache("float32")
    first = (torch.randn(8, batch["input_ids"].size(1), hidden), torch.randn(8, hidden))
    second = (torch.randn(8, batch["input_ids"].size(1), hidden), torch.randn(8, hidden))
    cache.features("val", batch, lambda: first)
    served = cache.features("val", other, lambda: second)  # same example_index, other token ids
    assert (cache.hits, cache.misses) == (0, 2)
    assert torch.equal(served[1], second[1])
    assert len(cache) == 8  # replaced, not added
    assert cache.nbytes == (int(batch["attention_mask"].sum()) + 8) * hidden * 4
    assert torch.equal(cache.features("val", other, lambda: first)[1], second[1])
    assert cache.hits == 1


def test_examples_with_the_same_ids_in_another_order_are_recomputed() -> None:
    a, b = 11, 42  # [a, b, b, a] and [b, a, a, b]: same length, id sum and position-weighted sum

    def batch(ids: list[int], width: int) -> dict[str, torch.Tensor]:
        pad = width - len(ids)
        return {"input_ids": torch.tensor([ids + [0] * pad]),
                "attention_mask": torch.tensor([[1] * len(ids) + [0] * pad]),
                "example_index": torch.tensor([0])}

    def features(width: int, fill: float):
        return lambda: (torch.full((1, width, 4), fill), torch.full((1, 4), fill))

    cache = FeatureCache("float32")
    cache.features("val", batch([a, b, b, a], 6), features(6, 1.0))
    served = cache.features("val", batch([b, a, a, b], 6), features(6, 2.0))
    assert (cache.hits, cache.misses) == (0, 2)
    assert torch.equal(served[1], torch.full((1, 4), 2.0))
    # the same example padded to another batch length is still served from the cache
    served = cache.features("val", batch([b, a, a, b], 9), features(9, 3.0))
    assert cache.hits == 1 and served[0].shape == (1, 9, 4)
    assert torch.equal(served[1], torch.full((1, 4), 2.0))


def test_a_batch_holding_an_example_twice_stores_it_once() -> None:
    batch = {"input_ids": torch.tensor([[5, 6, 7], [8, 9, 0], [5, 6, 7]]),
             "attention_mask": torch.tensor([[1, 1, 1], [1, 1, 0], [1, 1, 1]]),
             "example_index": torch.tensor([3, 1, 3])}
    states, emb = torch.randn(3, 3, 4), torch.randn(3, 4)
    states[2], emb[2] = states[0], emb[0]  # a frozen encoder: the same example, the same outputs
    cache = FeatureCache("float32")
    cache.features("train", batch, lambda: (states, emb))
    assert len(cache) == 2 and cache.nbytes == (3 + 1 + 2 + 1) * 4 * 4

    def recompute():
        raise AssertionError("every example is cached")

    served_states, served_emb = cache.features("train", batch, recompute)
    assert cache.hits == 1 and torch.equal(served_emb, emb)
    assert torch.equal(served_states[:, :2], states[:, :2]) and torch.equal(served_states[0], states[0])
    assert torch.equal(served_states[1, 2], torch.zeros(4)), "padding is served as zeros"


def test_replaced_entries_are_dropped_once_they_outweigh_the_live_ones() -> None:
    hidden, rows, width = 256, 8, 16
    cache = FeatureCache("float32")
    ids = torch.randint(1, 1000, (rows, width))
    batch = {"attention_mask": torch.ones(rows, width, dtype=torch.long),
             "example_index": torch.arange(rows)}
    live = rows * (width + 1) * hidden * 4
    for version in range(12):  # every pass holds other examples under the same indices
        batch["input_ids"] = ids + version
        outputs = (torch.randn(rows, width, hidden), torch.randn(rows, hidden))
        cache.features("val", batch, lambda o=outputs: o)
    table = cache.tables["val"]
    assert cache.nbytes == live and len(cache) == rows
    assert table.dead_bytes <= max(live, 2**20)  # compacted on the way: 12 passes would be 11x
    assert table.states.size - 1 < 12 * rows * width
    served = cache.features("val", batch, lambda: outputs)
    assert cache.hits == 1 and torch.equal(served[0], outputs[0]) and torch.equal(served[1], outputs[1])


def test_a_truncated_or_left_padded_batch_of_stored_examples_is_recomputed() -> None:
    def batch(ids: list[int], width: int, left: bool = False) -> dict[str, torch.Tensor]:
        pad, real = [0] * (width - len(ids)), [1] * len(ids)
        return {"input_ids": torch.tensor([pad + ids if left else ids + pad]),
                "attention_mask": torch.tensor([[0] * len(pad) + real if left else real + [0] * len(pad)]),
                "example_index": torch.tensor([0])}

    def features(width: int, fill: float):
        return lambda: (torch.full((1, width, 4), fill), torch.full((1, 4), fill))

    cache = FeatureCache("float32")
    cache.features("val", batch([5, 6, 7, 8], 6), features(6, 1.0))
    assert cache.features("val", batch([5, 6, 7, 8], 4), features(4, 9.0))[1][0, 0] == 1.0  # served
    assert cache.features("val", batch([5, 6, 7], 3), features(3, 2.0))[1][0, 0] == 2.0  # truncated
    assert cache.features("val", batch([5, 6, 7], 5, left=True), features(5, 3.0))[1][0, 0] == 3.0
    assert (cache.hits, cache.misses) == (1, 3)
