"""Markdown for each benchmark section and the summary table (pure functions of results.json)."""

from __future__ import annotations

from typing import Any

from benchmarks.checkpoint_bytes import render as render_checkpoint_bytes
from benchmarks.checkpoint_bytes import summary_rows as checkpoint_bytes_rows
from benchmarks.defaults_vs_loop import render as render_defaults_vs_loop
from benchmarks.defaults_vs_loop import summary_rows as defaults_vs_loop_rows
from benchmarks.details import (
    render_encode,
    render_freeze,
    render_memory,
    render_overhead,
    render_padding,
    render_quality,
    render_scale,
    scale_linearity,
)
from benchmarks.details_serving import render_onnx, render_onnx_speed, render_serve
from benchmarks.frozen_epochs import render as render_frozen_epochs
from benchmarks.frozen_epochs import summary_rows as frozen_epochs_rows
from benchmarks.gpt_neo import render as render_gpt_neo
from benchmarks.gpt_neo import summary_rows as gpt_neo_rows
from benchmarks.serving_peer import render as render_serve_peer
from benchmarks.serving_peer import summary_rows as serve_peer_rows
from benchmarks.similarity import render as render_similarity
from benchmarks.similarity import summary_rows as similarity_rows
from benchmarks.token_budget import render as render_token_budget
from benchmarks.token_budget import summary_rows as token_budget_rows
from benchmarks.weighting_cost import render as render_weighting_cost
from benchmarks.weighting_cost import summary_rows as weighting_cost_rows


def _yes(ok: bool | None) -> str:
    return "—" if ok is None else ("yes" if ok else "**no**")


def _g(x: float) -> str:
    return f"{x / 1e9:.1f}"


def _ok(section: dict[str, Any] | None) -> bool:
    return bool(section) and "error" not in section and "skipped" not in section


# sections whose module renders its own summary rows, in the table's order
SECTION_ROWS = {"defaults_vs_loop": defaults_vs_loop_rows, "similarity": similarity_rows, "weighting_cost": weighting_cost_rows,
                "frozen_epochs": frozen_epochs_rows, "checkpoint_bytes": checkpoint_bytes_rows,
                "gpt_neo": gpt_neo_rows, "token_budget": token_budget_rows,
                "serve_peer": serve_peer_rows}


