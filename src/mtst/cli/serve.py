"""`mtst serve PATH`: the trained model behind an HTTP endpoint, with dynamic batching.

    mtst serve logs/runs/<run>                    # http://127.0.0.1:8000
    mtst serve export/ --port 9000 --workers 2 --max-batch-size 64 --max-wait-ms 5
    mtst serve export/ --backend onnx             # needs `mtst export --onnx`

It listens on 127.0.0.1 unless told otherwise. `--host 0.0.0.0` exposes the model to the
network: give it `--api-key` (or MTST_API_KEY, which `ps` does not show) and every route but
/health asks for `Authorization: Bearer <key>`. SIGTERM (or Ctrl-C) stops accepting connections,
answers the requests in flight, then exits 0. Endpoints and limits: `mtst.inference.server`;
the key, the concurrency bound and GET /metrics: `mtst.inference.guards`, `.telemetry`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from typing import Any

from mtst.errors import MtstError

ENV_CONFIG = "MTST_SERVE_CONFIG"  # what each worker process of `--workers N` loads
ENV_API_KEY = "MTST_API_KEY"  # the key when --api-key is not given; how workers get it
ENV_METRICS = "PROMETHEUS_MULTIPROC_DIR"  # where the workers of --workers N share their metrics
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH", help="a run folder, a .ckpt file or an `mtst export` folder")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 picks a free one)")
    parser.add_argument("--workers", type=int, default=1, help="processes, each with its own model copy")
    parser.add_argument("--max-batch-size", type=int, default=32, help="texts per batch (default: 32)")
    parser.add_argument("--max-wait-ms", type=float, default=0.0,
                        help="how long the first text of a batch waits for others (default: 0: a "
                             "batch takes what queued while the model was busy)")
    parser.add_argument("--max-texts", type=int, default=256, help="texts per request (default: 256)")
    parser.add_argument("--max-chars", type=int, default=20_000, help="characters per text (default: 20000)")
    parser.add_argument("--max-body-bytes", type=int, default=8 * 1024 * 1024,
                        help="request body size limit (default: 8 MiB)")
    parser.add_argument("--max-concurrent-requests", type=int, default=512,
                        help="requests in flight per worker past which one gets 429 (default: 512)")
    parser.add_argument("--api-key", default=None,
                        help=f"ask every route but /health for 'Authorization: Bearer KEY' "
                             f"(default: ${ENV_API_KEY}; unset: no key)")
    parser.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                        help="torch, or onnx (an export written with --onnx; onnxruntime on CPU)")
    parser.add_argument("--quantized", action="store_true", help="with --backend onnx: the int8 graph")
    parser.add_argument("--device", default="cpu", help="torch backend: cpu, cuda, ... (default: cpu)")
    parser.add_argument("--threads", type=int, default=0,
                        help="intra-op threads per worker (default: the cores divided by --workers; "
                             "fewer on a machine busy with other work)")
    parser.add_argument("--graceful-timeout", type=float, default=60.0,
                        help="seconds to finish requests in flight after SIGTERM (default: 60)")
    parser.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))


def _settings(args: argparse.Namespace):
    from mtst.inference.server import ServeSettings

    for name in ("workers", "max_batch_size", "max_texts", "max_chars", "max_body_bytes",
                 "max_concurrent_requests"):
        if getattr(args, name) < 1:
            raise MtstError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.max_wait_ms < 0:
        raise MtstError(f"--max-wait-ms must be 0 or more, got {args.max_wait_ms}")
    if not 0 <= args.port <= 65535:
        raise MtstError(f"--port must be between 0 and 65535, got {args.port}")
    if args.quantized and args.backend != "onnx":
        raise MtstError("--quantized needs --backend onnx")
    return ServeSettings(args.max_batch_size, args.max_wait_ms, args.max_texts, args.max_chars,
                         args.max_body_bytes, args.max_concurrent_requests, api_key(args.api_key))


def api_key(flag: str | None) -> str | None:
    """The key clients must send: --api-key, else $MTST_API_KEY (empty: unset), else None.

    Raises:
        MtstError: the key is empty or holds a character a header value cannot carry
            unchanged (not one of the printable ASCII characters, or a space); the message
            never quotes the key.
    """
    key = flag if flag is not None else (os.environ.get(ENV_API_KEY) or None)
    if key is None:
        return None
    source = "--api-key" if flag is not None else ENV_API_KEY
    if not key:
        raise MtstError(f"{source} is empty; leave it out to serve without a key")
    if not all("!" <= c <= "~" for c in key):
        raise MtstError(f"{source} must be printable ASCII without spaces")
    return key


def exposure_warning(host: str, keyed: bool) -> str | None:
    """The warning for a server that listens beyond this machine (None on loopback)."""
    if host in LOOPBACK:
        return None
    if keyed:
        return (f"warning: listening on {host}: reachable from the network; every route but "
                "/health asks for the API key (plain HTTP: put TLS in front of it)")
    return (f"warning: listening on {host}: anyone who can reach this machine can use the "
            "model (no API key: set --api-key or MTST_API_KEY)")


def load_model(spec: dict[str, Any]) -> Any:
    """The model a worker serves; `spec` is plain JSON so that spawned workers can rebuild it."""
    import torch

    from mtst.inference.loading import load

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    if spec["backend"] == "onnx":
        return load(spec["path"], backend="onnx", quantized=spec["quantized"], threads=spec["threads"])
    return load(spec["path"], device=spec["device"])


def app_from_env():
    """uvicorn's app factory in each worker process of `--workers N`."""
    from mtst.inference.server import ServeSettings, create_app
    from mtst.inference.service import model_id_for

    spec = json.loads(os.environ[ENV_CONFIG])
    started = time.perf_counter()
    model = load_model(spec)
    settings = ServeSettings(**spec["settings"], api_key=os.environ.get(ENV_API_KEY) or None)
    app = create_app(model, settings, model_id_for(spec["path"]))
    app.state.telemetry.model_load_seconds.set(time.perf_counter() - started)
    return app


