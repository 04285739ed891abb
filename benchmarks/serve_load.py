"""Row 11: load test of `mtst serve` on loopback, dynamic batching against `--max-batch-size 1`.

    python -m benchmarks.serve_load [--clients 32] [--duration 60] [--endpoint predict]

Closed-loop clients, one AG News title per request, against each setting's server in turn; prints
one JSON object, with the load the figures were measured under.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import DEFAULT_DATA, ROOT, ag_titles

SETTINGS = {"dynamic": ["--max-batch-size", "32", "--max-wait-ms", "10"],
            "batch_size_1": ["--max-batch-size", "1", "--max-wait-ms", "0"]}


def start(model_dir: Path, extra: list[str]) -> tuple[subprocess.Popen, str]:
    """`mtst serve model_dir --port 0 extra`, and the URL it prints once listening."""
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


class Connection:
    """One keep-alive HTTP/1.1 connection on raw asyncio streams. The clients share the server's
    cores, so this one does the least per request: it writes a body prepared once and reads the
    status line, the headers and the body by Content-Length."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(b"POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (path.encode(), self.host.encode(),
                                                               self.port, len(body), body))
        lines = (await self.reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
        length = next(int(line.split(b":", 1)[1]) for line in lines[1:]
                      if line.lower().startswith(b"content-length:"))
        return int(lines[0].split()[1]), await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def load(url: str, texts: list[str], clients: int, duration: float, endpoint: str,
               body: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """`clients` closed-loop clients for `duration` s, each posting a random text of `texts` to
    `endpoint` (a name, or a path with its /) as the JSON `body(text)`."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    field = "inputs" if endpoint == "embed" else "texts"  # /embed takes TEI's request
    bodies = [json.dumps((body or (lambda t: {field: [t]}))(text)).encode() for text in texts]
    path = endpoint if endpoint.startswith("/") else f"/{endpoint}"
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + duration

    async def client(seed: int) -> None:
        nonlocal errors
        rng, connection = random.Random(seed), Connection(host, int(port))
        try:
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                try:
                    status, answer = await connection.post(path, rng.choice(bodies))
                    ok = status == 200 and answer[:1] in (b"{", b"[")  # /embed: a bare array
                except (OSError, asyncio.IncompleteReadError, ValueError, StopIteration):
                    ok = False
                    connection.close()
                    connection = Connection(host, int(port))
                latencies.append(time.perf_counter() - started)
                errors += not ok
        finally:
            connection.close()

    began = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    elapsed, lat = time.perf_counter() - began, np.array(latencies) * 1000
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


def run(clients: int, duration: float, data_dir: Path, endpoint: str = "predict",
        backend: str = "torch", extra: list[str] | None = None,
        backbone: str = "minilm") -> dict[str, Any]:
    """Both settings against one export of the model; see the module doc."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from mtst.inference.export import export_model
    from mtst.inference.loading import untrained

    texts = ag_titles(data_dir, 2000)
    result: dict[str, Any] = {"backbone": backbone, "clients": clients, "duration_s": duration,
                              "endpoint": endpoint, "backend": backend, "cpus": os.cpu_count(),
                              "server_options": extra or [], "settings": SETTINGS,
                              "load_average_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="mtst-serve-bench-") as tmp:
        model_dir = Path(tmp) / "minilm"
        export_model(untrained(backbone), model_dir, onnx=backend == "onnx")
        for name, options in SETTINGS.items():
            process, url = start(model_dir, [*options, "--backend", backend, *(extra or [])])
            try:
                wait_healthy(url)
                result[name] = asyncio.run(load(url, texts, clients, duration, endpoint))
            finally:
                process.send_signal(signal.SIGTERM)
                result[name] = {**result.get(name, {}), "exit_code": process.wait(120)}
    result["throughput_ratio"] = round(result["dynamic"]["throughput_rps"]
                                       / max(result["batch_size_1"]["throughput_rps"], 1e-9), 2)
    result["load_average_after"] = os.getloadavg()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--endpoint", choices=("predict", "embed"), default="predict")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--backend", choices=("torch", "onnx"), default="torch")
    parser.add_argument("--server-option", action="append", default=[],
                        help="extra `mtst serve` argument for both settings (repeatable)")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.clients, args.duration, args.data_dir, args.endpoint, args.backend,
                         args.server_option), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
