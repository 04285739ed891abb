"""The summary table of BENCHMARKS.md: one function per section, each returning its rows
(number, measure, result, target, met) from the section's entry of results.json.

The rows' words are the `summary.*` blocks of sections.md; these functions compute the figures
and judge them against the targets. A section that failed or was skipped gets a row saying so, so
the table never drops one silently. The figures a section's own text repeats (`scale_linearity`,
`dvl_deltas`, `gpt_neo_ratios`) are computed here once.
"""

from __future__ import annotations

from typing import Any

from benchmarks.markdown import fill_rows, giga, megabytes

DVL_ROWS = {"ner": ("ner_f1",), "topic": ("cls_acc", "cls_macro_f1")}
PEER_BACKENDS = ("torch", "onnx")
GRADIENT_METHODS = ("pcgrad", "cagrad", "nash_mtl", "gradnorm")
# row 7: delta -> how far it may stray: within ± the limit, or no lower than -1 where None
QUALITY_LIMITS = {"framework_vs_reference_ner_f1": 0.5, "framework_vs_reference_cls_acc": 0.5,
                  "joint_vs_single_ner_f1": None, "joint_vs_single_cls_acc": None}
STS_DELTA_NAMES = {"ner_f1": "NER F1", "topic_acc": "topic acc", "topic_macro_f1": "topic macro-F1"}


def mark(ok: bool | None) -> str:
    """The "met" cell: yes, a bold no, or a dash where there is no target."""
    return "—" if ok is None else ("yes" if ok else "**no**")


def has_figures(section: dict[str, Any] | None) -> bool:
    """Whether a section ran and measured (it holds neither an error nor a reason it skipped)."""
    return bool(section) and "error" not in section and "skipped" not in section


def scale_linearity(s: dict[str, Any]) -> dict[str, float]:
    """Marginal cost of a copy at the largest step over the step before (1.0 = linear), per mode,
    and how much the memory-mapped load's peak memory moves across sizes."""
    out: dict[str, float] = {}
    if "memory_time_linearity" in s:
        out.update(time=s["memory_time_linearity"], memory=s["memory_memory_linearity"])
    if "store_time_linearity" in s:
        peaks = [p["load_peak_rss_mib"] for p in s["stored"]]
        out.update(store_time=s["store_time_linearity"], store_peak_min=min(peaks),
                   store_peak_max=max(peaks))
    return out


def dvl_deltas(section: dict[str, Any]) -> dict[str, float]:
    """Row 7 (b): mtst − loop, in points, for every metric shown."""
    rows = section["rows"]
    return {k: rows[f"{r}_mtst"][k] - rows[f"{r}_loop"][k] for r, keys in DVL_ROWS.items()
            for k in keys}


def gpt_neo_ratios(section: dict[str, Any]) -> dict[str, float]:
    """GPT-Neo 125M over MiniLM for each figure (above 1: GPT-Neo is larger / slower)."""
    t, m, e, f = (section[k] for k in ("train", "memory", "encode", "freeze"))
    g, b = "gpt_neo_125m", "minilm"
    return {"samples_per_s": t[g]["samples_per_s"] / t[b]["samples_per_s"],
            "peak_rss": m[g]["peak_rss_mib"] / m[b]["peak_rss_mib"],
            "encode": e[g]["sentences_per_s"] / e[b]["sentences_per_s"],
            "cached_epoch": f[g]["later_epoch_s"] / f[b]["later_epoch_s"]}


def sum_overhead(o: dict[str, Any]) -> list[list[str]]:
    return fill_rows("summary.overhead", s=o, ratio_met=mark(o["ratio"] >= 0.95),
                     achieved=giga(o["achieved_flops_per_s"]["framework"]),
                     peak=giga(o["peak_flops_per_s"]),
                     efficiency_met=mark(o["efficiency"]["framework"] >= 0.5))


def sum_padding(p: dict[str, Any]) -> list[list[str]]:
    return fill_rows("summary.padding", s=p, met=mark(p["bucketed"]["real_token_share"] >= 0.9))


