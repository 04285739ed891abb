"""The fp32 clipping path scales gradients exactly as `torch.nn.utils.clip_grad_norm_` does, and
the training step takes it only where Lightning's precision plugin would add nothing."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch.plugins.precision import MixedPrecision, Precision

from mtst.training.clipping import clip_grad_norm, clips_directly


def parameters(seed: int) -> list[torch.nn.Parameter]:
    generator = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(shape, generator=generator))
              for shape in ((64, 32), (32,), (9, 384), (9,), (5, 5))]
    for p in params[:-1]:  # the last one is frozen: no gradient
        p.grad = torch.randn(p.shape, generator=generator) * 3
    return params


@pytest.mark.parametrize("max_norm", [0.5, 1.0, 1e6])
def test_clipping_matches_torch_bit_for_bit(max_norm: float) -> None:
    ours, theirs = parameters(0), parameters(0)
    optimizer = torch.optim.AdamW([{"params": ours[:2]}, {"params": ours[2:]}])
    total = clip_grad_norm(optimizer, max_norm)
    expected = torch.nn.utils.clip_grad_norm_(theirs, max_norm)
    assert torch.equal(total, expected)
    for a, b in zip(ours, theirs, strict=True):
        assert (a.grad is None) == (b.grad is None)
        assert a.grad is None or torch.equal(a.grad, b.grad)
    if max_norm < 1e6:  # the norm was above the bound: now it is the bound
        after = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in ours[:-1]]))
        assert after == pytest.approx(max_norm, rel=1e-5)


def test_nothing_to_clip_without_gradients() -> None:
    frozen = torch.nn.Parameter(torch.ones(3))
    assert clip_grad_norm(torch.optim.SGD([frozen], lr=0.1), 1.0) is None


def test_only_full_precision_clips_directly() -> None:
    class Trainer:
        def __init__(self, plugin) -> None:
            self.precision_plugin = plugin

    assert clips_directly(Trainer(Precision()))
    assert not clips_directly(Trainer(MixedPrecision("bf16-mixed", "cpu")))
    assert not clips_directly(object())


def test_a_fp32_training_step_clips_without_lightnings_path(monkeypatch) -> None:

    from mtst.training import clipping

    calls = {"ours": 0, "torch": 0}
    ours, theirs = clipping.clip_grad_norm, torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(clipping, "clip_grad_norm", lambda *a: calls.__setitem__("ours", calls["ours"] + 1) or ours(*a))
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_",
                        lambda *a, **k: calls.__setitem__("torch", calls["torch"] + 1) or theirs(*a, **k))
    from mtst.training import module as module_file
    monkeypatch.setattr(module_file, "clip_grad_norm", clipping.clip_grad_norm)
    from tests.test_freezing import make_datamodule, make_model, make_trainer

    dm = make_datamodule(train_stop=16)
    model = make_model(dm, {"name": "backbone"})
    make_trainer(1, batches=2).fit(model, datamodule=dm)
    assert calls == {"ours": 2, "torch": 0}
