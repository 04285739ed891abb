"""One Markdown renderer per benchmark section: setup in words, tables, profiles where a target
is missed. Each takes (section results, table function) and returns Markdown."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Table = Callable[[list[str], list[list[Any]]], str]


def _g(x: float) -> str:
    return f"{x / 1e9:.1f}"


def _list(xs: list[float], fmt: str = "{:.1f}") -> str:
    return ", ".join(fmt.format(x) for x in xs)


def profile_table(entries: list[dict[str, Any]], table: Table) -> str:
    seconds = "self_s" in entries[0] if entries else False
    rows = []
    for e in entries:
        value = f"{e['self_s'] * 1000:.0f}" if seconds else f"{e['self_ms']:.0f}"
        rows.append([f"`{e['name'][:90]}`", e["calls"], value, f"{e['share']:.1%}"])
    return table(["function / operator", "calls", "self time (ms)", "share"], rows)


def scale_linearity(s: dict[str, Any]) -> dict[str, float] | None:
    """Marginal cost of a copy at the largest step over the step before (1.0 = linear), per mode,
    and how much the memory-mapped load's peak memory moves across sizes."""
    out: dict[str, float] = {}
    if "memory_time_linearity" in s:
        out.update(time=s["memory_time_linearity"], memory=s["memory_memory_linearity"])
    if "store_time_linearity" in s:
        peaks = [p["load_peak_rss_mib"] for p in s["stored"]]
        out.update(store_time=s["store_time_linearity"], store_peak_min=min(peaks),
                   store_peak_max=max(peaks))
    return out or None


def render_overhead(o: dict[str, Any], table: Table) -> str:
    fm = o["flop_model"]
    losses = o["losses_repeat1"]
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
        "",
        table(["side", "samples/s per repeat", "median samples/s", "achieved GFLOP/s (median)",
               "of measured peak"], [
            [side, _list(o["samples_per_s"][side]), f"{o[f'{side}_samples_per_s']:.1f}",
             _g(o["achieved_flops_per_s"][side]), f"{o['efficiency'][side]:.1%}"]
            for side in ("framework", "plain")]),
        "",
        f"**Row 1 ratio** (framework / plain, median of the per-repeat ratios): "
        f"**{o['ratio']:.3f}** (target ≥ 0.95); per repeat: "
        f"{_list(o['ratio_per_repeat'], '{:.3f}')}; ratio of the median samples/s: "
        f"{o['ratio_of_medians']:.3f}.",
        "",
        f"Same computation check: the first step's loss is {losses['framework'][0]:.6f} "
        f"(framework) and {losses['plain'][0]:.6f} (plain). Later steps differ by up to "
        f"{max(diffs):.3f}: the framework keeps an absent task's loss in the graph as 0·logits "
        "(`mtst.tasks.losses.masked_cross_entropy`, for DDP), so AdamW still moves that head with "
        "its momentum and weight decay, while the plain loop leaves a head without a gradient "
        "untouched. Same FLOPs either way.",
        "",
        f"**Row 2 formula**: {o['flop_formula']}. Here N = {fm['matmul_params']:,}, "
        f"L = {fm['layers']}, d = {fm['hidden']}; mean padded length T = {o['mean_padded_len']:.1f} "
        f"({o['mean_padded_tokens']} tokens a batch). Measured fp32 matmul peak "
        f"(`torch.matmul`, square 1024/2048, median of 5, best size; before and after the "
        f"training runs): {_g(o['matmul_peak']['before']['flops_per_s'])} and "
        f"{_g(o['matmul_peak']['after']['flops_per_s'])} GFLOP/s; the higher, "
        f"{_g(o['peak_flops_per_s'])} GFLOP/s, is the denominator.",
        "",
        "The same kernel on the shapes a batch really multiplies: " + ", ".join(
            f"{k}: {_g(v)} GFLOP/s" for k, v in o["model_shaped_matmul"].items()) + ".",
    ]
    if o["efficiency"]["framework"] < o["target_efficiency"]:
        parts += ["", "**Shortfall (row 2)**: where the time of four plain training steps goes "
                  "(torch.profiler, operators by self CPU time):", "",
                  profile_table(o["profile_ops"], table)]
    phases = o.get("phases_ms")
    if phases:
        total = sum(phases.values()) or 1.0
        parts += ["", "Plain training step by phase (mean over the profiled batches, ms):", "",
                  table(list(phases), [[f"{v:.0f} ({v / total:.0%})" for v in phases.values()]])]
    adam = o.get("adamw_step_ms")
    if adam:
        cells = [f"{adam[v]:.0f}" if isinstance(adam[v], float) else adam[v]
                 for v in ("single_tensor", "foreach", "fused")]
        parts += ["", f"One AdamW step over all {adam['parameters']:,} parameters (median ms; "
                  "`build_optimizer` uses the fused kernel, `model.optimizer.fused`, fused by default in fp32):", "",
                  table(["single-tensor", "foreach", "fused (used)"], [cells])]
        parts += ["", "Both sides use the fused kernel. The rest of the gap to the matmul peak: "
                  "backward and forward run many small element-wise kernels (dropout masks, GELU, "
                  "LayerNorm, softmax) next to the matmuls, and the AdamW update reads and writes "
                  "every parameter at every step (for MiniLM, 11.7 M of the 22.7 M are word "
                  "embeddings, most of them untouched by any given batch)."]
    if "profile_framework" in o:
        parts += ["", "**Shortfall (row 1)**: Python functions by own time during one framework "
                  "repeat (cProfile):", "", profile_table(o["profile_framework"], table)]
    return "\n".join(parts)


