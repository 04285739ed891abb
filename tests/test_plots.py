"""`mtst plot-embeddings` on the tiny backbone: 3, 10 and 500 sentences, inputs and errors."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image
import pytest

from mtst.cli.main import main
from mtst.inference.inputs import read_labelled
from mtst.inference.plots import tsne_perplexity

PNGS = ("pca.png", "tsne.png", "similarity.png")


def write_showcase(path: Path, n: int) -> Path:
    topics = ["travel", "technology", "politics"]
    lines = [f"{topics[i % 3]}\tsentence {i} about {topics[i % 3]} number {i * 7}" for i in range(n)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def assert_png(path: Path) -> None:
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


@pytest.mark.parametrize("n", [3, 10, 500])
def test_plots_written_for_small_and_large_inputs(n, tiny_model_dir, tmp_path, capsys) -> None:
    source = write_showcase(tmp_path / "showcase.txt", n)
    out = tmp_path / "plots"
    code = main(["plot-embeddings", "--model", str(tiny_model_dir), "--input", str(source),
                 "--out", str(out), "--tsne-iter", "250", "--device", "cpu"])
    assert code == 0
    for name in PNGS:
        assert_png(out / name)
    captured = capsys.readouterr()
    if n < 100:  # perplexity 30 would be rejected by scikit-learn: clamped with a note
        assert "perplexity 30 is too large" in captured.err
    if n > 50:
        assert "first 50 of 500" in captured.err
    projector = out / "projector"
    config = (projector / "projector_config.pbtxt").read_text()
    metadata = next(projector.rglob("metadata.tsv")).read_text(encoding="utf-8").splitlines()
    tensors = next(projector.rglob("tensors.tsv")).read_text().splitlines()
    assert "metadata_path" in config
    assert metadata[0] == "label\ttext" and len(metadata) == n + 1
    assert metadata[1].startswith("travel\tsentence 0")
    assert len(tensors) == n


def test_perplexity_is_clamped_below_the_number_of_points() -> None:
    for n in (2, 3, 10, 31, 500):
        used, note = tsne_perplexity(30.0, n)
        assert used < n
        assert (note is None) == (used == 30.0)


def test_jsonl_input_colours_by_field_and_text_only_lines(tmp_path) -> None:
    source = tmp_path / "s.jsonl"
    rows = [{"text": "a b", "topic": "x"}, {"text": "c d", "topic": 3}, {"text": "e"}]
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    assert read_labelled(source, "topic") == (["a b", "c d", "e"], ["x", "3", "(none)"])
    assert read_labelled(source, "missing") == (["a b", "c d", "e"], None)
    plain = tmp_path / "s.txt"
    plain.write_text("just text\n\nlabel\twith label\n", encoding="utf-8")
    assert read_labelled(plain) == (["just text", "with label"], ["(none)", "label"])
    assert read_labelled(plain, None) == (["just text", "with label"], None)  # no colours


def test_bad_input_is_one_line_and_writes_nothing(tiny_model_dir, tmp_path, capsys) -> None:
    source = tmp_path / "bad.jsonl"
    source.write_text('{"text": "fine"}\n{"text": oops}\n', encoding="utf-8")
    out = tmp_path / "plots"
    code = main(["plot-embeddings", "--model", str(tiny_model_dir), "--input", str(source),
                 "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert f"{source}:line 2" in err and "not valid JSON" in err
    assert not out.exists()
    one = tmp_path / "one.txt"
    one.write_text("only one sentence\n", encoding="utf-8")
    assert main(["plot-embeddings", "--model", str(tiny_model_dir), "--input", str(one),
                 "--out", str(out)]) == 2
    assert "at least 2 sentences" in capsys.readouterr().err
    assert not out.exists()
