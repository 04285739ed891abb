"""Loss-level weighting methods (dwa, rlw, famo) against their papers' formulas, by hand in float64."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mtst.errors import MtstError
from mtst.weighting import build_weighting
from tests.conftest import make_datamodule, make_module, sample_tasks, weighting_config

ALL = torch.tensor([True, True, True])
TOL = {"rtol": 1e-6, "atol": 1e-6}  # fp32 state and arithmetic against float64 references


def method(name: str, weights=(1.0, 1.0, 1.0), **settings):
    """conf/weighting/<name>.yaml with `settings` changed, built for tasks of these weights."""
    return build_weighting(weighting_config(name, **settings), list(weights))


def softmax(values: list[float], temperature: float = 1.0) -> list[float]:
    exps = [math.exp(v / temperature) for v in values]
    return [e / sum(exps) for e in exps]


def run_epoch(fn, steps: list[tuple[list[float], list[bool]]]) -> None:
    for losses, present in steps:
        fn.after_step(torch.tensor(losses, dtype=torch.float64), torch.tensor(present), 0)
    fn.end_epoch()


# ---- dwa -------------------------------------------------------------------------------------
def dwa_history(fn) -> None:
    """Epoch means: task 0 3.0 then 1.5; task 1 1.0 then 1.0; task 2 0.5 then 0.2 (present in one
    step of each epoch; its NaN placeholder where absent must not count)."""
    nan = float("nan")
    run_epoch(fn, [([2.0, 1.0, 0.5], [True, True, True]), ([4.0, 1.0, nan], [True, True, False])])
    run_epoch(fn, [([1.0, 0.9, nan], [True, True, False]), ([2.0, 1.1, 0.2], [True, True, True])])


def test_dwa_weights_are_one_in_the_first_two_epochs() -> None:
    fn = method("dwa", weights=(2.0, 1.0, 0.5))
    losses = torch.tensor([1.5, 4.0, 0.25], dtype=torch.float64)
    expected = 2.0 * 1.5 + 1.0 * 4.0 + 0.5 * 0.25
    assert fn(losses, ALL).item() == pytest.approx(expected, rel=1e-12)
    run_epoch(fn, [([3.0, 1.0, 0.5], [True, True, True])])
    assert fn(losses, ALL).item() == pytest.approx(expected, rel=1e-12)
    run_epoch(fn, [([1.0, 2.0, 0.5], [True, True, True])])
    assert fn(losses, ALL).item() != pytest.approx(expected, rel=1e-3)  # from epoch 3 on: DWA


def assert_weights_and_total(fn, expected: list[float]) -> None:
    """The method's weights with every task present are `expected`, and its total is the
    weighted sum of a fixed set of losses."""
    torch.testing.assert_close(fn.task_weights(ALL), torch.tensor(expected, dtype=torch.float64))
    losses = torch.tensor([1.2, 0.7, 0.3], dtype=torch.float64)
    total = sum(w * v for w, v in zip(expected, losses.tolist(), strict=True))
    assert fn(losses, ALL).item() == pytest.approx(total, rel=1e-12)


@pytest.mark.parametrize("temperature", [2.0, 0.5])
def test_dwa_weights_follow_the_epoch_loss_ratios(temperature) -> None:
    fixed = (2.0, 1.0, 0.5)
    fn = method("dwa", weights=fixed, temperature=temperature)
    dwa_history(fn)
    ratios = [1.5 / 3.0, 1.0 / 1.0, 0.2 / 0.5]
    expected = [3 * s * w for s, w in zip(softmax(ratios, temperature), fixed, strict=True)]
    assert_weights_and_total(fn, expected)


def test_dwa_absent_task_is_left_out_of_the_softmax() -> None:
    fn = method("dwa")
    dwa_history(fn)
    present = torch.tensor([True, False, True])
    expected = [2 * s for s in softmax([0.5, 0.4], 2.0)]  # K = 2 present tasks
    weights = fn.task_weights(present)
    torch.testing.assert_close(weights, torch.tensor([expected[0], 0.0, expected[1]], dtype=torch.float64))
    total = fn(torch.tensor([1.0, float("nan"), 3.0]), present)
    assert total.item() == pytest.approx(expected[0] * 1.0 + expected[1] * 3.0, rel=1e-6)


def test_dwa_task_unseen_for_an_epoch_keeps_its_history() -> None:
    fn = method("dwa")
    dwa_history(fn)
    run_epoch(fn, [([0.75, 2.0, 0.0], [True, True, False])])  # task 2 never seen in epoch 3
    ratios = [0.75 / 1.5, 2.0 / 1.0, 0.2 / 0.5]  # task 2 still 0.2 / 0.5
    expected = [3 * s for s in softmax(ratios, 2.0)]
    torch.testing.assert_close(fn.task_weights(ALL), torch.tensor(expected, dtype=torch.float64))


# ---- rlw -------------------------------------------------------------------------------------
def test_rlw_weights_are_k_times_a_softmax_of_the_step_draw() -> None:
    fixed = (2.0, 1.0, 0.5)
    fn = method("rlw", weights=fixed, seed=3)
    fn.set_step(11)
    eps = fn.draw(11).tolist()
    expected = [3 * s * w for s, w in zip(softmax(eps), fixed, strict=True)]
    assert_weights_and_total(fn, expected)


def test_rlw_weights_sum_to_the_present_tasks_and_skip_absent_ones() -> None:
    fn = method("rlw")
    present = torch.tensor([True, False, True])
    for step in range(5):
        fn.set_step(step)
        weights = fn.task_weights(present)
        assert weights[1].item() == 0.0
        assert weights.sum().item() == pytest.approx(2.0, rel=1e-12)
        eps = fn.draw(step).tolist()
        expected = [2 * s for s in softmax([eps[0], eps[2]])]
        assert weights[[0, 2]].tolist() == pytest.approx(expected, rel=1e-12)
        assert fn.task_weights(ALL).sum().item() == pytest.approx(3.0, rel=1e-12)


def test_rlw_draw_depends_on_seed_and_step_only() -> None:
    first, second, other = method("rlw", seed=5), method("rlw", seed=5), method("rlw", seed=6)
    draws = []
    for step in (0, 1, 2, 1000):
        first.set_step(step)
        second.set_step(step)
        other.set_step(step)
        assert torch.equal(first.task_weights(ALL), second.task_weights(ALL))
        assert not torch.allclose(first.task_weights(ALL), other.task_weights(ALL))
        draws.append(first.task_weights(ALL))
    for a in range(len(draws)):
        for b in range(a + 1, len(draws)):
            assert not torch.allclose(draws[a], draws[b])
    torch.manual_seed(0)  # the global generator plays no part
    first.set_step(2)
    assert torch.equal(first.task_weights(ALL), draws[2])


def test_rlw_in_eval_mode_uses_the_fixed_weights() -> None:
    fn = method("rlw", weights=(2.0, 1.0, 0.5)).eval()
    fn.set_step(4)
    assert fn(torch.tensor([1.0, 2.0, 4.0]), ALL).item() == pytest.approx(2.0 + 2.0 + 2.0)


# ---- famo ------------------------------------------------------------------------------------
def famo_with_logits(logits: list[float], **settings):
    fn = method("famo", **settings)
    fn.logits.copy_(torch.tensor(logits))
    return fn


def test_famo_weighted_loss_and_its_gradient_follow_the_formula() -> None:
    fixed, xi, floor = (2.0, 1.0, 0.5), [0.3, -0.2, 0.1], [0.1, 0.0, 0.2]
    fn = method("famo", weights=fixed, min_losses=floor)
    fn.logits.copy_(torch.tensor(xi))
    raw = [1.5, 0.8, 0.45]
    losses = torch.tensor(raw, dtype=torch.float64, requires_grad=True)
    total = fn(losses, ALL)
    z = softmax(xi)
    d = [v - m + 1e-8 for v, m in zip(raw, floor, strict=True)]
    c = sum(zi / di for zi, di in zip(z, d, strict=True))
    expected = sum(w * zi * math.log(di) / c for w, zi, di in zip(fixed, z, d, strict=True))
    assert total.item() == pytest.approx(expected, abs=1e-6)  # fp32 z; terms nearly cancel
    total.backward()
    grads = [w * zi / (c * di) for w, zi, di in zip(fixed, z, d, strict=True)]
    torch.testing.assert_close(losses.grad, torch.tensor(grads, dtype=torch.float64), **TOL)
    # with unit fixed weights the coefficients on the task gradients sum to 1
    assert sum(g / w for g, w in zip(grads, fixed, strict=True)) == pytest.approx(1.0)


def hand_famo_step(xi, before, after, lr, gamma):
    """One update of the logits by hand: softmax Jacobian on delta, then Adam's first step."""
    n = len(xi)
    z = softmax(xi)
    delta = [math.log(b + 1e-8) - math.log(a + 1e-8) for b, a in zip(before, after, strict=True)]
    jacobian = [[z[j] * ((i == j) - z[i]) for i in range(n)] for j in range(n)]  # dz_j/dxi_i
    grad = [sum(jacobian[j][i] * delta[j] for j in range(n)) + gamma * xi[i] for i in range(n)]
    # Adam, step 1: m_hat = g, v_hat = g^2 -> xi - lr·g / (|g| + eps)
    return [x - lr * g / (abs(g) + 1e-8) for x, g in zip(xi, grad, strict=True)]


