"""The body of each benchmark's section of BENCHMARKS.md: `SECTIONS` (name, title, renderer) in
the page's order. A renderer fills its blocks of sections.md from the section's entry of
results.json with what is not stored as such (table rows, ratios, units) and the optional blocks."""

from __future__ import annotations

import json
from typing import Any

from benchmarks.markdown import (
    DVL_ROWS,
    PEER_BACKENDS,
    dvl_deltas,
    fill,
    fill_rows,
    giga,
    md,
    megabytes,
    numbers,
    profile_table,
    scale_linearity,
    table,
    table_rows,
)

DVL_NAMES = {"ner_f1": "entity F1", "cls_acc": "accuracy", "cls_macro_f1": "macro-F1"}
PEER_SIDES = ("mtst", "infinity")
QUALITY_ROWS = [("ner_only/framework", "(a) NER only, CoNLL-2003 — framework"),
                ("ner_only/reference", "(d) NER only — plain loop"),
                ("topic_only/framework", "(b) topic only, AG News titles — framework"),
                ("topic_only/reference", "(d) topic only — plain loop"),
                ("joint/framework", "(c) joint, both corpora, partial labels — framework"),
                ("wnut17/framework", "WNUT-17, NER only — framework")]
FROZEN_NAMES = {"default": "default callbacks", "no_checkpoints": "no checkpoint written",
                "bare": "bare: no checkpoint, progress bar, lr monitor or step logs"}


def md_overhead(o: dict[str, Any]) -> str:
    losses = o["losses_repeat1"]
    gaps = [abs(a - b) for a, b in zip(losses["framework"], losses["plain"], strict=True)]
    rows = [[side, numbers(o["samples_per_s"][side]), f"{o[f'{side}_samples_per_s']:.1f}",
             giga(o["achieved_flops_per_s"][side]), f"{o['efficiency'][side]:.1%}"]
            for side in ("framework", "plain")]
    parts = [fill("overhead", s=o, rows=table_rows(rows), loss_gap=max(gaps),
                  per_repeat=numbers(o["ratio_per_repeat"], "{:.3f}"),
                  peak_before=giga(o["matmul_peak"]["before"]["flops_per_s"]),
                  peak_after=giga(o["matmul_peak"]["after"]["flops_per_s"]),
                  peak=giga(o["peak_flops_per_s"]),
                  shapes=", ".join(f"{k}: {giga(v)} GFLOP/s"
                                   for k, v in o["model_shaped_matmul"].items()))]
    if o["efficiency"]["framework"] < o["target_efficiency"]:
        parts.append(fill("overhead.row2_shortfall", profile=profile_table(o["profile_ops"])))
    if phases := o.get("phases_ms"):
        total = sum(phases.values()) or 1.0
        shares = [f"{v:.0f} ({v / total:.0%})" for v in phases.values()]
        parts.append(fill("overhead.phases", table=table(list(phases), [shares])))
    if adam := o.get("adamw_step_ms"):
        cells = [f"{adam[v]:.0f}" if isinstance(adam[v], float) else adam[v]
                 for v in ("single_tensor", "foreach", "fused")]
        parts.append(fill("overhead.adamw", s=adam, rows=table_rows([cells])))
    if "profile_framework" in o:
        parts.append(fill("overhead.row1_shortfall", profile=profile_table(o["profile_framework"])))
    return md(*parts)


def md_padding(p: dict[str, Any]) -> str:
    return fill("padding", s=p, rows=table_rows([
        [k, f"{p[k]['real_token_share']:.1%}", f"{p[k]['median_batch_share']:.1%}",
         f"{p[k]['p10_batch_share']:.1%}", p[k]["batches"], f"{p['median_step_s'][k]:.3f}",
         f"{p['epoch_s_estimate'][k]:.0f}"] for k in ("bucketed", "unbucketed")]))


def md_freeze(f: dict[str, Any]) -> str:
    return fill("freeze", s=f, rows=table_rows([
        [k.replace("_", " "), numbers(f[k]["epoch_s"]), numbers(f[k]["train_s"]),
         f"{f[k]['cache_mb']:.1f}", f[k].get("cache_hits", "—")] for k in ("no_cache", "cache")]))


def md_encode(e: dict[str, Any]) -> str:
    parts = [fill("encode", s=e, rounds=numbers(e["ratio_per_round"], "{:.3f}"))]
    if "profile_mtst" in e:
        parts.append(fill("encode.shortfall", mtst=profile_table(e["profile_mtst"]),
                          st=profile_table(e["profile_st"])))
    return md(*parts)


