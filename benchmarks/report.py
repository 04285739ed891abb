"""The one renderer: results.json as BENCHMARKS.md (pure functions of the stored figures).

The page shows the current figures only: one provenance table first (each section's date,
commit, CPU and command), the summary, the machine, then one section per benchmark (`SECTIONS`:
name, title, renderer) and the GPU device check's section file. The history of re-measurements
stays in git and in results.json's `updates`.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT

SIDE_PYTHON = "<python of a side environment>"
NOT_RECORDED = "not recorded"
DEVICE_SECTION = ROOT / "benchmarks" / "device_check.md"  # written by scripts/device_check.sh
DEVICE_TITLE = "GPU device check"
# an absolute path of the machine a run was made on (a home, a temporary folder, a workspace)
_ABSOLUTE = re.compile(r"(?<![\w.~:/-])/(?:work|tmp|root|home|Users|mnt|var|scratch)/[^\s`'\"()<>,;|]*")


def table(header: list[str], rows: list[list[Any]], align: str = "") -> str:
    """A Markdown table; `align` holds one letter per column, `r` for a right-aligned one."""
    rule = "|" + "|".join("---:" if a == "r" else "---" for a in align.ljust(len(header))) + "|"
    return "\n".join(["| " + " | ".join(header) + " |", rule]
                     + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def md(*blocks: str) -> str:
    """Paragraphs and tables, one blank line between each."""
    return "\n\n".join(blocks)


def shown_path(path: str | Path, placeholder: str = "<local path>") -> str:
    """A path as results.json and BENCHMARKS.md keep it: relative to the checkout (or its parent,
    where ../shared/data lives) or a placeholder, because another reader's machine has neither
    this machine's home nor its temporary virtual environments."""
    text = str(path)
    if not os.path.isabs(text):
        return text
    # the checkout, and the shared folder beside it; not the whole parent, which may be /tmp
    for base, prefix in ((ROOT, ""), (ROOT.parent / "shared", "../shared/")):
        try:
            rel = Path(text).relative_to(base)
        except ValueError:
            continue
        return f"{prefix}{rel.as_posix()}" if rel.parts else prefix.rstrip("/") or "."
    return SIDE_PYTHON if Path(text).name.startswith("python") else placeholder


def scrub(value: Any, data_dir: str | None = None) -> Any:
    """`value` (text, or a results dict recursively) with every absolute path replaced by
    `shown_path`; `data_dir`, when given, first becomes its relative name or `<data dir>`."""
    if isinstance(value, dict):
        return {k: scrub(v, data_dir) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v, data_dir) for v in value]
    if not isinstance(value, str):
        return value
    if data_dir and os.path.isabs(data_dir):  # the folder itself, not a longer name holding it
        value = re.sub(rf"(?<![\w./-]){re.escape(data_dir)}(?![\w.-])",
                       shown_path(data_dir, "<data dir>"), value)
    return _ABSOLUTE.sub(lambda m: shown_path(m.group(0)), value)


def _yes(ok: bool | None) -> str:
    return "—" if ok is None else ("yes" if ok else "**no**")


def _g(x: float) -> str:
    return f"{x / 1e9:.1f}"


def _list(xs: list[float], fmt: str = "{:.1f}") -> str:
    return ", ".join(fmt.format(x) for x in xs)


def _ok(section: dict[str, Any] | None) -> bool:
    return bool(section) and "error" not in section and "skipped" not in section


def profile_table(entries: list[dict[str, Any]]) -> str:
    seconds = bool(entries) and "self_s" in entries[0]
    return table(["function / operator", "calls", "self time (ms)", "share"], [
        [f"`{e['name'][:90]}`", e["calls"],
         f"{e['self_s'] * 1000:.0f}" if seconds else f"{e['self_ms']:.0f}", f"{e['share']:.1%}"]
        for e in entries])


# ---- the summary table: one function per section, in the table's order ----

def sum_overhead(o: dict[str, Any]) -> list[list[Any]]:
    eff = o["efficiency"]["framework"]
    return [["1", "training: framework / plain loop, samples/s (median of paired ratios)",
             f"{o['ratio']:.3f} ({o['framework_samples_per_s']:.1f} vs "
             f"{o['plain_samples_per_s']:.1f})", "≥ 0.95", _yes(o["ratio"] >= 0.95)],
            ["2", "training FLOP/s / measured fp32 matmul peak (batch 32)",
             f"{eff:.1%} ({_g(o['achieved_flops_per_s']['framework'])} of "
             f"{_g(o['peak_flops_per_s'])} GFLOP/s)", "≥ 50%", _yes(eff >= 0.5)]]


def sum_padding(p: dict[str, Any]) -> list[list[Any]]:
    share = p["bucketed"]["real_token_share"]
    return [["3", "real-token share, CoNLL-2003 train (bucketed / not)",
             f"{share:.1%} / {p['unbucketed']['real_token_share']:.1%}; epoch time "
             f"{p['epoch_time_ratio']:.2f}× faster", "≥ 90%", _yes(share >= 0.9)]]


def sum_freeze(f: dict[str, Any]) -> list[list[Any]]:
    return [["4", "freeze=backbone epoch time, no cache / cache (epochs ≥ 2)",
             f"{f['speedup_epochs_2_on']:.1f}×", "≥ 10×", _yes(f["speedup_epochs_2_on"] >= 10)]]


def sum_encode(e: dict[str, Any]) -> list[list[Any]]:
    return [["5", "encode: mtst / sentence-transformers sentences/s; min cosine",
             f"{e['ratio']:.3f}; {e['min_cosine']:.6f}", "≥ 1.0; ≥ 0.9999",
             _yes(e["ratio"] >= 1.0 and e["min_cosine"] >= 0.9999)]]


def sum_memory(m: dict[str, Any]) -> list[list[Any]]:
    enc, key = m["encode"], "peak_rss_while_encoding_mib"
    flat = enc[-1][key] - enc[0][key] < 0.1 * enc[0][key] if len(enc) >= 2 else None
    return [["6", "peak RSS: training run; while encoding n sentences",
             f"{m['train']['peak_rss_mib']:.0f} MiB; "
             + ", ".join(f"{x['sentences']:,}: {x[key]:.0f} MiB" for x in enc),
             "encoding memory flat in n", _yes(flat)]]


QUALITY_SUMMARY = [  # delta key, measure, target text, within
    ("framework_vs_reference_ner_f1", "NER F1, framework − plain loop", "within ±0.5", 0.5),
    ("framework_vs_reference_cls_acc", "topic acc, framework − plain loop", "within ±0.5", 0.5),
    ("joint_vs_single_ner_f1", "NER F1, joint − NER only", "≥ −1", None),
    ("joint_vs_single_cls_acc", "topic acc, joint − topic only", "≥ −1", None)]


def sum_quality(q: dict[str, Any]) -> list[list[Any]]:
    d, wnut = q["deltas"], q["rows"].get("wnut17/framework", {})
    rows = [["7", what, f"{d[key]:+.2f} pts", target,
             _yes(abs(d[key]) <= limit if limit else d[key] >= -1)]
            for key, what, target, limit in QUALITY_SUMMARY if key in d]
    if "ner_f1" in wnut:
        rows.append(["7", "WNUT-17 entity F1 (framework, same budget)", f"{wnut['ner_f1']:.2f}",
                     "—", "—"])
    return rows


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


def sum_scale(s: dict[str, Any]) -> list[list[Any]]:
    lin, rows = scale_linearity(s), []
    if "time" in lin:
        ok = 0.75 <= lin["time"] <= 1.33 and 0.75 <= lin["memory"] <= 1.33
        rows.append(["8", "in memory: cost of one more copy, last step over the one before, "
                     "time / memory (1 = linear)", f"{lin['time']:.2f} / {lin['memory']:.2f}",
                     "≈ 1 (linear)", _yes(ok)])
    if "store_time" in lin:
        ok = 0.75 <= lin["store_time"] <= 1.33 and lin["store_peak_max"] <= 1.1 * lin["store_peak_min"]
        rows.append(["8", f"memory-mapped up to {s['stored'][-1]['factor']}×: same time ratio; "
                     "peak RSS while loading", f"{lin['store_time']:.2f}; "
                     f"{lin['store_peak_min']:.0f}–{lin['store_peak_max']:.0f} MiB", "≈ 1; flat",
                     _yes(ok)])
    return rows


