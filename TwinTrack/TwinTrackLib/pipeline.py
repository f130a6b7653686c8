"""The long work of one run, in core terms only (runs on a worker thread).

CT volume -> ensemble (raw tumour probability) -> calibrator -> calibrated
probability ~ expected annotator agreement, plus the two volume curves the
sliders read from. Nothing here touches the MRML scene: the main thread
builds nodes from the returned :class:`AgreementResult` only after success.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from TwinTrackLogic.agreement import AgreementCurve
from TwinTrackLogic.errors import InputError
from TwinTrackLogic.io import Geometry, Volume
from TwinTrackLogic.progress import CancelToken, ProgressCallback, no_progress, scaled

# predict(volume, progress=..., token=...) -> object with .probability (float32 on the CT grid)
Predict = Callable[..., object]


@dataclass
class AgreementResult:
    """One run's output on the CT grid; arrays in (z, y, x) order."""

    geometry: Geometry
    raw: np.ndarray  # float32 ensemble probability
    calibrated: np.ndarray  # float32, ~ fraction of annotators labelling tumour
    raters: int  # annotators the calibrator was fitted to
    calibrated_curve: AgreementCurve
    raw_curve: AgreementCurve
    calibrator_method: str = ""


def compute_agreement(volume: Volume, predict: Predict, calibrator,
                      progress: Optional[ProgressCallback] = None,
                      token: Optional[CancelToken] = None) -> AgreementResult:
    """Run the ensemble on ``volume`` and calibrate its output."""
    progress = progress or no_progress
    token = token or CancelToken()
    prediction = predict(volume, progress=scaled(progress, 0.0, 0.9), token=token)
    token.check()
    raw = np.asarray(prediction.probability, dtype=np.float32)
    if not raw.flags.writeable:
        raw = raw.copy()
    if raw.shape != volume.array.shape:
        raise InputError(f"The ensemble returned a {raw.shape} map for a {volume.array.shape} CT; "
                         "the model bundle is not compatible with this version of TwinTrack.")
    # Resampling and averaging in float32 can overshoot 1 by a rounding step;
    # the calibrator (rightly) refuses anything outside [0, 1]. NaN stays NaN.
    np.clip(raw, 0.0, 1.0, out=raw)
    progress(0.9, "Calibrating to annotator agreement")
    region = getattr(prediction, "region", None)
    if region is None:
        calibrated = np.asarray(calibrator.transform(raw), dtype=np.float32)
    else:
        # The calibrator was fitted inside the ensemble's region and means nothing
        # outside it, where no network looked: agreement there is 0 (as `twintrack
        # predict` writes it), not transform(0) summed over the whole body.
        calibrated = np.zeros(raw.shape, dtype=np.float32)
        calibrated[region] = calibrator.transform(raw[region])
    token.check()
    progress(0.95, "Computing volume curves")
    voxel_ml = volume.geometry.voxel_volume_ml
    result = AgreementResult(
        geometry=volume.geometry, raw=raw, calibrated=calibrated,
        raters=int(getattr(calibrator, "raters", 0) or 0),
        calibrated_curve=AgreementCurve(calibrated, voxel_ml),
        raw_curve=AgreementCurve(raw, voxel_ml),
        calibrator_method=str(getattr(calibrator, "method", "")),
    )
    token.check()
    progress(1.0, "Done")
    return result


def ensemble_work(volume: Volume, bundle_dir: Optional[Path] = None, calibrator_path: Optional[Path] = None,
                  device: str = "auto", threads: Optional[int] = None):
    """A job body ``(progress, token) -> AgreementResult`` using the real ensemble.

    Everything slow (loading ONNX sessions, inference, calibration) happens
    inside the returned function, i.e. on the worker thread.
    """

    def work(progress: ProgressCallback, token: CancelToken) -> AgreementResult:
        from TwinTrackLogic.bundle import default_bundle_dir, load_bundle
        from TwinTrackLogic.calibration import load_calibrator
        from TwinTrackLogic.inference import Ensemble

        progress(0.0, "Loading the model bundle")
        bundle = load_bundle(bundle_dir or default_bundle_dir())
        path = calibrator_path or bundle.default_calibrator_path
        if path is None:
            raise InputError("No calibrator was chosen and the model bundle has no default calibrator. "
                             "Fit one from a multi-rater cohort in the 'Calibrator' section.")
        calibrator = load_calibrator(path)
        ensemble = Ensemble(bundle, device=device, threads=threads)
        return compute_agreement(volume, ensemble.predict, calibrator, progress, token)

    return work


def calibration_work(cohort_folder: Path, output_path: Path, bundle_dir: Optional[Path] = None,
                     device: str = "auto", method: str = "isotonic"):
    """A job body ``(progress, token) -> CohortFit`` that fits a calibrator on a
    multi-rater cohort (CURVAS layout) and saves its JSON to ``output_path``.

    Cases with a ``probability.nii.gz`` use it; the others are run through the
    ensemble of the model bundle, so the calibrator matches what the module shows.
    """

    def work(progress: ProgressCallback, token: CancelToken):
        from TwinTrackLogic.calibration import fit_cohort
        from TwinTrackLogic.io import find_cases

        cases = find_cases(cohort_folder)
        ensemble, source = None, None
        if any(case.file("probability.nii.gz") is None for case in cases):
            from TwinTrackLogic.bundle import default_bundle_dir, load_bundle
            from TwinTrackLogic.inference import Ensemble

            bundle = load_bundle(bundle_dir or default_bundle_dir())
            ensemble, source = Ensemble(bundle, device=device), f"bundle:{bundle.id}"

        def probability_for(case):
            return ensemble.case_probability(case, token)

        fit = fit_cohort(cases, method=method, progress=progress, token=token,
                         probability_for=probability_for if ensemble else None,
                         probability_source=source)
        token.check()
        fit.calibrator.save(output_path)
        return fit

    return work
