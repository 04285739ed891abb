"""Gradient-level weighting methods on hand-made float64 gradients: the coefficients c they
return combine the task gradients g_i as the papers prescribe, seen only through G = g g^T."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from mtst.errors import MtstError
from mtst.weighting import build_weighting
from tests.conftest import weighting_config

F64 = torch.float64
GRADIENT_METHODS = ("pcgrad", "cagrad", "nash_mtl", "gradnorm")


def vectors(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=F64)


def method(name: str, n: int, **settings):
    """conf/weighting/<name>.yaml with `settings` changed, for n tasks of weight 1."""
    return build_weighting(weighting_config(name, **settings), [1.0] * n, "representation")


def combine(fn, g: torch.Tensor, present=None, losses=None, step: int = 0) -> torch.Tensor:
    """The coefficients for gradients g [N, d] (rows of absent tasks zeroed, as the module does)."""
    n = len(g)
    present = torch.ones(n, dtype=torch.bool) if present is None else torch.tensor(present)
    g = torch.where(present[:, None], g, torch.zeros_like(g))
    losses = torch.ones(n, dtype=F64) if losses is None else torch.tensor(losses, dtype=F64)
    return fn.coefficients(g @ g.T, losses, present, step)


def random_gradients(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(n, d)))


def test_the_gradient_methods_are_built_at_the_gradient_level() -> None:
    for name in GRADIENT_METHODS:
        built = method(name, 2)
        assert built.level == "gradient" and type(built).__doc__ and built.grad_on == "representation"


# --- PCGrad ---------------------------------------------------------------------------------

def project(g_i: torch.Tensor, g_j: torch.Tensor) -> torch.Tensor:
    dot = g_i @ g_j
    return g_i - dot / (g_j @ g_j) * g_j if dot < 0 else g_i


def test_pcgrad_projects_two_conflicting_gradients_onto_each_others_normal_plane() -> None:
    g = vectors([1.0, 0.0], [-1.0, 1.0])  # <g1, g2> = -1
    expected = project(g[0], g[1]) + project(g[1], g[0])
    torch.testing.assert_close(expected, vectors([0.5, 0.5])[0] + vectors([0.0, 1.0])[0])
    for order in ([0, 1], [1, 0]):
        c = combine(method("pcgrad", 2), g[order])
        torch.testing.assert_close(c @ g[order], expected, rtol=1e-12, atol=1e-12)


def test_pcgrad_leaves_non_conflicting_gradients_alone() -> None:
    g = vectors([1.0, 0.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, 3.0])  # no negative inner product
    c = combine(method("pcgrad", 3), g, step=5)
    assert torch.equal(c, torch.ones(3, dtype=F64))


def test_pcgrad_follows_its_seeded_order_and_repeats_it() -> None:
    g = vectors([1.0, 0.0], [-0.6, 1.0], [-0.6, -1.0])  # the result depends on the order
    fn = method("pcgrad", 3, seed=7)
    results = set()
    for step in range(12):
        expected = torch.zeros(2, dtype=F64)
        for i, order in enumerate(fn.orders(3, step)):
            assert sorted(order) == [j for j in range(3) if j != i]
            projected = g[i]
            for j in order:
                projected = project(projected, g[j])
            expected = expected + projected
        c = combine(fn, g, step=step)
        torch.testing.assert_close(c @ g, expected, rtol=1e-12, atol=1e-12)
        assert torch.equal(c, combine(method("pcgrad", 3, seed=7), g, step=step))
        results.add(tuple(np.round(c.numpy(), 12)))
    assert len(results) > 1  # the order really changes with the step


# --- CAGrad ---------------------------------------------------------------------------------

def cagrad_two_tasks(g: torch.Tensor, c: float) -> torch.Tensor:
    """The CAGrad update n·d/(1+c^2) for two tasks, w = (t, 1-t) in closed form: on the interior
    F'(t) = a' + rho·q'(t)/(2 sqrt q(t)) = 0 squares to a quadratic in t; compare with t = 0, 1."""
    g0 = g.mean(0)
    rho = c * float(g0.norm())
    u, v = g[0] - g[1], g[1]  # gw = v + t·u
    a1 = float(u @ g0)
    q2, q1, q0 = float(u @ u), 2 * float(u @ v), float(v @ v)
    objective = lambda t: float((v + t * u) @ g0) + rho * float((v + t * u).norm())  # noqa: E731
    roots = np.roots([4 * a1 ** 2 * q2 - 4 * rho ** 2 * q2 ** 2,
                      4 * a1 ** 2 * q1 - 4 * rho ** 2 * q2 * q1,
                      4 * a1 ** 2 * q0 - rho ** 2 * q1 ** 2])
    candidates = [0.0, 1.0] + [r.real for r in roots if abs(r.imag) < 1e-12 and 0 <= r.real <= 1]
    t = min(candidates, key=objective)
    gw = v + t * u
    return 2 * (g0 + rho / gw.norm() * gw) / (1 + c ** 2)


