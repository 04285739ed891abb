"""Row 11 (b): `mtst serve` against Infinity (infinity-emb) on one MiniLM export, loopback.

    python -m benchmarks.serving_peer --infinity PATH [--duration 10] [--rounds 3] [--threads 2]

PATH: Infinity's own environment (or its python; it pins transformers<5). Both servers get the
same threads, batch size and fp32 graph (Infinity's traced as mtst traces its own), one server at
a time, rounds alternating, so the ratio compares the serving stacks and not their settings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import DEFAULT_DATA, ag_titles
from benchmarks.machine import cpu_model
from benchmarks.serve_load import load, start

CONCURRENCY, SIDES, MODEL, BATCH = (1, 16, 64), ("mtst", "infinity"), "minilm", "32"
BACKENDS = {"torch": (["--backend", "torch"], ["--engine", "torch"]),
            "onnx": (["--backend", "onnx"], ["--engine", "optimum", "--onnx-disable-optimize"])}
ROUTE = "/v1/embeddings"  # Infinity's /embeddings under --url-prefix /v1
PACKAGES = {"mtst": ("mtst", "torch", "onnxruntime", "transformers", "uvicorn"),
            "infinity": ("infinity-emb", "torch", "onnxruntime", "optimum", "optimum-onnx",
                         "transformers", "sentence-transformers", "uvicorn")}
# Infinity has no thread option: pin torch's and every onnxruntime session's intra-op threads
LAUNCH = """import sys
threads = int(sys.argv.pop(1))
import torch, onnxruntime as ort
torch.set_num_threads(threads)
class Session(ort.InferenceSession):
    def __init__(self, path, sess_options=None, *args, **kwargs):
        sess_options = sess_options or ort.SessionOptions()
        sess_options.intra_op_num_threads = threads
        super().__init__(path, sess_options, *args, **kwargs)
ort.InferenceSession = Session
from infinity_emb.cli import cli
cli()
"""


def options(backend: str, threads: int) -> dict[str, list[str]]:
    ours, theirs = BACKENDS[backend]
    return {"mtst": [*ours, "--threads", str(threads), "--max-batch-size", BATCH],
            "infinity": [*theirs, "--batch-size", BATCH, "--pooling-method", "mean",
                         "--no-model-warmup", "--device", "cpu"]}


def versions(python: str, names: tuple[str, ...]) -> dict[str, str]:
    listed = subprocess.run([python, "-m", "pip", "list", "--format", "json"], capture_output=True,
                            text=True, timeout=120).stdout
    have = {p["name"].lower().replace("_", "-"): p["version"] for p in json.loads(listed or "[]")}
    return {name: have.get(name, "not installed") for name in names}


def encoder_graph(folder: Path) -> None:
    """folder/model.onnx: the encoder alone (last_hidden_state; Infinity pools in numpy), traced
    as mtst traces its graph. At the top level, because Infinity 0.0.78 hands optimum 2 the file's
    path where optimum matches a bare file name: they agree only for `--model-id .` there."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from mtst.inference.onnx_backend import INPUTS, OPSET

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = AutoModel.from_pretrained(folder).eval()

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    sample = AutoTokenizer.from_pretrained(folder)(["An example", "two"], padding=True,
                                                  return_tensors="pt")
    names = [*INPUTS, "last_hidden_state"]
    torch.onnx.export(Encoder(), (sample["input_ids"], sample["attention_mask"]),
                      str(folder / "model.onnx"), input_names=names[:2], output_names=names[2:],
                      dynamic_axes={n: {0: "batch", 1: "sequence"} for n in names},
                      opset_version=OPSET, dynamo=False)


