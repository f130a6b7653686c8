"""Long work off the UI thread, with progress and a Cancel that works.

A :class:`BackgroundJob` runs a job body ``work(progress, token)`` on a
worker thread. The UI polls it from a timer on the main thread (``poll``) and
touches the scene only once the outcome is in, so a cancelled or failed run
never leaves half-made nodes. Cancel sets the core's :class:`CancelToken`,
which the core checks between units of work (sliding-window patches, cases);
a result that arrives after Cancel was pressed is discarded. ONNX Runtime and
numpy release the GIL while they compute, so the UI stays responsive. Inside
3D Slicer a thread only advances while the main thread runs Python, so the
module runs the same job bodies in a worker process instead
(:mod:`TwinTrackLogic.worker.process`, the same ``poll``/``cancel`` interface).

The body is injected, so tests drive the job with any function.
"""

from __future__ import annotations

import threading
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple

from ..errors import Cancelled, TwinTrackError
from ..progress import CancelToken, ProgressCallback

DONE, CANCELLED, FAILED = "done", "cancelled", "failed"


@dataclass
class Outcome:
    status: str  # DONE, CANCELLED or FAILED
    value: Any = None
    message: str = ""  # for people
    details: str = ""  # traceback of unexpected errors, for the log


def failure_outcome(error: BaseException) -> Outcome:
    """The outcome of a job that raised ``error``: the CLI's people-facing wording for our errors."""
    if isinstance(error, Cancelled):
        return Outcome(CANCELLED, message=str(error))
    if isinstance(error, TwinTrackError):
        return Outcome(FAILED, message=str(error))
    if isinstance(error, OSError) and error.strerror:  # disk full, permissions, a vanished folder
        where = f" ({error.filename})" if error.filename else ""
        return Outcome(FAILED, message=f"{error.strerror}{where}. Check that the folder exists, is writable "
                                       "and has free space; no partial output was kept.")
    if isinstance(error, MemoryError):
        return Outcome(FAILED, message="Not enough memory for this volume. Close other data or "
                                       "crop the CT to the abdomen and try again.")
    return Outcome(FAILED, message=f"Unexpected error ({type(error).__name__}: {error}). "
                                   "The details are in the Python console / log; please report them.",
                   details="".join(traceback.format_exception(type(error), error, error.__traceback__)))


class BackgroundJob:
    """One run of ``work(progress, token)`` on a daemon thread."""

    def __init__(self, work: Callable[[ProgressCallback, CancelToken], Any], name: str = "TwinTrack job"):
        self.token = CancelToken()
        self._work = work
        self._lock = threading.Lock()
        self._progress: Tuple[float, str] = (0.0, "Starting")
        self._outcome: Optional[Outcome] = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> "BackgroundJob":
        self._thread.start()
        return self

    def _report(self, fraction: float, message: str) -> None:
        with self._lock:
            self._progress = (float(fraction), str(message))

    def _run(self) -> None:
        try:
            value = self._work(self._report, self.token)
            outcome = Outcome(DONE, value=value)
        except BaseException as error:  # every failure becomes a message for people
            outcome = failure_outcome(error)
        if outcome.status == DONE and self.token.cancelled:
            outcome = Outcome(CANCELLED, message="Cancelled by the user; the result was discarded.")
        with self._lock:
            self._outcome = outcome

    def cancel(self) -> None:
        self.token.cancel()

    @property
    def running(self) -> bool:
        with self._lock:
            return self._outcome is None

    def poll(self) -> Tuple[float, str, Optional[Outcome]]:
        """(fraction, message, outcome or None while running); cheap, main thread."""
        with self._lock:
            return self._progress[0], self._progress[1], self._outcome

    def wait(self, timeout: Optional[float] = None) -> Optional[Outcome]:
        self._thread.join(timeout)
        return self.poll()[2]


# --- job bodies: the core's long work, as ``work(progress, token)`` -----------------