@pytest.mark.parametrize("seed", range(6))
def test_cagrad_matches_the_two_task_closed_form(seed: int) -> None:
    g = random_gradients(2, 5, seed) * torch.tensor([[1.0], [3.0]], dtype=F64)
    for c in (0.4, 0.9):
        got = combine(method("cagrad", 2, c=c), g) @ g
        torch.testing.assert_close(got, cagrad_two_tasks(g, c), rtol=1e-9, atol=1e-12)


def test_cagrad_weights_beat_a_grid_over_the_three_task_simplex() -> None:
    g = vectors([1.0, 0.2, 0.0], [-0.8, 1.0, 0.1], [0.1, -0.9, 0.5])
    fn = method("cagrad", 3, c=0.5)
    gram = (g @ g.T).numpy()
    w = fn.simplex_weights(gram)
    radius = 0.5 * float(g.mean(0).norm())
    objective = lambda x: float(x @ gram.mean(1)) + radius * math.sqrt(x @ gram @ x)  # noqa: E731
    grid = [np.array([i, j, 200 - i - j]) / 200 for i in range(201) for j in range(201 - i)]
    assert abs(w.sum() - 1) < 1e-12 and (w >= 0).all()
    assert objective(w) <= min(objective(x) for x in grid) + 1e-12
    # and the update is g0 + c|g0|/|gw| gw, times 3/(1 + c^2)
    gw = torch.from_numpy(w) @ g
    expected = 3 * (g.mean(0) + radius / gw.norm() * gw) / 1.25
    torch.testing.assert_close(combine(fn, g) @ g, expected, rtol=1e-12, atol=1e-12)


def test_cagrad_without_a_radius_is_plain_summation() -> None:
    g = random_gradients(3, 4, 0)
    assert torch.equal(combine(method("cagrad", 3, c=0.0), g), torch.ones(3, dtype=F64))


# --- Nash-MTL -------------------------------------------------------------------------------

def nash_two_tasks(gram: torch.Tensor) -> torch.Tensor:
    """a α1² + b α1α2 = 1 and b α1α2 + d α2² = 1: with p = α1α2, p = 1/(sqrt(ad) + b) and
    α1 = sqrt((1 - b p)/a), α2 = sqrt((1 - b p)/d)."""
    a, b, d = float(gram[0, 0]), float(gram[0, 1]), float(gram[1, 1])
    p = 1 / (math.sqrt(a * d) + b)
    return torch.tensor([math.sqrt((1 - b * p) / a), math.sqrt((1 - b * p) / d)], dtype=F64)


def test_nash_mtl_solves_two_tasks_like_the_hand_solution() -> None:
    fn = method("nash_mtl", 2, max_norm=0.0)
    orthogonal = vectors([3.0, 0.0], [0.0, 0.5])
    torch.testing.assert_close(combine(fn, orthogonal), torch.tensor([1 / 3, 2.0], dtype=F64),
                               rtol=1e-12, atol=0)
    for g in (vectors([1.0, 0.0], [-0.5, 2.0]), vectors([2.0, 1.0], [1.5, 1.2])):
        expected = nash_two_tasks(g @ g.T)
        torch.testing.assert_close(combine(fn, g), expected, rtol=1e-10, atol=0)


