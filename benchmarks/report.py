"""The one renderer: results.json (and the words of sections.md) as BENCHMARKS.md.

Pure functions of the stored figures, so `python -m benchmarks --render` rewrites the page without
measuring. The page: one provenance table, the summary (each section's rows, judged against its
target), the machine, each section's body (sections.py), the GPU device check's section file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.common import ROOT
from benchmarks.markdown import (
    PEER_BACKENDS,
    dvl_deltas,
    fill,
    fill_rows,
    giga,
    gpt_neo_ratios,
    md,
    megabytes,
    scale_linearity,
    scrub,
    shown_path,
    table_rows,
)
from benchmarks.sections import SECTIONS

NOT_RECORDED = "not recorded"
DEVICE_SECTION = ROOT / "benchmarks" / "device_check.md"  # written by scripts/device_check.sh
DEVICE_TITLE = "GPU device check"
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


def sum_overhead(o: dict[str, Any]) -> list[list[str]]:
    return fill_rows("summary.overhead", s=o, ratio_met=mark(o["ratio"] >= 0.95),
                     achieved=giga(o["achieved_flops_per_s"]["framework"]),
                     peak=giga(o["peak_flops_per_s"]),
                     efficiency_met=mark(o["efficiency"]["framework"] >= 0.5))


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
    return rows + (fill_rows("summary.quality.wnut17", wnut=wnut) if "ner_f1" in wnut else [])


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


def sum_serve_peer(s: dict[str, Any]) -> list[list[str]]:
    return fill_rows("summary.serve_peer", clients=" / ".join(map(str, s["concurrency"])),
                     ratios="; ".join(f"{b} " + " / ".join(f"{s[b][str(c)]['ratio']:.2f}"
                                                           for c in s["concurrency"])
                                      for b in PEER_BACKENDS))


# section -> its rows of the summary table, in the table's order; the one-line ones inline
SUMMARY = {
    "overhead": sum_overhead,
    "padding": lambda p: fill_rows("summary.padding", s=p,
                                   met=mark(p["bucketed"]["real_token_share"] >= 0.9)),
    "freeze": lambda f: fill_rows("summary.freeze", s=f, met=mark(f["speedup_epochs_2_on"] >= 10)),
    "encode": lambda e: fill_rows("summary.encode", s=e,
                                  met=mark(e["ratio"] >= 1.0 and e["min_cosine"] >= 0.9999)),
    "memory": sum_memory, "quality": sum_quality, "scale": sum_scale, "onnx": sum_onnx,
    "onnx_speed": sum_onnx_speed, "serve": sum_serve, "defaults_vs_loop": sum_defaults_vs_loop,
    "similarity": sum_similarity, "weighting_cost": sum_weighting_cost,
    "frozen_epochs": sum_frozen_epochs, "cached_loop": sum_cached_loop,
    "checkpoint_bytes": sum_checkpoint_bytes, "gpt_neo": sum_gpt_neo,
    "token_budget": lambda s: fill_rows("summary.token_budget", s=s),
    "serve_peer": sum_serve_peer}


def summary_rows(sections: dict[str, Any]) -> list[list[str]]:
    """Every measured section's rows, then one row per section without figures, saying why."""
    rows = [row for name, fn in SUMMARY.items() if has_figures(sections.get(name))
            for row in fn(sections[name])]
    for name, section in sections.items():
        if not has_figures(section):
            reason = (section or {}).get("error") or (section or {}).get("skipped")
            rows.append(["", name, f"not measured: {reason}", "", "—"])
    return rows


def provenance_rows(results: dict[str, Any]) -> list[list[Any]]:
    """Per section: when, at which commit, on which CPU and by which command it was measured."""
    rows = []
    for name, title, _ in SECTIONS:
        meta, section = results.get("section_meta", {}).get(name), results["sections"].get(name)
        if section is None or (not meta and "skipped" in section):
            rows.append([title, "not run" if section is None else "skipped", "—", "—", "—"])
            continue
        meta = meta or {}
        command = meta.get("command")
        rows.append([title, meta.get("measured", NOT_RECORDED), meta.get("commit", NOT_RECORDED),
                     meta.get("cpu", NOT_RECORDED), f"`{command}`" if command else NOT_RECORDED])
    return rows + [[DEVICE_TITLE, "see its section" if DEVICE_SECTION.is_file() else "not run yet",
                    "—", "—", "`scripts/device_check.sh`"]]