def md_memory(m: dict[str, Any]) -> str:
    return fill("memory", s=m, rows=table_rows([
        [f"encode {x['sentences']:,} AG News titles (cycled) via `iter_encode`",
         f"{x['rss_after_load_mib']:.0f}", f"{x['peak_rss_mib']:.0f}",
         f"{x['peak_rss_while_encoding_mib']:.0f}", f"{x['sentences_per_s']:.0f} sentences/s"]
        for x in m["encode"]]))


def md_quality(q: dict[str, Any]) -> str:
    def cell(row: dict[str, Any], key: str) -> str:
        return f"{row[key]:.2f}" if key in row else "—"

    rows = [[label, r["steps"], cell(r, "ner_f1"), cell(r, "cls_acc"), cell(r, "cls_macro_f1"),
             f"{r['seconds']:.0f}"] for key, label in QUALITY_ROWS if (r := q["rows"].get(key))]
    deltas = [[k.replace("_", " "), f"{v:+.2f}"] for k, v in q["deltas"].items()]
    return fill("quality", s=q, rows=table_rows(rows), deltas=table_rows(deltas))


def md_defaults_vs_loop(section: dict[str, Any]) -> str:
    rows = section["rows"]
    return fill("defaults_vs_loop", s=section, m=rows["ner_mtst"]["settings"], rows=table_rows([
        [r, "mtst defaults" if side == "mtst" else "plain loop", DVL_NAMES[k],
         f"{rows[f'{r}_{side}'][k]:.2f}", f"{rows[f'{r}_{side}']['seconds']:.0f}"]
        for r, keys in DVL_ROWS.items() for side in ("mtst", "loop") for k in keys]),
        deltas="; ".join(f"{DVL_NAMES[k]} ({k.split('_')[0]}) {v:+.2f}"
                         for k, v in dvl_deltas(section).items()))


def md_scale(s: dict[str, Any]) -> str:
    pts, stored, lin = s["points"], s.get("stored", []), scale_linearity(s)

    def steps(points: list[dict[str, Any]]) -> str:
        return " → ".join(f"{p['factor']}×" for p in points)

    parts = [fill("scale", first_batches=s.get("first_batches", 50), rows=table_rows([
        [f"{p['factor']}×", "disk (mmap)" if p["store"] else "memory", f"{p['sentences']:,}",
         f"{p['file_mb']:.0f}", f"{p['store_mib']:.0f}", f"{p['load_s']:.1f}",
         f"{1e6 * p['load_s'] / p['sentences']:.0f}", f"{p['first_batches_s']:.2f}",
         f"{p['rss_base_mib']:.0f}", f"{p['load_peak_rss_mib']:.0f}", f"{p['peak_rss_mib']:.0f}"]
        for p in pts + stored]))]
    if "time" in lin:
        parts.append(fill(
            "scale.memory", s=s, lin=lin, steps=steps(pts),
            seconds=numbers(s["memory_time_per_copy_s"], "{:.2f}"),
            mib=numbers(s["memory_mib_per_copy"]), projected_gib=s["projected_1000x_peak_mib"] / 1024,
            ram_gib=s["mem_total_mib"] / 1024,
            sentences_m=s["copies_fitting_80pct_ram"] * 14041 / 1e6))  # CoNLL-2003 train: 14,041
    if "store_time" in lin:
        big = stored[-1]
        per_example = max(big["order_extra_mib"], 0.0) * 2**20 / big["sentences"]
        parts.append(fill(
            "scale.store", lin=lin, big=big, steps=steps(stored), per_example=per_example,
            seconds=numbers(s["store_time_per_copy_s"], "{:.2f}"),
            per_copy_mib=big["store_mib"] / big["factor"], store_gib=big["store_mib"] / 1024,
            ram_examples=0.8 * s["mem_total_mib"] * 2**20 / max(per_example, 1.0) / 1e6))
    if profile := next((p["profile"] for p in pts if "profile" in p), None):
        parts.append(fill("scale.profile", profile=profile_table(profile)))
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
    return fill("onnx", s=o, rows=table_rows(rows), int8_gain=-o["int8_f1_drop"],
                identical="yes" if o["fp32_identical"] else "no")


def md_onnx_speed(s: dict[str, Any]) -> str:
    def cosines(key: str) -> str:
        return f"{s['min_cosine'][key]:.5f} / {s.get('mean_cosine', {}).get(key, float('nan')):.5f}"

    parts = [fill("onnx_speed", s=s, ours=numbers(s["per_s"]["mtst_int8"]),
                  theirs=numbers(s["per_s"]["st"]), ours_cosine=cosines("mtst_int8_vs_mtst_fp32"),
                  theirs_cosine=cosines("st_vs_st_fp32"),
                  rounds=numbers(s["ratio_per_round"], "{:.2f}"))]
    measured, exported = s.get("versions"), s.get("export_versions")
    if measured and exported and measured != exported:
        parts.append(fill("onnx_speed.side_environment",
                          versions=", ".join(f"{k} {v}" for k, v in measured.items()),
                          exported_transformers=exported.get("transformers")))
    if s.get("st_onnx_problem"):
        parts.append(fill("onnx_speed.not_comparable", s=s))
    return md(*parts)


