"""One case from CT to calibrated outputs: the single path every front end takes.

``run_case`` is TwinTrack's method in one call::

    CT (array + geometry)
      -> ensemble (localiser -> region -> members), or a raw map given by the caller
      -> calibration inside the region only (0 outside: no network looked there)
      -> mask at an agreement level (p >= level), the volume-versus-agreement curves
      -> vascular involvement per vessel and agreement level (involvement.py), when there are vessels
      -> a provenance record (bundle, calibrator, region volume, warnings, version, timings)

``twintrack predict``, ``apply`` and ``evaluate``, the Slicer module, the worker process and
cohort runs all call it; none of them re-implements a step. What differs between them is only
where the region comes from:

- the ensemble's own region (``predict``, Slicer): the dilated localiser mask;
- a region mask the caller gives (``apply --region``, ``evaluate``'s region policy);
- neither (``apply`` on a raw map alone): the voxels where the raw map is non-zero, because the
  engine writes exact zeros outside its region.

The vessels of the involvement read-out come, in this order, from the caller (a label map the user
gave: ``--vessels``, a cohort case's ``vessels.nii.gz``), from the bundle's vessel stage (the
prediction's ``vessels``), or nowhere: then there is no read-out, and the provenance says so once.

"At level t" means ``p >= t`` everywhere (masks, read-outs, segments), with t in (0, 1].
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from . import __version__
from .errors import InputError
from .involvement import Involvement, read_involvement
from .io import Geometry, Volume
from .io.finite import ct_with_finite_values, describe, non_finite
from .progress import CancelToken, ProgressCallback, no_progress, scaled
from .review.agreement import AgreementCurve
from .review.levels import DEFAULT_LEVEL, check_level
from .vessels import RELABEL, check_vessel_labels

PROVENANCE_FORMAT = "twintrack-provenance"
PROVENANCE_VERSION = 1
NO_VESSELS_NOTE = ("No vascular-involvement read-out: no vessel label map was given (--vessels, or a case's "
                   "vessels.nii.gz) and the model bundle has no vessel stage.")

# predict(volume, progress=..., token=...) -> object with .probability and .region on the CT grid
Predict = Callable[..., Any]


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def calibrate_in_region(calibrator, raw: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Calibrated probability: ``calibrator`` applied to the region's voxels, 0 elsewhere.

    The calibrator was fitted on region voxels; what it makes of p = 0 (an ensemble miss near
    the organ) must not be spread over every background voxel of the body.
    """
    calibrated = np.zeros(raw.shape, dtype=np.float32)
    if region.any():
        calibrated[region] = calibrator.transform(raw[region])
    return calibrated


def resolve_calibrator(bundle=None, path=None, no_calibration: bool = False):
    """The calibrator a run uses and its file: ``path``, else the bundle's default.

    Returns ``(calibrator, path)``, ``(None, None)`` with ``no_calibration``.
    """
    if no_calibration:
        return None, None
    if path is None and bundle is not None:
        path = bundle.default_calibrator_path
    if path is None:
        where = f"The model bundle {bundle.folder} has" if bundle is not None else "There is"
        raise InputError(f"{where} no default calibrator. Pass a calibrator file (from `twintrack "
                         "calibrate`), or ask for the raw ensemble probability (--no-calibration).")
    from .calibration import load_calibrator

    calibrator = load_calibrator(path)
    # The manifest says how many raters its default calibrator speaks for; a file that disagrees
    # was replaced or mixed up, and its levels would read as fractions of another panel.
    is_default = bundle is not None and path == bundle.default_calibrator_path
    if is_default and bundle.raters and calibrator.raters and bundle.raters != calibrator.raters:
        raise InputError(f"The model bundle {bundle.folder} declares a default calibrator fitted with "
                         f"{bundle.raters} raters, but {path} was fitted with {calibrator.raters}. Restore the "
                         "bundle's calibrator, or pass the calibrator you mean with --calibrator.")
    return calibrator, Path(path)


@dataclass
class CaseResult:
    """One case's outputs on the CT grid; arrays in (z, y, x) order."""

    geometry: Geometry
    raw: np.ndarray  # float32 raw ensemble probability, 0 outside the region
    calibrated: np.ndarray  # float32 ~ expected fraction of annotators; == raw without a calibrator
    region: np.ndarray  # bool: where the ensemble looked (and the calibrator applies)
    organ: Optional[np.ndarray]  # bool localiser mask, None without a localiser or a given raw map
    level: float  # agreement level of ``mask``
    raters: int  # annotators the calibrator was fitted to (0: unknown or uncalibrated)
    calibrated_curve: AgreementCurve
    raw_curve: AgreementCurve
    is_calibrated: bool = False
    provenance: Dict[str, Any] = field(default_factory=dict)
    vessels: Optional[np.ndarray] = None  # uint8 CURVAS vessel labels the read-out used (vessels.py)
    involvement: Optional[Involvement] = None  # None without vessels

    @property
    def warnings(self) -> List[str]:
        return self.provenance.setdefault("warnings", [])

    def mask(self, level: Optional[float] = None) -> np.ndarray:
        """Where at least ``level`` (default: the run's level) of annotators are expected to agree."""
        return self.calibrated >= np.float32(self.level if level is None else check_level(level))

    @property
    def region_volume_ml(self) -> float:
        return float(np.count_nonzero(self.region)) * self.geometry.voxel_volume_ml