def sum_onnx(o: dict[str, Any]) -> list[list[Any]]:
    t, fp32, int8 = o["targets"], o["fp32"], o["int8"]
    return [["9", "ONNX fp32 vs torch: smallest embedding cosine; labels and entities on "
             "CoNLL-2003 test", f"{fp32['min_cosine_to_torch']:.7f}; "
             f"{'identical' if o['fp32_identical'] else 'differ'}", "≥ 0.99999; identical",
             _yes(fp32["min_cosine_to_torch"] >= t["fp32_cosine"] and o["fp32_identical"])],
            ["9", "ONNX int8: smallest (mean) embedding cosine to torch; NER F1 int8 − fp32",
             f"{int8['min_cosine_to_torch']:.5f} "
             f"({int8.get('mean_cosine_to_torch', float('nan')):.5f}); "
             f"{-o['int8_f1_drop']:+.2f} pts", "≥ 0.99; within 1",
             _yes(int8["min_cosine_to_torch"] >= t["int8_cosine"]
                  and abs(o["int8_f1_drop"]) <= t["int8_f1_drop"])]]


def sum_onnx_speed(s: dict[str, Any]) -> list[list[Any]]:
    ours, theirs = s["min_cosine"]["mtst_int8_vs_mtst_fp32"], s["min_cosine"]["st_vs_st_fp32"]
    fair = not s.get("st_onnx_problem")
    return [["10", "encode: mtst ONNX int8 / " + ("sentence-transformers ONNX int8" if fair else
             "sentence-transformers torch fp32 (its ONNX backend does not install)")
             + "; smallest cosine to own fp32, mtst / sentence-transformers",
             f"{s['ratio']:.2f}; {ours:.4f} / {theirs:.4f}", "≥ 1.0; mtst's ≥ 0.99",
             _yes(s["ratio"] >= 1.0 and ours >= 0.99) if fair else "not measured"]]


def sum_serve(v: dict[str, Any]) -> list[list[Any]]:
    errors = v["dynamic"]["errors"] + v["batch_size_1"]["errors"]
    return [["11", f"mtst serve, {v['clients']} clients, {v['duration_s']:g} s: dynamic batching "
             "/ --max-batch-size 1 throughput; errors",
             f"{v['throughput_ratio']:.2f}× ({v['dynamic']['throughput_rps']:.0f} vs "
             f"{v['batch_size_1']['throughput_rps']:.0f} req/s); {errors}", "≥ 3×; 0",
             _yes(v["throughput_ratio"] >= 3 and errors == 0)]]


DVL_NAMES = {"ner_f1": "entity F1", "cls_acc": "accuracy", "cls_macro_f1": "macro-F1"}
DVL_ROWS = {"ner": ("ner_f1",), "topic": ("cls_acc", "cls_macro_f1")}


def dvl_deltas(section: dict[str, Any]) -> dict[str, float]:
    """Row 7 (b): mtst − loop, in points, for every metric shown."""
    rows = section["rows"]
    return {k: rows[f"{r}_mtst"][k] - rows[f"{r}_loop"][k] for r, keys in DVL_ROWS.items()
            for k in keys}


def sum_defaults_vs_loop(section: dict[str, Any]) -> list[list[Any]]:
    d = dvl_deltas(section)
    return [["7 (b)", "mtst defaults (experiment=minilm) − plain loop, test points",
             "; ".join(f"{k} {v:+.2f}" for k, v in d.items()), "≥ 0 on each",
             _yes(min(d.values()) >= 0)]]


def sum_similarity(section: dict[str, Any]) -> list[list[Any]]:
    rows, p, deltas = section["rows"], section["rows"]["pretrained"], section["three_vs_two"]
    three = rows["three_tasks"].get("sts_spearman", float("nan"))
    labels = {"ner_f1": "NER F1", "topic_acc": "topic acc", "topic_macro_f1": "topic macro-F1"}
    return [["12", "STS-B test Spearman, pretrained MiniLM: mtst / sentence-transformers evaluator",
             f"{p['mtst_spearman']:.2f} / {p['sentence_transformers_spearman']:.2f}",
             "equal (0.01)", _yes(abs(p["difference"]) <= 0.01)],
            *[["12", f"STS-B test after topic + NER training, freeze={freeze} (share of "
               "pretrained kept)", f"{rows[f'joint_topic_ner/{freeze}'].get('sts_spearman', float('nan')):.2f}"
               f" ({kept:.1%})", "—", "—"] for freeze, kept in section["retention"].items()],
            ["12", "three tasks (+ CoSENT on STS-B train): STS-B test Spearman", f"{three:.2f}",
             "≥ 84", _yes(rows["three_tasks"].get("sts_spearman", 0) >= 84)],
            ["12", "three tasks − two tasks: NER F1, topic acc / macro-F1 (points)",
             "; ".join(f"{labels.get(k, k)} {v:+.2f}" for k, v in deltas.items()), "within ±1",
             _yes(all(abs(v) <= 1 for v in deltas.values()))]]


GRADIENT_METHODS = ("pcgrad", "cagrad", "nash_mtl", "gradnorm")


def sum_weighting_cost(section: dict[str, Any]) -> list[list[Any]]:
    rows = section["rows"]
    return [["13", "per-step cost of gradient weighting / fixed (grad_on=representation / "
             "parameters)", "; ".join(f"{m} {rows[f'{m}/representation']['ratio']:.2f}× / "
                                      f"{rows[f'{m}/parameters']['ratio']:.2f}×"
                                      for m in GRADIENT_METHODS), "—", "—"]]


def sum_frozen_epochs(section: dict[str, Any]) -> list[list[Any]]:
    box, clock = section["black_box"], section["in_run"]["default"]
    return [["16", "freeze=backbone, whole train.py runs: first epoch / later epoch",
             f"black-box {box['ratio']:.1f}× ({box['first_epoch_s']:.1f} s / "
             f"{box['later_epoch_s']:.2f} s); in-run {clock['ratio']:.1f}× "
             f"({clock['first_epoch_s']:.1f} s / {clock['later_epoch_s']:.2f} s); bare loop "
             f"{section['in_run']['bare']['ratio']:.1f}×", f"≥ {section['target']:g}×",
             _yes(min(box["ratio"], clock["ratio"]) >= section["target"])]]


def _mb(value: float) -> str:
    return f"{value / 1e6:.1f}" if value >= 1e7 else f"{value / 1e6:.2f}"


def sum_checkpoint_bytes(section: dict[str, Any]) -> list[list[Any]]:
    return [["16", "checkpoint bytes written per epoch, before / after (backbone, bitfit, none)",
             "; ".join(f"{name} {_mb(r['before_later_epoch_bytes'])} / "
                       f"{_mb(r['after_later_epoch_bytes'])} MB"
                       for name, r in section["rows"].items()), "—", "—"]]


def gpt_neo_ratios(section: dict[str, Any]) -> dict[str, float]:
    """GPT-Neo 125M over MiniLM for each figure (above 1: GPT-Neo is larger / slower)."""
    t, m, e, f = (section[k] for k in ("train", "memory", "encode", "freeze"))
    g, b = "gpt_neo_125m", "minilm"
    return {"samples_per_s": t[g]["samples_per_s"] / t[b]["samples_per_s"],
            "peak_rss": m[g]["peak_rss_mib"] / m[b]["peak_rss_mib"],
            "encode": e[g]["sentences_per_s"] / e[b]["sentences_per_s"],
            "cached_epoch": f[g]["later_epoch_s"] / f[b]["later_epoch_s"]}