def ensemble_job(volume, bundle_dir=None, calibrator_path=None, device: str = "auto",
                 threads: Optional[int] = None, level: float = 0.5, vessels=None,
                 vessels_source: Optional[str] = None) -> Callable[[ProgressCallback, CancelToken], Any]:
    """A job body that runs :func:`~TwinTrackLogic.pipeline.run_case` with the real ensemble
    (``vessels``, ``vessels_source``: the involvement read-out's label map, as run_case takes them).

    Everything slow (loading ONNX sessions, inference, calibration) happens inside the
    returned function, i.e. on the worker.
    """

    def work(progress: ProgressCallback, token: CancelToken):
        from ..calibration.fileformat import rater_mismatch
        from ..inference import Ensemble
        from ..inference.bundle import default_bundle_dir, load_bundle
        from ..pipeline import resolve_calibrator, run_case

        progress(0.0, "Loading the model bundle")
        bundle = load_bundle(bundle_dir or default_bundle_dir())
        calibrator, path = resolve_calibrator(bundle, calibrator_path)
        ensemble = Ensemble(bundle, device=device, threads=threads)
        result = run_case(volume, predict=ensemble.predict, calibrator=calibrator, calibrator_path=path,
                          bundle=bundle, level=level, progress=progress, token=token, vessels=vessels,
                          vessels_source=vessels_source)
        # The panel has no override switch, so a calibrator the user picked for another panel is not
        # refused (as the command line does) but said in the result's warnings, which the panel shows.
        mismatch = rater_mismatch(bundle, calibrator, path)
        if mismatch is not None:
            result.warnings.append(mismatch + "; the read-outs count that calibrator's raters. Pick the "
                                   "calibrator fitted for this bundle unless you recalibrated it on purpose.")
        # onnxruntime-gpu without usable CUDA libraries silently builds the session on the CPU.
        result.provenance["execution_provider"] = execution_provider(ensemble)
        return result

    return work


STAND_IN_PROVIDER = "the self-test's stand-in ensemble (no ONNX Runtime)"


def phantom_stand_in_job(volume, case: int, raters: int, seed: int, size: str = "small", bundle_dir=None,
                         calibrator_path=None, level: float = 0.5, vessels=None,
                         vessels_source: Optional[str] = None) -> Callable[[ProgressCallback, CancelToken], Any]:
    """A job body for the module's self-test where ONNX Runtime is absent (Slicer's extension
    factory): :func:`~TwinTrackLogic.pipeline.run_case` on the demo phantom ``case`` with a stand-in
    ensemble whose probability is an over-confident transform of the phantom's own tumour field
    (the one the pytest suite injects), calibrated with the bundle's calibrator. Everything else
    (worker process, calibration, scene, panel) is the real thing. Refuses any other volume.
    """

    def work(progress: ProgressCallback, token: CancelToken):
        import numpy as np

        from ..errors import InputError
        from ..inference.bundle import default_bundle_dir, load_bundle
        from ..phantom import generate_case
        from ..pipeline import resolve_calibrator, run_case

        phantom = generate_case(case, raters=raters, seed=seed, size=size)
        if phantom.image.shape != volume.array.shape or not np.allclose(phantom.image, volume.array):
            raise InputError("The self-test's stand-in ensemble only knows the demo phantom; this is another CT.")
        bundle = load_bundle(bundle_dir or default_bundle_dir())
        calibrator, path = resolve_calibrator(bundle, calibrator_path)

        # A raw map, not a predict(): no domain checks. They describe the real ensemble's training
        # data, and TwinTrackLogic.inference (where they live) imports onnxruntime, which is missing here.
        raw = np.sqrt(np.clip(phantom.latent, 0.0, 1.0)).astype(np.float32)
        progress(0.5, "Stand-in ensemble (self-test without ONNX Runtime)")
        result = run_case(volume, raw=raw, region=np.ones(raw.shape, dtype=bool), calibrator=calibrator,
                          calibrator_path=path, bundle=bundle, level=level, progress=progress, token=token,
                          vessels=vessels, vessels_source=vessels_source)
        result.provenance["execution_provider"] = STAND_IN_PROVIDER
        return result

    return work


def execution_provider(ensemble) -> str:
    """The execution provider ONNX Runtime put first for the ensemble's networks ("" when none has a session)."""
    for stage in [ensemble.localiser, *ensemble.members]:
        session = getattr(stage, "session", None)
        if session is not None:
            return str(session.get_providers()[0])
    return ""


def calibration_job(cohort_folder, output_path, bundle_dir=None, device: str = "auto",
                    method: str = "isotonic") -> Callable[[ProgressCallback, CancelToken], Any]:
    """A job body that fits a calibrator on a multi-rater cohort and saves it to ``output_path``.

    Cases with a ``probability.nii.gz`` use it; the others run through the bundle's ensemble,
    so the calibrator matches what the module shows.
    """

    def work(progress: ProgressCallback, token: CancelToken):
        from ..calibration import FitSettings, fit_cohort
        from ..io import find_cases
        from ..pipeline import ensemble_probability_hook

        cases = find_cases(cohort_folder)
        probability_for = source = None
        if any(case.file("probability.nii.gz") is None for case in cases):
            probability_for, source = ensemble_probability_hook(bundle_dir, device=device, token=token)
        fit = fit_cohort(cases, FitSettings(method, probability_source=source), progress=progress, token=token,
                         probability_for=probability_for)
        token.check()
        fit.calibrator.save(output_path)
        return fit

    return work