def _raw_from(prediction, shape) -> np.ndarray:
    raw = np.asarray(prediction.probability, dtype=np.float32)
    if raw.shape != tuple(shape):
        raise InputError(f"The ensemble returned a {raw.shape} map for a {tuple(shape)} CT; "
                         "the model bundle is not compatible with this version of TwinTrack.")
    if not raw.flags.writeable:
        raw = raw.copy()
    return raw


def _check_finite(array: np.ndarray, what: str) -> None:
    found = non_finite(array)
    if found is not None:
        raise InputError(f"{what} holds {describe(found)}. The run was stopped so that no wrong value "
                         "is written; check the model bundle and the calibrator.")


def run_case(image: Volume, *, predict: Optional[Predict] = None, raw: Optional[np.ndarray] = None,
             region: Optional[np.ndarray] = None, calibrator=None, calibrator_path=None,
             bundle=None, level: float = DEFAULT_LEVEL, progress: Optional[ProgressCallback] = None,
             token: Optional[CancelToken] = None, vessels: Optional[np.ndarray] = None,
             vessels_source: Optional[str] = None) -> CaseResult:
    """Take one case from CT to its outputs.

    image: the CT (its array may be None when ``raw`` is given: only the grid is used).
    predict: the ensemble's ``predict(volume, progress=, token=)``; or ``raw``: a raw map on the
    CT grid made elsewhere (a file, an earlier run). region: a bool mask on the CT grid; default:
    the ensemble's region, or ``raw > 0`` for a given raw map. calibrator: None for the raw map.
    calibrator_path and bundle only feed the provenance record. vessels: a CURVAS vessel label map
    on the CT grid for the involvement read-out, and ``vessels_source`` where it came from (the
    provenance's words, e.g. ``"given file vessels.nii.gz"``); default: the prediction's ``vessels``
    (the bundle's vessel stage), else no read-out.
    """
    if (predict is None) == (raw is None):
        raise ValueError("run_case needs exactly one of predict= and raw=")
    level = check_level(level, "the agreement level")
    progress = progress or no_progress
    token = token or CancelToken()
    geometry = image.geometry
    timings: Dict[str, float] = {}
    started = time.perf_counter()
    organ = None
    warnings: List[str] = []
    vessels_check_s = 0.0
    if vessels is not None:
        vessels_source = vessels_source or "given label map"
        vessels = _vessels_on_grid(vessels, geometry, f"The vessel label map ({vessels_source})")
        vessels_check_s = time.perf_counter() - started
    if predict is not None:
        image, ct_warning = ct_with_finite_values(image)  # NaN outside the field of view: see io.finite
        if ct_warning:
            warnings.append(ct_warning)
        prediction = predict(image, progress=scaled(progress, 0.0, 0.9), token=token)
        token.check()
        raw = _raw_from(prediction, geometry.shape)
        _check_finite(raw, "The ensemble's probability")
        organ = getattr(prediction, "organ", None)
        if vessels is None and getattr(prediction, "vessels", None) is not None:
            vessels_source = "bundle vessel stage"
            vessels = _vessels_on_grid(prediction.vessels, geometry, "The model bundle's vessel stage",
                                       "The bundle's manifest and its vessel model disagree; fix or replace the bundle.")
        if region is None:
            region = getattr(prediction, "region", None)
            region_source = "localiser" if organ is not None else "whole image"
        else:
            region_source = "given mask"
        timings["ensemble_s"] = time.perf_counter() - started
    else:
        raw = np.asarray(raw, dtype=np.float32)
        if raw.shape != geometry.shape:
            raise InputError(f"The probability map has shape {raw.shape}, not the CT's {geometry.shape} "
                             "(z, y, x). Give it on the CT's voxel grid.")
    # Resampling and averaging in float32 can overshoot 1 by a rounding step.
    np.clip(raw, 0.0, 1.0, out=raw)
    if region is None:
        region = raw > 0.0
        region_source = "raw map > 0"
    elif predict is None:
        region_source = "given mask"
    region = np.asarray(region, dtype=bool)
    if region.shape != geometry.shape:
        raise InputError(f"The region mask has shape {region.shape}, not the CT's {geometry.shape} (z, y, x).")
    progress(0.9, "Calibrating to annotator agreement")
    calibrate_start = time.perf_counter()
    if calibrator is None:
        calibrated = raw
    else:
        calibrated = calibrate_in_region(calibrator, raw, region)
        _check_finite(calibrated, "The calibrated probability")
        timings["calibration_s"] = time.perf_counter() - calibrate_start
    token.check()
    progress(0.95, "Computing volume curves")
    voxel_ml = geometry.voxel_volume_ml
    raw_curve = AgreementCurve(raw, voxel_ml)
    calibrated_curve = raw_curve if calibrator is None else AgreementCurve(calibrated, voxel_ml)
    raters = int(getattr(calibrator, "raters", 0) or 0) if calibrator is not None else 0
    involvement = None
    if vessels is not None:
        involvement_start = time.perf_counter()
        involvement = read_involvement(calibrated, vessels, raters, is_calibrated=calibrator is not None)
        timings["involvement_s"] = time.perf_counter() - involvement_start + vessels_check_s
    timings["total_s"] = time.perf_counter() - started
    result = CaseResult(
        geometry=geometry, raw=raw, calibrated=calibrated, region=region, organ=organ, level=level,
        raters=raters, calibrated_curve=calibrated_curve, raw_curve=raw_curve, is_calibrated=calibrator is not None,
        vessels=vessels, involvement=involvement,
    )
    result.provenance = provenance_record(result, bundle, calibrator, calibrator_path, timings,
                                          source="ensemble" if predict is not None else "given raw map")
    result.provenance["region_source"] = region_source
    result.provenance["vessels_source"] = vessels_source if vessels is not None else "none"
    if vessels is None:
        result.provenance["notes"] = [NO_VESSELS_NOTE]
    result.warnings.extend(warnings)
    if predict is not None:
        check_domain(result, image, bundle)
    token.check()
    progress(1.0, "Done")
    return result