def sum_freeze(f: dict[str, Any]) -> list[list[str]]:
    return fill_rows("summary.freeze", s=f, met=mark(f["speedup_epochs_2_on"] >= 10))


def sum_encode(e: dict[str, Any]) -> list[list[str]]:
    return fill_rows("summary.encode", s=e,
                     met=mark(e["ratio"] >= 1.0 and e["min_cosine"] >= 0.9999))


def sum_memory(m: dict[str, Any]) -> list[list[str]]:
    enc, key = m["encode"], "peak_rss_while_encoding_mib"
    flat = enc[-1][key] - enc[0][key] < 0.1 * enc[0][key] if len(enc) >= 2 else None
    return fill_rows("summary.memory", s=m, met=mark(flat),
                     encoding=", ".join(f"{x['sentences']:,}: {x[key]:.0f} MiB" for x in enc))


def sum_quality(q: dict[str, Any]) -> list[list[str]]:
    d, wnut = q["deltas"], q["rows"].get("wnut17/framework", {})
    rows = [row for key, limit in QUALITY_LIMITS.items() if key in d
            for row in fill_rows(f"summary.quality.{key}", delta=d[key],
                                 met=mark(abs(d[key]) <= limit if limit else d[key] >= -1))]
    if "ner_f1" in wnut:
        rows += fill_rows("summary.quality.wnut17", wnut=wnut)
    return rows


def sum_scale(s: dict[str, Any]) -> list[list[str]]:
    lin, rows = scale_linearity(s), []
    if "time" in lin:
        ok = 0.75 <= lin["time"] <= 1.33 and 0.75 <= lin["memory"] <= 1.33
        rows += fill_rows("summary.scale.memory", lin=lin, met=mark(ok))
    if "store_time" in lin:
        ok = 0.75 <= lin["store_time"] <= 1.33 and lin["store_peak_max"] <= 1.1 * lin["store_peak_min"]
        rows += fill_rows("summary.scale.store", lin=lin, factor=s["stored"][-1]["factor"],
                          met=mark(ok))
    return rows


def sum_onnx(o: dict[str, Any]) -> list[list[str]]:
    t, fp32, int8 = o["targets"], o["fp32"], o["int8"]
    return fill_rows(
        "summary.onnx", s=o, identical="identical" if o["fp32_identical"] else "differ",
        fp32_met=mark(fp32["min_cosine_to_torch"] >= t["fp32_cosine"] and o["fp32_identical"]),
        int8_mean=int8.get("mean_cosine_to_torch", float("nan")), int8_gain=-o["int8_f1_drop"],
        int8_met=mark(int8["min_cosine_to_torch"] >= t["int8_cosine"]
                      and abs(o["int8_f1_drop"]) <= t["int8_f1_drop"]))


def sum_onnx_speed(s: dict[str, Any]) -> list[list[str]]:
    ours, theirs = s["min_cosine"]["mtst_int8_vs_mtst_fp32"], s["min_cosine"]["st_vs_st_fp32"]
    fair = not s.get("st_onnx_problem")  # else the baseline is sentence-transformers' torch
    return fill_rows("summary.onnx_speed" if fair else "summary.onnx_speed.torch_baseline", s=s,
                     ours=ours, theirs=theirs, met=mark(s["ratio"] >= 1.0 and ours >= 0.99))


def sum_serve(v: dict[str, Any]) -> list[list[str]]:
    errors = v["dynamic"]["errors"] + v["batch_size_1"]["errors"]
    return fill_rows("summary.serve", s=v, errors=errors,
                     met=mark(v["throughput_ratio"] >= 3 and errors == 0))


def sum_defaults_vs_loop(section: dict[str, Any]) -> list[list[str]]:
    d = dvl_deltas(section)
    return fill_rows("summary.defaults_vs_loop", met=mark(min(d.values()) >= 0),
                     deltas="; ".join(f"{k} {v:+.2f}" for k, v in d.items()))


