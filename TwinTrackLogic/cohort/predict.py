"""Predicting a whole cohort: one output folder per case, resumable, one case's failure reported.

``predict_cohort`` maps :func:`predict_case` over the case folders of a cohort (in-process, or
on Dask workers through ``case_map``; see :mod:`TwinTrackLogic.cohort.casemap`). Each task takes only
paths and settings, builds the ensemble once per process (``pipeline.process_ensemble``), runs
the one pipeline entry point ``pipeline.run_case`` and writes, atomically::

    OUT/<case>/probability.nii.gz             calibrated (raw without a calibrator), 0 outside region
               raw.nii.gz                     the raw ensemble probability (when calibrated)
               mask.nii.gz                    probability >= level
               region.nii.gz                  where the ensemble looked
               probability.involvement.json   vascular involvement (involvement.py), when the case
                                              has vessels.nii.gz or the bundle a vessel stage
               probability.provenance.json    inputs' sha256, bundle, calibrator, level, timings

Only a small row per case travels back. Resume: a case whose outputs exist, whose sidecar
names the same image and vessels sha256, bundle (id and model hashes), calibrator sha256 and level,
and whose every output still has the sha256 and size the sidecar recorded for it, is skipped;
anything else is recomputed, and the progress line says why (a truncated or replaced map is never
reused). The sidecar is written last (see ``prediction_outputs``), so a case interrupted mid-write
has none and is recomputed.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Dict, List, Optional, TypedDict

import numpy as np

from ..calibration.fileformat import check_bundle_raters
from ..errors import InputError
from ..inference.bundle import load_bundle
from ..io import Case, find_cases, read_image
from ..io.outputs import file_record
from ..io.strictjson import read_json
from ..pipeline import (
    check_level,
    expected_region_source,
    file_sha256,
    input_record,
    process_ensemble,
    resolve_calibrator,
    run_case,
    strict_refusal,
)
from ..prediction_outputs import provenance_path, write_prediction
from ..progress import CancelToken, ProgressCallback, no_progress
from ..vessels import read_vessels
from .casemap import CaseFailed, CaseMap, each_case

PROBABILITY = "probability.nii.gz"
RAW = "raw.nii.gz"
MASK = "mask.nii.gz"
REGION = "region.nii.gz"
# The temporaries StagedOutputs writes (".NAME.XXXX.partial.SUFFIX"); a killed worker can leave one.
PARTIAL_PATTERN = ".*.partial*"
NOT_PREDICTED = "no outputs yet"


@dataclass(frozen=True)
class CohortPredictSettings:
    """What every case of a cohort run uses; paths as strings, so a task can travel."""

    bundle_dir: str
    calibrator_path: Optional[str]  # None: the raw ensemble probability
    level: float = 0.5
    device: str = "auto"
    threads: Optional[int] = None
    use_region: bool = True  # False: --no-region, the members on the whole CT
    strict: bool = False  # --strict: a case with domain warnings fails and gets no outputs


@dataclass
class CohortPrediction:
    """The outcome of :func:`predict_cohort`; ``rows`` and ``failed`` keyed by case name."""

    rows: Dict[str, Dict] = field(default_factory=dict)
    failed: Dict[str, str] = field(default_factory=dict)

    @property
    def predicted(self) -> List[str]:
        return [name for name, row in self.rows.items() if row["status"] == "predicted"]

    @property
    def skipped(self) -> List[str]:
        return [name for name, row in self.rows.items() if row["status"] == "up to date"]


class CaseOutputs(TypedDict):
    """A case's output paths, as :func:`~TwinTrackLogic.prediction_outputs.write_prediction` takes them."""

    out: Path
    raw_out: Optional[Path]
    mask_out: Path
    region_out: Path


def case_outputs(out_folder: Path, calibrated: bool) -> CaseOutputs:
    return {"out": out_folder / PROBABILITY, "raw_out": out_folder / RAW if calibrated else None,
            "mask_out": out_folder / MASK, "region_out": out_folder / REGION}