def _vessels_on_grid(vessels, geometry: Geometry, source: str, advice: str = RELABEL) -> np.ndarray:
    """A vessel label map checked for the read-out: the CT's (z, y, x) shape, CURVAS labels, as uint8."""
    vessels = np.asarray(vessels)
    if vessels.shape != geometry.shape:
        raise InputError(f"{source} has shape {vessels.shape}, not the CT's {geometry.shape} (z, y, x). "
                         "Give the vessel labels on the CT's voxel grid.")
    return check_vessel_labels(vessels, source, advice)


def expected_region_source(bundle, use_region: bool) -> str:
    """The ``region_source`` a run of ``bundle``'s ensemble records (``use_region=False``: --no-region)."""
    return "localiser" if bundle.localiser is not None and use_region else "whole image"


def strict_refusal(result: CaseResult, what) -> Optional[InputError]:
    """``--strict``: the error that refuses ``what`` (a CT) when its run gave warnings, else None."""
    if not result.warnings:
        return None
    return InputError(f"--strict: {what} was refused and nothing was written, because "
                      + "; ".join(result.warnings) + ". Run without --strict to get the result with "
                      "these warnings, or use a model bundle trained on data like this CT.")


def check_domain(result: CaseResult, image: Volume, bundle) -> None:
    """Add the domain checks' warnings (inference/domain.py) and measurements to the provenance."""
    from .inference.domain import Domain, domain_warnings

    domain = Domain.from_manifest(bundle.manifest) if bundle is not None else None
    warnings, measured = domain_warnings(domain, image, result.organ, result.region)
    result.warnings.extend(warnings)
    result.provenance["domain"] = {"declared": bool(domain), "synthetic": bool(domain and domain.synthetic),
                                   "measured": measured}


def provenance_record(result: CaseResult, bundle, calibrator, calibrator_path, timings: Dict[str, float],
                      source: str) -> Dict[str, Any]:
    """What made these outputs: enough to tell whether a rerun would give the same ones."""
    record: Dict[str, Any] = {
        "format": PROVENANCE_FORMAT,
        "version": PROVENANCE_VERSION,
        "software": {"name": "twintrack", "version": __version__},
        "probability_source": source,
        "bundle": None,
        "calibrator": None,
        "level": result.level,
        "region_voxels": int(np.count_nonzero(result.region)),
        "region_volume_ml": round(result.region_volume_ml, 3),
        "expected_tumour_volume_ml": round(result.calibrated_curve.expected_volume_ml, 3),
        "volume_at_level_ml": round(result.calibrated_curve.volume_ml(result.level), 3),
        "grid": {"size": list(result.geometry.size), "spacing_mm": list(result.geometry.spacing),
                 "origin_mm": list(result.geometry.origin), "direction": list(result.geometry.direction)},
        "warnings": [],
        "timings_s": {name: round(seconds, 3) for name, seconds in timings.items()},
    }
    if bundle is not None:
        record["bundle"] = {
            "id": bundle.id, "folder": str(bundle.folder),
            "models": {stage.name: stage.sha256 for stage in _stages(bundle)},
        }
    if calibrator is not None:
        record["calibrator"] = {
            "method": str(getattr(calibrator, "method", "")),
            "raters": int(getattr(calibrator, "raters", 0) or 0),
            "file": str(calibrator_path) if calibrator_path is not None else None,
            "sha256": file_sha256(calibrator_path) if calibrator_path is not None else None,
        }
    return record


