"""Markdown for the deployment rows: ONNX against torch (9), ONNX int8 encode speed (10) and
`mtst serve` under load (11). Each takes (section results, table function)."""

from __future__ import annotations

from typing import Any

from benchmarks.details import Table, _list


def render_onnx(o: dict[str, Any], table: Table) -> str:
    rows = []
    for k in ("fp32", "int8"):
        r = o[k]
        differ = (f"{r['entities_differ']} / {r['topic_label_differs']}" if "entities_differ" in r
                  else "—")
        rows.append([f"ONNX {k} ({o['graph_mib'][k]:.0f} MiB)", f"{r['min_cosine_to_torch']:.7f} / "
                     f"{r.get('mean_cosine_to_torch', float('nan')):.7f}",
                     f"{r['word_tags_differ']} of {o['sentences']:,}",
                     f"{r['topics_differ']} of {o['titles']:,}", differ, f"{r['ner_f1']:.2f}"])
    rows.append(["torch (reference)", "1 / 1", "—", "—", "—", f"{o['torch_ner_f1']:.2f}"])
    return "\n".join([
        f"A MiniLM topic + NER model trained for {o['train_steps']} steps (batch 32, "
        "`data.sampling=round_robin` over CoNLL-2003 train and AG News titles rows 0-5,999, "
        f"{o['train_seconds']:.0f} s), exported with `--onnx --quantize int8`; torch, the fp32 "
        f"graph and the int8 graph on the {o['sentences']:,} CoNLL-2003 test sentences (words "
        f"joined by spaces for `encode` and `predict`; the DataModule's test batches, with "
        f"{o['titles']:,} AG News test titles, for word tags and topics). `benchmarks/onnx_check.py`.",
        "",
        table(["model", "embedding cosine to torch, smallest / mean", "sentences with a word tag "
               "differing", "titles with another topic", "`predict`: texts with other entities / "
               "topic label", "CoNLL-2003 entity F1"], rows),
        "",
        f"fp32 identical to torch (tags, topics, `predict` entities and labels): "
        f"**{'yes' if o['fp32_identical'] else 'no'}**; int8 F1 − fp32 F1: "
        f"**{-o['int8_f1_drop']:+.2f}** points (target: within 1).",
    ])


def render_onnx_speed(s: dict[str, Any], table: Table) -> str:
    med = s["median_per_s"]
    parts = [
        f"{s['sentences']:,} AG News titles, batch {s['batch_size']}, {s['threads']} threads, "
        f"normalised; mtst `encode` with `backend=\"onnx\", quantized=True` against "
        f"{s['baseline']} on the same MiniLM weights, {s['repeats']} alternating rounds after a "
        "warm-up. `benchmarks/onnx_speed.py`.",
        "",
        table(["encoder", "sentences/s per round", "median",
               "cosine to its own fp32 torch model, smallest / mean"], [
            ["mtst ONNX int8", _list(s["per_s"]["mtst_int8"]), f"{med['mtst_int8']:.1f}",
             _pair(s, "mtst_int8_vs_mtst_fp32")],
            [s["baseline"], _list(s["per_s"]["st"]), f"{med['st']:.1f}", _pair(s, "st_vs_st_fp32")]]),
        "",
        f"Ratio (median of rounds): **{s['ratio']:.2f}** (rounds: "
        f"{_list(s['ratio_per_round'], '{:.2f}')}).",
    ]
    measured, exported = s.get("versions"), s.get("export_versions")
    if measured and exported and measured != exported:
        shown = ", ".join(f"{k} {v}" for k, v in measured.items())
        parts += ["", "Measured in a side environment (`--st-onnx-python`, built by "
                  "`scripts/st_onnx_env.sh`), because sentence-transformers' ONNX backend needs "
                  f"optimum-onnx, which requires transformers<4.58: {shown}. Both sides ran in that "
                  "one process; the export was made in the main environment "
                  f"(transformers {exported.get('transformers')})."]
    if s.get("st_onnx_problem"):
        parts += ["", f"**Not the target's comparison**: sentence-transformers' ONNX backend could "
                  f"not run here: {s['st_onnx_problem']}."]
    return "\n".join(parts)


def _pair(s: dict[str, Any], key: str) -> str:
    mean = s.get("mean_cosine", {}).get(key, float("nan"))
    return f"{s['min_cosine'][key]:.5f} / {mean:.5f}"


def render_serve(s: dict[str, Any], table: Table) -> str:
    names = {"dynamic": "dynamic batching (`" + " ".join(s["settings"]["dynamic"]) + "`)",
             "batch_size_1": "no batching (`" + " ".join(s["settings"]["batch_size_1"]) + "`)"}
    rows = [[names[k], f"{s[k]['requests']:,}", s[k]["errors"], f"{s[k]['p50_ms']:.0f} ms",
             f"{s[k]['p99_ms']:.0f} ms", f"{s[k]['throughput_rps']:.1f} req/s", s[k]["exit_code"]]
            for k in ("dynamic", "batch_size_1")]
    before, after = s["load_average_before"], s["load_average_after"]
    options = " ".join(s.get("server_options") or []) or "none"
    return "\n".join([
        f"`python -m benchmarks.serve_load --clients {s['clients']} --duration "
        f"{s['duration_s']:g}`: the MiniLM export (untrained heads: same cost per request) behind "
        f"`mtst serve` ({s['backend']} backend, one worker, extra options: {options}) on a free "
        f"127.0.0.1 port; {s['clients']} closed-loop clients in one asyncio process on the same "
        f"{s['cpus']} CPUs, each `POST /{s['endpoint']}` with one AG News title, over keep-alive "
        "connections (raw asyncio streams: see `Connection`); the server is stopped with SIGTERM.",
        "",
        table(["setting", f"requests in {s['duration_s']:g} s", "errors", "p50 latency",
               "p99 latency", "throughput", "exit code after SIGTERM"], rows),
        "",
        f"Throughput ratio, dynamic / batch size 1: **{s['throughput_ratio']:.2f}×** (target ≥ 3×). "
        f"Load average (1 / 5 / 15 min) before {before[0]:.2f} / {before[1]:.2f} / {before[2]:.2f}, "
        f"after {after[0]:.2f} / {after[1]:.2f} / {after[2]:.2f}.",
    ])
