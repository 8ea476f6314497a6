"""What machine and which library versions a benchmark ran on (figures mean nothing without it)."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _tensorrt_version() -> str | None:
    """The importable tensorrt module's version, whichever wheel (tensorrt, -cu12, -cu13, -lean) put it there."""
    try:
        import tensorrt
    except Exception:  # not installed, or installed without its CUDA libraries
        return None
    return getattr(tensorrt, "__version__", None)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _gpu() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    return f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"


def machine_info() -> dict:
    from medfuse import __version__
    from medfuse.runtime.backends.onnxruntime_backend import available_providers, physical_cores

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "medfuse": __version__,
        "python": platform.python_version(),
        "os": platform.platform(),
        "cpu": _cpu_model(),
        "cpus_usable": usable,
        "physical_cores": physical_cores(),
        "memory_gib": _memory_gib(),
        "gpu": _gpu(),
        "numpy": _version("numpy"),
        "opencv": _version("opencv-python-headless") or _version("opencv-python"),
        "torch": _version("torch"),
        "onnxruntime": _version("onnxruntime") or _version("onnxruntime-gpu"),
        "onnxruntime_providers": ", ".join(available_providers()) or None,
        "tensorrt": _tensorrt_version(),
        "pywavelets": _version("PyWavelets"),
    }
