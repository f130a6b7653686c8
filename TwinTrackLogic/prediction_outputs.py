"""Writing one case's prediction: its images, the involvement read-out and the provenance sidecar,
all or none.

``twintrack predict`` (one CT) and the cohort predict (one folder per case) write
through :func:`write_prediction`, so both leave the same files and the same record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Optional

from .io import StagedOutputs
from .io.images import image_suffix


def _beside(out: Path, what: str) -> Path:
    out = Path(out)
    suffix = image_suffix(out.name)
    name = out.name[: -len(suffix)] if suffix else out.name
    return out.with_name(f"{name}.{what}.json")


def provenance_path(out: Path) -> Path:
    """The provenance sidecar of an output image: ``prob.nii.gz`` -> ``prob.provenance.json``."""
    return _beside(out, "provenance")


def involvement_path(out: Path) -> Path:
    """The vascular-involvement read-out of an output image: ``prob.nii.gz`` -> ``prob.involvement.json``."""
    return _beside(out, "involvement")


def involvement_record(result) -> Dict:
    """The read-out file's content: the involvement (involvement.py) and where its vessels came from."""
    return {**result.involvement.to_json(), "vessels_source": result.provenance.get("vessels_source")}


def write_prediction(result, out: Optional[Path], inputs: Dict, raw_out: Optional[Path] = None,
                     mask_out: Optional[Path] = None, region_out: Optional[Path] = None, *,
                     sidecar: Optional[Path] = None, stage_more: Optional[Callable[[StagedOutputs], Dict]] = None,
                     before_publish: Optional[Callable[[], None]] = None, vessels_out: Optional[Path] = None,
                     involvement_out: Optional[Path] = None) -> Path:
    """Write a :class:`~TwinTrackLogic.pipeline.CaseResult`: the probability at ``out``, the
    optional raw map, mask (p >= the run's level), region and vessel label map (``vessels_out``: the
    one the read-out used), the involvement read-out (``OUT.involvement.json``, or ``involvement_out``)
    when the case has one, and ``OUT.provenance.json``.

    A sidecar on disk always describes the images next to it (a cohort resume trusts exactly
    that): the old one is removed once the new images are staged, just before they are renamed
    into place, and the new one is renamed last. A failure while the images are written leaves
    the old outputs and their sidecar as they were. Returns the sidecar's path.

    ``out`` may be None when ``stage_more`` writes the outputs (DICOM objects); then ``sidecar``
    names the record and ``involvement_out`` the read-out. ``stage_more(outputs)`` stages more files in the same all-or-none block and
    returns what to record of them; ``before_publish()`` runs last inside the block (an upload:
    if it is refused, nothing local is kept either).
    """
    if sidecar is None or involvement_out is None:
        if out is None:
            raise ValueError("write_prediction needs out, or sidecar and involvement_out: where would they go?")
        sidecar = sidecar or provenance_path(out)
        involvement_out = involvement_out or involvement_path(out)
    if vessels_out is not None and result.vessels is None:
        raise ValueError("vessels_out without vessels: the caller checks that the run had a vessel label map")
    geometry = result.geometry
    result.provenance["inputs"] = inputs
    # All outputs appear together or none does (a failure leaves the old images untouched).
    with StagedOutputs() as outputs:
        if raw_out is not None:
            outputs.image(raw_out, result.raw, geometry)
        if out is not None:
            outputs.image(out, result.calibrated, geometry)
        if mask_out is not None:
            outputs.image(mask_out, result.mask(), geometry)
        if region_out is not None:
            outputs.image(region_out, result.region, geometry)
        if vessels_out is not None:
            outputs.image(vessels_out, result.vessels, geometry)
        if result.involvement is not None:
            outputs.json(involvement_out, involvement_record(result))
        recorded = {"probability": _name(out), "raw": _name(raw_out), "mask": _name(mask_out),
                    "region": _name(region_out), "vessels": _name(vessels_out),
                    "involvement": _name(involvement_out) if result.involvement is not None else None}
        if stage_more is not None:
            recorded.update(stage_more(outputs))
        sidecar.unlink(missing_ok=True)
        if result.involvement is None:  # an earlier run's read-out would describe other outputs
            involvement_out.unlink(missing_ok=True)
        result.provenance["outputs"] = recorded
        # sha256 and bytes of each, by path relative to the sidecar: resume and export verify them.
        result.provenance["output_files"] = outputs.records(relative_to=sidecar.parent)
        outputs.json(sidecar, result.provenance)
        if before_publish is not None:
            before_publish()
    return sidecar


def _name(path) -> Optional[str]:
    return None if path is None else str(path)