def _fingerprint(bundle, calibrator_path: Optional[str], level: float, use_region: bool = True) -> Dict:
    models = {stage.name: stage.sha256
              for stage in ([bundle.localiser] if bundle.localiser is not None else []) + list(bundle.members)}
    return {"bundle": {"id": bundle.id, "models": models},
            "calibrator_sha256": file_sha256(calibrator_path) if calibrator_path is not None else None,
            "level": level, "region_source": expected_region_source(bundle, use_region)}


def _recorded_fingerprint(record: Dict) -> Dict:
    bundle = record.get("bundle") or {}
    calibrator = record.get("calibrator") or {}
    return {"bundle": {"id": bundle.get("id"), "models": bundle.get("models")},
            "calibrator_sha256": calibrator.get("sha256"), "level": record.get("level"),
            "region_source": record.get("region_source")}


def stale_reason(case: Case, out_folder: Path, fingerprint: Dict, calibrated: bool) -> Optional[str]:
    """Why the case's outputs cannot be reused (None: up to date): an output or the sidecar is
    missing, the sidecar names other inputs or settings, or an output's sha256 or size differs from
    what the sidecar recorded when it was written (truncated, replaced, or another case's file)."""
    outputs = case_outputs(out_folder, calibrated)
    sidecar = provenance_path(outputs["out"])
    paths = [path for path in (outputs["out"], outputs["raw_out"], outputs["mask_out"], outputs["region_out"])
             if path is not None]
    missing = [path.name for path in [*paths, sidecar] if not path.is_file()]
    if missing:
        return NOT_PREDICTED if len(missing) == len(paths) + 1 else f"{', '.join(missing)} missing"
    try:
        record = read_json(sidecar, "provenance sidecar")
        recorded_image = record["inputs"]["image"]["sha256"]
        recorded_vessels = (record["inputs"].get("vessels") or {}).get("sha256")
        readout = record["outputs"].get("involvement")
        recorded_files = record.get("output_files")
    except (InputError, KeyError, TypeError, AttributeError):
        return f"{sidecar.name} unreadable"
    if _recorded_fingerprint(record) != fingerprint or recorded_image != input_record(case.image)["sha256"]:
        return "inputs or settings changed"
    vessels = input_record(case.vessels)["sha256"] if case.vessels is not None else None
    if recorded_vessels != vessels:
        return "the case's vessels changed"
    if readout is not None:
        if not Path(readout).is_file():
            return f"{Path(readout).name} missing"
        paths.append(Path(readout))
    if not isinstance(recorded_files, dict):
        return f"{sidecar.name} records no checksums of its outputs (an older TwinTrack wrote it)"
    by_name = {Path(key).name: entry for key, entry in recorded_files.items()}  # the folder may have moved
    for path in paths:
        recorded = by_name.get(path.name)
        if not isinstance(recorded, dict):
            return f"{sidecar.name} records no checksum of {path.name}"
        if path.stat().st_size != recorded.get("bytes") or file_record(path) != recorded:
            return f"{path.name} differs from its record (truncated or replaced)"
    return None


def is_up_to_date(case: Case, out_folder: Path, fingerprint: Dict, calibrated: bool) -> bool:
    """True when the case's outputs exist, match their sidecar's checksums, and the sidecar matches
    the inputs and settings now."""
    return stale_reason(case, out_folder, fingerprint, calibrated) is None


