"""What `GET /metrics` reports, in Prometheus' text format (through `prometheus-client`).

    mtst_requests_total{route, status}           requests answered (counter)
    mtst_request_duration_seconds{route}         time from the request's arrival to its answer
    mtst_batch_texts                             texts per model call of the batcher (histogram)
    mtst_queue_texts                             texts submitted to the batcher, not answered yet
    mtst_requests_in_flight                      requests inside the server (not /health, /metrics)
    mtst_model_load_seconds                      how long loading the model took

`route` is the route's template (`/predict`, `/v1/embeddings`), never the raw path, and every
path no route matches shares the label `unmatched`, so that a scan of random URLs cannot grow
the number of series without bound. /health records nothing: it stays as cheap as it was.

The metrics live in a registry the application owns, so two applications in one process (tests)
count apart. Under `--workers N` each worker is a process with its own counters; the parent
sets PROMETHEUS_MULTIPROC_DIR to a fresh folder before it starts them, each worker writes its
values there, and a scrape, whichever worker answers it, reads every worker's files
(prometheus-client's multiprocess mode): counters and histograms are summed over the workers,
the two gauges of work in progress are summed over the live ones, and the model load time is
one series per worker (label `pid`).
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED = "unmatched"  # the route label of every path no route matches

# seconds: from a 1 ms cache-warm /metadata to a long batch of windows on a busy CPU
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# texts per model call: powers of two up to well past the default --max-batch-size of 32
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def multiprocess() -> bool:
    """Whether the values go to PROMETHEUS_MULTIPROC_DIR (set by `mtst serve --workers N`).

    prometheus-client reads the variable once, when it is first imported; a worker process
    imports it after the parent has set it."""
    return bool(os.environ.get(MULTIPROC_ENV))


class Telemetry:
    """The metrics of one application, and the scrape that reports them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.requests = Counter(
            "mtst_requests",
            "HTTP requests answered, by route template and status code",
            ("route", "status"),
            registry=registry,
        )
        self.latency = Histogram(
            "mtst_request_duration_seconds",
            "Time from a request's arrival to the end of its answer, by route template",
            ("route",),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_texts = Histogram(
            "mtst_batch_texts",
            "Texts per model call of the dynamic batcher",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.queue_texts = Gauge(
            "mtst_queue_texts",
            "Texts submitted to the batcher and not answered yet",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.in_flight = Gauge(
            "mtst_requests_in_flight",
            "Requests inside the server, counted against --max-concurrent-requests",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.model_load_seconds = Gauge(
            "mtst_model_load_seconds",
            "Seconds it took to load the model served",
            registry=registry,
            multiprocess_mode="liveall",
        )
        # label children looked up once: `labels()` costs more than the increment itself
        self._requests: dict[tuple[str, int], Any] = {}
        self._latency: dict[str, Any] = {}

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        counter = self._requests.get((route, status))
        if counter is None:
            counter = self._requests[route, status] = self.requests.labels(route, str(status))
        counter.inc()
        histogram = self._latency.get(route)
        if histogram is None:
            histogram = self._latency[route] = self.latency.labels(route)
        histogram.observe(seconds)

    def scrape(self) -> tuple[bytes, str]:
        """The text a scrape gets, and its content type.

        Returns:
            In multiprocess mode every worker's values, read from PROMETHEUS_MULTIPROC_DIR;
            else this application's registry.
        """
        if multiprocess():
            from prometheus_client import multiprocess as mp

            registry = CollectorRegistry()
            mp.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