def render_padding(p: dict[str, Any], table: Table) -> str:
    rows = [[k, f"{p[k]['real_token_share']:.1%}", f"{p[k]['median_batch_share']:.1%}",
             f"{p[k]['p10_batch_share']:.1%}", p[k]["batches"],
             f"{p['median_step_s'][k]:.3f}", f"{p['epoch_s_estimate'][k]:.0f}"]
            for k in ("bucketed", "unbucketed")]
    return "\n".join([
        f"CoNLL-2003 train alone ({p['examples']:,} sentences, MiniLM tokenizer, batch "
        f"{p['batch_size']}), the DataModule's batch sampler for epoch 0. Real-token share = real "
        "sub-tokens / (batch size × longest in batch), over all batches (token-weighted, "
        "`benchmarks/data_pipeline.py::padded_share`) and per batch. Epoch time: "
        f"{p['timed_batches_per_order']} evenly spaced batches of each order trained alternately "
        "(plain training step), epoch ≈ mean step time × batches.",
        "",
        table(["order", "real-token share (all)", "median batch", "10th pct batch", "batches",
               "median step s", "epoch s (est.)"], rows),
        "",
        f"Epoch-time ratio, unbucketed / bucketed: **{p['epoch_time_ratio']:.2f}×**.",
    ])


def render_freeze(f: dict[str, Any], table: Table) -> str:
    rows = [[k.replace("_", " "), _list(f[k]["epoch_s"]), _list(f[k]["train_s"]),
             f"{f[k]['cache_mb']:.1f}", f[k].get("cache_hits", "—")] for k in ("no_cache", "cache")]
    return "\n".join([
        f"`freeze=backbone` (MiniLM, batch {f['batch_size']}) on the first {f['examples']:,} "
        f"CoNLL-2003 train and {f['val_examples']} validation sentences, {f['epochs']} epochs; "
        "`freeze.cache_features` false vs true (cache dtype "
        f"{f['cache_dtype']}), via `benchmarks/freeze_cache.py::run_side`.",
        "",
        table(["run", "epoch s (with validation)", "training part s", "cache MiB",
               "cache hits"], rows),
        "",
        f"Speed-up after epoch 1 (median of epochs ≥ 2, no cache / cache): "
        f"**{f['speedup_epochs_2_on']:.1f}×** with validation, "
        f"{f['speedup_train_part']:.1f}× for the training part (target ≥ 10×); epoch 1 with the "
        f"cache costs {f['first_epoch_ratio']:.2f}× the uncached one (it also stores the features).",
    ])


def render_encode(e: dict[str, Any], table: Table) -> str:
    parts = [
        f"{e['sentences']:,} AG News titles, batch {e['batch_size']}, fp32, "
        f"{e['threads']} torch threads, L2-normalised outputs; "
        f"`SentenceEncoder.encode` vs `SentenceTransformer.encode` on the same MiniLM folder, "
        f"{e['repeats']} alternating rounds after a warm-up.",
        "",
        table(["encoder", "sentences/s (median)"],
              [["mtst", f"{e['mtst_per_s']:.1f}"],
               ["sentence-transformers", f"{e['st_per_s']:.1f}"]]),
        "",
        f"Ratio (median of rounds): **{e['ratio']:.3f}** (rounds: "
        f"{_list(e['ratio_per_round'], '{:.3f}')}); smallest cosine between the two embeddings "
        f"of a title: **{e['min_cosine']:.6f}**.",
    ]
    if "profile_mtst" in e:
        parts += ["", "**Shortfall**: operators of 512 titles, mtst:", "",
                  profile_table(e["profile_mtst"], table), "", "sentence-transformers:", "",
                  profile_table(e["profile_st"], table)]
    return "\n".join(parts)


def render_memory(m: dict[str, Any], table: Table) -> str:
    t = m["train"]
    rows = [["training run (fit + test), MiniLM, CoNLL-2003 + AG News",
             f"{t['rss_after_imports_mib']:.0f}", f"{t['peak_rss_mib']:.0f}", "—",
             f"{t['steps']} steps in {t['seconds']:.0f} s"]]
    rows += [[f"encode {x['sentences']:,} AG News titles (cycled) via `iter_encode`",
              f"{x['rss_after_load_mib']:.0f}", f"{x['peak_rss_mib']:.0f}",
              f"{x['peak_rss_while_encoding_mib']:.0f}", f"{x['sentences_per_s']:.0f} sentences/s"]
             for x in m["encode"]]
    return "\n".join([
        "Each measurement in a fresh process (`python -m benchmarks.memory ...`); peak = the "
        "process's VmHWM (the encode stage's own peak: VmHWM reset after the model is loaded). "
        "Encoding consumes each batch's embeddings as it arrives, so only one batch of vectors "
        "is alive at a time.",
        "",
        table(["run", "RSS before (MiB)", "peak RSS (MiB)", "peak while encoding (MiB)",
               "throughput"], rows),
    ])