def summary_rows(sections: dict[str, Any]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    o = sections.get("overhead")
    if _ok(o):
        rows.append(["1", "training: framework / plain loop, samples/s (median of paired ratios)",
                     f"{o['ratio']:.3f} ({o['framework_samples_per_s']:.1f} vs "
                     f"{o['plain_samples_per_s']:.1f})", "≥ 0.95", _yes(o["ratio"] >= 0.95)])
        eff = o["efficiency"]["framework"]
        rows.append(["2", "training FLOP/s / measured fp32 matmul peak (batch 32)",
                     f"{eff:.1%} ({_g(o['achieved_flops_per_s']['framework'])} of "
                     f"{_g(o['peak_flops_per_s'])} GFLOP/s)", "≥ 50%", _yes(eff >= 0.5)])
    p = sections.get("padding")
    if _ok(p):
        share = p["bucketed"]["real_token_share"]
        rows.append(["3", "real-token share, CoNLL-2003 train (bucketed / not)",
                     f"{share:.1%} / {p['unbucketed']['real_token_share']:.1%}; epoch time "
                     f"{p['epoch_time_ratio']:.2f}× faster", "≥ 90%", _yes(share >= 0.9)])
    f = sections.get("freeze")
    if _ok(f):
        rows.append(["4", "freeze=backbone epoch time, no cache / cache (epochs ≥ 2)",
                     f"{f['speedup_epochs_2_on']:.1f}×", "≥ 10×", _yes(f["speedup_epochs_2_on"] >= 10)])
    e = sections.get("encode")
    if _ok(e):
        rows.append(["5", "encode: mtst / sentence-transformers sentences/s; min cosine",
                     f"{e['ratio']:.3f}; {e['min_cosine']:.6f}", "≥ 1.0; ≥ 0.9999",
                     _yes(e["ratio"] >= 1.0 and e["min_cosine"] >= 0.9999)])
    m = sections.get("memory")
    if _ok(m):
        enc = m["encode"]
        key = "peak_rss_while_encoding_mib"
        shown = ", ".join(f"{x['sentences']:,}: {x[key]:.0f} MiB" for x in enc)
        flat = None
        if len(enc) >= 2:
            flat = enc[-1][key] - enc[0][key] < 0.1 * enc[0][key]
        rows.append(["6", "peak RSS: training run; while encoding n sentences",
                     f"{m['train']['peak_rss_mib']:.0f} MiB; {shown}",
                     "encoding memory flat in n", _yes(flat)])
    q = sections.get("quality")
    if _ok(q):
        d = q["deltas"]
        for key, what, limit in (
                ("framework_vs_reference_ner_f1", "NER F1, framework − plain loop", 0.5),
                ("framework_vs_reference_cls_acc", "topic acc, framework − plain loop", 0.5)):
            if key in d:
                rows.append(["7", what, f"{d[key]:+.2f} pts", f"within ±{limit}", _yes(abs(d[key]) <= limit)])
        for key, what in (("joint_vs_single_ner_f1", "NER F1, joint − NER only"),
                          ("joint_vs_single_cls_acc", "topic acc, joint − topic only")):
            if key in d:
                rows.append(["7", what, f"{d[key]:+.2f} pts", "≥ −1", _yes(d[key] >= -1)])
        wnut = q["rows"].get("wnut17/framework", {})
        if "ner_f1" in wnut:
            rows.append(["7", "WNUT-17 entity F1 (framework, same budget)", f"{wnut['ner_f1']:.2f}",
                         "—", "—"])
    s = sections.get("scale")
    if _ok(s):
        lin = scale_linearity(s)
        if lin and "time" in lin:
            ok = 0.75 <= lin["time"] <= 1.33 and 0.75 <= lin["memory"] <= 1.33
            rows.append(["8", "in memory: cost of one more copy, last step over the one before, "
                         "time / memory (1 = linear)", f"{lin['time']:.2f} / {lin['memory']:.2f}",
                         "≈ 1 (linear)", _yes(ok)])
        if lin and "store_time" in lin:
            ok = (0.75 <= lin["store_time"] <= 1.33
                  and lin["store_peak_max"] <= 1.1 * lin["store_peak_min"])
            rows.append(["8", f"memory-mapped up to {s['stored'][-1]['factor']}×: same time ratio; "
                         "peak RSS while loading", f"{lin['store_time']:.2f}; "
                         f"{lin['store_peak_min']:.0f}–{lin['store_peak_max']:.0f} MiB",
                         "≈ 1; flat", _yes(ok)])
    rows += deployment_rows(sections)
    for name, section_rows in SECTION_ROWS.items():
        if _ok(sections.get(name)):
            rows += section_rows(sections[name])
    for name, section in sections.items():
        if not _ok(section):
            reason = (section or {}).get("error") or (section or {}).get("skipped")
            rows.append(["", name, f"not measured: {reason}", "", "—"])
    return rows


def deployment_rows(sections: dict[str, Any]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    o = sections.get("onnx")
    if _ok(o):
        t = o["targets"]
        rows.append(["9", "ONNX fp32 vs torch: smallest embedding cosine; labels and entities "
                     "on CoNLL-2003 test", f"{o['fp32']['min_cosine_to_torch']:.7f}; "
                     f"{'identical' if o['fp32_identical'] else 'differ'}", "≥ 0.99999; identical",
                     _yes(o["fp32"]["min_cosine_to_torch"] >= t["fp32_cosine"] and o["fp32_identical"])])
        mean = o["int8"].get("mean_cosine_to_torch", float("nan"))
        rows.append(["9", "ONNX int8: smallest (mean) embedding cosine to torch; NER F1 int8 − fp32",
                     f"{o['int8']['min_cosine_to_torch']:.5f} ({mean:.5f}); "
                     f"{-o['int8_f1_drop']:+.2f} pts",
                     "≥ 0.99; within 1", _yes(o["int8"]["min_cosine_to_torch"] >= t["int8_cosine"]
                                               and abs(o["int8_f1_drop"]) <= t["int8_f1_drop"])])
    s = sections.get("onnx_speed")
    if _ok(s):
        ours, theirs = s["min_cosine"]["mtst_int8_vs_mtst_fp32"], s["min_cosine"]["st_vs_st_fp32"]
        fair = not s.get("st_onnx_problem")
        rows.append(["10", "encode: mtst ONNX int8 / " + ("sentence-transformers ONNX int8" if fair
                     else "sentence-transformers torch fp32 (its ONNX backend does not install)")
                     + "; smallest cosine to own fp32, mtst / sentence-transformers",
                     f"{s['ratio']:.2f}; {ours:.4f} / {theirs:.4f}", "≥ 1.0; mtst's ≥ 0.99",
                     _yes(s["ratio"] >= 1.0 and ours >= 0.99) if fair else "not measured"])
    v = sections.get("serve")
    if _ok(v):
        errors = v["dynamic"]["errors"] + v["batch_size_1"]["errors"]
        rows.append(["11", f"mtst serve, {v['clients']} clients, {v['duration_s']:g} s: dynamic "
                     "batching / --max-batch-size 1 throughput; errors",
                     f"{v['throughput_ratio']:.2f}× ({v['dynamic']['throughput_rps']:.0f} vs "
                     f"{v['batch_size_1']['throughput_rps']:.0f} req/s); {errors}", "≥ 3×; 0",
                     _yes(v["throughput_ratio"] >= 3 and errors == 0)])
    return rows


SECTION_RENDERERS = [
    ("overhead", "1–2. Training overhead and compute efficiency", render_overhead),
    ("padding", "3. Padding and length bucketing", render_padding),
    ("freeze", "4. Frozen backbone: feature cache", render_freeze),
    ("encode", "5. Encoding against sentence-transformers", render_encode),
    ("memory", "6. Memory", render_memory),
    ("quality", "7. Quality on real data", render_quality),
    ("defaults_vs_loop", "7 (b). mtst's defaults against a plain fine-tuning loop", render_defaults_vs_loop),
    ("scale", "8. Scale: 10×, 100×, 1000× CoNLL-2003 train", render_scale),
    ("onnx", "9. ONNX graphs against torch on CoNLL-2003", render_onnx),
    ("onnx_speed", "10. ONNX int8 encoding against sentence-transformers", render_onnx_speed),
    ("serve", "11. Serving: `mtst serve` under load (loopback)", render_serve),
    ("serve_peer", "11 (b). Serving against a peer: `mtst serve` and Infinity, same export "
     "(loopback)", render_serve_peer),
    ("similarity", "12. The embedding's yardstick: STS Benchmark", render_similarity),
    ("weighting_cost", "13. Gradient-level task weighting: cost per step", render_weighting_cost),
    ("frozen_epochs", "16. Frozen backbone: later epochs against the first, whole `train.py` runs",
     render_frozen_epochs),
    ("checkpoint_bytes", "16. Checkpoints: bytes written per epoch", render_checkpoint_bytes),
    ("gpt_neo", "16 (a). The default backbone's architecture: GPT-Neo 125M (random weights) "
     "against MiniLM", render_gpt_neo),
    ("token_budget", "16 (b). Token-budget batches (`data.max_tokens`) against a fixed batch "
     "size", render_token_budget),
]