def sum_gpt_neo(section: dict[str, Any]) -> list[list[Any]]:
    t, m, e, f = (section[k] for k in ("train", "memory", "encode", "freeze"))
    r, g, b = gpt_neo_ratios(section), "gpt_neo_125m", "minilm"
    return [["16", "GPT-Neo 125M (random weights) / MiniLM: training samples/s, peak RSS, encode "
             "sentences/s, cached freeze=backbone epoch s",
             f"{r['samples_per_s']:.2f}× ({t[g]['samples_per_s']:.1f} vs {t[b]['samples_per_s']:.1f}); "
             f"{r['peak_rss']:.2f}× ({m[g]['peak_rss_mib']:,.0f} vs {m[b]['peak_rss_mib']:,.0f} MiB); "
             f"{r['encode']:.2f}× ({e[g]['sentences_per_s']:.0f} vs {e[b]['sentences_per_s']:.0f}); "
             f"{r['cached_epoch']:.2f}× ({f[g]['later_epoch_s']:.2f} vs {f[b]['later_epoch_s']:.2f} s)",
             "—", "—"]]


def sum_token_budget(s: dict[str, Any]) -> list[list[Any]]:
    return [["16", f"token-budget batches (data.max_tokens={s['max_tokens']}) vs batch "
             f"{s['batch_size']}: real-token share; samples/s ratio",
             f"{s['budget']['real_token_share']:.1%} vs {s['fixed']['real_token_share']:.1%}; "
             f"{s['samples_per_s_ratio']:.2f}× ({s['samples_per_s']['budget']:.0f} vs "
             f"{s['samples_per_s']['fixed']:.0f})", "—", "—"]]


PEER_BACKENDS, PEER_SIDES = ("torch", "onnx"), ("mtst", "infinity")


def sum_serve_peer(s: dict[str, Any]) -> list[list[Any]]:
    shown = "; ".join(f"{b} " + " / ".join(f"{s[b][str(c)]['ratio']:.2f}" for c in s["concurrency"])
                      for b in PEER_BACKENDS)
    return [["11 (b)", "mtst serve / Infinity, embedding req/s at "
             + " / ".join(map(str, s["concurrency"])) + " clients", shown, "—", "—"]]


SUMMARY = {"overhead": sum_overhead, "padding": sum_padding, "freeze": sum_freeze,
           "encode": sum_encode, "memory": sum_memory, "quality": sum_quality, "scale": sum_scale,
           "onnx": sum_onnx, "onnx_speed": sum_onnx_speed, "serve": sum_serve,
           "defaults_vs_loop": sum_defaults_vs_loop, "similarity": sum_similarity,
           "weighting_cost": sum_weighting_cost, "frozen_epochs": sum_frozen_epochs,
           "checkpoint_bytes": sum_checkpoint_bytes, "gpt_neo": sum_gpt_neo,
           "token_budget": sum_token_budget, "serve_peer": sum_serve_peer}


def summary_rows(sections: dict[str, Any]) -> list[list[Any]]:
    rows = [row for name, fn in SUMMARY.items() if _ok(sections.get(name))
            for row in fn(sections[name])]
    for name, section in sections.items():
        if not _ok(section):
            reason = (section or {}).get("error") or (section or {}).get("skipped")
            rows.append(["", name, f"not measured: {reason}", "", "—"])
    return rows


# ---- one renderer per section: setup in words, tables, profiles where a target is missed ----

def md_overhead(o: dict[str, Any]) -> str:
    fm, losses = o["flop_model"], o["losses_repeat1"]
    diffs = [abs(a - b) for a, b in zip(losses["framework"], losses["plain"], strict=True)]
    parts = [
        "Setup: all-MiniLM-L6-v2 (`backbone=minilm`), `conf/data/conll_agnews.yaml` (CoNLL-2003 "
        "train + AG News titles rows 0-5,999, temperature sampling, length bucketing, batch "
        f"{o['batch_size']}), fp32 on CPU. **Framework**: `MultiTaskModule` through the Trainer "
        "built by `mtst.training.pipeline.build_trainer` (gradient clipping 1.0 from "
        "`conf/trainer/default.yaml`; progress bar, checkpoints, loggers and validation off). "
        "**Plain**: `benchmarks/training.py::ReferenceLoop`, a hand-written loop (forward, "
        "cross-entropy per task present, backward, clip, AdamW, LambdaLR) over the same model "
        "object reset to the same weights and seed, the same DataModule batches, the same AdamW "
        f"parameter groups and warm-up/decay schedule. {o['steps_timed']} timed steps after "
        f"{o['warmup_steps']} warm-up steps per repeat (data loading included), "
        f"{o['repeats']} repeats per side in ABBA order (framework, plain, plain, framework, ...).",
        table(["side", "samples/s per repeat", "median samples/s", "achieved GFLOP/s (median)",
               "of measured peak"], [
            [side, _list(o["samples_per_s"][side]), f"{o[f'{side}_samples_per_s']:.1f}",
             _g(o["achieved_flops_per_s"][side]), f"{o['efficiency'][side]:.1%}"]
            for side in ("framework", "plain")]),
        f"**Row 1 ratio** (framework / plain, median of the per-repeat ratios): "
        f"**{o['ratio']:.3f}** (target ≥ 0.95); per repeat: "
        f"{_list(o['ratio_per_repeat'], '{:.3f}')}; ratio of the median samples/s: "
        f"{o['ratio_of_medians']:.3f}.",
        f"Same computation check: the first step's loss is {losses['framework'][0]:.6f} "
        f"(framework) and {losses['plain'][0]:.6f} (plain). Later steps differ by up to "
        f"{max(diffs):.3f}: the framework keeps an absent task's loss in the graph as 0·logits "
        "(`mtst.tasks.losses.masked_cross_entropy`, for DDP), so AdamW still moves that head with "
        "its momentum and weight decay, while the plain loop leaves a head without a gradient "
        "untouched. Same FLOPs either way.",
        f"**Row 2 formula**: {o['flop_formula']}. Here N = {fm['matmul_params']:,}, "
        f"L = {fm['layers']}, d = {fm['hidden']}; mean padded length T = {o['mean_padded_len']:.1f} "
        f"({o['mean_padded_tokens']} tokens a batch). Measured fp32 matmul peak "
        f"(`torch.matmul`, square 1024/2048, median of 5, best size; before and after the "
        f"training runs): {_g(o['matmul_peak']['before']['flops_per_s'])} and "
        f"{_g(o['matmul_peak']['after']['flops_per_s'])} GFLOP/s; the higher, "
        f"{_g(o['peak_flops_per_s'])} GFLOP/s, is the denominator.",
        "The same kernel on the shapes a batch really multiplies: " + ", ".join(
            f"{k}: {_g(v)} GFLOP/s" for k, v in o["model_shaped_matmul"].items()) + ".",
    ]
    if o["efficiency"]["framework"] < o["target_efficiency"]:
        parts += ["**Shortfall (row 2)**: where the time of four plain training steps goes "
                  "(torch.profiler, operators by self CPU time):", profile_table(o["profile_ops"])]
    if phases := o.get("phases_ms"):
        total = sum(phases.values()) or 1.0
        parts += ["Plain training step by phase (mean over the profiled batches, ms):",
                  table(list(phases), [[f"{v:.0f} ({v / total:.0%})" for v in phases.values()]])]
    if adam := o.get("adamw_step_ms"):
        cells = [f"{adam[v]:.0f}" if isinstance(adam[v], float) else adam[v]
                 for v in ("single_tensor", "foreach", "fused")]
        parts += [f"One AdamW step over all {adam['parameters']:,} parameters (median ms; "
                  "`build_optimizer` uses the fused kernel, `model.optimizer.fused`, fused by "
                  "default in fp32):", table(["single-tensor", "foreach", "fused (used)"], [cells]),
                  "Both sides use the fused kernel. The rest of the gap to the matmul peak: "
                  "backward and forward run many small element-wise kernels (dropout masks, GELU, "
                  "LayerNorm, softmax) next to the matmuls, and the AdamW update reads and writes "
                  "every parameter at every step (for MiniLM, 11.7 M of the 22.7 M are word "
                  "embeddings, most of them untouched by any given batch)."]
    if "profile_framework" in o:
        parts += ["**Shortfall (row 1)**: Python functions by own time during one framework "
                  "repeat (cProfile):", profile_table(o["profile_framework"])]
    return md(*parts)