def default_threads(workers: int) -> int:
    """Intra-op threads per worker: the usable cores shared among the workers.

    Measured on 2 cores (docs/serving.md): with the load clients on the same machine, 2 threads
    served 198 req/s with dynamic batching against 118 with 1, and the same 56 req/s without
    batching; but when another process keeps a core busy, every intra-op thread that gets
    preempted makes the others wait at the end of each operator, and 1 thread was 4-7x faster.
    `--threads` is the knob for such a shared machine."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // workers)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise MtstError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    sock.set_inheritable(True)  # worker processes of --workers N serve the same socket
    return sock


def run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as err:
        raise MtstError(f"mtst serve needs {err.name}: pip install 'mtst[serve]'") from None
    from mtst.inference.server import create_app
    from mtst.inference.service import model_id_for

    threads = args.threads or default_threads(args.workers)
    # the key stays out of the spec: /metadata shows the limits, and workers read $MTST_API_KEY
    spec = {"path": args.path, "backend": args.backend, "quantized": args.quantized,
            "device": args.device, "threads": threads, "settings": settings.limits()}
    started = time.perf_counter()
    model = load_model(spec)  # a bad PATH fails here, with one line, before anything listens
    load_seconds = time.perf_counter() - started
    sock = bind(args.host, args.port)
    host, port = sock.getsockname()[:2]
    warning = exposure_warning(args.host, settings.api_key is not None)
    if warning:
        print(warning, file=sys.stderr)
    common = {"log_level": args.log_level, "access_log": False,
              "timeout_graceful_shutdown": args.graceful_timeout}
    # uvicorn re-raises the SIGTERM/SIGINT it caught once it has shut down gracefully; with these
    # handlers in place that re-raise is a no-op and the process returns 0 (its own handlers are
    # installed over these while it serves).
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    if args.workers == 1:
        app = create_app(model, settings, model_id_for(args.path))
        app.state.telemetry.model_load_seconds.set(load_seconds)
        server = uvicorn.Server(uvicorn.Config(app, **common))
        _announce(host, port, args)
        server.run(sockets=[sock])
        return 0
    del model
    from uvicorn.supervisors import Multiprocess

    os.environ[ENV_CONFIG] = json.dumps(spec)
    if settings.api_key is not None:
        os.environ[ENV_API_KEY] = settings.api_key
    # one scrape sees every worker: each writes its metrics under this folder (a fresh one
    # unless the operator chose one), read back on scrape (mtst.inference.telemetry)
    metrics_dir = None
    if not os.environ.get(ENV_METRICS):
        metrics_dir = os.environ[ENV_METRICS] = tempfile.mkdtemp(prefix="mtst-metrics-")
    config = uvicorn.Config("mtst.cli.serve:app_from_env", factory=True, workers=args.workers, **common)
    _announce(host, port, args)
    try:
        Multiprocess(config, sockets=[sock]).run()
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
            del os.environ[ENV_METRICS]
    return 0


def _announce(host: str, port: int, args: argparse.Namespace) -> None:
    shown = f"[{host}]" if ":" in host else host
    keyed = ", API key required" if api_key(args.api_key) else ""
    print(f"mtst serve: http://{shown}:{port} ({args.backend}, {args.workers} worker(s), "
          f"batches of up to {args.max_batch_size} texts, {args.max_wait_ms:g} ms wait{keyed})",
          flush=True)