@pytest.mark.parametrize("seed", range(4))
def test_nash_mtl_alpha_solves_g_alpha_equals_one_over_alpha(seed: int) -> None:
    g = random_gradients(3, 6, seed) * torch.tensor([[0.01], [1.0], [50.0]], dtype=F64)
    alpha = combine(method("nash_mtl", 3, max_norm=0.0), g)
    assert (alpha > 0).all()
    torch.testing.assert_close((g @ g.T) @ alpha, 1 / alpha, rtol=1e-9, atol=0)


def test_nash_mtl_caps_the_combined_norm_at_max_norm() -> None:
    g = random_gradients(3, 6, 1)
    free = combine(method("nash_mtl", 3, max_norm=0.0), g)
    assert math.isclose(float((free @ g).norm()), math.sqrt(3), rel_tol=1e-9)  # α·Gα = n
    capped = combine(method("nash_mtl", 3, max_norm=1.0), g)
    torch.testing.assert_close(capped, free / math.sqrt(3), rtol=1e-9, atol=0)
    loose = combine(method("nash_mtl", 3, max_norm=5.0), g)
    torch.testing.assert_close(loose, free, rtol=0, atol=0)


def test_nash_mtl_reuses_its_alpha_between_updates_and_resumes_it() -> None:
    first, second = random_gradients(2, 4, 0), random_gradients(2, 4, 1)
    fn = method("nash_mtl", 2, max_norm=0.0, update_every=3)
    solved = combine(fn, first, step=0)
    torch.testing.assert_close(combine(fn, second, step=1), solved, rtol=0, atol=0)
    resumed = method("nash_mtl", 2, max_norm=0.0, update_every=3)
    resumed.load_state_dict(fn.state_dict())
    torch.testing.assert_close(combine(resumed, second, step=2), solved, rtol=0, atol=0)
    torch.testing.assert_close(combine(fn, second, step=3), nash_two_tasks(second @ second.T),
                               rtol=1e-10, atol=0)
    # a task joining between updates forces a fresh solution
    fn = method("nash_mtl", 3, max_norm=0.0, update_every=10)
    combine(fn, random_gradients(3, 4, 2), present=[True, True, False], step=0)
    joined = combine(fn, random_gradients(3, 4, 2), step=1)
    assert (joined > 0).all()


# --- GradNorm -------------------------------------------------------------------------------

def test_gradnorm_updates_its_weights_as_computed_by_hand() -> None:
    fn = method("gradnorm", 2, alpha=1.5, lr=0.1)
    g = vectors([3.0, 0.0], [0.0, 1.0])  # |g| = 3, 1
    c = combine(fn, g, losses=[2.0, 4.0])  # the first step: these become L(0)
    assert torch.equal(c, torch.ones(2, dtype=F64))  # this step uses the weights before the update
    # G = (3, 1), r = (1, 1), target 2 each: w -= 0.1·sign(G - 2)·|g| / mean|g| (mean|g| = 2)
    torch.testing.assert_close(fn.task_weights, torch.tensor([0.85, 1.05], dtype=F64) * 2 / 1.9,
                               rtol=1e-12, atol=0)
    w = fn.task_weights.clone()
    c = combine(fn, g, losses=[1.0, 4.0], step=1)
    torch.testing.assert_close(c, w, rtol=0, atol=0)
    # L~ = (0.5, 1), r = (2/3, 4/3), G = w·(3, 1), targets mean(G)·r^1.5
    grad_norms = w * torch.tensor([3.0, 1.0], dtype=F64)
    targets = grad_norms.mean() * torch.tensor([2 / 3, 4 / 3], dtype=F64) ** 1.5
    step = torch.sign(grad_norms - targets) * torch.tensor([3.0, 1.0], dtype=F64) / 2.0
    expected = (w - 0.1 * step) * (w.sum() / (w - 0.1 * step).sum())
    torch.testing.assert_close(fn.task_weights, expected, rtol=1e-12, atol=0)
    assert math.isclose(float(fn.task_weights.sum()), 2.0, rel_tol=1e-12)


