"""All evaluation metrics of one case, from arrays: the one entry point for report and Slicer.

The CURVAS-PDACVI metrics live in :mod:`.metrics_curvas` (and the vascular-involvement score,
for a case with vessel labels, in :mod:`.metrics_vascular`), the MHR calibration metrics in
:mod:`.metrics_mhr`; this module runs them on one probability map and adds the
volume-versus-agreement curve. Arrays are (z, y, x).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence

import numpy as np

from ..io import Geometry
from ..review.agreement import AgreementCurve
from .curvas import (
    binary_dsc,
    crps_volume,
    ece_curvas,
    predicted_volume_mm3,
    rater_volumes_mm3,
    staple_consensus,
    thresh_dsc,
)
from .mhr import Reliability, brier_mhr, ece_mhr_equal_mass, soft_dice
from .vascular import contact_angles_deg, prediction_masks, vascular_involvement

# Levels of the volume-versus-agreement curve in the report: 0 %, 1 %, ... 100 %.
CURVE_LEVELS = np.round(np.linspace(0.0, 1.0, 101), 10)

# Scalar metrics, in report and table order.
CURVAS_METRICS = ("thresh_dsc", "binary_dsc", "ece_curvas", "crps_volume")
MHR_METRICS = ("ece_mhr", "ece_mhr_equal_mass", "brier_mhr", "soft_dice",
               "expected_volume_ml", "mean_rater_volume_ml", "volume_error_ml")
SCALAR_METRICS = CURVAS_METRICS + MHR_METRICS


@dataclass
class CaseReference:
    """What one case's probability is scored against; computed once, reused before and after calibration."""

    annotations: Sequence[np.ndarray]  # K bool masks
    mhr: np.ndarray  # float32 fraction of raters
    region: np.ndarray  # bool: the calibration region
    geometry: Geometry
    vessels: Optional[np.ndarray] = None  # CURVAS vessel labels (vessels.nii.gz), if the case has them
    consensus: Optional[np.ndarray] = None  # STAPLE >= 0.5, made on first use
    mhr_curve: Optional[AgreementCurve] = None  # whole-image MHR volumes, made on first use
    rater_angles: Optional[Dict[str, np.ndarray]] = None  # raters' contact angles, made on first use

    def staple(self) -> np.ndarray:
        if self.consensus is None:
            self.consensus = staple_consensus(self.annotations)
        return self.consensus

    def raters_curve(self) -> AgreementCurve:
        if self.mhr_curve is None:
            self.mhr_curve = AgreementCurve(self.mhr, self.geometry.voxel_volume_ml)
        return self.mhr_curve

    def raters_contact_angles(self, vessels: np.ndarray) -> Dict[str, np.ndarray]:
        """The raters' side of the vascular-involvement score: the same before and after calibration."""
        if self.rater_angles is None:
            self.rater_angles = contact_angles_deg(self.annotations, vessels)
        return self.rater_angles


def agreement_curve(probability: np.ndarray, mhr: np.ndarray, voxel_volume_ml: float,
                    levels: np.ndarray = CURVE_LEVELS) -> Dict[str, list]:
    """For each level t: volume (mL) with p >= t next to the volume that >= t of the raters marked.

    Whole image: this is what the Slicer threshold slider reads out.
    """
    return _curve_json(AgreementCurve(probability, voxel_volume_ml), AgreementCurve(mhr, voxel_volume_ml), levels)


def _curve_json(predicted: AgreementCurve, raters: AgreementCurve, levels: np.ndarray) -> Dict[str, list]:
    return {"levels": [float(v) for v in levels],
            "probability_ml": [predicted.volume_ml(v) for v in levels],
            "raters_ml": [raters.volume_ml(v) for v in levels]}


def case_metrics(probability: np.ndarray, reference: CaseReference, binary_threshold: float = 0.5) -> Dict:
    """Every metric of one probability map against one case's raters.

    Returns a JSON-ready dict: the scalars named in ``SCALAR_METRICS`` plus
    ``ece_curvas_per_rater``, CRPS inputs (``predicted_volume_mm3``,
    ``rater_volumes_mm3``), ``reliability`` (bin counts and means inside the
    region) and ``agreement_curve``; with ``reference.vessels``, also
    ``vascular_involvement`` (:func:`.metrics_vascular.vascular_involvement`).
    """
    geometry = reference.geometry
    voxel_mm3 = geometry.voxel_volume_ml * 1000.0
    ece_mean, ece_per_rater = ece_curvas(probability, reference.annotations)
    predicted_mm3 = predicted_volume_mm3(probability, voxel_mm3)
    raters_mm3 = rater_volumes_mm3(reference.annotations, voxel_mm3)

    inside_p = probability[reference.region]
    inside_mhr = reference.mhr[reference.region]
    reliability = Reliability.of(inside_p, inside_mhr)
    expected_ml = float(inside_p.sum(dtype=np.float64)) * geometry.voxel_volume_ml
    mean_rater_ml = float(inside_mhr.sum(dtype=np.float64)) * geometry.voxel_volume_ml
    result = {
        "thresh_dsc": thresh_dsc(probability, reference.annotations),
        "binary_dsc": binary_dsc(probability, reference.annotations, binary_threshold, reference.staple()),
        "ece_curvas": ece_mean,
        "ece_curvas_per_rater": ece_per_rater,
        "crps_volume": crps_volume(predicted_mm3, raters_mm3),
        "ece_mhr": reliability.ece(),
        "ece_mhr_equal_mass": ece_mhr_equal_mass(inside_p, inside_mhr),
        "brier_mhr": brier_mhr(inside_p, inside_mhr),
        "soft_dice": soft_dice(inside_p, inside_mhr),
        "expected_volume_ml": expected_ml,
        "mean_rater_volume_ml": mean_rater_ml,
        "volume_error_ml": expected_ml - mean_rater_ml,
        "predicted_volume_mm3": predicted_mm3,
        "rater_volumes_mm3": raters_mm3.tolist(),
        "reliability": reliability.to_json(),
        # The raters' side is the same before and after calibration: computed once per case.
        "agreement_curve": _curve_json(AgreementCurve(probability, geometry.voxel_volume_ml),
                                       reference.raters_curve(), CURVE_LEVELS),
    }
    if reference.vessels is not None:
        result["vascular_involvement"] = vascular_involvement(
            reference.raters_contact_angles(reference.vessels),
            contact_angles_deg(prediction_masks(probability), reference.vessels))
    return result
