"""The peripancreatic vessels TwinTrack reports involvement for, and their labels.

The label values are the CURVAS-PDACVI ``vessels.nii.gz`` convention; the names are the keys
every report, table and DICOM object uses (``"portal vein"``, ``"SMV"``, ``"aorta"``,
``"celiac trunk"``, ``"SMA"``).
"""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from .errors import InputError
from .io import Geometry, PathLike, read_on_grid

VESSEL_LABELS: Dict[str, int] = {"portal vein": 1, "SMV": 2, "aorta": 3, "celiac trunk": 4, "SMA": 5}
VESSEL_NAMES: Dict[int, str] = {label: name for name, label in VESSEL_LABELS.items()}
LABEL_CONVENTION = ", ".join(f"{label} {name}" for name, label in VESSEL_LABELS.items())


RELABEL = "Relabel it to these values (one whole number per voxel) and try again."


def check_vessel_labels(labels: np.ndarray, source: str, advice: str = RELABEL) -> np.ndarray:
    """``labels`` as a uint8 vessel label map; InputError naming ``source`` and giving ``advice`` unless every
    voxel is 0 or a CURVAS vessel label (whole numbers; a float file holding them exactly is accepted)."""

    def _refusal(found: str) -> InputError:
        return InputError(f"{source} should hold the CURVAS-PDACVI vessel labels (0 background, {LABEL_CONVENTION}) "
                          f"but holds {found}. {advice}")

    labels = np.asarray(labels)
    if labels.dtype.kind not in "iuf":  # a bool mask names no vessel
        raise _refusal(f"values of type {labels.dtype}")
    if labels.size == 0:
        return labels.astype(np.uint8)
    # The labels are 1..5 without a gap, so two reductions check them; only the message sorts (np.unique).
    low, high = labels.min(), labels.max()
    in_range = bool(np.isfinite(low) and np.isfinite(high) and low >= 0 and high <= max(VESSEL_LABELS.values()))
    if in_range and labels.dtype.kind == "f":
        in_range = bool(np.all(labels == np.rint(labels)))
    if not in_range:
        values = np.unique(labels[np.isfinite(labels)]) if labels.dtype.kind == "f" else np.unique(labels)
        unknown = [value for value in values if value != 0 and value not in VESSEL_NAMES]
        shown = ", ".join(f"{value:g}" for value in unknown[:8]) + (" ..." if len(unknown) > 8 else "")
        if labels.dtype.kind == "f" and not np.all(np.isfinite(labels)):
            shown = f"{shown}, NaN or infinity" if shown else "NaN or infinity"
        raise _refusal(f"the value(s) {shown}")
    return labels.astype(np.uint8, copy=False)


def read_vessels(path: PathLike, reference: Geometry, reference_path: Optional[PathLike] = None) -> np.ndarray:
    """A vessel label map file on ``reference``'s grid, as uint8 (z, y, x); InputError naming the file
    when its grid differs (the project's one geometry check) or its values are not vessel labels."""
    return check_vessel_labels(read_on_grid(path, reference, reference_path), str(path))
