"""Can this Python run the ensemble on a device, and if not, which ONNX Runtime wheel would?

Answered from the installed distributions' metadata, without importing onnxruntime: the
ensemble runs in a fresh worker process, so what counts is what a new interpreter would load,
not what this one imported earlier (after an install, an import here would be stale).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib import metadata
from typing import Optional, Tuple

CPU_WHEEL, GPU_WHEEL = "onnxruntime", "onnxruntime-gpu"


@dataclass(frozen=True)
class RuntimeNeed:
    """What to change before a run on the device: uninstall these, then install ``install``."""

    reason: str
    install: str
    uninstall: Tuple[str, ...] = ()


def _installed(name: str) -> bool:
    try:
        metadata.distribution(name)
        return True
    except metadata.PackageNotFoundError:
        return False


def onnxruntime_need(device: str) -> Optional[RuntimeNeed]:
    """None when ONNX Runtime is there for ``device`` (auto, cpu or cuda); else what is missing."""
    importlib.invalidate_caches()  # a pip install a moment ago must count
    cpu, gpu = _installed(CPU_WHEEL), _installed(GPU_WHEEL)
    if device == "cuda":
        if gpu and not cpu:
            return None
        if gpu and cpu:
            # Both wheels install the same `onnxruntime` package; whichever came last wins, and
            # the CPU one has no CUDA provider (microsoft/onnxruntime#26996).
            return RuntimeNeed("Both onnxruntime and onnxruntime-gpu are installed; they overwrite each "
                               "other, so the CUDA provider may be missing.", GPU_WHEEL, (CPU_WHEEL, GPU_WHEEL))
        if cpu:
            return RuntimeNeed("The installed ONNX Runtime is the CPU build; running on the GPU (cuda) "
                               "needs onnxruntime-gpu instead.", GPU_WHEEL, (CPU_WHEEL,))
        return RuntimeNeed("ONNX Runtime is not installed.", GPU_WHEEL)
    if cpu or gpu:
        return None
    return RuntimeNeed("ONNX Runtime is not installed.", CPU_WHEEL)