def _stages(bundle):
    return ([bundle.localiser] if bundle.localiser is not None else []) + list(bundle.members)


_PROCESS_ENSEMBLE: Dict[Any, Any] = {}


def process_ensemble(bundle_dir, device: str = "auto", threads: Optional[int] = None):
    """The ensemble of ``bundle_dir`` for this process, built once and reused.

    Cohort tasks (in-process or on a Dask worker) take a bundle *path* and call this, so each
    process loads the networks once, whatever number of cases it runs. One bundle at a time.
    """
    from .inference import Ensemble

    key = (str(Path(bundle_dir).resolve()), device, threads)
    if key not in _PROCESS_ENSEMBLE:
        _PROCESS_ENSEMBLE.clear()
        _PROCESS_ENSEMBLE[key] = Ensemble(Path(bundle_dir), device=device, threads=threads)
    return _PROCESS_ENSEMBLE[key]


@dataclass
class BundleProbability:
    """``probability_for(case)`` of calibrator fits: the bundle's raw ensemble map of a case's CT and
    the bundle's domain warnings on it, as a :class:`~.calibration.fitting.CaseProbability`.

    Holds only the bundle's path and settings, so a cohort map can send it to other processes.
    Where it was made it keeps its own ensemble (freed with it, as a Slicer job needs); a copy
    that travelled to a worker uses that process's :func:`process_ensemble`, built once for all
    the cases the worker runs. The token (cancel) stays with the process that made it.
    """

    bundle_dir: str
    device: str = "auto"
    threads: Optional[int] = None
    token: Optional[CancelToken] = field(default=None, compare=False)
    _ensemble: Any = field(default=None, init=False, repr=False, compare=False)
    _travelled: bool = field(default=False, init=False, repr=False, compare=False)

    def __call__(self, case):
        if self._travelled:
            ensemble = process_ensemble(self.bundle_dir, self.device, self.threads)
        else:
            if self._ensemble is None:
                from .inference import Ensemble

                self._ensemble = Ensemble(Path(self.bundle_dir), device=self.device, threads=self.threads)
            ensemble = self._ensemble
        from .calibration.fitting import CaseProbability
        from .inference.domain import Domain, domain_warnings

        ct, prediction = ensemble.case_prediction(case, self.token)
        # The same domain checks as run_case: a calibrator fitted on CTs unlike the training data says so.
        warnings, _ = domain_warnings(Domain.from_manifest(ensemble.bundle.manifest), ct, prediction.organ,
                                      prediction.region)
        return CaseProbability(prediction.probability, warnings)

    def __getstate__(self):
        return {**self.__dict__, "token": None, "_ensemble": None, "_travelled": True}


def ensemble_probability_hook(bundle_dir=None, device: str = "auto", threads: Optional[int] = None,
                              token: Optional[CancelToken] = None, probability_name: str = "probability.nii.gz"):
    """``(probability_for(case), source)`` for calibrator fits: the bundle's raw ensemble map of a
    case folder's CT, for cases without ``probability_name``. One provenance string for every
    front end. The bundle is checked now; its networks load on the first case that needs them."""
    from .inference.bundle import default_bundle_dir, load_bundle

    bundle = load_bundle(bundle_dir or default_bundle_dir())
    probability_for = BundleProbability(str(Path(bundle.folder).resolve()), device, threads, token)
    return probability_for, f"bundle:{bundle.id} (cases without {probability_name})"


def input_record(path) -> Dict[str, Any]:
    """Path and sha256 of an input file; a folder (a DICOM series) hashes its sorted files' names and hashes."""
    path = Path(path)
    if path.is_dir():
        digest = hashlib.sha256()
        for entry in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(f"{entry.relative_to(path)}\0{file_sha256(entry)}\n".encode("utf-8"))
        return {"path": str(path), "sha256": digest.hexdigest(), "kind": "folder"}
    return {"path": str(path), "sha256": file_sha256(path), "kind": "file"}