def test_famo_one_update_of_the_logits_is_adam_on_the_softmax_gradient() -> None:
    xi, before, after = [0.3, -0.2, 0.1], [2.0, 1.0, 0.5], [1.8, 0.99, 0.3]
    fn = famo_with_logits(xi, lr=0.025, gamma=0.5)  # a large gamma: the decay term flips a sign
    fn.after_update(torch.tensor(before), torch.tensor(after), ALL)
    expected = hand_famo_step(xi, before, after, 0.025, 0.5)
    torch.testing.assert_close(fn.logits, torch.tensor(expected), **TOL)
    without_decay = hand_famo_step(xi, before, after, 0.025, 0.0)
    assert any(math.copysign(1, a - x) != math.copysign(1, b - x)
               for a, b, x in zip(expected, without_decay, xi, strict=True))


def test_famo_updates_match_the_official_adam_on_the_logits() -> None:
    """Three steps against `torch.optim.Adam([w], lr, weight_decay=gamma)` fed the softmax vector-
    Jacobian product of delta, as the official `FAMO.update` does."""
    fn = method("famo", lr=0.025, gamma=0.001)
    w = torch.zeros(3, requires_grad=True)
    opt = torch.optim.Adam([w], lr=0.025, weight_decay=0.001)
    losses = [([2.0, 1.0, 0.5], [1.9, 0.97, 0.49]), ([1.9, 0.97, 0.49], [1.7, 0.96, 0.48]),
              ([1.7, 0.96, 0.48], [1.68, 0.9, 0.40])]
    for before, after in losses:
        before, after = torch.tensor(before), torch.tensor(after)
        fn.after_update(before, after, ALL)
        delta = (before + 1e-8).log() - (after + 1e-8).log()
        (d,) = torch.autograd.grad(F.softmax(w, -1), w, grad_outputs=delta)
        opt.zero_grad()
        w.grad = d
        opt.step()
        torch.testing.assert_close(fn.logits, w.detach(), **TOL)


