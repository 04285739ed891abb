"""Loss masking with partial labels: no NaN, correct values and gradients."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mtst.data.store import IGNORE
from mtst.tasks.losses import masked_cross_entropy
from mtst.weighting import build_weighting
from tests.conftest import weighting_config


def test_masked_cross_entropy_matches_plain_ce_on_labelled_positions() -> None:
    logits = torch.randn(4, 3)
    labels = torch.tensor([0, IGNORE, 2, IGNORE])
    expected = F.cross_entropy(logits[[0, 2]], labels[[0, 2]])
    torch.testing.assert_close(masked_cross_entropy(logits, labels), expected)


def test_no_labels_gives_zero_loss_and_zero_gradient_not_nan() -> None:
    logits = torch.randn(2, 5, 9, requires_grad=True)
    loss = masked_cross_entropy(logits, torch.full((2, 5), IGNORE))
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None and torch.equal(logits.grad, torch.zeros_like(logits))


def test_fixed_weighting_sums_present_tasks_only() -> None:
    fn = build_weighting(None, [2.0, 0.5, 3.0])
    losses = torch.tensor([1.5, 4.0, 0.25])
    assert fn(losses, torch.tensor([True, True, True])).item() == 2.0 * 1.5 + 0.5 * 4.0 + 3.0 * 0.25
    assert fn(losses, torch.tensor([True, False, False])).item() == 3.0
    assert fn(losses, torch.tensor([False, True, False])).item() == 2.0
    assert fn(losses, torch.tensor([False, True, True])).item() == 2.0 + 0.75
    assert fn(losses, torch.tensor([False, False, False])).item() == 0.0


def test_an_absent_task_with_a_nonfinite_loss_adds_nothing() -> None:
    fn = build_weighting(None, [1.0, 1.0])
    total = fn(torch.tensor([2.0, float("nan")]), torch.tensor([True, False]))
    assert total.item() == 2.0


def test_partial_batch_gradients_reach_only_the_labelled_task_head() -> None:
    torch.manual_seed(0)
    states = torch.randn(3, 4, 8)
    cls_head, ner_head, mood_head = torch.nn.Linear(8, 4), torch.nn.Linear(8, 9), torch.nn.Linear(8, 2)
    cls_labels = torch.tensor([1, IGNORE, 3])  # examples 0 and 2 have topics
    ner_labels = torch.full((3, 4), IGNORE)  # no example has NER labels
    mood_labels = torch.tensor([IGNORE, 1, IGNORE])  # example 1 has a mood
    losses = torch.stack([
        masked_cross_entropy(cls_head(states.mean(1)), cls_labels),
        masked_cross_entropy(ner_head(states), ner_labels),
        masked_cross_entropy(mood_head(states.mean(1)), mood_labels),
    ])
    total = build_weighting(None, [1.0, 1.0, 1.0])(losses, torch.tensor([True, False, True]))
    total.backward()
    assert torch.isfinite(total)
    assert torch.count_nonzero(ner_head.weight.grad) == 0
    assert torch.count_nonzero(mood_head.weight.grad) > 0
    # gradient equals that of CE over the two labelled examples alone
    ref_head = torch.nn.Linear(8, 4)
    ref_head.load_state_dict(cls_head.state_dict())
    F.cross_entropy(ref_head(states.mean(1)[[0, 2]]), cls_labels[[0, 2]]).backward()
    torch.testing.assert_close(cls_head.weight.grad, ref_head.weight.grad)


def test_uncertainty_weighting_learns_log_variances() -> None:
    fn = build_weighting(weighting_config("uncertainty"), [1.0, 1.0, 1.0])
    assert fn.log_vars.shape == (3,)
    total = fn(torch.tensor([2.0, 0.5, 3.0]), torch.tensor([True, True, False]))
    assert total.item() == 2.5  # s = 0: exp(0)·L + 0, the absent task adds nothing
    total.backward()
    # d/ds (exp(-s)·L + s) = 1 - L at s = 0; an absent task's s does not move
    torch.testing.assert_close(fn.log_vars.grad, torch.tensor([1 - 2.0, 1 - 0.5, 0.0]))
