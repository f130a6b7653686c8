"""ONNX Runtime for the module, without Qt: which device a platform can offer, installing a wheel
so that a failure leaves the working one in place, and what the panel says about the device that
actually ran (finding N5 of the second module audit).

- onnxruntime-gpu publishes Linux and Windows wheels only: on macOS, *cuda* would uninstall the
  working CPU wheel and then fail to install, so it is refused before anything changes.
- The two wheels install the same ``onnxruntime`` package, so the CPU wheel must go before the
  GPU one comes (``TwinTrackLogic.runtime_check``); if the GPU install then fails, the CPU wheel
  is installed again and the user is told.
- With onnxruntime-gpu but no usable CUDA (driver, CUDA or cuDNN libraries missing), ONNX Runtime
  lists the CUDA provider yet builds the session on the CPU; the provider that ran is in the
  result (``provenance["execution_provider"]``) and the panel says so.
"""

from __future__ import annotations

import sys
from typing import Callable, Optional

from TwinTrackLogic import TwinTrackError
from TwinTrackLogic.runtime_check import CPU_WHEEL, RuntimeNeed

PROVIDER_NAMES = {"CUDAExecutionProvider": "the GPU (CUDA)", "CPUExecutionProvider": "the CPU"}


def devices_for(platform: Optional[str] = None) -> tuple:
    """The device choices this platform (default: this one) can run."""
    return ("auto", "cpu") if (platform or sys.platform) == "darwin" else ("auto", "cpu", "cuda")


def refused_device(device: str, platform: Optional[str] = None) -> Optional[str]:
    """Why ``device`` cannot run here (a sentence for the panel), or None."""
    if device not in devices_for(platform):
        return ("ONNX Runtime has no GPU (CUDA) build for macOS, so TwinTrack runs on the CPU there. "
                "Choose the device 'auto' or 'cpu' and press Apply again.")
    return None


def install(need: RuntimeNeed, pip_install: Callable[[str], object], pip_uninstall: Callable[[str], object]) -> None:
    """Make the change ``need`` describes; if the install fails after the CPU wheel was removed,
    put the CPU wheel back, then raise a :class:`TwinTrackError` that says what happened."""
    for package in need.uninstall:
        pip_uninstall(package)
    try:
        pip_install(need.install)
    except Exception as error:
        restored = ""
        if CPU_WHEEL in need.uninstall:
            try:
                pip_install(CPU_WHEEL)
                restored = " The CPU build (onnxruntime) was installed again, so TwinTrack still runs on the CPU."
            except Exception:  # the network is gone, say what is left
                restored = (" The CPU build (onnxruntime) could not be installed again either: install it from "
                            "the Python console with slicer.util.pip_install('onnxruntime').")
        raise TwinTrackError(f"Installing {need.install} failed ({error}).{restored} pip's output is in the "
                             "Python console.") from error


def provider_note(provider: str) -> str:
    """The status line's note on where the networks ran ("" when unknown)."""
    return f" Ran on {PROVIDER_NAMES.get(provider, provider)}." if provider else ""


def provider_warning(device: str, provider: str) -> str:
    """A banner line when *cuda* was chosen but ONNX Runtime ran elsewhere, else ""."""
    if device == "cuda" and provider and provider != "CUDAExecutionProvider":
        return (f"The device 'cuda' was chosen, but ONNX Runtime ran on {PROVIDER_NAMES.get(provider, provider)}: "
                "the GPU build is installed but CUDA or cuDNN could not be loaded (check the NVIDIA driver and "
                "the CUDA version onnxruntime-gpu needs). The result is the same, only slower.")
    return ""