def md_serve(s: dict[str, Any]) -> str:
    names = {k: f"{what} (`" + " ".join(s["settings"][k]) + "`)"
             for k, what in (("dynamic", "dynamic batching"), ("batch_size_1", "no batching"))}
    return fill("serve", s=s, options=" ".join(s.get("server_options") or []) or "none",
                rows=table_rows([
                    [names[k], f"{s[k]['requests']:,}", s[k]["errors"], f"{s[k]['p50_ms']:.0f} ms",
                     f"{s[k]['p99_ms']:.0f} ms", f"{s[k]['throughput_rps']:.1f} req/s",
                     s[k]["exit_code"]] for k in ("dynamic", "batch_size_1")]))


def md_serve_peer(s: dict[str, Any]) -> str:
    from benchmarks.serving_peer import ROUTE, request

    rows = [[b, c, f"**{r['ratio']:.2f}×** ({numbers(r['ratio_per_round'], '{:.2f}')})",
             *(f"{r[side]['throughput_rps']:.1f}" for side in PEER_SIDES),
             *(f"{r[x]['p50_ms']:.0f} / {r[x]['p99_ms']:.0f} ms" for x in PEER_SIDES),
             f"{r['mtst']['errors']} / {r['infinity']['errors']}"]
            for b in PEER_BACKENDS for c in map(str, s["concurrency"]) if (r := s[b][c])]
    loads = [x for b in PEER_BACKENDS for c in s["concurrency"] for side in PEER_SIDES
             for run in s[b][str(c)][side]["rounds"] for x in run["load_1min"]]
    return fill(
        "serve_peer", s=s, route=ROUTE, request=json.dumps(request(["<title>"])),
        options="; ".join(f"{b}: mtst `{' '.join(o['mtst'])}`, Infinity `{' '.join(o['infinity'])}`"
                          for b, o in s["options"].items()),
        cosines=", ".join(f"{s[b]['min_cosine']:.6f} ({b})" for b in PEER_BACKENDS),
        rows=table_rows(rows), load_low=min(loads), load_high=max(loads),
        versions="; ".join(f"{side}: " + ", ".join(f"{k} {v}" for k, v in s["versions"][side].items())
                           for side in PEER_SIDES))


def md_similarity(section: dict[str, Any]) -> str:
    rows = section["rows"]
    names = {"joint_topic_ner/none": "topic + NER, `freeze=none`",
             "joint_topic_ner/backbone": "topic + NER, `freeze=backbone`",
             "three_tasks": "topic + NER + STS-B train (`experiment=minilm_three_tasks`), `freeze=none`"}
    scores = ("sts_spearman", "ner_f1", "topic_acc", "topic_macro_f1")
    return fill("similarity", s=section, p=rows["pretrained"], rows=table_rows([
        [name, *(f"{rows[key][k]:.2f}" if k in rows[key] else "" for k in scores),
         f"{rows[key]['seconds']:.0f}"] for key, name in names.items()]))


def md_weighting_cost(section: dict[str, Any]) -> str:
    return fill("weighting_cost", s=section, rows=table_rows([
        [key.split("/")[0], "—" if key.startswith("fixed/") else key.split("/")[1],
         f"{row['ms_per_step']:.0f}", f"{row['ratio']:.2f}×"]
        for key, row in section["rows"].items()]))


def md_cached_loop(section: dict[str, Any]) -> str:
    later = section["later_epoch_s"]
    return fill("cached_loop", s=section, loads=numbers(section["load_1min"], "{:.2f}"),
                each=", ".join(f"{r:.2f}×" for r in section["repeat_ratios"]),
                rows=table_rows([[side, f"{later[side]:.3f}", "; ".join(
                    " / ".join(f"{x:.3f}" for x in run[1:]) for run in section["epochs_s"][side])]
                    for side in ("mtst", "bare")]))


