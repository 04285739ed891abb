"""Rows 16 (a) and (b) of the benchmarks: the token-share arithmetic, the GPT-Neo / MiniLM ratios
and the Markdown both sections render (benchmarks/report.py, sections.py: pure functions of results.json)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import gpt_neo, markdown
from benchmarks.common import token_shares
from benchmarks.report import summary_rows
from benchmarks.sections import SECTIONS


def test_token_shares_count_padding_to_each_batch_longest() -> None:
    lengths = np.array([4, 2, 3, 3])
    got = token_shares(lengths, [[0, 1], [2, 3]])
    # batch 1: 6 real of 8 padded; batch 2: 6 of 6
    assert got["real_token_share"] == pytest.approx(12 / 14)
    assert got["median_batch_share"] == pytest.approx((6 / 8 + 1) / 2)
    assert got["max_padded_tokens"] == 8 and got["mean_sentences_per_batch"] == 2


def budget_section() -> dict:
    side = {"real_token_share": 0.95, "median_batch_share": 0.96, "batches": 10,
            "mean_sentences_per_batch": 32.0, "max_padded_tokens": 4000, "mean_padded_tokens": 700.0}
    return {"examples": 320, "batch_size": 32, "max_tokens": 4096, "fixed": side,
            "budget": {**side, "real_token_share": 0.97, "batches": 2},
            "timed_batches_per_order": 2, "samples_per_s": {"fixed": 100.0, "budget": 150.0},
            "samples_per_s_ratio": 1.5, "epoch_s_estimate": {"fixed": 3.2, "budget": 2.0},
            "epoch_time_ratio": 1.6}


def gpt_neo_section() -> dict:
    train = {"gpt_neo_125m": {"samples_per_s": 2.0, "median_step_s": 8.0},
             "minilm": {"samples_per_s": 16.0, "median_step_s": 1.0}}
    memory = {"gpt_neo_125m": {"peak_rss_mib": 3000.0, "parameters": 125_200_000},
              "minilm": {"peak_rss_mib": 1000.0, "parameters": 22_700_000}}
    encode = {"gpt_neo_125m": {"sentences_per_s": 40.0, "mean_tokens_per_title": 20.0},
              "minilm": {"sentences_per_s": 400.0, "mean_tokens_per_title": 14.0}}
    freeze = {"examples": 2000, "val_examples": 250, "epochs": 3, "batch_size": 32,
              "gpt_neo_125m": {"first_epoch_s": 90.0, "later_epoch_s": 3.0},
              "minilm": {"first_epoch_s": 12.0, "later_epoch_s": 2.0}}
    return {"batch": 16, "tokens": 128, "threads": 2, "train": train, "memory": memory,
            "encode": encode, "freeze": freeze, "sizes": gpt_neo.FULL_SIZES}


def test_gpt_neo_ratios_put_gpt_neo_over_minilm() -> None:
    assert markdown.gpt_neo_ratios(gpt_neo_section()) == {"samples_per_s": 0.125, "peak_rss": 3.0,
                                                 "encode": 0.1, "cached_epoch": 1.5}


def test_both_rows_reach_the_summary_and_their_sections_render() -> None:
    sections = {"gpt_neo": gpt_neo_section(), "token_budget": budget_section()}
    rows = summary_rows(sections)
    measures = [row[1] for row in rows]
    assert ("GPT-Neo 125M (random weights) / MiniLM: training samples/s, peak RSS, encode "
            "sentences/s, cached freeze=backbone epoch s") in measures
    assert ("token-budget batches (data.max_tokens=4096) vs batch 32: real-token share; "
            "samples/s ratio") in measures
    assert {row[0] for row in rows} == {"16"}
    budget_row = next(row for row in rows if row[1].startswith("token-budget"))
    assert budget_row[2] == "97.0% vs 95.0%; 1.50× (150 vs 100)"
    renderers = {name: fn for name, _, fn in SECTIONS}
    text = renderers["gpt_neo"](sections["gpt_neo"])
    assert "| training samples/s (median) | 2.00 | 16.00 | 0.12× |" in text
    assert "| freeze=backbone later epoch (cached), s | 3.00 | 2.00 | 1.50× |" in text
    text = renderers["token_budget"](sections["token_budget"])
    assert "| data.max_tokens=4096 | 2 | 32.0 | 700 / 4,000 | 97.0% / 96.0% | 150 | 2 |" in text