def md_padding(p: dict[str, Any]) -> str:
    return md(
        f"CoNLL-2003 train alone ({p['examples']:,} sentences, MiniLM tokenizer, batch "
        f"{p['batch_size']}), the DataModule's batch sampler for epoch 0. Real-token share = real "
        "sub-tokens / (batch size × longest in batch), over all batches (token-weighted, "
        "`benchmarks/data_pipeline.py::padded_share`) and per batch. Epoch time: "
        f"{p['timed_batches_per_order']} evenly spaced batches of each order trained alternately "
        "(plain training step), epoch ≈ mean step time × batches.",
        table(["order", "real-token share (all)", "median batch", "10th pct batch", "batches",
               "median step s", "epoch s (est.)"],
              [[k, f"{p[k]['real_token_share']:.1%}", f"{p[k]['median_batch_share']:.1%}",
                f"{p[k]['p10_batch_share']:.1%}", p[k]["batches"], f"{p['median_step_s'][k]:.3f}",
                f"{p['epoch_s_estimate'][k]:.0f}"] for k in ("bucketed", "unbucketed")]),
        f"Epoch-time ratio, unbucketed / bucketed: **{p['epoch_time_ratio']:.2f}×**.")


def md_freeze(f: dict[str, Any]) -> str:
    return md(
        f"`freeze=backbone` (MiniLM, batch {f['batch_size']}) on the first {f['examples']:,} "
        f"CoNLL-2003 train and {f['val_examples']} validation sentences, {f['epochs']} epochs; "
        "`freeze.cache_features` false vs true (cache dtype "
        f"{f['cache_dtype']}), via `benchmarks/freeze_cache.py::run_side`.",
        table(["run", "epoch s (with validation)", "training part s", "cache MiB", "cache hits"],
              [[k.replace("_", " "), _list(f[k]["epoch_s"]), _list(f[k]["train_s"]),
                f"{f[k]['cache_mb']:.1f}", f[k].get("cache_hits", "—")] for k in ("no_cache", "cache")]),
        f"Speed-up after epoch 1 (median of epochs ≥ 2, no cache / cache): "
        f"**{f['speedup_epochs_2_on']:.1f}×** with validation, "
        f"{f['speedup_train_part']:.1f}× for the training part (target ≥ 10×); epoch 1 with the "
        f"cache costs {f['first_epoch_ratio']:.2f}× the uncached one (it also stores the features).")


def md_encode(e: dict[str, Any]) -> str:
    parts = [
        f"{e['sentences']:,} AG News titles, batch {e['batch_size']}, fp32, "
        f"{e['threads']} torch threads, L2-normalised outputs; "
        f"`SentenceEncoder.encode` vs `SentenceTransformer.encode` on the same MiniLM folder, "
        f"{e['repeats']} alternating rounds after a warm-up.",
        table(["encoder", "sentences/s (median)"], [["mtst", f"{e['mtst_per_s']:.1f}"],
                                                    ["sentence-transformers", f"{e['st_per_s']:.1f}"]]),
        f"Ratio (median of rounds): **{e['ratio']:.3f}** (rounds: "
        f"{_list(e['ratio_per_round'], '{:.3f}')}); smallest cosine between the two embeddings "
        f"of a title: **{e['min_cosine']:.6f}**."]
    if "profile_mtst" in e:
        parts += ["**Shortfall**: operators of 512 titles, mtst:", profile_table(e["profile_mtst"]),
                  "sentence-transformers:", profile_table(e["profile_st"])]
    return md(*parts)


def md_memory(m: dict[str, Any]) -> str:
    t = m["train"]
    return md(
        "Each measurement in a fresh process (`python -m benchmarks.memory ...`); peak = the "
        "process's VmHWM (the encode stage's own peak: VmHWM reset after the model is loaded). "
        "Encoding consumes each batch's embeddings as it arrives, so only one batch of vectors "
        "is alive at a time.",
        table(["run", "RSS before (MiB)", "peak RSS (MiB)", "peak while encoding (MiB)", "throughput"],
              [["training run (fit + test), MiniLM, CoNLL-2003 + AG News",
                f"{t['rss_after_imports_mib']:.0f}", f"{t['peak_rss_mib']:.0f}", "—",
                f"{t['steps']} steps in {t['seconds']:.0f} s"]]
              + [[f"encode {x['sentences']:,} AG News titles (cycled) via `iter_encode`",
                  f"{x['rss_after_load_mib']:.0f}", f"{x['peak_rss_mib']:.0f}",
                  f"{x['peak_rss_while_encoding_mib']:.0f}", f"{x['sentences_per_s']:.0f} sentences/s"]
                 for x in m["encode"]]))


QUALITY_ROWS = [("ner_only/framework", "(a) NER only, CoNLL-2003 — framework"),
                ("ner_only/reference", "(d) NER only — plain loop"),
                ("topic_only/framework", "(b) topic only, AG News titles — framework"),
                ("topic_only/reference", "(d) topic only — plain loop"),
                ("joint/framework", "(c) joint, both corpora, partial labels — framework"),
                ("wnut17/framework", "WNUT-17, NER only — framework")]


def md_quality(q: dict[str, Any]) -> str:
    def cell(row: dict[str, Any], key: str) -> str:
        return f"{row[key]:.2f}" if key in row else "—"

    return md(
        f"Budget: {q['steps_per_task']} optimizer steps of batch {q['batch_size']} per task "
        "(the joint row trains twice as many steps with `data.sampling=round_robin`, so each "
        "task sees as many batches as alone), MiniLM, lr 1e-3 heads / 5e-5 encoder, 10% "
        "warm-up then linear decay, no validation or model selection, test after the last step "
        f"(test batches: {q['test_batches']}). AG News: the shared copy holds only test.csv; "
        "rows 0-5,999 train, 6,000-6,799 validation, 6,800-7,599 test (by row index, "
        "~200 of each class in the test part). CoNLL-2003 and WNUT-17: their own "
        "train/test files. Framework rows: `mtst.training.pipeline.train` on the composed "
        "Hydra config; plain-loop rows: `ReferenceLoop` on the same batches, scored with "
        "seqeval (entity F1, first sub-token of each word) and scikit-learn.",
        table(["run", "steps", "entity F1", "accuracy", "macro-F1", "seconds"],
              [[label, r["steps"], cell(r, "ner_f1"), cell(r, "cls_acc"), cell(r, "cls_macro_f1"),
                f"{r['seconds']:.0f}"] for key, label in QUALITY_ROWS if (r := q["rows"].get(key))]),
        "Differences in points (framework − plain loop: target within ±0.5; joint − single "
        "task: target ≥ −1):",
        table(["comparison", "Δ points"], [[k.replace("_", " "), f"{v:+.2f}"]
                                          for k, v in q["deltas"].items()]))