QUALITY_ROWS = [("ner_only/framework", "(a) NER only, CoNLL-2003 — framework"),
                ("ner_only/reference", "(d) NER only — plain loop"),
                ("topic_only/framework", "(b) topic only, AG News titles — framework"),
                ("topic_only/reference", "(d) topic only — plain loop"),
                ("joint/framework", "(c) joint, both corpora, partial labels — framework"),
                ("wnut17/framework", "WNUT-17, NER only — framework")]


def render_quality(q: dict[str, Any], table: Table) -> str:
    def cell(row: dict[str, Any], key: str) -> str:
        return f"{row[key]:.2f}" if key in row else "—"

    rows = [[label, r["steps"], cell(r, "ner_f1"), cell(r, "cls_acc"), cell(r, "cls_macro_f1"),
             f"{r['seconds']:.0f}"]
            for key, label in QUALITY_ROWS if (r := q["rows"].get(key))]
    deltas = [[k.replace("_", " "), f"{v:+.2f}"] for k, v in q["deltas"].items()]
    return "\n".join([
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
        "",
        table(["run", "steps", "entity F1", "accuracy", "macro-F1", "seconds"], rows),
        "",
        "Differences in points (framework − plain loop: target within ±0.5; joint − single "
        "task: target ≥ −1):",
        "",
        table(["comparison", "Δ points"], deltas),
    ])


def render_scale(s: dict[str, Any], table: Table) -> str:
    def row(p: dict[str, Any]) -> list[Any]:
        return [f"{p['factor']}×", "disk (mmap)" if p["store"] else "memory", f"{p['sentences']:,}",
                f"{p['file_mb']:.0f}", f"{p['store_mib']:.0f}", f"{p['load_s']:.1f}",
                f"{1e6 * p['load_s'] / p['sentences']:.0f}", f"{p['first_batches_s']:.2f}",
                f"{p['rss_base_mib']:.0f}", f"{p['load_peak_rss_mib']:.0f}",
                f"{p['peak_rss_mib']:.0f}"]

    parts = [
        "Each run in a fresh process (`python -m benchmarks.scale --factor k [--store]`): k copies "
        "of CoNLL-2003 train.txt back to back in one file, then `MultiTaskDataModule.dataset"
        "(\"train\")` (stream the file line by line, validate, tokenise with MiniLM, align labels; "
        "what `setup` does once per split) and the first "
        f"{s.get('first_batches', 50)} training batches through the DataLoader. *memory*: the "
        "encoded split is held as flat columns in RAM; *disk*: `data.store_dir` set, the columns "
        "are written chunk by chunk and memory-mapped.",
        "",
        table(["copies", "encoded split", "sentences", "file MiB", "encoded MiB", "load s",
               "µs / sentence", "first batches s", "RSS before MiB", "peak while loading MiB",
               "peak incl. batches MiB"], [row(p) for p in s["points"] + s.get("stored", [])]),
    ]
    lin = scale_linearity(s) or {}
    pts, stored = s["points"], s.get("stored", [])
    if "time" in lin:
        steps = " → ".join(f"{p['factor']}×" for p in pts)
        parts += ["", f"In memory ({steps}): one more copy costs "
                  f"{_list(s['memory_time_per_copy_s'], '{:.2f}')} s and "
                  f"{_list(s['memory_mib_per_copy'])} MiB per step; the last step's over the one "
                  f"before: time {lin['time']:.2f}, memory {lin['memory']:.2f} (1.00 = linear). "
                  f"Projected 1000× in memory: {s['projected_1000x_peak_mib'] / 1024:.1f} GiB peak "
                  f"against {s['mem_total_mib'] / 1024:.1f} GiB of RAM; the in-memory limit is about "
                  f"{s['copies_fitting_80pct_ram']:,} copies "
                  f"({s['copies_fitting_80pct_ram'] * 14041 / 1e6:.0f} M sentences) in 80% of RAM."]
    if "store_time" in lin:
        big = stored[-1]
        steps = " → ".join(f"{p['factor']}×" for p in stored)
        per_example = max(big["order_extra_mib"], 0.0) * 2**20 / big["sentences"]
        ram_examples = 0.8 * s["mem_total_mib"] * 2**20 / max(per_example, 1.0) / 1e6
        parts += ["", f"Memory-mapped ({steps}): "
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
                  f"sampler: about {ram_examples:,.0f} M examples fit in 80% of this RAM."]
    profile = next((p["profile"] for p in s["points"] if "profile" in p), None)
    if profile:
        parts += ["", "Where the time goes at 1× (cProfile of a second in-memory load in the same "
                  "process, functions by own time):", "", profile_table(profile, table)]
    return "\n".join(parts)