def test_famo_absent_task_is_out_of_the_softmax_and_keeps_its_logit() -> None:
    xi = [0.3, -0.2, 0.1]
    fn = famo_with_logits(xi, gamma=0.01)
    present = torch.tensor([True, False, True])
    before, after = [2.0, float("nan"), 0.5], [1.8, float("nan"), 0.45]
    fn.after_update(torch.tensor(before), torch.tensor(after), present)
    expected = hand_famo_step([xi[0], xi[2]], [before[0], before[2]], [after[0], after[2]], 0.025, 0.01)
    torch.testing.assert_close(fn.logits, torch.tensor([expected[0], xi[1], expected[1]]), **TOL)
    assert fn.exp_avg[1].item() == 0.0 and fn.adam_steps.tolist() == [1.0, 0.0, 1.0]
    losses = torch.tensor([1.5, float("nan"), 0.45], requires_grad=True)
    total = fn(losses, present)
    total.backward()
    assert torch.isfinite(total) and torch.isfinite(losses.grad).all() and losses.grad[1].item() == 0.0
    z = softmax([fn.logits[0].item(), fn.logits[2].item()])
    c = z[0] / 1.5 + z[1] / 0.45
    assert total.item() == pytest.approx((z[0] * math.log(1.5) + z[1] * math.log(0.45)) / c, rel=1e-5)


def test_famo_with_no_task_present_gives_zero_and_no_update() -> None:
    fn = famo_with_logits([0.3, -0.2, 0.1])
    none = torch.tensor([False, False, False])
    losses = torch.full((3,), float("nan"), requires_grad=True)
    total = fn(losses, none)
    total.backward()
    assert total.item() == 0.0 and torch.equal(losses.grad, torch.zeros(3))
    fn.after_update(torch.ones(3), torch.ones(3), none)
    assert fn.logits.tolist() == pytest.approx([0.3, -0.2, 0.1])


# ---- all three -------------------------------------------------------------------------------
def drive(fn, steps: range) -> list[float]:
    """A few training steps of synthetic losses through every hook; the totals it computed."""
    totals = []
    for step in steps:
        present = torch.tensor([True, step % 3 != 0, True])
        losses = torch.tensor([2.0 / (step + 1), 1.0 + 0.1 * (step % 4), 0.5 + 0.05 * step])
        fn.set_step(step)
        totals.append(fn(losses, present).item())
        fn.after_step(losses, present, step)
        fn.after_update(losses, losses * 0.9, present)  # FAMO's; the others do nothing
        if step % 4 == 3:
            fn.end_epoch()
    return totals


