"""The deployment benchmark rows on tiny inputs: the ONNX-vs-torch comparison (row 9), the
alternating speed rounds (row 10), the load client (row 11) and their report rows."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from benchmarks import onnx_check, onnx_speed, serve_load
from benchmarks.common import DEFAULT_DATA, alternate, compose
from benchmarks.report import summary_rows
from benchmarks.sections import md_onnx, md_onnx_speed, md_serve
from benchmarks.training import build
from mtst.inference.export import export_model
from tests.test_benchmarks import TINY_BENCH

SENTENCES = ["Ada Lovelace flew from London to Paris on Monday .", "EU rejects German call",
             "x", "Peter Blackburn", "Shares of Acme Corp rose 5 % in New York trading ."]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, object]:
    tmp = tmp_path_factory.mktemp("onnx-check")
    cfg = compose(tmp, TINY_BENCH)
    datamodule, model = build(cfg)
    datamodule.setup("test")
    export_model(model.net.eval(), tmp / "export", onnx=True, quantize="int8")
    return tmp / "export", datamodule


def test_fp32_graph_matches_torch_and_int8_is_another_graph(tiny) -> None:
    export_dir, datamodule = tiny
    result = onnx_check.compare_backends(export_dir, datamodule, SENTENCES, threads=1)
    assert result["sentences"] == len(SENTENCES) and result["titles"] > 0
    assert result["fp32"]["min_cosine_to_torch"] >= 0.99999
    assert result["fp32_identical"] and result["fp32"]["word_tags_differ"] == 0
    assert result["fp32"]["entities_differ"] == result["fp32"]["topic_label_differs"] == 0
    assert result["fp32"]["ner_f1"] == pytest.approx(result["torch_ner_f1"])
    assert result["int8"]["min_cosine_to_torch"] < 1 - 1e-6  # the quantised graph really ran
    assert result["int8_f1_drop"] == pytest.approx(result["fp32"]["ner_f1"] - result["int8"]["ner_f1"])
    text = md_onnx({**result, "train_steps": 0, "train_seconds": 1.0,
                    "graph_mib": {"fp32": 2.0, "int8": 1.0}})
    assert "fp32 identical to torch (tags, topics, `predict` entities and labels): **yes**" in text


def test_a_graph_of_another_model_is_reported_as_different(tiny, tmp_path) -> None:
    export_dir, datamodule = tiny
    cfg = compose(tmp_path, [*TINY_BENCH, "seed=7"])
    _, other = build(cfg)
    export_model(other.net.eval(), tmp_path / "other", onnx=True)
    mixed = tmp_path / "mixed"
    shutil.copytree(export_dir, mixed)
    shutil.copy(tmp_path / "other" / "onnx" / "model.onnx", mixed / "onnx" / "model.onnx")
    result = onnx_check.compare_backends(mixed, datamodule, SENTENCES, threads=1)
    assert result["fp32"]["min_cosine_to_torch"] < 0.99999
    assert not result["fp32_identical"]


def test_min_cosine_treats_two_zero_rows_as_equal_and_finds_the_worst_row() -> None:
    import numpy as np

    a = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    b = np.array([[2.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    assert onnx_check.min_cosine(a, b) == pytest.approx(np.sqrt(0.5))
    assert onnx_check.min_cosine(a[:2], b[:2]) == 1.0


def test_conll_sentences_skip_docstart_and_join_words(tmp_path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n"
                    "Peter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n", encoding="utf-8")
    assert onnx_check.conll_sentences(path) == ["EU rejects", "Peter Blackburn"]


def test_conll_test_file_has_its_documented_sentence_count() -> None:
    path = DEFAULT_DATA / "conll2003" / "test.txt"
    if not path.is_file():
        pytest.skip(f"real data absent: {path}")
    assert len(onnx_check.conll_sentences(path)) == 3453  # its README's count


def test_speed_rounds_alternate_sides() -> None:
    calls: list[str] = []
    sides = {"a": lambda texts: calls.append("a"), "b": lambda texts: calls.append("b")}
    seconds = alternate(sides, 3, ["t"] * 3)
    assert calls == ["a", "b", "b", "a", "a", "b"]
    assert len(seconds["a"]) == len(seconds["b"]) == 3 and min(seconds["a"] + seconds["b"]) > 0


def test_load_client_speaks_http_to_a_real_server() -> None:
    """The raw-stream client against a real HTTP server: status and body by Content-Length, over
    one keep-alive connection, and a refused request counts as an error."""
    async def scenario() -> tuple[dict, list]:
        seen: list[bytes] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    break
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                body = await reader.readexactly(length)
                seen.append(body)
                status = b"200 OK" if b"ok" in body else b"422 Unprocessable Entity"
                payload = b'{"n": %d}' % len(seen)
                writer.write(b"HTTP/1.1 %s\r\ncontent-length: %d\r\n\r\n%s" % (status, len(payload), payload))
                await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        connection = serve_load.Connection("127.0.0.1", port)
        answers = [await connection.post("/predict", b'{"texts": ["ok"]}'),
                   await connection.post("/predict", b'{"texts": ["bad"]}')]
        connection.close()
        stats = await serve_load.load(f"http://127.0.0.1:{port}", ["ok"], clients=2, duration=0.3,
                                      endpoint="predict")
        server.close()
        return stats, answers

    stats, answers = asyncio.run(scenario())
    assert answers == [(200, b'{"n": 1}'), (422, b'{"n": 2}')]
    assert stats["requests"] > 0 and stats["errors"] == 0 and stats["p99_ms"] >= stats["p50_ms"]


def test_deployment_rows_flag_missed_targets() -> None:
    onnx = {"targets": onnx_check.TARGETS, "fp32_identical": True, "int8_f1_drop": 1.5,
            "fp32": {"min_cosine_to_torch": 0.999999}, "int8": {"min_cosine_to_torch": 0.995}}
    serve = {"clients": 32, "duration_s": 60, "throughput_ratio": 3.2,
             "dynamic": {"errors": 0, "throughput_rps": 320.0},
             "batch_size_1": {"errors": 0, "throughput_rps": 100.0}}
    speed = {"ratio": 1.2, "min_cosine": {"mtst_int8_vs_mtst_fp32": 0.995, "st_vs_st_fp32": 0.999},
             "st_onnx_problem": "no optimum"}
    rows = summary_rows({"onnx": onnx, "serve": serve, "onnx_speed": speed})
    assert [r[-1] for r in rows] == ["yes", "**no**", "not measured", "yes"]
    assert "sentence-transformers torch fp32" in rows[2][1]
    fair = {**speed, "st_onnx_problem": None, "min_cosine": {"mtst_int8_vs_mtst_fp32": 0.995,
                                                             "st_vs_st_fp32": 0.98}}
    row = summary_rows({"onnx_speed": fair})[0]  # the baseline's own cosine is shown, not judged
    assert row[1].startswith("encode: mtst ONNX int8 / sentence-transformers ONNX int8")
    assert row[2] == "1.20; 0.9950 / 0.9800" and row[3] == "≥ 1.0; mtst's ≥ 0.99" and row[-1] == "yes"
    assert summary_rows({"onnx_speed": {**fair, "ratio": 0.9}})[0][-1] == "**no**"


@pytest.fixture()
def titles_dir(tmp_path) -> Path:
    folder = tmp_path / "data" / "ag_news"
    folder.mkdir(parents=True)
    rows = [f'"{1 + i % 4}","Title number {i} about {w}","desc"' for i, w in
            enumerate(["Paris", "markets", "football", "chips", "Berlin", "oil", "tennis", "AI"])]
    (folder / "test.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return tmp_path / "data"


def test_speed_row_runs_end_to_end_on_the_tiny_model(titles_dir) -> None:
    import dataclasses

    from benchmarks.common import QUICK

    budget = dataclasses.replace(QUICK, onnx_speed_sentences=8, onnx_speed_repeats=2)
    result = onnx_speed.run(budget, titles_dir, backbone="gpt_neo_tiny")
    assert result["sentences"] == 8 and len(result["ratio_per_round"]) == 2
    assert result["ratio"] > 0 and min(result["median_per_s"].values()) > 0
    assert 0.9 < result["min_cosine"]["mtst_int8_vs_mtst_fp32"] < 1 - 1e-7  # int8 did run
    if result["st_onnx_problem"]:  # the fallback compares the fp32 torch model with itself
        assert result["min_cosine"]["st_vs_st_fp32"] == pytest.approx(1.0, abs=1e-6)
        assert "**Not the target's comparison**" in md_onnx_speed(result)


def test_speed_row_can_measure_in_another_interpreter(titles_dir) -> None:
    """--st-onnx-python: the export is made here, both sides are measured in a child process
    (here this same interpreter), and the row says which versions it measured with."""
    import dataclasses
    import sys

    from benchmarks.common import QUICK

    budget = dataclasses.replace(QUICK, onnx_speed_sentences=8, onnx_speed_repeats=2)
    result = onnx_speed.run(budget, titles_dir, backbone="gpt_neo_tiny", st_onnx_python=sys.executable)
    assert result["measured_in"] == sys.executable and len(result["ratio_per_round"]) == 2
    assert result["versions"] == result["export_versions"]  # same environment: no side paragraph
    assert 0.9 < result["min_cosine"]["mtst_int8_vs_mtst_fp32"] < 1 - 1e-7
    shown = md_onnx_speed({**result, "versions": {**result["versions"], "transformers": "4.57.6"}})
    assert "Measured in a side environment" in shown and "transformers 4.57.6" in shown
    with pytest.raises(RuntimeError, match=r"benchmarks\.onnx_speed .* failed \(exit 1\)"):
        onnx_speed.measure_elsewhere(sys.executable, titles_dir / "no-export", ["t"], 1)


@pytest.mark.slow
def test_load_row_runs_both_settings_against_real_servers(titles_dir) -> None:
    result = serve_load.run(clients=4, duration=1.0, data_dir=titles_dir, backbone="gpt_neo_tiny")
    for name in ("dynamic", "batch_size_1"):
        assert result[name]["errors"] == 0 and result[name]["requests"] > 0
        assert result[name]["exit_code"] == 0
    assert result["throughput_ratio"] > 0
    assert f"**{result['throughput_ratio']:.2f}×** (target ≥ 3×)" in md_serve(result)
