"""What the figures were measured on: CPU, memory, load, library versions, mtst commit."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from typing import Any

from benchmarks.common import ROOT

PACKAGES = ("torch", "transformers", "lightning", "tokenizers", "sentence-transformers",
            "hydra-core", "numpy", "mtst")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def ram_gib() -> float | None:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


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


def package_versions(names: tuple[str, ...]) -> dict[str, str]:
    """Installed version of each package, or "not installed"."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def describe() -> dict[str, Any]:
    import torch

    versions = {"python": platform.python_version(), **package_versions(PACKAGES)}
    return {
        "cpu": cpu_model(), "logical_cpus": os.cpu_count(), "ram_gib": ram_gib(),
        "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
        "load_average_start": list(os.getloadavg()), "versions": versions,
        "mtst_commit": git_commit(),
    }
