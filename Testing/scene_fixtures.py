"""Fixtures for the headless scene tests (Testing/test_scene*.py).

Wires what the Slicer application would (TwinTrack/ is on the path through pytest's
``pythonpath`` setting, so ``import TwinTrackLib`` works as inside Slicer), a scene with
vtkSlicerApplicationLogic and its colour logic with the default colour nodes,
and VTK's offscreen EGL window (skips the X attempt on headless machines).
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

REPOSITORY = Path(__file__).resolve().parents[1]
MODULE_DIR = REPOSITORY / "TwinTrack"
ARTEFACTS = REPOSITORY / "Testing" / "artefacts"

slicer = pytest.importorskip("slicer", reason="the headless scene tests need slicer-core (pip install slicer-core)")

import headless  # noqa: E402  (Testing/: the scene Slicer would wire, on slicer-core)


@pytest.fixture
def mrml():
    """(scene, application logic, colour logic), like the Slicer application's."""
    scene, application_logic, color_logic = headless.make_scene()
    yield SimpleNamespace(scene=scene, app=application_logic, colors=color_logic)
    scene.Clear(True)


def overconfident_probability(latent: np.ndarray) -> np.ndarray:
    """A stand-in ensemble output: monotone in the latent tumour field but
    over-confident (too high at the margin), as an uncalibrated network is."""
    return np.sqrt(np.clip(latent, 0.0, 1.0)).astype(np.float32)


@pytest.fixture(scope="session")
def phantom_calibrator():
    """A real isotonic calibrator, fitted on phantom case 0 (not the demo case)."""
    from TwinTrackLogic.calibration import CalibrationStatistics, fit_calibrator
    from TwinTrackLogic.io import mhr_from_masks
    from TwinTrackLogic.phantom import generate_case

    case = generate_case(0, raters=5, seed=0, size="small")
    raw = overconfident_probability(case.latent)
    region = (case.pancreas > 0) | (case.latent > 0)
    statistics = CalibrationStatistics().add(raw, mhr_from_masks(case.annotations), region, raters=5,
                                             source="phantom case 0")
    return fit_calibrator(statistics, "isotonic", region="phantom organ", probability_source="stand-in")


def make_work_for(calibrator, latent: np.ndarray, slow_s: float = 0.0):
    from TwinTrackLogic.pipeline import run_case

    def predict(volume, progress=None, token=None):
        import time

        for step in range(10):
            if token is not None:
                token.check()
            if progress is not None:
                progress(step / 10, f"stand-in ensemble step {step + 1} of 10")
            time.sleep(slow_s / 10)
        if latent.shape != volume.array.shape:
            raise AssertionError("stand-in used on another volume")
        # The stand-in looked everywhere: its region is the whole image.
        return SimpleNamespace(probability=overconfident_probability(latent),
                               region=np.ones(latent.shape, dtype=bool))

    def work_for(volume, **run_options):  # run_options: run_case's vessels=, vessels_source=
        return lambda progress, token: run_case(volume, predict=predict, calibrator=calibrator,
                                                progress=progress, token=token, **run_options)

    return work_for
