"""Loading one multi-rater case for fitting or evaluation, and its region.

Calibration and evaluation see each case the same way: the ensemble's tumour
probability ``p``, the K rater masks, the MHR, and the *region*: the voxels
the calibrator is fitted on and the MHR metrics are computed in.

Region policies (``--region``):

- ``organ``: the case's ``roi.nii.gz`` if present, else ``pancreas.nii.gz``,
  dilated by ``dilation_mm`` (default 10 mm). The dilation is deliberate: the
  margin raters disagree on often reaches beyond the organ outline, and the
  ensemble itself runs in a dilated region, so the calibrator must see those
  voxels. ``--region-dilation-mm 0`` uses the mask as is.
- ``bbox``: the bounding box of the union of all annotations and of p > 0.01,
  padded by ``padding_mm`` (default 20 mm) on every side, clamped to the image.
- ``all``: every voxel of the image.
- ``auto`` (default): ``organ`` when the case has an organ or ROI mask, else ``bbox``.

Every case is independent of every other: a cohort job maps this over cases
(in one process or many) and reduces the results.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..errors import InputError
from ..io import Case, Geometry, read_geometry, read_mask, read_on_grid
from ..io.finite import check_finite
from ..masks import bounding_box, dilate_mm
from ..raters import mhr_from_masks

REGION_POLICIES = ("auto", "organ", "bbox", "all")
DEFAULT_DILATION_MM = 10.0
DEFAULT_PADDING_MM = 20.0
BBOX_PROBABILITY_FLOOR = 0.01


@dataclass
class CaseData:
    """One case's arrays on the CT grid, (z, y, x) order."""

    name: str
    geometry: Geometry
    probability: np.ndarray  # float32 in [0, 1]
    annotations: List[np.ndarray]  # K bool masks
    mhr: np.ndarray  # float32 in {0, 1/K, ..., 1}
    region: np.ndarray  # bool
    region_description: str

    @property
    def raters(self) -> int:
        return len(self.annotations)


def check_probability(probability: np.ndarray, source) -> np.ndarray:
    """Refuse a probability map with NaN, Inf or values outside [0, 1]; return float32."""
    probability = np.asarray(probability)
    if not np.issubdtype(probability.dtype, np.floating) and not np.issubdtype(probability.dtype, np.integer):
        raise InputError(f"{source} holds {probability.dtype} values; a probability map must be numeric.")
    probability = probability.astype(np.float32, copy=False)
    check_finite(probability, source, "A probability map must hold values in [0, 1] everywhere; "
                 "fix the model output or the export.")
    low, high = float(probability.min()), float(probability.max())
    if low < 0.0 or high > 1.0:
        raise InputError(
            f"{source} has values from {low:g} to {high:g}, outside [0, 1]. Pass the tumour "
            "probability (after softmax or sigmoid), not logits or a label map."
        )
    return probability


def region_for_case(case: Case, geometry: Geometry, probability: np.ndarray,
                    annotations: Sequence[np.ndarray], policy: str = "auto",
                    dilation_mm: float = DEFAULT_DILATION_MM,
                    padding_mm: float = DEFAULT_PADDING_MM) -> Tuple[np.ndarray, str]:
    """The region mask of one case and a short description of how it was made."""
    if policy not in REGION_POLICIES:
        raise InputError(f"Unknown region policy {policy!r}; choose one of {', '.join(REGION_POLICIES)}.")
    organ_file = case.roi or case.pancreas
    if policy == "auto":
        policy = "organ" if organ_file is not None else "bbox"
    if policy == "all":
        return np.ones(geometry.shape, dtype=bool), "whole image"
    if policy == "organ":
        if organ_file is None:
            raise InputError(
                f"Case {case.name} has no pancreas.nii.gz or roi.nii.gz, which --region organ needs. "
                "Add one, or use --region bbox (or auto)."
            )
        organ = read_mask(organ_file, geometry, case.image)
        if not organ.any():
            raise InputError(f"{organ_file} is empty, so case {case.name} has no region to fit or "
                             "evaluate in. Fix the mask or use --region bbox.")
        return dilate_mm(organ, geometry, dilation_mm), f"{organ_file.name} dilated {dilation_mm:g} mm"
    union = probability > BBOX_PROBABILITY_FLOOR
    for mask in annotations:
        union |= mask
    if not union.any():
        raise InputError(
            f"Case {case.name}: no rater marked any voxel and p <= {BBOX_PROBABILITY_FLOOR} everywhere, "
            "so --region bbox has nothing to surround. Add a pancreas.nii.gz or roi.nii.gz "
            "and use --region organ, or leave the case out."
        )
    padding = [int(np.ceil(padding_mm / s)) for s in reversed(geometry.spacing)]
    region = np.zeros(geometry.shape, dtype=bool)
    region[bounding_box(union, padding)] = True
    return region, f"bounding box of annotations and p > {BBOX_PROBABILITY_FLOOR}, padded {padding_mm:g} mm"


def load_case(case: Case, probability_name: str = "probability.nii.gz",
              probability: Optional[np.ndarray] = None, region_policy: str = "auto",
              dilation_mm: float = DEFAULT_DILATION_MM,
              padding_mm: float = DEFAULT_PADDING_MM, min_raters: int = 1) -> CaseData:
    """Read one case for fitting or evaluation.

    ``probability`` given: used as is (for example an ensemble output made in
    memory), else the case's file ``probability_name`` is read and checked.
    Only the CT's header is read: its grid is all a case needs of it here.
    """
    case.check()
    geometry = read_geometry(case.image)
    if probability is None:
        path = case.file(probability_name)
        if path is None:
            raise InputError(
                f"Case {case.name} has no {probability_name}. Put the ensemble's tumour probability "
                "there, name another file with --probability, or run the ensemble with --bundle."
            )
        probability = check_probability(read_on_grid(path, geometry, case.image), path)
    else:
        probability = check_probability(probability, f"the probability map of case {case.name}")
        if probability.shape != geometry.shape:
            raise InputError(f"The probability map of case {case.name} has shape {probability.shape}, "
                             f"not the shape of its CT {case.image} {geometry.shape} (z, y, x). Give the "
                             "probability on the CT's voxel grid (resample it onto the CT first).")
    if len(case.annotations) < min_raters:
        raise InputError(
            f"Case {case.name} has {len(case.annotations)} annotation file(s) (annotation_1.nii.gz ...); "
            f"at least {min_raters} are needed."
        )
    annotations = case.read_annotations(geometry)
    region, description = region_for_case(case, geometry, probability, annotations,
                                          region_policy, dilation_mm, padding_mm)
    return CaseData(case.name, geometry, probability, annotations, mhr_from_masks(annotations),
                    region, description)


def check_rater_counts(counts: Sequence[Tuple[str, int]]) -> int:
    """The common rater count of a cohort; refuse a cohort whose cases differ."""
    distinct = sorted({count for _, count in counts})
    if len(distinct) > 1:
        listing = ", ".join(f"{name}: {count}" for name, count in counts)
        raise InputError(
            f"The cases have different numbers of raters ({listing}). MHR levels only mean the same "
            "thing with the same number of raters per case: use cases with the same rater count."
        )
    return distinct[0]
