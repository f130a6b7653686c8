"""Writing one case's prediction: its images and the provenance sidecar, all or none.

``twintrack predict`` (one CT) and the cohort predict (one folder per case) write
through :func:`write_prediction`, so both leave the same files and the same record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Optional

from .io import StagedOutputs
from .io.images import image_suffix


def provenance_path(out: Path) -> Path:
    """The provenance sidecar of an output image: ``prob.nii.gz`` -> ``prob.provenance.json``."""
    out = Path(out)
    suffix = image_suffix(out.name)
    name = out.name[: -len(suffix)] if suffix else out.name
    return out.with_name(f"{name}.provenance.json")


def write_prediction(result, out: Optional[Path], inputs: Dict, raw_out: Optional[Path] = None,
                     mask_out: Optional[Path] = None, region_out: Optional[Path] = None, *,
                     sidecar: Optional[Path] = None, stage_more: Optional[Callable[[StagedOutputs], Dict]] = None,
                     before_publish: Optional[Callable[[], None]] = None) -> Path:
    """Write a :class:`~TwinTrackLogic.pipeline.CaseResult`: the probability at ``out``, the
    optional raw map, mask (p >= the run's level) and region, and ``OUT.provenance.json``.

    A sidecar on disk always describes the images next to it (a cohort resume trusts exactly
    that): the old one is removed once the new images are staged, just before they are renamed
    into place, and the new one is renamed last. A failure while the images are written leaves
    the old outputs and their sidecar as they were. Returns the sidecar's path.

    ``out`` may be None when ``stage_more`` writes the outputs (DICOM objects); then ``sidecar``
    names the record. ``stage_more(outputs)`` stages more files in the same all-or-none block and
    returns what to record of them; ``before_publish()`` runs last inside the block (an upload:
    if it is refused, nothing local is kept either).
    """
    if sidecar is None:
        if out is None:
            raise ValueError("write_prediction needs out or sidecar: where would the provenance go?")
        sidecar = provenance_path(out)
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
        recorded = {"probability": _name(out), "raw": _name(raw_out), "mask": _name(mask_out),
                    "region": _name(region_out)}
        if stage_more is not None:
            recorded.update(stage_more(outputs))
        sidecar.unlink(missing_ok=True)
        result.provenance["outputs"] = recorded
        # sha256 and bytes of each, by path relative to the sidecar: resume and export verify them.
        result.provenance["output_files"] = outputs.records(relative_to=sidecar.parent)
        outputs.json(sidecar, result.provenance)
        if before_publish is not None:
            before_publish()
    return sidecar


def _name(path) -> Optional[str]:
    return None if path is None else str(path)