def md_frozen_epochs(section: dict[str, Any]) -> str:
    last, box = section["last_epochs"], section["black_box"]
    each = ("" if "repeat_ratios" not in box else " First / later of each repeat: "
            + ", ".join(f"{r:.1f}×" for r in box["repeat_ratios"]) + ".")
    return fill(
        "frozen_epochs", s=section, box=box, each=each, later_epochs=last - 1,
        steps_per_epoch=-(-section["examples"] // 16),  # batches of 16, the last one partial
        loads=numbers(section["load_1min"], "{:.2f}"),
        runs="; ".join(f"{n} epochs {' / '.join(f'{x:.2f}' for x in xs)}"
                       for n, xs in box["runs_s"].items()),
        rows=table_rows([[FROZEN_NAMES.get(name, name), f"{v['first_epoch_s']:.2f}",
                          f"{v['later_epoch_s']:.3f}", f"{v['ratio']:.1f}×",
                          "; ".join(" ".join(f"{x:.2f}" for x in c[1:]) for c in v["epochs_s"])]
                         for name, v in section["in_run"].items()]))


def md_checkpoint_bytes(section: dict[str, Any]) -> str:
    def ratio(r: dict[str, Any]) -> float:
        after = r["after_later_epoch_bytes"]
        return r["before_later_epoch_bytes"] / after if after else float("inf")

    return fill("checkpoint_bytes", s=section, rows=table_rows([
        [name, "/".join(str(e["saves"]) for e in r["per_epoch"]),
         f"{megabytes(r['before_first_epoch_bytes'])} → {megabytes(r['after_first_epoch_bytes'])}",
         f"{megabytes(r['before_later_epoch_bytes'])} → {megabytes(r['after_later_epoch_bytes'])}",
         f"{ratio(r):.0f}×", f"{r['before_later_epoch_s']:.2f} → {r['after_later_epoch_s']:.2f}",
         f"{megabytes(r['checkpoint_folder_bytes'])} ({r['tensor_files']})"]
        for name, r in section["rows"].items()]))


def md_gpt_neo(section: dict[str, Any]) -> str:
    t, m, e, f = (section[k] for k in ("train", "memory", "encode", "freeze"))
    g, b = "gpt_neo_125m", "minilm"

    def row(what: str, side: dict[str, Any], key: str, fmt: str, ratio: bool = True,
            scale: float = 1.0) -> list[str]:
        ours, theirs = side[g][key] / scale, side[b][key] / scale
        return [what, fmt.format(ours), fmt.format(theirs), f"{ours / theirs:.2f}×" if ratio else ""]

    return fill("gpt_neo", s=section, rows=table_rows([
        row("parameters", m, "parameters", "{:.1f} M", scale=1e6),
        row("training samples/s (median)", t, "samples_per_s", "{:.2f}"),
        row("training step, s (median)", t, "median_step_s", "{:.2f}"),
        row("peak RSS, training, MiB", m, "peak_rss_mib", "{:,.0f}"),
        row("encode sentences/s (median)", e, "sentences_per_s", "{:.0f}"),
        row("tokens per title (own tokenizer)", e, "mean_tokens_per_title", "{:.1f}", False),
        row("freeze=backbone epoch 1 (fills the cache), s", f, "first_epoch_s", "{:.1f}"),
        row("freeze=backbone later epoch (cached), s", f, "later_epoch_s", "{:.2f}")]))


def md_token_budget(section: dict[str, Any]) -> str:
    def row(key: str, what: str) -> list[str]:
        s = section[key]
        return [what, f"{s['batches']:,}", f"{s['mean_sentences_per_batch']:.1f}",
                f"{s['mean_padded_tokens']:,.0f} / {s['max_padded_tokens']:,}",
                f"{s['real_token_share']:.1%} / {s['median_batch_share']:.1%}",
                f"{section['samples_per_s'][key]:.0f}", f"{section['epoch_s_estimate'][key]:.0f}"]

    return fill("token_budget", s=section, rows=table_rows([
        row("fixed", f"fixed, {section['batch_size']} sentences"),
        row("budget", f"data.max_tokens={section['max_tokens']}")]))


RENDERERS = {"overhead": md_overhead, "padding": md_padding, "freeze": md_freeze,
             "encode": md_encode, "memory": md_memory, "quality": md_quality,
             "defaults_vs_loop": md_defaults_vs_loop, "scale": md_scale, "onnx": md_onnx,
             "onnx_speed": md_onnx_speed, "serve": md_serve, "serve_peer": md_serve_peer,
             "similarity": md_similarity, "weighting_cost": md_weighting_cost,
             "frozen_epochs": md_frozen_epochs, "cached_loop": md_cached_loop,
             "checkpoint_bytes": md_checkpoint_bytes,
             "gpt_neo": md_gpt_neo, "token_budget": md_token_budget}  # in the page's order
TITLES = dict(fill_rows("titles"))
SECTIONS = [(name, TITLES[name], fn) for name, fn in RENDERERS.items()]
