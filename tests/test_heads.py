"""The heads' dropout keeps `nn.Dropout`'s contract with its cheaper CPU mask."""

from __future__ import annotations

import pytest
import torch

from mtst.model.heads import Dropout, TokenClassificationHead


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_training_zeroes_a_share_p_and_scales_the_rest(p: float) -> None:
    torch.manual_seed(0)
    x = torch.rand(64, 32, 100, dtype=torch.float64) + 1.0  # no zeros of its own
    y = Dropout(p).train()(x)
    dropped = y == 0
    share = dropped.double().mean().item()
    n = x.numel()
    assert abs(share - p) < 5 * (p * (1 - p) / n) ** 0.5, share  # five standard errors
    torch.testing.assert_close(y[~dropped], x[~dropped] / (1 - p))
    # lanes are independent: neighbours along the last dim and across rows are not correlated
    d = dropped.double().flatten()
    corr = torch.corrcoef(torch.stack([d[:-1], d[1:]]))[0, 1].item()
    assert abs(corr) < 5 / n**0.5, corr


def test_eval_mode_and_p_zero_are_the_identity() -> None:
    x = torch.randn(4, 5, 6)
    assert Dropout(0.5).eval()(x) is x
    assert Dropout(0.0).train()(x) is x


def test_the_gradient_passes_exactly_where_the_output_does() -> None:
    torch.manual_seed(1)
    x = torch.randn(8, 9, 10, dtype=torch.float64, requires_grad=True)
    y = Dropout(0.2).train()(x)
    y.sum().backward()
    expected = torch.where(y != 0, 1 / 0.8, 0.0).to(torch.float64)
    torch.testing.assert_close(x.grad, expected)


def test_the_same_seed_draws_the_same_mask_and_another_seed_another() -> None:
    x = torch.ones(3, 7, 11)
    masks = []
    for seed in (5, 5, 6):
        torch.manual_seed(seed)
        masks.append(Dropout(0.25).train()(x) == 0)
    assert torch.equal(masks[0], masks[1])
    assert not torch.equal(masks[0], masks[2])


def test_odd_sizes_and_half_precision_keep_their_shape_and_dtype() -> None:
    x = torch.ones(3, 5, 7, dtype=torch.bfloat16)  # 105 elements: not a multiple of four lanes
    y = Dropout(0.5).train()(x)
    assert y.shape == x.shape and y.dtype == torch.bfloat16
    assert set(torch.unique(y.float()).tolist()) <= {0.0, 2.0}


def test_a_probability_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match=r"dropout probability 1.0: expected a value in \[0, 1\)"):
        Dropout(1.0)


def test_heads_use_it() -> None:
    head = TokenClassificationHead(16, 3, dropout=0.2)
    assert isinstance(head.dropout, Dropout) and head.dropout.p == 0.2
