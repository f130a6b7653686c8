"""NaN and infinity: found, counted and located, never silently turned into numbers.

Policy (docs/reliability.md):

- a mask (annotation, organ, ROI, region) or a probability map with a NaN or infinite voxel is
  refused, with the count and the first voxel's (z, y, x) index;
- a model stage or a calibrator that produces one stops the run with the same detail;
- a CT is the one exception: scanners and converters mark voxels outside the reconstructed
  field of view with NaN. Those voxels are set to the CT's lowest finite value (air, or the
  padding value) and the run carries a warning with the count and the first index, in the
  terminal and in the provenance record. A CT with no finite voxel is refused, and so is
  a CT with non-finite values in a calibration fit (a calibrator is not fitted on patched CTs).
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from ..errors import InputError
from .geometry import Volume


def non_finite(array: np.ndarray) -> Optional[Tuple[int, Tuple[int, ...]]]:
    """``(count, first index)`` of the NaN or infinite values of ``array``, or None if all are finite."""
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.inexact):
        return None
    bad = ~np.isfinite(array)
    if not bad.any():
        return None
    first = np.unravel_index(int(np.argmax(bad)), array.shape)  # argmax of bools: the first True
    return int(np.count_nonzero(bad)), tuple(int(i) for i in first)


def describe(found: Tuple[int, Tuple[int, ...]]) -> str:
    count, first = found
    where = f"(z, y, x) = {first}" if len(first) == 3 else f"index {first}"
    return f"{count} NaN or infinite voxel(s), the first at {where}"


def check_finite(array: np.ndarray, source, what_to_do: str) -> None:
    """InputError naming ``source`` if ``array`` holds a NaN or infinite value."""
    found = non_finite(array)
    if found is not None:
        raise InputError(f"{source} has {describe(found)}. {what_to_do}")


def ct_with_finite_values(ct: Volume) -> Tuple[Volume, Optional[str]]:
    """The CT with NaN and infinite voxels set to its lowest finite value, and the warning that
    says so (None and the CT itself when all voxels are finite). InputError if none is finite."""
    found = non_finite(ct.array)
    if found is None:
        return ct, None
    finite = np.isfinite(ct.array)
    source = ct.path if ct.path is not None else "The CT"
    if not finite.any():
        raise InputError(f"{source} has no finite voxel (all are NaN or infinite); it is not a CT "
                         "TwinTrack can read. Export the CT again.")
    fill = ct.array[finite].min()
    array = np.where(finite, ct.array, fill).astype(ct.array.dtype, copy=False)
    warning = (f"{source} has {describe(found)}; they were set to {float(fill):g} HU, the CT's lowest value "
               "(air, or outside the scanner's field of view), before the ensemble ran. If they lie inside "
               "the body, the export is damaged: export the CT again.")
    return Volume(array, ct.geometry, ct.path), warning