def md_defaults_vs_loop(section: dict[str, Any]) -> str:
    n, e, loop, rows = section["examples"], section["epochs"], section["loop"], section["rows"]
    m = rows["ner_mtst"]["settings"]
    return md(
        f"NER: first {n['ner']:,} CoNLL-2003 train sentences, {e['ner']} epoch, CoNLL-2003 test. "
        f"Topics: {n['topic']:,} AG News titles, {e['topic']} epochs, rows 6,800-7,599. "
        f"mtst: `python train.py experiment=minilm data=conll_agnews trainer.max_epochs=E` with "
        f"the other task removed (batch {m['batch_size']}, heads {m['lr_head']:g}, encoder "
        f"{m['lr_backbone']:g}, {m['warmup_ratio']:.0%} warm-up then linear decay, clipping "
        f"{m['clip']}, head dropout {m['dropout']:g}, `best.ckpt` by validation score). Plain "
        f"loop: AdamW at {loop['lr']:g} for every parameter, batch {loop['batch_size']}, no "
        "schedule, no clipping, no validation, tested after its last step.",
        table(["task", "side", "metric", "test score", "seconds"], [
            [r, "mtst defaults" if side == "mtst" else "plain loop", DVL_NAMES[k],
             f"{rows[f'{r}_{side}'][k]:.2f}", f"{rows[f'{r}_{side}']['seconds']:.0f}"]
            for r, keys in DVL_ROWS.items() for side in ("mtst", "loop") for k in keys], "lllrr"),
        "mtst − plain loop (points): " + "; ".join(
            f"{DVL_NAMES[k]} ({k.split('_')[0]}) {v:+.2f}" for k, v in dvl_deltas(section).items())
        + ".")


def md_scale(s: dict[str, Any]) -> str:
    pts, stored, lin = s["points"], s.get("stored", []), scale_linearity(s)

    def steps(points: list[dict[str, Any]]) -> str:
        return " → ".join(f"{p['factor']}×" for p in points)

    parts = [
        "Each run in a fresh process (`python -m benchmarks.scale --factor k [--store]`): k copies "
        "of CoNLL-2003 train.txt back to back in one file, then `MultiTaskDataModule.dataset"
        "(\"train\")` (stream the file line by line, validate, tokenise with MiniLM, align labels; "
        "what `setup` does once per split) and the first "
        f"{s.get('first_batches', 50)} training batches through the DataLoader. *memory*: the "
        "encoded split is held as flat columns in RAM; *disk*: `data.store_dir` set, the columns "
        "are written chunk by chunk and memory-mapped.",
        table(["copies", "encoded split", "sentences", "file MiB", "encoded MiB", "load s",
               "µs / sentence", "first batches s", "RSS before MiB", "peak while loading MiB",
               "peak incl. batches MiB"],
              [[f"{p['factor']}×", "disk (mmap)" if p["store"] else "memory", f"{p['sentences']:,}",
                f"{p['file_mb']:.0f}", f"{p['store_mib']:.0f}", f"{p['load_s']:.1f}",
                f"{1e6 * p['load_s'] / p['sentences']:.0f}", f"{p['first_batches_s']:.2f}",
                f"{p['rss_base_mib']:.0f}", f"{p['load_peak_rss_mib']:.0f}",
                f"{p['peak_rss_mib']:.0f}"] for p in pts + stored])]
    if "time" in lin:
        parts.append(
            f"In memory ({steps(pts)}): one more copy costs "
            f"{_list(s['memory_time_per_copy_s'], '{:.2f}')} s and "
            f"{_list(s['memory_mib_per_copy'])} MiB per step; the last step's over the one "
            f"before: time {lin['time']:.2f}, memory {lin['memory']:.2f} (1.00 = linear). "
            f"Projected 1000× in memory: {s['projected_1000x_peak_mib'] / 1024:.1f} GiB peak "
            f"against {s['mem_total_mib'] / 1024:.1f} GiB of RAM; the in-memory limit is about "
            f"{s['copies_fitting_80pct_ram']:,} copies "
            f"({s['copies_fitting_80pct_ram'] * 14041 / 1e6:.0f} M sentences) in 80% of RAM.")
    if "store_time" in lin:
        big = stored[-1]
        per_example = max(big["order_extra_mib"], 0.0) * 2**20 / big["sentences"]
        ram_examples = 0.8 * s["mem_total_mib"] * 2**20 / max(per_example, 1.0) / 1e6
        parts.append(
            f"Memory-mapped ({steps(stored)}): "
            f"one more copy costs {_list(s['store_time_per_copy_s'], '{:.2f}')} s per step "
            f"(last over previous {lin['store_time']:.2f}); the peak while loading stays "
            f"between {lin['store_peak_min']:.0f} and {lin['store_peak_max']:.0f} MiB at every "
            "size: chunks stream to disk and nothing per example is kept. What still grows "
            "with the corpus is the batch sampler's epoch order, flat index arrays built "
            f"while shuffling and sorting (+{big['order_extra_mib']:.0f} MiB peak at "
            f"{big['factor']}×, {per_example:.0f} bytes per example), and the pages of the "
            "store that batches read, which RSS counts but the kernel can drop (from before "
            f"loading to the end of the {big['factor']}× run: +{big['rss_anon_growth_mib']:.0f}"
            f" MiB anonymous, +{big['rss_file_growth_mib']:.0f} MiB file-backed). So with "
            f"`store_dir` the limits are the disk ({big['store_mib'] / big['factor']:.1f} MiB "
            f"per copy, {big['store_mib'] / 1024:.1f} GiB at {big['factor']}×) and the "
            f"sampler: about {ram_examples:,.0f} M examples fit in 80% of this RAM.")
    if profile := next((p["profile"] for p in pts if "profile" in p), None):
        parts += ["Where the time goes at 1× (cProfile of a second in-memory load in the same "
                  "process, functions by own time):", profile_table(profile)]
    return md(*parts)


def md_onnx(o: dict[str, Any]) -> str:
    rows = []
    for k in ("fp32", "int8"):
        r = o[k]
        rows.append([f"ONNX {k} ({o['graph_mib'][k]:.0f} MiB)", f"{r['min_cosine_to_torch']:.7f} / "
                     f"{r.get('mean_cosine_to_torch', float('nan')):.7f}",
                     f"{r['word_tags_differ']} of {o['sentences']:,}",
                     f"{r['topics_differ']} of {o['titles']:,}",
                     f"{r['entities_differ']} / {r['topic_label_differs']}"
                     if "entities_differ" in r else "—", f"{r['ner_f1']:.2f}"])
    return md(
        f"A MiniLM topic + NER model trained for {o['train_steps']} steps (batch 32, "
        "`data.sampling=round_robin` over CoNLL-2003 train and AG News titles rows 0-5,999, "
        f"{o['train_seconds']:.0f} s), exported with `--onnx --quantize int8`; torch, the fp32 "
        f"graph and the int8 graph on the {o['sentences']:,} CoNLL-2003 test sentences (words "
        f"joined by spaces for `encode` and `predict`; the DataModule's test batches, with "
        f"{o['titles']:,} AG News test titles, for word tags and topics). `benchmarks/onnx_check.py`.",
        table(["model", "embedding cosine to torch, smallest / mean", "sentences with a word tag "
               "differing", "titles with another topic", "`predict`: texts with other entities / "
               "topic label", "CoNLL-2003 entity F1"],
              rows + [["torch (reference)", "1 / 1", "—", "—", "—", f"{o['torch_ner_f1']:.2f}"]]),
        f"fp32 identical to torch (tags, topics, `predict` entities and labels): "
        f"**{'yes' if o['fp32_identical'] else 'no'}**; int8 F1 − fp32 F1: "
        f"**{-o['int8_f1_drop']:+.2f}** points (target: within 1).")