def sum_similarity(section: dict[str, Any]) -> list[list[str]]:
    rows, deltas = section["rows"], section["three_vs_two"]
    three = rows["three_tasks"].get("sts_spearman", float("nan"))
    return [
        *fill_rows("summary.similarity", p=rows["pretrained"],
                   met=mark(abs(rows["pretrained"]["difference"]) <= 0.01)),
        *(row for freeze, kept in section["retention"].items()
          for row in fill_rows("summary.similarity.retention", freeze=freeze, kept=kept,
                               score=rows[f"joint_topic_ner/{freeze}"].get("sts_spearman",
                                                                           float("nan")))),
        *fill_rows("summary.similarity.three_tasks", score=three,
                   met=mark(rows["three_tasks"].get("sts_spearman", 0) >= 84),
                   deltas="; ".join(f"{STS_DELTA_NAMES.get(k, k)} {v:+.2f}"
                                    for k, v in deltas.items()),
                   deltas_met=mark(all(abs(v) <= 1 for v in deltas.values())))]


def sum_weighting_cost(section: dict[str, Any]) -> list[list[str]]:
    rows = section["rows"]
    return fill_rows("summary.weighting_cost", ratios="; ".join(
        f"{m} {rows[f'{m}/representation']['ratio']:.2f}× / {rows[f'{m}/parameters']['ratio']:.2f}×"
        for m in GRADIENT_METHODS))


def sum_frozen_epochs(section: dict[str, Any]) -> list[list[str]]:
    box, clock = section["black_box"], section["in_run"]["default"]
    return fill_rows("summary.frozen_epochs", s=section, box=box, clock=clock,
                     met=mark(min(box["ratio"], clock["ratio"]) >= section["target"]))


def sum_cached_loop(section: dict[str, Any]) -> list[list[str]]:
    later = section["later_epoch_s"]
    return fill_rows("summary.cached_loop", s=section, mtst=later["mtst"], bare=later["bare"],
                     met=mark(section["ratio"] <= section["aim"]))


def sum_checkpoint_bytes(section: dict[str, Any]) -> list[list[str]]:
    return fill_rows("summary.checkpoint_bytes", written="; ".join(
        f"{name} {megabytes(r['before_later_epoch_bytes'])} / "
        f"{megabytes(r['after_later_epoch_bytes'])} MB" for name, r in section["rows"].items()))


def sum_gpt_neo(section: dict[str, Any]) -> list[list[str]]:
    return fill_rows("summary.gpt_neo", r=gpt_neo_ratios(section), t=section["train"],
                     m=section["memory"], e=section["encode"], f=section["freeze"])


def sum_token_budget(s: dict[str, Any]) -> list[list[str]]:
    return fill_rows("summary.token_budget", s=s)


def sum_serve_peer(s: dict[str, Any]) -> list[list[str]]:
    return fill_rows("summary.serve_peer", clients=" / ".join(map(str, s["concurrency"])),
                     ratios="; ".join(f"{b} " + " / ".join(f"{s[b][str(c)]['ratio']:.2f}"
                                                           for c in s["concurrency"])
                                      for b in PEER_BACKENDS))


SUMMARY = {"overhead": sum_overhead, "padding": sum_padding, "freeze": sum_freeze,
           "encode": sum_encode, "memory": sum_memory, "quality": sum_quality, "scale": sum_scale,
           "onnx": sum_onnx, "onnx_speed": sum_onnx_speed, "serve": sum_serve,
           "defaults_vs_loop": sum_defaults_vs_loop, "similarity": sum_similarity,
           "weighting_cost": sum_weighting_cost, "frozen_epochs": sum_frozen_epochs,
           "cached_loop": sum_cached_loop,
           "checkpoint_bytes": sum_checkpoint_bytes, "gpt_neo": sum_gpt_neo,
           "token_budget": sum_token_budget, "serve_peer": sum_serve_peer}


def summary_rows(sections: dict[str, Any]) -> list[list[str]]:
    """Every measured section's rows in the table's order, then one row per section without
    figures, saying why."""
    rows = [row for name, fn in SUMMARY.items() if has_figures(sections.get(name))
            for row in fn(sections[name])]
    for name, section in sections.items():
        if not has_figures(section):
            reason = (section or {}).get("error") or (section or {}).get("skipped")
            rows.append(["", name, f"not measured: {reason}", "", "—"])
    return rows
