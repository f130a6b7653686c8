"""The CURVAS-PDACVI vascular-involvement (VI) score, as the challenge's official code computes it.

Written from the definitions in the challenge's public evaluation code
(SYCAI-Technologies/curvas-challenge at 86cfbeb, CURVAS-PDACVI_2025/evaluation_metrics:
``get_involvement``, ``vascular_involvement``, ``aggregated_vascular_involvement``), not copied
from it. Its quirks are reproduced on purpose, because the point is the challenge's number;
docs/metrics.md lists them.

For one tumour mask, one vessel and one slicing axis of the (z, y, x) array, the *contact angle*
is the largest, over the slices that hold both tumour and that vessel, of
360° × contact / rim: rim is the vessel's boundary in the slice (vessel pixels with a
4-neighbour outside it) and contact is counted as :func:`_contact_per_slice` says (a perimeter
fraction in degrees, not a geometric angle, and not capped at 360°). The K raters' angles and
the angles of p > t at the six challenge thresholds each get a normal fit (mean, population
std + 1e-6 degrees); a plane's score is the 1-D Wasserstein distance, in degrees, between the
two fits sampled on 1000 points of [0°, 360°], with the official fallback rules when a fit is
numerically zero on every sample; a vessel's ``challenge_score`` is the mean over the three
planes. Lower is better.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy.stats import norm, wasserstein_distance

from ..masks import bounding_box
from ..vessels import VESSEL_LABELS
from .curvas import THRESHOLDS

# Our names for the three slicing axes of a (z, y, x) array (for an axial CT). The official code
# calls the same axes 'cor', 'sag' and 'ax' whatever the array order, so its names are only
# right for an (x, y, z)-ordered array; the three-plane mean does not depend on them.
PLANE_AXES: Dict[str, int] = {"axial": 0, "coronal": 1, "sagittal": 2}
OFFICIAL_PLANE_NAMES: Dict[str, str] = {"axial": "cor", "coronal": "sag", "sagittal": "ax"}
ANGLE_GRID_DEG = np.linspace(0.0, 360.0, 1000)
FIT_SPREAD_FLOOR_DEG = 1e-6
# np.allclose(value, 0) with its default tolerances: |value| <= 1e-8.
_NUMERICALLY_ZERO = 1e-8
# The official vessel selection clears labels 0..22 except the chosen vessel and 20; label 20 and
# any label outside 0..22 stay, so they join every vessel's mask.
_CLEARED_LABELS = (0, 22)
_NEVER_CLEARED_LABEL = 20
# Crop margin: how far the count reaches beyond the tumour in a slice (one pixel of growth, one
# of the kernels); around the vessel it keeps the background its rim is found against.
_REACH = 2


def vessel_mask(labels: np.ndarray, label: int) -> np.ndarray:
    """The voxels the official code treats as vessel ``label``: that label, 20, and labels outside 0..22."""
    low, high = _CLEARED_LABELS
    return (labels == label) | (labels == _NEVER_CLEARED_LABEL) | (labels < low) | (labels > high)


def _shifted(mask: np.ndarray, offsets: Sequence[Tuple[int, int]]) -> np.ndarray:
    """out[p] = mask[p + offset], False where p + offset falls outside the array."""
    out = np.zeros_like(mask)
    source: List[slice] = [slice(None)] * mask.ndim
    target: List[slice] = [slice(None)] * mask.ndim
    for axis, step in offsets:
        if step > 0:
            source[axis], target[axis] = slice(step, None), slice(None, -step)
        elif step < 0:
            source[axis], target[axis] = slice(None, step), slice(-step, None)
    out[tuple(target)] = mask[tuple(source)]
    return out


def _in_plane_neighbours(mask: np.ndarray, rows: int, columns: int) -> List[np.ndarray]:
    return [_shifted(mask, [(axis, step)]) for axis in (rows, columns) for step in (-1, 1)]


def _rim(vessel: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """Vessel pixels with a 4-neighbour in the slice outside the vessel (the image border counts as outside)."""
    interior = vessel.copy()
    for neighbour in _in_plane_neighbours(vessel, rows, columns):
        interior &= neighbour
    return vessel & ~interior


def _contact_per_slice(tumour: np.ndarray, rim: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """The official contact count of every slice (int64, one per index along the slicing axis).

    The tumour is first grown by one pixel (4-neighbours). Contact is the rim pixels inside the
    grown tumour, plus, for each of four two-pixel kernels, the other rim pixels whose kernel
    partner is grown tumour off the rim: the pixel one column on (the "horizontal" kernel), one
    row on ("vertical"), one row and one column on ("diagonal"), and one row on or one column on
    (the "anti-diagonal" kernel, whose two taps fall there under scipy's convolution origin).
    Each kernel adds its own count, so one rim pixel can count up to four times, and only
    neighbours on the far side along each axis are looked at.
    """
    grown = tumour.copy()
    for neighbour in _in_plane_neighbours(tumour, rows, columns):
        grown |= neighbour
    rim_outside = rim & ~grown
    tumour_off_rim = grown & ~rim
    next_row = _shifted(tumour_off_rim, [(rows, 1)])
    next_column = _shifted(tumour_off_rim, [(columns, 1)])
    next_diagonal = _shifted(tumour_off_rim, [(rows, 1), (columns, 1)])
    in_plane = (rows, columns)
    count = np.count_nonzero(rim & grown, axis=in_plane)
    for partner in (next_column, next_row, next_diagonal, next_row | next_column):
        count += np.count_nonzero(rim_outside & partner, axis=in_plane)
    return count.astype(np.int64)


def _box(mask: np.ndarray, margin: int) -> Optional[Tuple[slice, ...]]:
    """Bounding box of a mask grown by ``margin`` voxels and clamped to the array; None if empty."""
    return bounding_box(mask, [margin] * mask.ndim) if mask.any() else None


def _union_box(first: Tuple[slice, ...], second: Tuple[slice, ...]) -> Tuple[slice, ...]:
    return tuple(slice(min(a.start, b.start), max(a.stop, b.stop)) for a, b in zip(first, second))


def _max_angles(tumours: Sequence[np.ndarray], vessel: np.ndarray, selected: np.ndarray) -> np.ndarray:
    """(masks, 3) maximum contact angles (degrees) on already cropped arrays.

    ``vessel`` is what the rim is made of; ``selected`` (the chosen label only) decides which
    slices count, as in the official code. Cropping changes nothing: the crop keeps every vessel
    pixel and every pixel within reach of the tumour, and where it is clamped its border is the
    image's, which both codes treat as outside.
    """
    angles = np.zeros((len(tumours), len(PLANE_AXES)), dtype=np.float64)
    any_tumour = np.zeros(vessel.shape, dtype=bool)
    for tumour in tumours:
        any_tumour |= tumour
    for plane, axis in enumerate(PLANE_AXES.values()):
        rows, columns = (a for a in range(3) if a != axis)
        with_both = np.flatnonzero(any_tumour.any(axis=(rows, columns)) & selected.any(axis=(rows, columns)))
        if with_both.size == 0:
            continue
        span = [slice(None)] * 3
        span[axis] = slice(int(with_both[0]), int(with_both[-1]) + 1)
        window = tuple(span)
        rim = _rim(vessel[window], rows, columns)
        rim_pixels = np.count_nonzero(rim, axis=(rows, columns))
        vessel_in_slice = selected[window].any(axis=(rows, columns)) & (rim_pixels > 0)
        for index, tumour in enumerate(tumours):
            counted = vessel_in_slice & tumour[window].any(axis=(rows, columns))
            if not counted.any():
                continue
            contact = _contact_per_slice(tumour[window], rim, rows, columns)
            # Same operations in the same order as the official code, so the floats are identical.
            degrees = contact[counted] / rim_pixels[counted] * 360
            angles[index, plane] = max(0.0, float(degrees.max()))
    return angles


def contact_angles_deg(tumours: Sequence[np.ndarray], labels: np.ndarray) -> Dict[str, np.ndarray]:
    """Per vessel name, the (masks, 3) maximum contact angles of each tumour mask, in degrees.

    ``tumours``: bool (z, y, x) masks; ``labels``: the vessel label map on the same grid
    (CURVAS labels, :data:`TwinTrackLogic.vessels.VESSEL_LABELS`). Columns follow
    :data:`PLANE_AXES`. A vessel absent from the map has angle 0 everywhere, as officially.
    """
    tumours = [np.asarray(mask, dtype=bool) for mask in tumours]
    result = {name: np.zeros((len(tumours), len(PLANE_AXES))) for name in VESSEL_LABELS}
    any_tumour = np.zeros(labels.shape, dtype=bool)
    for tumour in tumours:
        any_tumour |= tumour
    tumour_box = _box(any_tumour, _REACH)
    labelled_box = _box(labels != 0, 0)
    if tumour_box is None or labelled_box is None:
        return result
    # Every voxel of every vessel mask lies in the labelled box: look for each vessel there only.
    labelled = labels[labelled_box]
    origin = [s.start for s in labelled_box]
    for name, label in VESSEL_LABELS.items():
        local = _box(labelled == label, 0)
        if local is None:
            continue
        extra = _box(vessel_mask(labelled, label) & (labelled != label), 0)
        if extra is not None:
            local = _union_box(local, extra)
        vessel_box = tuple(slice(s.start + o, s.stop + o) for s, o in zip(local, origin))
        padded = tuple(slice(max(s.start - _REACH, 0), min(s.stop + _REACH, n))
                       for s, n in zip(vessel_box, labels.shape))
        box = _union_box(padded, tumour_box)
        cropped = labels[box]
        result[name] = _max_angles([tumour[box] for tumour in tumours], vessel_mask(cropped, label),
                                   cropped == label)
    return result


def prediction_masks(probability: np.ndarray) -> List[np.ndarray]:
    """p > t at the six challenge thresholds (strict >, float64 thresholds as officially)."""
    return [probability > threshold for threshold in THRESHOLDS]


def _normal_fit_on_grid(angles_deg: np.ndarray) -> np.ndarray:
    values = np.ascontiguousarray(angles_deg, dtype=np.float64)
    return norm.pdf(ANGLE_GRID_DEG, np.mean(values), np.std(values) + FIT_SPREAD_FLOOR_DEG)


def _fallback_deg(density: np.ndarray, normalised_mean: bool) -> float:
    """The official score when only the other fit vanishes on the grid.

    |centre − 0| when ``density`` has (numerically) no spread, else 360, the maximum penalty. The
    official centre of the prediction's density is Σ x·q without dividing by Σ q (the raters' is
    divided), and its spread is taken around that centre.
    """
    total = float(np.sum(density))
    centre = float(np.sum(ANGLE_GRID_DEG * density))
    if normalised_mean:
        centre /= total
    spread = float(np.sqrt(np.sum(density * (ANGLE_GRID_DEG - centre) ** 2) / total)) if total > 0 else 0.0
    return abs(centre) if abs(spread) <= _NUMERICALLY_ZERO else 360.0


def plane_score_deg(rater_angles_deg: np.ndarray, prediction_angles_deg: np.ndarray) -> float:
    """One plane's official score: Wasserstein distance (degrees) between the two normal fits.

    A fit "vanishes" when its density is ≤ 1e-8 at all 1000 grid points: in practice when every
    angle of the set is the same and that value is not on the grid (0° and 360° are). Both
    vanish: 0. One vanishes: :func:`_fallback_deg` of the other (note: compared with 0°, not
    with the vanished fit's angle).
    """
    raters = _normal_fit_on_grid(rater_angles_deg)
    prediction = _normal_fit_on_grid(prediction_angles_deg)
    raters_vanish = bool(np.all(np.abs(raters) <= _NUMERICALLY_ZERO))
    prediction_vanishes = bool(np.all(np.abs(prediction) <= _NUMERICALLY_ZERO))
    if raters_vanish and prediction_vanishes:
        return 0.0
    if raters_vanish:
        return _fallback_deg(prediction, normalised_mean=False)
    if prediction_vanishes:
        return _fallback_deg(raters, normalised_mean=True)
    return float(wasserstein_distance(ANGLE_GRID_DEG, ANGLE_GRID_DEG, raters / raters.sum(),
                                      prediction / prediction.sum()))


def vascular_involvement(rater_angles: Dict[str, np.ndarray], prediction_angles: Dict[str, np.ndarray]) -> Dict:
    """The report's ``vascular_involvement``: per vessel, the challenge score and its angles (JSON-ready).

    ``rater_angles[name]``: (K, 3) from the raters' masks; ``prediction_angles[name]``: (6, 3)
    from :func:`prediction_masks`; both from :func:`contact_angles_deg`.
    """
    result = {}
    for name in VESSEL_LABELS:
        raters, prediction = rater_angles[name], prediction_angles[name]
        planes = {plane: plane_score_deg(raters[:, column], prediction[:, column])
                  for column, plane in enumerate(PLANE_AXES)}
        result[name] = {
            "challenge_score": float(np.mean(list(planes.values()))),
            "plane_scores": planes,
            "raters_deg": {plane: raters[:, column].tolist() for column, plane in enumerate(PLANE_AXES)},
            "prediction_deg": {plane: prediction[:, column].tolist() for column, plane in enumerate(PLANE_AXES)},
        }
    return result


def challenge_vi(probability: np.ndarray, annotations: Sequence[np.ndarray], labels: np.ndarray) -> Dict:
    """Everything at once: the raters' and the probability's angles, and the per-vessel scores."""
    return vascular_involvement(contact_angles_deg(annotations, labels),
                                contact_angles_deg(prediction_masks(probability), labels))