def md_onnx_speed(s: dict[str, Any]) -> str:
    med = s["median_per_s"]

    def pair(key: str) -> str:
        return f"{s['min_cosine'][key]:.5f} / {s.get('mean_cosine', {}).get(key, float('nan')):.5f}"

    parts = [
        f"{s['sentences']:,} AG News titles, batch {s['batch_size']}, {s['threads']} threads, "
        f"normalised; mtst `encode` with `backend=\"onnx\", quantized=True` against "
        f"{s['baseline']} on the same MiniLM weights, {s['repeats']} alternating rounds after a "
        "warm-up. `benchmarks/onnx_speed.py`.",
        table(["encoder", "sentences/s per round", "median",
               "cosine to its own fp32 torch model, smallest / mean"], [
            ["mtst ONNX int8", _list(s["per_s"]["mtst_int8"]), f"{med['mtst_int8']:.1f}",
             pair("mtst_int8_vs_mtst_fp32")],
            [s["baseline"], _list(s["per_s"]["st"]), f"{med['st']:.1f}", pair("st_vs_st_fp32")]]),
        f"Ratio (median of rounds): **{s['ratio']:.2f}** (rounds: "
        f"{_list(s['ratio_per_round'], '{:.2f}')})."]
    measured, exported = s.get("versions"), s.get("export_versions")
    if measured and exported and measured != exported:
        parts.append("Measured in a side environment (`--st-onnx-python`, built by "
                     "`scripts/st_onnx_env.sh`), because sentence-transformers' ONNX backend needs "
                     "optimum-onnx, which requires transformers<4.58: "
                     + ", ".join(f"{k} {v}" for k, v in measured.items()) + ". Both sides ran in "
                     "that one process; the export was made in the main environment "
                     f"(transformers {exported.get('transformers')}).")
    if s.get("st_onnx_problem"):
        parts.append(f"**Not the target's comparison**: sentence-transformers' ONNX backend could "
                     f"not run here: {s['st_onnx_problem']}.")
    return md(*parts)


def md_serve(s: dict[str, Any]) -> str:
    names = {k: f"{what} (`" + " ".join(s["settings"][k]) + "`)"
             for k, what in (("dynamic", "dynamic batching"), ("batch_size_1", "no batching"))}
    before, after = s["load_average_before"], s["load_average_after"]
    return md(
        f"`python -m benchmarks.serve_load --clients {s['clients']} --duration "
        f"{s['duration_s']:g}`: the MiniLM export (untrained heads: same cost per request) behind "
        f"`mtst serve` ({s['backend']} backend, one worker, extra options: "
        f"{' '.join(s.get('server_options') or []) or 'none'}) on a free "
        f"127.0.0.1 port; {s['clients']} closed-loop clients in one asyncio process on the same "
        f"{s['cpus']} CPUs, each `POST /{s['endpoint']}` with one AG News title, over keep-alive "
        "connections (raw asyncio streams: see `Connection`); the server is stopped with SIGTERM.",
        table(["setting", f"requests in {s['duration_s']:g} s", "errors", "p50 latency",
               "p99 latency", "throughput", "exit code after SIGTERM"],
              [[names[k], f"{s[k]['requests']:,}", s[k]["errors"], f"{s[k]['p50_ms']:.0f} ms",
                f"{s[k]['p99_ms']:.0f} ms", f"{s[k]['throughput_rps']:.1f} req/s", s[k]["exit_code"]]
               for k in ("dynamic", "batch_size_1")]),
        f"Throughput ratio, dynamic / batch size 1: **{s['throughput_ratio']:.2f}×** (target ≥ 3×). "
        f"Load average (1 / 5 / 15 min) before {before[0]:.2f} / {before[1]:.2f} / {before[2]:.2f}, "
        f"after {after[0]:.2f} / {after[1]:.2f} / {after[2]:.2f}.")


def md_serve_peer(s: dict[str, Any]) -> str:
    from benchmarks.serving_peer import ROUTE, request

    rows = [[b, c, f"**{r['ratio']:.2f}×** ({_list(r['ratio_per_round'], '{:.2f}')})",
             *(f"{r[side]['throughput_rps']:.1f}" for side in PEER_SIDES),
             *(f"{r[x]['p50_ms']:.0f} / {r[x]['p99_ms']:.0f} ms" for x in PEER_SIDES),
             f"{r['mtst']['errors']} / {r['infinity']['errors']}"]
            for b in PEER_BACKENDS for c in map(str, s["concurrency"]) if (r := s[b][c])]
    loads = [x for b in PEER_BACKENDS for c in s["concurrency"] for side in PEER_SIDES
             for run in s[b][str(c)][side]["rounds"] for x in run["load_1min"]]
    return md(
        f"`{s['command']}` (PATH: Infinity's own environment). One MiniLM export behind `mtst "
        "serve` and behind Infinity (`infinity_emb v2` on its sentence-transformers/ folder), one "
        f"server at a time on a free 127.0.0.1 port; per backend {s['rounds']} round(s) of mtst "
        f"then Infinity, each warmed up by 3 s of load, then {s['duration_s']:g} s per concurrency "
        "of closed-loop clients (`benchmarks/serve_load.py`) on the same CPUs, one AG News title "
        f"per request as `POST {ROUTE}` `{json.dumps(request(['<title>']))}` on both. Server "
        "options: " + "; ".join(f"{b}: mtst `{' '.join(o['mtst'])}`, Infinity "
                                f"`{' '.join(o['infinity'])}`" for b, o in s["options"].items())
        + ". Smallest cosine between the two servers' embeddings of 8 titles: "
        + ", ".join(f"{s[b]['min_cosine']:.6f} ({b})" for b in PEER_BACKENDS) + ".",
        table(["backend", "clients", "req/s mtst / Infinity: median (each round)", "mtst req/s",
               "Infinity req/s", "mtst p50 / p99", "Infinity p50 / p99", "errors mtst / Infinity"],
              rows),
        f"CPU: {s['cpu']}; " + "; ".join(f"{side}: " + ", ".join(
            f"{k} {v}" for k, v in s["versions"][side].items()) for side in PEER_SIDES)
        + f". 1-minute load average before and after each run: {min(loads):.2f} to "
        f"{max(loads):.2f} (each run's in results.json, `rounds`).")


def md_similarity(section: dict[str, Any]) -> str:
    rows, p = section["rows"], section["rows"]["pretrained"]
    names = {"joint_topic_ner/none": "topic + NER, `freeze=none`",
             "joint_topic_ner/backbone": "topic + NER, `freeze=backbone`",
             "three_tasks": "topic + NER + STS-B train (`experiment=minilm_three_tasks`), `freeze=none`"}
    scores = ("sts_spearman", "ner_f1", "topic_acc", "topic_macro_f1")
    # the pretrained rows have no task scores: their empty cells carry one space each
    return md(
        f"STS Benchmark test ({p['pairs']:,} pairs), Spearman's correlation ×100 of the cosine "
        "of the two sentence embeddings with the gold score. Training rows: "
        f"{section['steps_per_task']} steps of batch {section['batch_size']} per task, round "
        "robin, tested after the last step (no model selection).",
        table(["row", "STS-B test", "NER F1", "topic acc", "topic macro-F1", "seconds"], [
            ["pretrained, mtst (`freeze=all`, evaluation-only task)",
             f"{p['mtst_spearman']:.2f} | | |", f"{p['mtst_seconds']:.0f}"],
            ["pretrained, sentence-transformers `EmbeddingSimilarityEvaluator`",
             f"{p['sentence_transformers_spearman']:.2f} | | |",
             f"{p['sentence_transformers_seconds']:.0f}"],
            *[[name, *(f"{rows[key][k]:.2f}" if k in rows[key] else "" for k in scores),
               f"{rows[key]['seconds']:.0f}"] for key, name in names.items()]], "lrrrrr"))


def md_weighting_cost(section: dict[str, Any]) -> str:
    return md(
        f"MiniLM, batch {section['batch_size']} (tasks present per batch: "
        f"{section['tasks_per_batch']}), {section['steps']} steps × {section['repeats']} "
        "repeats per configuration, interleaved; forward + combination + backward + AdamW.",
        table(["method", "`grad_on`", "ms per step (median)", "/ fixed"],
              [[key.split("/")[0], "—" if key.startswith("fixed/") else key.split("/")[1],
                f"{row['ms_per_step']:.0f}", f"{row['ratio']:.2f}×"]
               for key, row in section["rows"].items()], "llrr"))


