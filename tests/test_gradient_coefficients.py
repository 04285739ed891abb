"""A gradient method's coefficients reach the gradients: after the training step's combination
(`GradientWeighting.step`, through `mtst.weighting.combination.combined_loss`) the shared
parameters hold sum_i c_i g_i with the coefficients c the method returned, not the plain sum
that fixed weighting would give.

Two levels: hand-made task gradients through the method's `step` (a one-embedding encoder whose
gradient is the representation's gradient itself, with PCGrad's and Nash-MTL's coefficients
written out by hand), and the tiny GPT-Neo model's three tasks through `training_step`.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from mtst.freezing.cut import cut_forward
from mtst.weighting import build_weighting
from mtst.weighting.step import SharedPart, TaskLosses
from tests.conftest import make_datamodule, make_module, sample_tasks, weighting_config

# ---- hand-made gradients -------------------------------------------------------------------
# Two tasks on token states of shape [1 row, 2 tokens, 2 dims]; task i's loss is
# sum(A_i * states), so its gradient on the states is w_i A_i whatever the states are.
A1 = torch.tensor([[[1.0, 2.0], [0.0, 1.0]]], dtype=torch.float64)
A2 = torch.tensor([[[-1.0, 0.0], [1.0, -1.0]]], dtype=torch.float64)  # <A1, A2> = -2: conflict
A3 = torch.tensor([[[2.0, -1.0], [1.0, 0.0]]], dtype=torch.float64)  # <A1, A3> = 0: orthogonal
WEIGHTS = [2.0, 0.5]


class LinearTask:
    """loss = sum(direction * token states): a known gradient on the representation."""

    def __init__(self, name: str, direction: torch.Tensor) -> None:
        self.name, self.direction = name, direction

    def loss(self, batch, outputs) -> torch.Tensor:
        return (self.direction * outputs["token_states"]).sum()

    def has(self, batch) -> torch.Tensor:
        return torch.ones(batch["input_ids"].size(0), dtype=torch.bool)


class LookupEncoder(nn.Module):
    """Token states = rows of one trainable table, each token its own row: the table's gradient
    is the states' gradient, row for row (so task gradients on the parameters are the A_i)."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(2, 2, dtype=torch.float64))

    def forward(self, input_ids, attention_mask):
        states = self.table[input_ids]
        return states, self.pooling(states, attention_mask)

    def pooling(self, states, attention_mask):
        return states.mean(1)


class HandForward:
    """The `Forward` a method's step gets, over the lookup encoder and the linear tasks."""

    freeze = "none"

    def __init__(self, directions: list[torch.Tensor]) -> None:
        self.net = SimpleNamespace(
            encoder=LookupEncoder(), run_heads=lambda states, embeddings: {"token_states": states}
        )
        self.freezer = SimpleNamespace(
            encoder_states=lambda module, ids, mask, index, side: module.net.encoder(ids, mask)
        )
        self.tasks = {f"t{i}": LinearTask(f"t{i}", d) for i, d in enumerate(directions)}

    def losses(self) -> TaskLosses:
        raise AssertionError("a gradient method with a trainable encoder takes the cut forward")

    def cut(self) -> SharedPart:
        batch = hand_batch()
        states, cuts, outputs = cut_forward(self.freezer, self, batch)
        tasks = list(self.tasks.values())
        losses = TaskLosses(torch.stack([t.loss(batch, outputs) for t in tasks]),
                            torch.stack([t.has(batch).any() for t in tasks]), tuple(self.tasks))
        rows = torch.stack([t.has(batch) for t in tasks])
        return SharedPart(losses, states, cuts, list(self.net.encoder.parameters()), rows)


def hand_batch() -> dict[str, torch.Tensor]:
    return {
        "input_ids": torch.tensor([[0, 1]]),
        "attention_mask": torch.ones(1, 2, dtype=torch.long),
        "example_index": torch.tensor([0]),
        "pair_rows": torch.zeros(0, dtype=torch.long),
    }


def shared_gradient(directions: list[torch.Tensor], method: str, grad_on: str) -> torch.Tensor:
    weighting = build_weighting(weighting_config(method), WEIGHTS, grad_on).double()
    forward = HandForward(directions)
    weighting.step(forward, 0).backward.backward()
    table = forward.net.encoder.table
    return table.grad[hand_batch()["input_ids"][0]].unsqueeze(0)  # back to [1, 2, 2], row per token


def dot(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a * b).sum())