def test_gradnorm_leaves_an_absent_tasks_weight_and_keeps_the_sum_at_n() -> None:
    fn = method("gradnorm", 3, lr=0.05)
    g = vectors([3.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.5])
    combine(fn, g, losses=[1.0, 1.0, 1.0])
    before = fn.task_weights.clone()
    assert not torch.allclose(before, torch.ones(3, dtype=F64))
    combine(fn, g, present=[True, False, True], losses=[0.5, 1.0, 0.9], step=1)
    assert fn.task_weights[1] == before[1] and fn.task_weights[0] != before[0]
    assert math.isclose(float(fn.task_weights.sum()), 3.0, rel_tol=1e-12)


def test_gradnorm_state_resumes_exactly() -> None:
    g = random_gradients(3, 5, 3)
    fn = method("gradnorm", 3)
    for step, losses in enumerate(([1.0, 2.0, 3.0], [0.9, 1.5, 3.1])):
        combine(fn, g, losses=losses, step=step)
    resumed = method("gradnorm", 3)
    resumed.load_state_dict(fn.state_dict())
    assert set(fn.state_dict()) == {"task_weights", "initial_losses", "has_initial", "updated_at"}
    later = [0.5, 1.0, 2.0]
    torch.testing.assert_close(combine(resumed, g, losses=later, step=2),
                               combine(fn, g, losses=later, step=2), rtol=0, atol=0)
    torch.testing.assert_close(resumed.task_weights, fn.task_weights, rtol=0, atol=0)


def test_gradnorm_weights_do_not_depend_on_the_scale_of_the_gradients() -> None:
    """Every task gradient times 100 (the Gram times 100²): the same weights, step by step; the
    raw-gradient update moved them 100 times as far."""
    torch.manual_seed(0)
    plain, scaled = method("gradnorm", 3, lr=0.05), method("gradnorm", 3, lr=0.05)
    for step in range(6):
        g = torch.randn(3, 8, dtype=F64) * torch.tensor([[0.05], [0.2], [0.01]], dtype=F64)
        losses = (torch.rand(3, dtype=F64) + 0.5).tolist()
        combine(plain, g, losses=losses, step=step)
        combine(scaled, 100 * g, losses=losses, step=step)
        torch.testing.assert_close(scaled.task_weights, plain.task_weights, rtol=1e-9, atol=0)
    assert (plain.task_weights - 1).abs().max() > 0.05  # they did move, at tiny norms too


def test_gradnorm_moves_once_per_optimizer_step_under_accumulation() -> None:
    """Accumulated micro-batches share the optimizer step: only the first one updates."""
    g = vectors([3.0, 0.0], [0.0, 1.0])
    once, twice = method("gradnorm", 2), method("gradnorm", 2)
    for step in range(3):
        combine(once, g, losses=[1.0 + step, 2.0], step=step)
        for _ in range(2):  # accumulate_grad_batches=2: two micro-batches, one global step
            combine(twice, g, losses=[1.0 + step, 2.0], step=step)
    torch.testing.assert_close(twice.task_weights, once.task_weights, rtol=0, atol=0)
    assert int(twice.updated_at) == 2


def test_gradnorm_skips_a_step_with_a_nonfinite_loss() -> None:
    fn = method("gradnorm", 2)
    combine(fn, vectors([3.0, 0.0], [0.0, 1.0]), losses=[float("nan"), 1.0])
    assert torch.equal(fn.task_weights, torch.ones(2, dtype=F64))
    assert not fn.has_initial.any()