FROZEN_NAMES = {"default": "default callbacks", "no_checkpoints": "no checkpoint written",
                "bare": "bare: no checkpoint, progress bar, lr monitor or step logs"}


def md_frozen_epochs(section: dict[str, Any]) -> str:
    last, box = section["last_epochs"], section["black_box"]
    each = ("" if "repeat_ratios" not in box else " First / later of each repeat: "
            + ", ".join(f"{r:.1f}×" for r in box["repeat_ratios"]) + ".")
    return md(
        f"`{section['command']}` with `trainer.max_epochs` = 0, 1, {last} (`$CONLL` = the "
        f"CoNLL-2003 folder; {section['examples']:,} training sentences, "
        f"{-(-section['examples'] // 16)} steps an epoch), {section['repeats']} repeats, "
        f"interleaved; medians. CPU: {section['cpu']}; 1-minute load average "
        + _list(section["load_1min"], "{:.2f}") + " (start, after each repeat).",
        f"Black-box, default callbacks: first epoch = t1 − t0, later epoch = (t{last} − t1) / "
        f"{last - 1}, paired within each repeat: **{box['first_epoch_s']:.2f} s / "
        f"{box['later_epoch_s']:.3f} s = {box['ratio']:.1f}×**. Every run (s): " + "; ".join(
            f"{n} epochs {' / '.join(f'{x:.2f}' for x in xs)}" for n, xs in box["runs_s"].items())
        + "." + each,
        f"In-run (epoch clock in the {last}-epoch runs; an epoch includes its validation and "
        "checkpoint writes):",
        table(["set-up", "first epoch (s)", "later epoch, median (s)", "first / later",
               "later epochs of each run (s)"],
              [[FROZEN_NAMES.get(name, name), f"{v['first_epoch_s']:.2f}",
                f"{v['later_epoch_s']:.3f}", f"{v['ratio']:.1f}×",
                "; ".join(" ".join(f"{x:.2f}" for x in c[1:]) for c in v["epochs_s"])]
               for name, v in section["in_run"].items()], "lrrrl"))


def md_checkpoint_bytes(section: dict[str, Any]) -> str:
    def ratio(r: dict[str, Any]) -> float:
        after = r["after_later_epoch_bytes"]
        return r["before_later_epoch_bytes"] / after if after else float("inf")

    return md(
        f"MiniLM, `ner` alone on the first {section['examples']} CoNLL-2003 train sentences, "
        f"{section['epochs']} epochs, default checkpoint callbacks (`best.ckpt`, `last.ckpt`, "
        "step checkpoint). Before: a plain `torch.save` of each checkpoint dict; after: the "
        "checkpoint file plus the tensor files written for it (epoch 1 writes the frozen "
        "weights once). Save time: a fsynced `torch.save` against `AtomicCheckpointIO`, "
        "later epochs.",
        table(["`freeze`", "saves / epoch", "MB written in epoch 1, before → after",
               "MB per later epoch, before → after", "before / after, later epochs",
               "save s per later epoch, before → after", "checkpoints/ on disk, MB (tensor files)"],
              [[name, "/".join(str(e["saves"]) for e in r["per_epoch"]),
                f"{_mb(r['before_first_epoch_bytes'])} → {_mb(r['after_first_epoch_bytes'])}",
                f"{_mb(r['before_later_epoch_bytes'])} → {_mb(r['after_later_epoch_bytes'])}",
                f"{ratio(r):.0f}×", f"{r['before_later_epoch_s']:.2f} → {r['after_later_epoch_s']:.2f}",
                f"{_mb(r['checkpoint_folder_bytes'])} ({r['tensor_files']})"]
               for name, r in section["rows"].items()], "lrrrrrr"))


def md_gpt_neo(section: dict[str, Any]) -> str:
    t, m, e, f = (section[k] for k in ("train", "memory", "encode", "freeze"))
    s, g, b = section["sizes"], "gpt_neo_125m", "minilm"

    def row(what: str, a: float, b: float, fmt: str, ratio: bool = True) -> list[str]:
        return [what, fmt.format(a), fmt.format(b), f"{a / b:.2f}×" if ratio else ""]

    def pair(side: dict[str, Any], key: str) -> tuple[float, float]:
        return side[g][key], side[b][key]

    return md(
        f"Both models in one process, {section['threads']} torch threads, fp32. Training: batches "
        f"of exactly {section['batch']} × {section['tokens']} tokens (random ids and labels, no "
        f"padding), forward + NER and topic losses + backward + clipping + AdamW, one warm-up step "
        f"each, then {s['train_steps']} step(s) each in turn. Peak RSS: a fresh process per model "
        f"building it and taking {s['child_steps']} such step(s). Encoding: {s['encode_titles']} AG "
        f"News titles, batch 32, {s['encode_repeats']} pass(es) each in turn. Cached epoch: "
        f"`freeze=backbone` through the Trainer on the first {f['examples']:,} CoNLL-2003 train "
        f"sentences (validation on {f['val_examples']:,}), batch {f['batch_size']}, "
        f"{f['epochs']} epochs; epoch 1 fills the cache, the figure is the median of the later ones.",
        table(["measure", "GPT-Neo 125M (random weights)", "MiniLM", "GPT-Neo / MiniLM"], [
            row("parameters", m[g]["parameters"] / 1e6, m[b]["parameters"] / 1e6, "{:.1f} M"),
            row("training samples/s (median)", *pair(t, "samples_per_s"), "{:.2f}"),
            row("training step, s (median)", *pair(t, "median_step_s"), "{:.2f}"),
            row("peak RSS, training, MiB", *pair(m, "peak_rss_mib"), "{:,.0f}"),
            row("encode sentences/s (median)", *pair(e, "sentences_per_s"), "{:.0f}"),
            row("tokens per title (own tokenizer)", *pair(e, "mean_tokens_per_title"), "{:.1f}",
                False),
            row("freeze=backbone epoch 1 (fills the cache), s", *pair(f, "first_epoch_s"), "{:.1f}"),
            row("freeze=backbone later epoch (cached), s", *pair(f, "later_epoch_s"), "{:.2f}")],
              "lrrr"),
        "GPT-Neo's tokenizer here is the tiny BPE stand-in (GPT-2's cannot be fetched "
        "offline), so its encode and epoch figures are for that tokenizer's token counts; "
        "the training rows use the same 16 × 128 tokens for both models. Random weights: "
        "these rows say what the architecture costs, nothing about its quality.")


def md_token_budget(section: dict[str, Any]) -> str:
    def row(key: str, what: str) -> list[str]:
        s = section[key]
        return [what, f"{s['batches']:,}", f"{s['mean_sentences_per_batch']:.1f}",
                f"{s['mean_padded_tokens']:,.0f} / {s['max_padded_tokens']:,}",
                f"{s['real_token_share']:.1%} / {s['median_batch_share']:.1%}",
                f"{section['samples_per_s'][key]:.0f}", f"{section['epoch_s_estimate'][key]:.0f}"]

    return md(
        f"MiniLM, NER head, CoNLL-2003 train ({section['examples']:,} sentences), length "
        f"bucketing on for both; {section['timed_batches_per_order']} evenly spaced batches of "
        "each order trained on in turn; forward + loss + backward + clipping + AdamW.",
        table(["batches", "batches per epoch", "sentences per batch (mean)", "padded tokens per "
               "batch (mean / max)", "real-token share (epoch / median batch)", "samples/s",
               "epoch estimate, s"], [row("fixed", f"fixed, {section['batch_size']} sentences"),
                                      row("budget", f"data.max_tokens={section['max_tokens']}")],
              "lrrrrrr"),
        f"Token budget / fixed: {section['samples_per_s_ratio']:.2f}× the samples/s; "
        f"estimated epoch time {section['epoch_time_ratio']:.2f}× faster (mean timed step "
        "× batches per epoch). Larger batches also mean fewer optimizer steps per epoch, "
        "which changes training itself: the learning rate and schedule tuned for batch "
        f"{section['batch_size']} may need retuning.")


