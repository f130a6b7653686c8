"""Small seeded cases for the CURVAS-PDACVI vascular-involvement score (built with numpy only).

Each case is five rater masks, a tumour probability and a vessel label map (CURVAS labels:
1 portal vein, 2 SMV, 3 aorta, 4 celiac trunk, 5 SMA) on a (z, y, x) grid of SHAPE. The cases
were made to reach every branch of the official code: partial contact that the raters dispute,
a tumour wrapping a vessel, no contact, an empty prediction, each fallback rule, contact angles
above 360°, stray labels the official vessel selection keeps, a tumour inside the lumen, a
vessel running in the axial plane, and a vessel and a tumour cut by the image border.

The official scores of these exact arrays are stored in Testing/data/vascular_involvement_official.json
with the sha256 of every array (:func:`digest`); change nothing here without recomputing them
with the official code (the file says how).
"""

from __future__ import annotations

import hashlib
from typing import Dict, List, NamedTuple, Tuple

import numpy as np

SHAPE = (24, 48, 48)
SEED = 2207
OFFICIAL_REFERENCE = "vascular_involvement_official.json"


class VesselCase(NamedTuple):
    annotations: List[np.ndarray]  # 5 bool masks
    probability: np.ndarray  # float32
    vessels: np.ndarray  # uint8 labels