def _cpus(results: dict[str, Any]) -> str:
    """The CPU row of the machine table: the sections' own CPUs when they differ."""
    env, metas = results["environment"], results.get("section_meta", {})
    run_cpu = f"{env['cpu']}, {env['logical_cpus']} logical CPUs"
    seen: dict[str, int] = {}
    for name, section in results["sections"].items():
        if "skipped" not in section:  # a skipped section ran nowhere
            cpu = metas.get(name, {}).get("cpu", NOT_RECORDED)
            seen[cpu] = seen.get(cpu, 0) + 1
    if not seen or set(seen) == {run_cpu}:
        return f"{run_cpu}, torch threads {env['torch_threads']}"
    return ("differs by section (first table): " +
            "; ".join(f"{cpu} ({n} section{'s' * (n > 1)})" for cpu, n in seen.items()))


def _load(values: list[float] | None) -> str:
    return " / ".join(f"{x:.2f}" for x in values) if values else "unknown"


def _sharing(env: dict[str, Any], results: dict[str, Any]) -> str:
    """Say whether other work competed for the CPU, judged by the 1-minute load averages."""
    cpus = env.get("logical_cpus") or 1
    loads = [x[0] for x in (env.get("load_average_start"), results.get("load_average_end")) if x]
    if not loads:
        return fill("page.load_unknown")
    quiet = max(loads) <= 1 + 0.25 * cpus  # the benchmark itself keeps about one core busy
    return fill("page.load_quiet" if quiet else "page.load_shared", load=max(loads), cpus=cpus)


def device_section(path: Path | None = None) -> str:
    """The device check's part: the committed section file when there is one, else how to make it."""
    path = path or DEVICE_SECTION
    if path.is_file():
        return fill("device.included", name=path.name, text=path.read_text(encoding="utf-8").strip())
    return fill("device.missing", title=DEVICE_TITLE, name=path.name)


def section_parts(results: dict[str, Any]) -> list[str]:
    """Each benchmark's heading, its Markdown (or why it has none) and when it was measured."""
    parts = []
    for name, title, fn in SECTIONS:
        section = results["sections"].get(name)
        parts += [f"## {title}", fill("page.not_run") if section is None else
                  fill("page.not_measured", reason=section.get("error") or section.get("skipped"))
                  if not has_figures(section) else fn(section)]
        meta, seconds = results.get("section_meta", {}).get(name), results["section_seconds"].get(name)
        if meta:
            parts.append(fill("page.measured", meta=meta))
        elif seconds is not None:
            parts.append(fill("page.wall_time", seconds=seconds))
    return parts


def render(results: dict[str, Any]) -> str:
    """BENCHMARKS.md from a results.json dict, with no absolute path of the measuring machine."""
    env, quick = results["environment"], results["mode"] == "quick"
    later = sum("--update" in m.get("command", "") for n, m in results.get("section_meta", {}).items()
                if n in results["sections"])
    parts = [fill(
        "page.head", r=results, json_path=results.get("json_path", "benchmarks/results.json"),
        make="bench-quick" if quick else "bench",
        generated_at=results.get("generated_at", "an unrecorded date"),
        minutes=results.get("total_seconds", 0) / 60, corpora=", ".join(results["corpora"]),
        since=f"; {later} section(s) were re-measured since with `--update`" if later else "",
        data_dir=shown_path(results["data_dir"], "<data dir>"),
        provenance=table_rows(provenance_rows(results)))]
    if quick:
        parts.append(fill("page.quick"))
    parts.append(fill(
        "page.body", env=env, v=env["versions"], summary=table_rows(summary_rows(results["sections"])),
        sharing=_sharing(env, results), cpus=_cpus(results),
        ram=f"{env['ram_gib']:.1f} GiB" if env.get("ram_gib") else "unknown",
        load_start=_load(env.get("load_average_start")), load_end=_load(results.get("load_average_end")),
        budgets=", ".join(f"{k}={val}" for k, val in results["budget"].items() if k != "name")))
    return scrub(md(*parts, *section_parts(results), device_section()) + "\n", results.get("data_dir"))