SECTIONS = [
    ("overhead", "1–2. Training overhead and compute efficiency", md_overhead),
    ("padding", "3. Padding and length bucketing", md_padding),
    ("freeze", "4. Frozen backbone: feature cache", md_freeze),
    ("encode", "5. Encoding against sentence-transformers", md_encode),
    ("memory", "6. Memory", md_memory),
    ("quality", "7. Quality on real data", md_quality),
    ("defaults_vs_loop", "7 (b). mtst's defaults against a plain fine-tuning loop",
     md_defaults_vs_loop),
    ("scale", "8. Scale: 10×, 100×, 1000× CoNLL-2003 train", md_scale),
    ("onnx", "9. ONNX graphs against torch on CoNLL-2003", md_onnx),
    ("onnx_speed", "10. ONNX int8 encoding against sentence-transformers", md_onnx_speed),
    ("serve", "11. Serving: `mtst serve` under load (loopback)", md_serve),
    ("serve_peer", "11 (b). Serving against a peer: `mtst serve` and Infinity, same export "
     "(loopback)", md_serve_peer),
    ("similarity", "12. The embedding's yardstick: STS Benchmark", md_similarity),
    ("weighting_cost", "13. Gradient-level task weighting: cost per step", md_weighting_cost),
    ("frozen_epochs", "16. Frozen backbone: later epochs against the first, whole `train.py` runs",
     md_frozen_epochs),
    ("checkpoint_bytes", "16. Checkpoints: bytes written per epoch", md_checkpoint_bytes),
    ("gpt_neo", "16 (a). The default backbone's architecture: GPT-Neo 125M (random weights) "
     "against MiniLM", md_gpt_neo),
    ("token_budget", "16 (b). Token-budget batches (`data.max_tokens`) against a fixed batch "
     "size", md_token_budget),
]


# ---- the page ----

def provenance_rows(results: dict[str, Any]) -> list[list[Any]]:
    """One row per section: when, at which commit, on which CPU and by which command its
    figures were measured (sections re-measured with --update differ from the full run)."""
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
        return "The machine's load was not recorded."
    if max(loads) <= 1 + 0.25 * cpus:  # the benchmark itself keeps about one core busy
        return (f"The 1-minute load average stayed at or below {max(loads):.2f} on {cpus} logical "
                "CPUs at the start and end of the whole run: little besides the benchmark ran.")
    return (f"The 1-minute load average reached {max(loads):.2f} on {cpus} logical CPUs: other "
            "work shared the CPU during the whole run; each section gives its own load.")


COMMANDS = """```
make bench            # = python -m benchmarks (writes BENCHMARKS.md, benchmarks/results.json)
make bench-quick      # = python -m benchmarks --quick (writes logs/benchmarks/)
python -m benchmarks --render   # BENCHMARKS.md again from benchmarks/results.json, nothing measured
python -m benchmarks --data-dir ../shared/data --only overhead,encode   # a subset
python -m benchmarks --update --only overhead   # re-measure one section, keep the others
python -m benchmarks.memory train --steps 60 --data-dir ../shared/data  # row 6 child
python -m benchmarks.scale --factor 10 --data-dir ../shared/data [--store]  # row 8 child
python -m benchmarks.serve_load --clients 32 --duration 60   # row 11 alone (prints JSON)
bash scripts/st_onnx_env.sh   # row 10's side environment, for sentence-transformers' ONNX backend
python -m benchmarks --update --only onnx_speed --st-onnx-python logs/st-onnx-env/bin/python
```"""


def device_section(path: Path | None = None) -> str:
    """The device check's part: the committed section file when there is one, else how to make it."""
    path = path or DEVICE_SECTION
    if path.is_file():
        return md(f"_From `{path.name}`, written by `scripts/device_check.sh` (see docs/gpu.md); "
                  "`python -m benchmarks` includes it as it stands._",
                  path.read_text(encoding="utf-8").strip())
    return md(f"## {DEVICE_TITLE}", "Not run yet: no GPU was available where these benchmarks ran. "
              "On a machine with an NVIDIA GPU, `scripts/device_check.sh` (under 8 minutes) writes "
              f"`benchmarks/{path.name}`, which the next `python -m benchmarks` includes here.")


def render(results: dict[str, Any]) -> str:
    env, quick = results["environment"], results["mode"] == "quick"
    v = env["versions"]
    later = sum("--update" in m.get("command", "") for n, m in results.get("section_meta", {}).items()
                if n in results["sections"])
    since = f"; {later} section(s) were re-measured since with `--update`" if later else ""
    parts = [
        "# mtst benchmarks",
        f"The current figures, rendered from `{results.get('json_path', 'benchmarks/results.json')}` "
        "(`python -m benchmarks --render`). The whole run (`" + results["command"] + "`, `make "
        f"{'bench-quick' if quick else 'bench'}`) was made on "
        f"{results.get('generated_at', 'an unrecorded date')} and took "
        f"{results.get('total_seconds', 0) / 60:.1f} min{since}. Each section's date, commit, CPU "
        "and command are below; earlier measurements live in git history and in results.json's "
        "`updates`. Data: " + ", ".join(results["corpora"]) +
        f" from `{shown_path(results['data_dir'], '<data dir>')}`.",
        table(["figure", "measured", "commit", "machine (CPU)", "command"], provenance_rows(results)),
    ]
    if quick:
        parts.append("> **Quick mode**: tiny budgets that only exercise the code paths. These "
                     "figures are not the published ones; run `make bench` for those.")
    parts += [
        "## Summary",
        table(["#", "measure", "result", "target", "met"], summary_rows(results["sections"])),
        "Every comparison runs both sides in the same process, alternating, and reports the "
        "median over repeats and the ratio of medians (or the median of per-repeat ratios "
        f"where stated). {_sharing(env, results)} Absolute figures vary by tens of percent "
        "between runs on a shared machine; the interleaved ratios are the comparable quantities.",
        "## Machine and versions",
        "As recorded by the whole run; a section measured later names its own CPU and commit in "
        "the first table.",
        table(["item", "value"], [
            ["CPU", _cpus(results)],
            ["RAM", f"{env['ram_gib']:.1f} GiB" if env.get("ram_gib") else "unknown"],
            ["platform", env["platform"]],
            ["load average (1/5/15 min) at start", _load(env.get("load_average_start"))],
            ["load average at end", _load(results.get("load_average_end"))],
            ["python / torch / transformers", f"{v['python']} / {v['torch']} / {v['transformers']}"],
            ["lightning / tokenizers / sentence-transformers",
             f"{v['lightning']} / {v['tokenizers']} / {v['sentence-transformers']}"],
            ["mtst", f"{v['mtst']}, commit {env['mtst_commit']}"]]),
        "## Commands", COMMANDS,
        "Budgets: " + ", ".join(f"{k}={val}" for k, val in results["budget"].items()
                                if k != "name") + ".",
    ]
    for name, title, fn in SECTIONS:
        section = results["sections"].get(name)
        parts += [f"## {title}", "Not run in this invocation." if section is None else
                  f"Not measured: {section.get('error') or section.get('skipped')}"
                  if not _ok(section) else fn(section)]
        meta, seconds = results.get("section_meta", {}).get(name), results["section_seconds"].get(name)
        if meta:
            parts.append(f"_Measured {meta['measured']} in {meta['seconds']:.0f} s; load average "
                         f"(1 min) {meta['load_start'][0]:.2f} at the start, "
                         f"{meta['load_end'][0]:.2f} at the end._")
        elif seconds is not None:
            parts.append(f"_Section wall time: {seconds:.0f} s._")
    return scrub(md(*parts, device_section()) + "\n", results.get("data_dir"))
