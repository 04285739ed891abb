"""What the benchmarks read of the machine: resident memory, profiles, and the CPU, libraries and
commit every section records beside its figures."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import resource
import subprocess
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks.common import ROOT

PACKAGES = ("torch", "transformers", "lightning", "tokenizers", "sentence-transformers",
            "hydra-core", "numpy", "mtst")


def _proc_mib(path: str, field: str) -> float | None:
    try:
        with open(path) as handle:
            return next((int(line.split()[1]) / 1024 for line in handle
                         if line.startswith(field + ":")), None)
    except OSError:  # pragma: no cover - not Linux
        return None


def peak_rss_mib() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: Linux keeps ru_maxrss across
    exec, so a child started by a big parent would report the parent's peak."""
    value = _proc_mib("/proc/self/status", "VmHWM")
    return value if value is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> bool:
    """Restart the peak (VmHWM) from the current RSS, so a later peak covers one stage only."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:  # pragma: no cover - not Linux, or not allowed
        return False


def rss_mib(kind: str = "Vm") -> float:
    """Resident memory now: all of it (`Vm`), anonymous (`Anon`: heap, arrays) or file-backed
    (`File`: memory-mapped files, clean pages the kernel can drop and re-read)."""
    value = _proc_mib("/proc/self/status", f"{kind}RSS" if kind == "Vm" else f"Rss{kind}")
    return value if value is not None else float("nan")


def torch_profile(fn: Callable[[], Any], rows: int = 10) -> list[dict[str, Any]]:
    """Top operators by self CPU time while `fn` runs (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    return [{"name": e.key, "calls": e.count, "self_ms": e.self_cpu_time_total / 1000,
             "share": e.self_cpu_time_total / total} for e in events[:rows]]


def python_profile(fn: Callable[[], Any], rows: int = 12) -> list[dict[str, Any]]:
    """Top Python functions by own time (cProfile) while `fn` runs."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.runcall(fn)
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in stats.values()) or 1
    entries = [{"name": f"{path.split('site-packages/')[-1].split('/src/')[-1]}:{line}({func})",
                "calls": ncalls, "self_s": tottime, "cum_s": cumtime, "share": tottime / total}
               for (path, line, func), (_, ncalls, tottime, cumtime, _) in stats.items()]
    return sorted(entries, key=lambda e: e["self_s"], reverse=True)[:rows]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            return next(line.split(":", 1)[1].strip() for line in handle
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def mem_total_mib() -> tuple[float, float]:
    """Total and available RAM (MiB)."""
    total = _proc_mib("/proc/meminfo", "MemTotal") or float("nan")
    return total, _proc_mib("/proc/meminfo", "MemAvailable") or float("nan")


def git_commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=30).stdout.strip()

    try:
        commit = git("rev-parse", "--short=12", "HEAD") or "unknown"
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    return commit + (" + uncommitted changes" if dirty else "")


def package_versions(names: Sequence[str]) -> dict[str, str]:
    """Installed version of each package, or "not installed"."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def describe() -> dict[str, Any]:
    """What the figures were measured on: CPU, memory, load, library versions, mtst commit."""
    import torch

    total = _proc_mib("/proc/meminfo", "MemTotal")
    return {"cpu": cpu_model(), "logical_cpus": os.cpu_count(),
            "ram_gib": total / 1024 if total else None, "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(), "load_average_start": list(os.getloadavg()),
            "versions": {"python": platform.python_version(), **package_versions(PACKAGES)},
            "mtst_commit": git_commit()}
