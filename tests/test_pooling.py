"""Pooling maths on hand-made tensors, for every mode, with right and left padding."""

from __future__ import annotations

import pytest
import torch

from mtst.model.pooling import POOLING_MODES, Pooling

# one sentence of 3 real tokens with 2-d states, padded to length 5
REAL = torch.tensor([[1.0, 2.0], [3.0, -4.0], [5.0, 0.0]])
PAD = torch.full((2, 2), 99.0)  # garbage in padding must never leak into the result

EXPECTED = {
    "mean": torch.tensor([3.0, -2.0 / 3.0]),
    # weights 1, 2, 3 over the real tokens, whatever the padding side
    "weighted_mean": (1 * REAL[0] + 2 * REAL[1] + 3 * REAL[2]) / 6.0,
    "last_token": REAL[2],
    "first": REAL[0],
    "max": torch.tensor([5.0, 2.0]),
}


def padded(side: str) -> tuple[torch.Tensor, torch.Tensor]:
    if side == "right":
        states, mask = torch.cat([REAL, PAD]), torch.tensor([1, 1, 1, 0, 0])
    else:
        states, mask = torch.cat([PAD, REAL]), torch.tensor([0, 0, 1, 1, 1])
    return states.unsqueeze(0), mask.unsqueeze(0)


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("mode", POOLING_MODES)
def test_pooling_modes_ignore_padding_on_either_side(mode: str, side: str) -> None:
    states, mask = padded(side)
    out = Pooling(mode)(states, mask)
    assert out.shape == (1, 2)
    torch.testing.assert_close(out[0], EXPECTED[mode])


def test_batch_of_different_lengths_pools_each_row_separately() -> None:
    states = torch.arange(2 * 4 * 1, dtype=torch.float).reshape(2, 4, 1)  # rows 0..3, 4..7
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    torch.testing.assert_close(Pooling("mean")(states, mask), torch.tensor([[0.5], [5.5]]))
    torch.testing.assert_close(Pooling("last_token")(states, mask), torch.tensor([[1.0], [7.0]]))
    weighted = Pooling("weighted_mean")(states, mask)
    torch.testing.assert_close(weighted, torch.tensor([[(0 + 2 * 1) / 3], [(4 + 10 + 18 + 28) / 10]]))


def test_normalize_gives_unit_vectors() -> None:
    states, mask = padded("right")
    out = Pooling("mean", normalize=True)(states, mask)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(1))


def test_unknown_mode_is_rejected_with_the_choices() -> None:
    with pytest.raises(ValueError, match="weighted_mean"):
        Pooling("cls_token")
