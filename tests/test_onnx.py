"""ONNX export (`mtst export --onnx --quantize int8`) and the onnxruntime backend
(`mtst.load(DIR, backend="onnx")`, `mtst serve --backend onnx`), with the tiny GPT-Neo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import mtst
from mtst.cli.main import main
from mtst.errors import MtstError
from mtst.inference.export import export_model
from mtst.inference.loading import untrained
from tests.test_serve import TEXTS, Server, assert_same


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("onnx")
    export_model(untrained("gpt_neo_tiny", seed=3), root / "plain")
    out = root / "with_onnx"
    assert main(["export", "-c", str(root / "plain"), "--out", str(out), "--onnx", "--quantize", "int8"]) == 0
    return out


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_fp32_graph_gives_the_torch_models_embeddings_and_predictions(exported) -> None:
    torch_model = mtst.load(exported)
    onnx_model = mtst.load(exported, backend="onnx", threads=1)
    assert onnx_model.output_names == ["embeddings", "topic", "ner"]  # one per head
    ours, theirs = onnx_model.encode(TEXTS, batch_size=4), torch_model.encode(TEXTS, batch_size=4)
    empty = TEXTS.index("")  # no token: a zero embedding in both
    rows = [i for i in range(len(TEXTS)) if i != empty]
    assert cosine(ours[rows], theirs[rows]).min() >= 0.99999
    np.testing.assert_array_equal(ours[empty], theirs[empty])
    # batch and sequence axes are dynamic: LONG fills 128-token windows, the trace had 5 tokens
    predicted, expected = onnx_model.predict(TEXTS, batch_size=3), torch_model.predict(TEXTS)
    assert_same(predicted, expected)  # same labels and entity offsets; scores to the 4th decimal


def test_int8_graph_is_smaller_and_close_to_fp32(exported) -> None:
    fp32, int8 = exported / "onnx" / "model.onnx", exported / "onnx" / "model_int8.onnx"
    assert int8.stat().st_size < 0.6 * fp32.stat().st_size
    full = mtst.load(exported, backend="onnx", threads=1)
    quantized = mtst.load(exported, backend="onnx", quantized=True, threads=1)
    rows = [i for i, t in enumerate(TEXTS) if t]
    similarity = cosine(quantized.encode(TEXTS)[rows], full.encode(TEXTS)[rows])
    assert similarity.min() >= 0.98, similarity  # random tiny weights; MiniLM figures: BENCHMARKS.md
    assert similarity.min() < 1 - 1e-6  # it really is another graph
    for text, result in zip(TEXTS, quantized.predict(TEXTS), strict=True):
        assert result["text"] == text and set(result) == {"text", "topic", "ner"}
        assert sum(result["topic"]["scores"].values()) == pytest.approx(1.0, abs=1e-3)
        assert all(text[e["start"] : e["end"]] == e["text"] for e in result["ner"])


def test_int8_keeps_the_feed_forward_projections_fp32_and_quantises_the_square_ones(exported) -> None:
    import onnx

    from mtst.inference.onnx_backend import feed_forward_matmuls

    fp32 = onnx.load(str(exported / "onnx" / "model.onnx")).graph
    shapes = {t.name: tuple(t.dims) for t in fp32.initializer}
    weights = {n.name: shapes.get(n.input[1]) for n in fp32.node if n.op_type == "MatMul"}
    kept = set(feed_forward_matmuls(exported / "onnx" / "model.onnx"))
    square = {n for n, shape in weights.items() if shape and shape[0] == shape[1]}
    assert kept and square  # the tiny GPT-Neo has both: MLP (64 -> 256 -> 64) and attention (64 x 64)
    assert kept == {n for n, shape in weights.items() if shape and shape[0] != shape[1]}
    int8 = onnx.load(str(exported / "onnx" / "model_int8.onnx")).graph
    left = {n.name for n in int8.node if n.op_type == "MatMul"}
    assert kept <= left and not square & left  # feed-forward stays MatMul, attention is int8
    assert sum(n.op_type == "MatMulInteger" for n in int8.node) >= len(square)


def test_onnx_mistakes_are_one_line_errors(exported, tmp_path, capsys) -> None:
    with pytest.raises(MtstError, match="holds no onnx/model.onnx: write it with `mtst export"):
        mtst.load(exported.parent / "plain", backend="onnx")
    with pytest.raises(MtstError, match="backend 'tensorrt' unknown; choose backend 'torch' or 'onnx'"):
        mtst.load(exported, backend="tensorrt")
    code = main(["export", "-c", str(exported), "--out", str(tmp_path / "x"), "--quantize", "int8"])
    assert code == 2 and capsys.readouterr().err.strip() == "error: --quantize needs --onnx"
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_serve_with_the_onnx_backend(exported) -> None:
    server = Server(exported, "--backend", "onnx", "--quantized")
    try:
        assert server.client.get("/metadata").json()["backend"] == "onnx"
        got = server.post("/predict", {"texts": TEXTS}).json()["predictions"]
        assert_same(got, mtst.load(exported, backend="onnx", quantized=True, threads=1).predict(TEXTS))
    finally:
        assert server.stop() == 0