# --- every method ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_an_absent_task_gets_zero_and_leaves_the_others_as_if_alone(name: str) -> None:
    g = random_gradients(3, 5, 4)
    losses = [1.5, 7.0, 0.5]
    with_absent = method(name, 3)
    alone = method(name, 2)
    for step in range(3):
        c = combine(with_absent, g, present=[True, False, True], losses=losses, step=step)
        expected = combine(alone, g[[0, 2]], losses=[1.5, 0.5], step=step)
        assert c[1] == 0.0
        torch.testing.assert_close(c[[0, 2]], expected, rtol=1e-12, atol=1e-14)
        losses = [loss * 0.9 for loss in losses]
    assert torch.equal(combine(with_absent, g, present=[False] * 3), torch.zeros(3, dtype=F64))


@pytest.mark.parametrize("name", GRADIENT_METHODS)
def test_coefficients_are_float64_and_finite_with_a_zero_gradient(name: str) -> None:
    g = vectors([1.0, 0.0], [0.0, 0.0], [-1.0, 0.5])
    c = combine(method(name, 3), g)
    assert c.dtype == F64 and torch.isfinite(c).all()


@pytest.mark.parametrize("name, settings, message", [
    ("pcgrad", {"seed": -1}, "weighting.seed=-1: expected an integer >= 0"),
    ("pcgrad", {"seed": 1.5}, "weighting.seed=1.5: expected an integer >= 0"),
    ("cagrad", {"c": -0.1}, "weighting.c=-0.1: expected a number >= 0"),
    ("cagrad", {"c": "big"}, "weighting.c='big': expected a number >= 0"),
    ("nash_mtl", {"update_every": 0}, "weighting.update_every=0: expected an integer >= 1"),
    ("nash_mtl", {"max_norm": -1}, "weighting.max_norm=-1: expected a number >= 0"),
    ("nash_mtl", {"optim_iters": True}, "weighting.optim_iters=True: expected an integer"),
    ("gradnorm", {"lr": -1.0}, "weighting.lr=-1.0: expected a number >= 0"),
    ("gradnorm", {"alpah": 1.0}, "weighting.alpah: no such setting; weighting=gradnorm takes alpha, lr"),
    ("pcgrad", {"grad_on": "parameters"},
     "weighting.grad_on: no such setting (it is model.loss.grad_on); weighting=pcgrad takes seed"),
])
def test_bad_settings_are_one_line_errors(name: str, settings: dict, message: str) -> None:
    with pytest.raises(MtstError) as error:
        method(name, 2, **settings)
    text = str(error.value)
    assert text.startswith(message) and "\n" not in text


# --- Nash-MTL without a solution -----------------------------------------------------------

@pytest.mark.parametrize("rows", [
    ([1.0, 2.0], [-1.0, -2.0]),  # two opposite gradients
    ([1.0, 0.0], [0.3, 1.0], [-1.3, -1.0]),  # three tasks in 2-D, g3 = -(g1 + g2)
])
def test_nash_mtl_falls_back_to_unit_gradients_where_no_solution_exists(rows) -> None:
    from mtst.weighting.nash_mtl import nash_alpha, nash_residual

    g = vectors(*rows)
    gram = g @ g.T
    assert nash_residual(gram, nash_alpha(gram, 100)) > 0.5  # the solver's non-solution
    fn = method("nash_mtl", len(rows), max_norm=0)
    with pytest.warns(RuntimeWarning, match="no solution"):
        c = combine(fn, g)
    torch.testing.assert_close(c, 1 / g.norm(dim=1), rtol=1e-12, atol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per run
        combine(fn, g, step=1)


def test_nash_mtl_keeps_its_solution_where_one_exists() -> None:
    from mtst.weighting.nash_mtl import nash_residual

    g = random_gradients(3, 6, 5)
    fn = method("nash_mtl", 3, max_norm=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c = combine(fn, g)
    assert nash_residual(g @ g.T, c) < 1e-9
