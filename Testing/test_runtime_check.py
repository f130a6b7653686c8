"""Which ONNX Runtime wheel a device needs, from the installed distributions."""

import pytest

from TwinTrackLogic import runtime_check
from TwinTrackLogic.runtime_check import CPU_WHEEL, GPU_WHEEL, onnxruntime_need


@pytest.fixture
def installed(monkeypatch):
    present = set()
    monkeypatch.setattr(runtime_check, "_installed", lambda name: name in present)
    return present


@pytest.mark.parametrize("device", ["auto", "cpu"])
def test_any_wheel_serves_the_cpu(installed, device):
    assert onnxruntime_need(device).install == CPU_WHEEL
    installed.add(CPU_WHEEL)
    assert onnxruntime_need(device) is None
    installed.clear()
    installed.add(GPU_WHEEL)
    assert onnxruntime_need(device) is None


def test_cuda_needs_the_gpu_wheel_alone(installed):
    assert onnxruntime_need("cuda").install == GPU_WHEEL and onnxruntime_need("cuda").uninstall == ()
    installed.add(CPU_WHEEL)
    need = onnxruntime_need("cuda")
    assert need.install == GPU_WHEEL and need.uninstall == (CPU_WHEEL,) and "CPU build" in need.reason
    installed.add(GPU_WHEEL)
    assert onnxruntime_need("cuda").uninstall == (CPU_WHEEL, GPU_WHEEL), "both wheels: reinstall the GPU one cleanly"
    installed.discard(CPU_WHEEL)
    assert onnxruntime_need("cuda") is None


def test_the_real_metadata_agrees_with_the_import():
    try:
        import onnxruntime  # noqa: F401
        importable = True
    except ImportError:
        importable = False
    assert (onnxruntime_need("cpu") is None) == importable