@pytest.mark.parametrize("name", ["dwa", "rlw", "famo"])
def test_state_dict_round_trip_resumes_identically(name) -> None:
    straight = method(name, weights=(2.0, 1.0, 0.5))
    drive(straight, range(9))
    state = straight.state_dict()
    assert "weights" not in state  # configuration, rebuilt from the config
    if name != "rlw":
        assert len(state) >= 3
    resumed = method(name, weights=(2.0, 1.0, 0.5))
    resumed.load_state_dict(state)
    assert drive(resumed, range(9, 20)) == drive(straight, range(9, 20))
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


@pytest.mark.parametrize("name", ["dwa", "rlw", "famo"])
def test_bf16_autocast_losses_give_finite_results(name) -> None:
    fn = method(name)
    drive(fn, range(8))  # DWA past its first two epochs, FAMO logits moved
    torch.manual_seed(0)
    layer = torch.nn.Linear(8, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(torch.randn(16, 8))
        losses = out.pow(2).mean(0) + 0.1
        assert losses.dtype == torch.bfloat16
        total = fn(losses, ALL)
    total.backward()
    assert torch.isfinite(total) and all(torch.isfinite(p.grad).all() for p in layer.parameters())
    fn.after_step(losses.detach(), ALL, 8)
    fn.end_epoch()
    fn.after_update(losses.detach(), losses.detach() * 0.9, ALL)
    assert all(torch.isfinite(b).all() for b in fn.buffers())


@pytest.mark.parametrize("name, settings, message", [
    ("dwa", {"temperature": 0}, "weighting.temperature=0: expected a number > 0"),
    ("dwa", {"temp": 1.0}, "weighting.temp: no such setting; weighting=dwa takes temperature"),
    ("rlw", {"seed": -1}, "weighting.seed=-1: expected an integer >= 0"),
    ("rlw", {"seed": 1.5}, "weighting.seed=1.5: expected an integer >= 0"),
    ("famo", {"lr": 0}, "weighting.lr=0: expected a number > 0"),
    ("famo", {"gamma": -0.1}, "weighting.gamma=-0.1: expected a number >= 0"),
    ("famo", {"min_losses": [0, 0]}, "weighting.min_losses: 2 values for 3 tasks"),
    ("famo", {"min_losses": "low"}, "weighting.min_losses='low': expected a number"),
    ("uncertainty", {"lr": 0.1}, "weighting.lr: no such setting; weighting=uncertainty takes no setting"),
])
def test_bad_settings_are_one_line_errors(name, settings, message) -> None:
    with pytest.raises(MtstError) as err:
        method(name, **settings)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["fixed", "uncertainty", "dwa", "rlw", "famo"])
def test_train_loss_is_the_weighted_sum_under_every_method(tmp_path, name) -> None:
    """`train/loss` compares across methods; what a method back-propagates when it is something
    else (learned log-variances, drawn weights, FAMO's log objective) is `train/objective`."""
    tasks = sample_tasks()
    tasks["topic"]["weight"] = 2.0
    dm = make_datamodule(tasks, batch_size=6)
    batch = next(iter(dm.train_dataloader()))
    module = make_module(dm, tasks=tasks, weighting=name, dropout=0.0)
    if name == "uncertainty":
        module.weighting.log_vars.data = torch.tensor([0.5, -0.3])  # away from the fixed sum
    for step in range(2):
        total = module.training_step(batch, step)
        values = {k: float(v) for k, v in module.step_values.items()}
        expected = sum(float(module.weighting.weights[i]) * values[f"train/{n}/loss"]
                       for i, n in enumerate(module.tasks) if f"train/{n}/loss" in values)
        assert values["train/loss"] == pytest.approx(expected, rel=1e-5)
        if name == "fixed":
            assert "train/objective" not in values and float(total.detach()) == pytest.approx(expected, rel=1e-5)
        else:
            assert values["train/objective"] == pytest.approx(float(total.detach()), rel=1e-6)
    if name in ("uncertainty", "famo"):
        assert values["train/objective"] != pytest.approx(values["train/loss"], rel=1e-3)
    logged = {}  # val/loss is the same quantity as train/loss
    module.log = lambda key, value, **kwargs: logged.__setitem__(key, float(value))
    module.eval()
    with torch.no_grad():
        module._eval_step("val", batch)
        losses, present = module.task_losses(batch, module.encode_batch(batch))
    weights = module.weighting.weights
    expected = sum(float(w) * float(v) for w, v, p in zip(weights, losses, present, strict=True) if p)
    assert logged["val/loss"] == pytest.approx(expected, rel=1e-5)