@pytest.mark.parametrize("grad_on", ["representation", "parameters"])
def test_pcgrad_on_two_conflicting_gradients_gives_the_projected_sum(grad_on: str) -> None:
    g1, g2 = WEIGHTS[0] * A1, WEIGHTS[1] * A2
    d = dot(g1, g2)
    assert d < 0  # the premise: the two gradients conflict
    # PCGrad by hand: g1_pc = g1 - d/|g2|^2 g2, g2_pc = g2 - d/|g1|^2 g1, update g1_pc + g2_pc
    c1, c2 = 1 - d / dot(g1, g1), 1 - d / dot(g2, g2)
    expected = (g1 - d / dot(g2, g2) * g2) + (g2 - d / dot(g1, g1) * g1)
    torch.testing.assert_close(expected, c1 * g1 + c2 * g2)
    got = shared_gradient([A1, A2], "pcgrad", grad_on)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    # what fixed weighting would give differs by far more than the tolerance
    assert float((got - (g1 + g2)).abs().max()) > 0.5


@pytest.mark.parametrize("grad_on", ["representation", "parameters"])
def test_nash_mtl_on_two_orthogonal_gradients_gives_each_the_inverse_of_its_norm(
    grad_on: str,
) -> None:
    g1, g3 = WEIGHTS[0] * A1, WEIGHTS[1] * A3
    assert dot(g1, g3) == 0.0
    # G alpha = 1/alpha with G diagonal: alpha_i = 1/|g_i|; then |sum alpha_i g_i| = sqrt(2) is
    # clipped to max_norm = 1 (the default): alpha_i = 1 / (sqrt(2) |g_i|)
    n1, n3 = math.sqrt(dot(g1, g1)), math.sqrt(dot(g3, g3))
    expected = g1 / (math.sqrt(2) * n1) + g3 / (math.sqrt(2) * n3)
    got = shared_gradient([A1, A3], "nash_mtl", grad_on)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)
    assert float((got - (g1 + g3)).abs().max()) > 0.5


# ---- the tiny model's three tasks, through training_step ----------------------------------
def three_tasks() -> dict:
    tasks = sample_tasks()
    tasks["mood"] = {**tasks["topic"], "labels": None, "weight": 0.5}
    tasks["topic"]["weight"] = 2.0
    return tasks


@pytest.fixture(scope="module")
def dm():
    return make_datamodule(three_tasks(), batch_size=6)


def per_task_gradients(module, batch) -> list[dict[str, torch.Tensor]]:
    """Each task's gradient of w_i L_i on every parameter, by plain autograd on the network."""
    outputs = module.encode_batch(batch)
    names = [n for n, _ in module.named_parameters()]
    params = [p for _, p in module.named_parameters()]
    out = []
    for weight, task in zip(module.weighting.weights.tolist(), module.tasks.values(), strict=True):
        found = torch.autograd.grad(
            weight * task.loss(batch, outputs), params, retain_graph=True, allow_unused=True
        )
        out.append(
            {
                n: torch.zeros_like(p) if g is None else g
                for n, p, g in zip(names, params, found, strict=True)
            }
        )
    return out


@pytest.mark.parametrize("grad_on", ["representation", "parameters"])
@pytest.mark.parametrize("method", ["cagrad", "nash_mtl"])
def test_the_training_step_gives_the_encoder_the_methods_combination(
    dm, method: str, grad_on: str
) -> None:
    batch = next(iter(dm.train_dataloader()))
    module = make_module(
        dm, tasks=three_tasks(), weighting=method, loss={"grad_on": grad_on}, dropout=0.0
    ).double()
    module.freezer.apply(module, 0)
    module.log = lambda *a, **k: None  # no trainer attached
    calls = []
    coefficients = module.weighting.coefficients

    def spy(gram, *args, **kwargs):
        c = coefficients(gram, *args, **kwargs)
        calls.append((gram.detach().clone(), c.detach().clone()))
        return c

    module.weighting.coefficients = spy
    grads = per_task_gradients(module, batch)
    module.training_step(batch, 0).backward()
    assert len(calls) == 1, "the gradient method's coefficients were not asked for"
    gram, c = calls[0]
    c = c.double()
    assert float((c - 1).abs().max()) > 0.05  # the premise: not plain summation
    encoder = [
        n for n, p in module.named_parameters() if n.startswith("net.encoder.") and p.requires_grad
    ]
    if grad_on == "parameters":  # the method saw the Gram of the weighted task gradients
        flat = torch.stack([torch.cat([g[n].flatten() for n in encoder]) for g in grads])
        torch.testing.assert_close(gram, flat @ flat.T, rtol=1e-6, atol=0)
    scale = max(float(g[n].abs().max()) for g in grads for n in encoder)
    plain_gap = 0.0
    for name, p in module.named_parameters():
        if name in encoder:
            expected = sum(float(c[i]) * g[name] for i, g in enumerate(grads))
            plain_gap = max(plain_gap, float((expected - sum(g[name] for g in grads)).abs().max()))
        else:  # each head trains on its own task's weighted loss
            expected = sum(g[name] for g in grads)
        got = torch.zeros_like(p) if p.grad is None else p.grad
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6 * scale, msg=name)
    assert plain_gap > 1e-3 * scale  # the plain sum would fail the comparison above