def start_infinity(python: str, folder: Path, flags: list[str], threads: int,
                   log: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:  # Infinity takes no --port 0
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(DO_NOT_TRACK="1", HF_HUB_OFFLINE="1", OMP_NUM_THREADS=str(threads))
    with log.open("w") as out:
        process = subprocess.Popen(
            [python, "-c", LAUNCH, str(threads), "v2", "--model-id", ".", "--served-model-name",
             MODEL, *flags, "--host", "127.0.0.1", "--port", str(port), "--url-prefix", "/v1",
             "--log-level", "warning"], cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT)
    return process, f"http://127.0.0.1:{port}"


def request(texts: list[str]) -> dict[str, Any]:
    return {"input": texts, "model": MODEL}  # OpenAI's embeddings request, on both servers


def ready(url: str, process: subprocess.Popen, log: Path, texts: list[str]) -> list[Any]:
    """The embeddings of `texts`, once the server answers them (polled while it starts)."""
    import httpx

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        try:
            answer = httpx.post(url + ROUTE, json=request(texts), timeout=60, trust_env=False)
            answer.raise_for_status()
            return [item["embedding"] for item in answer.json()["data"]]
        except httpx.TransportError:  # not listening yet
            time.sleep(0.5)
        except httpx.HTTPStatusError as err:
            answer = err.response
            raise RuntimeError(f"POST {ROUTE}: {answer.status_code} {answer.text[:200]}") from None
    tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.is_file() else []
    raise RuntimeError(f"{url} never embedded a text (exit {process.poll()}): {' | '.join(tail)}")


def one_server(side: str, flags: list[str], export: Path, python: str, threads: int,
               texts: list[str], duration: float, log: Path) -> dict[str, Any]:
    began = time.perf_counter()
    if side == "mtst":
        process, url = start(export, flags)
    else:
        process, url = start_infinity(python, export / "sentence-transformers", flags, threads, log)
    try:
        out = {"vectors": ready(url, process, log, texts[:8]), "runs": {},
               "startup_s": round(time.perf_counter() - began, 1)}
        asyncio.run(load(url, texts, 16, 3.0, ROUTE, lambda t: request([t])))  # warm-up
        for clients in CONCURRENCY:
            before = os.getloadavg()[0]
            out["runs"][str(clients)] = {**asyncio.run(load(url, texts, clients, duration, ROUTE,
                                                            lambda t: request([t]))),
                                         "load_1min": [before, os.getloadavg()[0]]}
        return out
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()


def run(infinity: str | Path | None, duration: float, rounds: int, data_dir: Path,
        threads: int = 2, backbone: str = "minilm") -> dict[str, Any]:
    if not infinity:
        return {"skipped": "no Infinity environment given (--infinity PATH)"}
    if not (data_dir / "ag_news" / "test.csv").is_file():
        return {"skipped": f"no AG News test titles under {data_dir}"}
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from mtst.inference.export import export_model
    from mtst.inference.loading import untrained

    python = str(Path(infinity) / "bin" / "python") if Path(infinity).is_dir() else str(infinity)
    texts = ag_titles(data_dir, 2000)
    result: dict[str, Any] = {
        "backbone": backbone, "duration_s": duration, "rounds": rounds, "threads": threads,
        "concurrency": list(CONCURRENCY), "cpu": f"{cpu_model()}, {os.cpu_count()} logical CPUs",
        "versions": {side: versions(sys.executable if side == "mtst" else python, PACKAGES[side])
                     for side in SIDES},
        "options": {backend: options(backend, threads) for backend in BACKENDS},
        "command": f"python -m benchmarks.serving_peer --infinity PATH --duration {duration:g} "
                   f"--rounds {rounds} --threads {threads}"}
    with tempfile.TemporaryDirectory(prefix="mtst-bench-peer-") as tmp:
        export = Path(tmp) / "minilm"
        export_model(untrained(backbone), export, onnx=True)
        encoder_graph(export / "sentence-transformers")
        for backend in BACKENDS:
            rows: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
            for _ in range(rounds):
                for side in SIDES:  # A B A B ...: drift hits both sides alike
                    rows[side].append(one_server(side, result["options"][backend][side], export,
                                                 python, threads, texts, duration,
                                                 Path(tmp) / "log"))
            result[backend] = summarize(rows)
    return result


def summarize(rows: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    import numpy as np

    a, b = (np.asarray(rows[side][0]["vectors"], dtype=np.float64) for side in SIDES)
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    out: dict[str, Any] = {"min_cosine": float(cosine.min())}
    for clients in map(str, CONCURRENCY):
        per = {s: [r["runs"][clients] for r in rows[s]] for s in SIDES}
        ratios = [m["throughput_rps"] / max(i["throughput_rps"], 1e-9)
                  for m, i in zip(per["mtst"], per["infinity"], strict=True)]
        out[clients] = {"ratio": statistics.median(ratios), "ratio_per_round": ratios}
        for s in SIDES:
            out[clients][s] = {k: statistics.median(r[k] for r in per[s])
                               for k in ("throughput_rps", "p50_ms", "p99_ms")}
            out[clients][s].update(errors=sum(r["errors"] for r in per[s]), rounds=per[s],
                                   startup_s=[r["startup_s"] for r in rows[s]])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--infinity", required=True, help="Infinity's environment or python")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args(argv)
    result = run(args.infinity, args.duration, args.rounds, args.data_dir, args.threads)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
