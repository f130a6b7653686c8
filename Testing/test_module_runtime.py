"""ONNX Runtime in the module (TwinTrackLib.runtime, finding N5 of the second module audit):
*cuda* only where a GPU wheel exists, a failed GPU install puts the CPU wheel back, and the
panel says which execution provider actually ran."""

from __future__ import annotations

import pytest

from TwinTrackLib import runtime  # noqa: E402
from TwinTrackLogic.errors import TwinTrackError  # noqa: E402
from TwinTrackLogic.runtime_check import RuntimeNeed  # noqa: E402

TO_GPU = RuntimeNeed("The installed ONNX Runtime is the CPU build.", "onnxruntime-gpu", ("onnxruntime",))


class Pip:
    """pip as a record of what is installed; ``broken`` packages fail to install."""

    def __init__(self, installed, broken=()):
        self.installed, self.broken, self.calls = set(installed), set(broken), []

    def install(self, name):
        self.calls.append(("install", name))
        if name in self.broken:
            raise RuntimeError(f"No matching distribution found for {name}")
        self.installed.add(name)

    def uninstall(self, name):
        self.calls.append(("uninstall", name))
        self.installed.discard(name)


def test_cuda_is_offered_only_where_a_gpu_wheel_exists():
    assert "cuda" not in runtime.devices_for("darwin") and "cuda" in runtime.devices_for("linux")
    assert "cuda" in runtime.devices_for("win32")
    assert "macOS" in runtime.refused_device("cuda", "darwin")
    assert runtime.refused_device("cpu", "darwin") is None and runtime.refused_device("cuda", "linux") is None


def test_a_failed_gpu_install_puts_the_cpu_wheel_back_and_says_so():
    pip = Pip({"onnxruntime"}, broken={"onnxruntime-gpu"})
    with pytest.raises(TwinTrackError, match="installed again, so TwinTrack still runs on the CPU"):
        runtime.install(TO_GPU, pip.install, pip.uninstall)
    assert pip.installed == {"onnxruntime"}
    assert pip.calls == [("uninstall", "onnxruntime"), ("install", "onnxruntime-gpu"), ("install", "onnxruntime")]


def test_when_nothing_can_be_installed_the_message_says_how_to_get_the_cpu_wheel_back():
    pip = Pip({"onnxruntime"}, broken={"onnxruntime-gpu", "onnxruntime"})
    with pytest.raises(TwinTrackError, match=r"could not be installed again.*pip_install\('onnxruntime'\)"):
        runtime.install(TO_GPU, pip.install, pip.uninstall)


def test_a_good_install_swaps_the_wheels():
    pip = Pip({"onnxruntime"})
    runtime.install(TO_GPU, pip.install, pip.uninstall)
    assert pip.installed == {"onnxruntime-gpu"}


def test_the_panel_names_the_provider_and_warns_when_cuda_fell_back_to_the_cpu():
    assert runtime.provider_note("CPUExecutionProvider") == " Ran on the CPU."
    assert runtime.provider_note("CUDAExecutionProvider") == " Ran on the GPU (CUDA)."
    assert runtime.provider_note("") == ""
    assert "ran on the CPU" in runtime.provider_warning("cuda", "CPUExecutionProvider")
    assert runtime.provider_warning("cuda", "CUDAExecutionProvider") == ""
    assert runtime.provider_warning("auto", "CPUExecutionProvider") == ""


def test_the_ensemble_job_records_the_provider_that_ran():
    pytest.importorskip("onnxruntime")
    from TwinTrackLogic.io import Volume
    from TwinTrackLogic.phantom import generate_case
    from TwinTrackLogic.worker import jobs

    case = generate_case(1, raters=5, seed=0, size="small")
    outcome = jobs.BackgroundJob(jobs.ensemble_job(Volume(case.image, case.geometry), device="cpu")).start().wait(300)
    assert outcome.status == jobs.DONE, outcome.message
    assert outcome.value.provenance["execution_provider"] == "CPUExecutionProvider"


def test_the_stand_in_ensemble_knows_only_the_demo_phantom():
    import numpy as np

    from TwinTrackLogic.io import Volume
    from TwinTrackLogic.phantom import generate_case
    from TwinTrackLogic.worker import jobs

    case = generate_case(1, raters=5, seed=0, size="small")
    work = jobs.phantom_stand_in_job(Volume(case.image + np.float32(1.0), case.geometry), case=1, raters=5, seed=0)
    outcome = jobs.BackgroundJob(work).start().wait(120)
    assert outcome.status == jobs.FAILED and "only knows the demo phantom" in outcome.message
    outcome = jobs.BackgroundJob(jobs.phantom_stand_in_job(Volume(case.image, case.geometry), case=1, raters=5,
                                                           seed=0)).start().wait(120)
    assert outcome.status == jobs.DONE and outcome.value.raters == 5 and outcome.value.is_calibrated
    assert outcome.value.provenance["execution_provider"] == jobs.STAND_IN_PROVIDER
