"""SentenceEncoder: loading through from_pretrained, encode order, save/reload round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtst.model.encoder import SentenceEncoder

SENTENCES = [
    "A short one.",
    "This sentence is quite a bit longer than the first one, with commas, and words.",
    "Zoë flew to São Paulo 🙂",
    "x",
    "Medium length sentence about the parliament in Berlin.",
]


@pytest.fixture(scope="module")
def encoder(tiny_model_dir) -> SentenceEncoder:
    return SentenceEncoder.from_pretrained(str(tiny_model_dir), pooling="weighted_mean")


def test_encode_restores_input_order_and_matches_one_by_one(encoder: SentenceEncoder) -> None:
    batched = encoder.encode(SENTENCES, batch_size=2)
    single = np.stack([encoder.encode(s) for s in SENTENCES])
    assert batched.shape == (len(SENTENCES), encoder.hidden_size)
    np.testing.assert_allclose(batched, single, atol=1e-5)
    # the rows differ from each other, so a permutation would be caught
    assert np.abs(batched[0] - batched[1]).max() > 1e-3


def test_encode_options(encoder: SentenceEncoder) -> None:
    tensor = encoder.encode(SENTENCES, normalize=True, convert_to_numpy=False)
    assert isinstance(tensor, torch.Tensor)
    torch.testing.assert_close(tensor.norm(dim=-1), torch.ones(len(SENTENCES)))
    assert encoder.encode([]).shape == (0, encoder.hidden_size)


def test_save_pretrained_round_trip_keeps_pooling_and_embeddings(encoder, tmp_path) -> None:
    encoder.save_pretrained(tmp_path / "saved")
    reloaded = SentenceEncoder.from_pretrained(str(tmp_path / "saved"))
    assert reloaded.pooling.mode == "weighted_mean"
    np.testing.assert_allclose(reloaded.encode(SENTENCES), encoder.encode(SENTENCES), atol=1e-6)


def test_files_snapshot_rebuilds_the_same_model(encoder) -> None:
    rebuilt = SentenceEncoder.from_files(encoder.to_files(), pooling="weighted_mean")
    rebuilt.load_state_dict(encoder.state_dict())
    np.testing.assert_allclose(rebuilt.encode(SENTENCES), encoder.encode(SENTENCES), atol=1e-6)


def test_gpt_tokenizer_is_prepared_for_words_and_batches(encoder) -> None:
    tok = encoder.tokenizer
    assert tok.pad_token == tok.eos_token
    assert tok.padding_side == "right"
    words = tok(["Paris", "is", "nice"], is_split_into_words=True)
    inline = tok("Paris is nice")
    assert words["input_ids"] == inline["input_ids"]  # prefix space: words tokenise as in text