def predict_case(case: Case, out: str, settings: CohortPredictSettings) -> Dict:
    """The map step: predict one case into ``out/<case>/`` unless it is up to date; a summary row."""
    bundle = load_bundle(settings.bundle_dir)
    calibrator, calibrator_path = resolve_calibrator(bundle, settings.calibrator_path,
                                                     settings.calibrator_path is None)
    folder = Path(out) / case.name
    fingerprint = _fingerprint(bundle, settings.calibrator_path, settings.level, settings.use_region)
    stale = stale_reason(case, folder, fingerprint, calibrator is not None)
    if stale is None:
        return {"status": "up to date"}
    recomputed = None if stale == NOT_PREDICTED else stale
    ensemble = process_ensemble(settings.bundle_dir, settings.device, settings.threads)
    image = read_image(case.image, dtype=np.float32)
    vessels = read_vessels(case.vessels, image.geometry, case.image) if case.vessels is not None else None
    result = run_case(image, predict=partial(ensemble.predict, use_region=settings.use_region),
                      calibrator=calibrator, calibrator_path=calibrator_path, bundle=bundle, level=settings.level,
                      vessels=vessels, vessels_source=f"case {case.vessels.name}" if case.vessels is not None else None)
    refusal = strict_refusal(result, case.image) if settings.strict else None
    if refusal is not None:
        raise refusal  # reported as this case's failure; the other cases go on
    inputs = {"image": input_record(case.image)}
    if case.vessels is not None:
        inputs["vessels"] = input_record(case.vessels)
    write_prediction(result, inputs=inputs, **case_outputs(folder, calibrator is not None))
    return {"status": "predicted", "recomputed": recomputed, "region_volume_ml": round(result.region_volume_ml, 3),
            "expected_tumour_volume_ml": round(result.calibrated_curve.expected_volume_ml, 3),
            "seconds": result.provenance["timings_s"].get("total_s"), "warnings": list(result.warnings),
            "vessels_source": result.provenance["vessels_source"]}


def remove_partial_outputs(out) -> int:
    """Delete the temporaries a killed run left in ``out/<case>/``; returns how many."""
    removed = 0
    for leftover in Path(out).glob(f"*/{PARTIAL_PATTERN}"):
        leftover.unlink(missing_ok=True)
        removed += 1
    return removed


def settings_for(bundle_dir, calibrator_path=None, no_calibration: bool = False, level: float = 0.5,
                 device: str = "auto", threads: Optional[int] = None, use_region: bool = True,
                 strict: bool = False, allow_rater_mismatch: bool = False) -> CohortPredictSettings:
    """Check the bundle, calibrator (its raters against the bundle's) and level now (not once per
    case) and fix them as absolute paths."""
    bundle = load_bundle(bundle_dir)
    calibrator, path = resolve_calibrator(bundle, calibrator_path, no_calibration)
    warning = check_bundle_raters(bundle, calibrator, path, allow_rater_mismatch)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    return CohortPredictSettings(str(Path(bundle.folder).resolve()),
                                 str(Path(path).resolve()) if path is not None else None,
                                 check_level(level), device, threads, use_region, strict)


def predict_cohort(cohort, out, settings: CohortPredictSettings, case_map: CaseMap = map,
                   progress: Optional[ProgressCallback] = no_progress,
                   token: Optional[CancelToken] = None) -> CohortPrediction:
    """Predict every case of ``cohort`` into ``out``; a failed case is recorded and the rest go on."""
    progress = progress or no_progress
    cases = find_cases(Path(cohort).resolve())
    out = Path(out).resolve()
    if out == Path(cohort).resolve():
        raise InputError(f"--out {out} is the cohort folder itself; the predictions would replace the cases' "
                         "own probability.nii.gz. Give another folder.")
    out.mkdir(parents=True, exist_ok=True)
    remove_partial_outputs(out)  # left by an earlier run that was killed
    outcome = CohortPrediction()
    progress(0.0, f"predicting {len(cases)} case(s)")
    try:
        for case, row in each_case(partial(predict_case, out=str(out), settings=settings), cases, case_map,
                                   progress, token, status=_status):
            if isinstance(row, CaseFailed):
                outcome.failed[case.name] = row.message
            else:
                outcome.rows[case.name] = row
    finally:
        remove_partial_outputs(out)
    return outcome


def _status(row) -> str:
    if isinstance(row, CaseFailed):
        return "failed"
    reason = row.get("recomputed")
    return f"{row['status']} again: its earlier outputs were not reused ({reason})" if reason else row["status"]
