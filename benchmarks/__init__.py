"""mtst benchmarks on real data: `python -m benchmarks` (or `make bench`) writes BENCHMARKS.md."""

from __future__ import annotations