def digest(array: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and C-order bytes."""
    contiguous = np.ascontiguousarray(array)
    header = f"{contiguous.dtype.str}{contiguous.shape}".encode()
    return hashlib.sha256(header + contiguous.tobytes()).hexdigest()


def _grid():
    return np.indices(SHAPE, dtype=np.float64)


def _ball(centre: Tuple[float, float, float], radius: float) -> np.ndarray:
    z, y, x = _grid()
    return (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= radius ** 2


def _distance(centre: Tuple[float, float, float]) -> np.ndarray:
    z, y, x = _grid()
    return np.sqrt((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2)


def vessel_map(aorta: bool = True) -> np.ndarray:
    """Portal vein, SMV, aorta and SMA along z; the celiac trunk along x (in the axial plane)."""
    z, y, x = _grid()
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[(y - 12) ** 2 + (x - 12) ** 2 <= 9] = 1
    labels[(y - 30) ** 2 + (x - 20) ** 2 <= 9] = 2
    if aorta:
        labels[(y - 38) ** 2 + (x - 40) ** 2 <= 25] = 3
    labels[((z - 4) ** 2 + (y - 8) ** 2 <= 4) & (x >= 20) & (x <= 44)] = 4
    labels[(y - 24) ** 2 + (x - 34) ** 2 <= 4] = 5
    return labels


def _outside(vessels: np.ndarray, masks: List[np.ndarray]) -> List[np.ndarray]:
    """Rater masks stay out of the vessel lumen, as annotators draw them."""
    return [mask & (vessels == 0) for mask in masks]


def _graded(centre, scale: float, vessels: np.ndarray) -> np.ndarray:
    """p = 1.1 - distance / scale, clipped to [0, 1] and 0 in the lumen: nested p > t balls."""
    probability = np.clip(1.1 - _distance(centre) / scale, 0.0, 1.0)
    probability[vessels != 0] = 0.0
    return probability.astype(np.float32)


def _flat(mask: np.ndarray, value: float = 0.9) -> np.ndarray:
    return np.where(mask, value, 0.0).astype(np.float32)


def build_cases() -> Dict[str, VesselCase]:
    """Every reference case, by name (deterministic)."""
    rng = np.random.default_rng(SEED)
    vessels = vessel_map()
    near_smv = (12.0, 30.0, 28.0)  # 5 voxels from the SMV's wall, 6.5 from the SMA's
    disputed = _outside(vessels, [_ball(near_smv, r) for r in (2.0, 3.0, 4.5, 5.5, 6.5)])
    one_mask = disputed[3]
    cases: Dict[str, VesselCase] = {}

    cases["abutment_disputed"] = VesselCase(disputed, _graded(near_smv, 8.0, vessels), vessels)

    z, y, x = _grid()
    around_sma = (y - 24) ** 2 + (x - 34) ** 2
    slab = (z >= 8) & (z <= 16)
    full_ring = slab & (around_sma > 4) & (around_sma <= 36)
    half_ring = full_ring & (x >= 34)
    wrap_probability = np.where(half_ring, 0.9, np.where(full_ring, 0.45, 0.0)).astype(np.float32)
    cases["encasement"] = VesselCase([full_ring, full_ring, full_ring, half_ring, half_ring],
                                     wrap_probability, vessels)

    far = (14.0, 6.0, 36.0)
    cases["no_contact_no_aorta"] = VesselCase([_ball(far, r) for r in (2.0, 3.0, 3.0, 4.0, 2.5)],
                                              _graded(far, 5.0, vessels), vessel_map(aorta=False))

    cases["empty_prediction"] = VesselCase(disputed, np.zeros(SHAPE, np.float32), vessels)
    # Fallback rules: unanimous sets are normal fits of width 1e-6 that vanish on the 1000-point
    # grid unless their angle is 0 or 360.
    bigger = _outside(vessels, [_ball(near_smv, 6.5)])[0]
    cases["unanimous_raters_unanimous_prediction"] = VesselCase([one_mask] * 5, _flat(bigger), vessels)
    cases["unanimous_raters_graded_prediction"] = VesselCase([one_mask] * 5, _graded(near_smv, 8.0, vessels),
                                                             vessels)
    cases["unanimous_raters_empty_prediction"] = VesselCase([one_mask] * 5, np.zeros(SHAPE, np.float32), vessels)
    cases["disputed_raters_unanimous_prediction"] = VesselCase(disputed, _flat(one_mask), vessels)
    untouched = [_ball(near_smv, 1.5)] * 5
    cases["no_contact_raters_unanimous_prediction"] = VesselCase(untouched, _flat(one_mask), vessels)

    # Raters unanimous at a partial angle, every threshold wrapping the SMA fully (360°, on the grid):
    # the official centre of the prediction's fit is then 360 times its density at 360°.
    cases["unanimous_raters_full_ring_prediction"] = VesselCase([half_ring] * 5, _flat(full_ring), vessels)

    # The aorta's wider rim gives finer angles than the small vessels' 16-pixel rims.
    near_aorta = (12.0, 38.0, 30.0)
    cases["aorta_abutment_disputed"] = VesselCase(
        _outside(vessels, [_ball(near_aorta, r) for r in (3.0, 4.0, 5.0, 5.5, 6.5)]),
        _graded(near_aorta, 7.0, vessels), vessels)

    # Scattered voxels around the SMV: each rim pixel can be counted by several kernels (> 360°).
    around_smv = (np.abs(z - 12) <= 3) & ((y - 30) ** 2 + (x - 20) ** 2 <= 49)
    noise = rng.random(SHAPE)
    speckles = _outside(vessels, [around_smv & (noise < density) for density in (0.15, 0.25, 0.35, 0.45, 0.55)])
    speckle_probability = np.where(around_smv & (vessels == 0), rng.random(SHAPE), 0.0).astype(np.float32)
    cases["speckled_above_360"] = VesselCase(speckles, speckle_probability, vessels)

    # Label 20 and labels above 22 join every vessel in the official selection; label 7 does not.
    stray = vessels.copy()
    stray[10:15, 36:40, 26:30] = 20
    stray[10:15, 18:22, 26:30] = 7
    stray[2:6, 40:44, 4:8] = 30
    cases["stray_labels"] = VesselCase(disputed, _graded(near_smv, 8.0, vessels), stray)

    # Tumour reaching into the SMV's lumen (contact from inside the vessel).
    invading = [_ball((12.0, 30.0, 24.0), r) for r in (1.5, 2.5, 3.0, 3.5, 4.5)]
    cases["invading_lumen"] = VesselCase(invading, np.clip(1.1 - _distance((12.0, 30.0, 24.0)) / 5.0, 0, 1)
                                         .astype(np.float32), vessels)

    # Below the celiac trunk, which runs in the axial plane.
    below_trunk = (9.0, 8.0, 30.0)
    cases["celiac_in_plane"] = VesselCase(_outside(vessels, [_ball(below_trunk, r) for r in (2.0, 2.5, 3.0, 3.5, 4.5)]),
                                          _graded(below_trunk, 6.0, vessels), vessels)

    # The portal vein cut by the image's x = 0 face and a tumour cut by its z = 0 face: both codes
    # treat the border as outside the vessel and the tumour.
    at_border = vessels.copy()
    at_border[at_border == 1] = 0
    at_border[(y - 12) ** 2 + x ** 2 <= 9] = 1
    corner = (0.0, 12.0, 5.0)
    cases["cut_by_the_border"] = VesselCase(
        _outside(at_border, [_ball(corner, r) for r in (2.0, 2.5, 3.5, 4.0, 4.5)]),
        _graded(corner, 5.0, at_border), at_border)
    return cases
