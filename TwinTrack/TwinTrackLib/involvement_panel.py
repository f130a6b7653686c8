"""What the panel's *Involvement* section shows, without Qt: the Slicer widget and the web review share it.

From a result's :class:`~TwinTrackLogic.involvement.Involvement` and the agreement slider's level:
the table (one row per CURVAS vessel: angle at the level, category, contact and encasement shares),
the read-out line for the chosen vessel (``"SMA at ≥ 40 %: 120° abutment"``), and where to centre
the slice views for that vessel (the axial slice of its widest contact at the level). The words
come from :mod:`.involvement_text`; any level is read from the per-rim-voxel values kept with the
result, so a slider step never touches the volume.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np

from TwinTrackLogic.vessels import VESSEL_LABELS

from .involvement_text import level_text, table_rows, vessel_sentence
from .volumes import ijk_to_ras

COLUMNS = ("Vessel", "Angle", "Category", "Contact", "Encasement")
DEFAULT_VESSEL = "SMA"  # the artery whose involvement most often decides resectability
NO_VESSELS = ("No vessel read-out: no vessel label map was given (in Slicer: Run, Vessels; in the browser review: "
              "the case's vessels.nii.gz) and the model bundle has no vessel stage.")


@dataclass
class InvolvementView:
    """The section's texts; ``cells`` has one row per CURVAS vessel, in :data:`COLUMNS` order."""

    enabled: bool = False
    cells: List[Tuple[str, ...]] = field(default_factory=lambda: [(name, "", "", "", "") for name in VESSEL_LABELS])
    readout: str = ""
    note: str = ""  # where the vessels came from, and what could not be matched


def involvement_view(result, level: float, vessel: str, notes: Optional[List[str]] = None) -> InvolvementView:
    """The section for ``result`` (a CaseResult, or None) at ``level`` with ``vessel`` chosen."""
    if result is None:
        return InvolvementView()
    involvement = result.involvement
    source = (result.provenance or {}).get("vessels_source", "none")
    if involvement is None:
        return InvolvementView(note=NO_VESSELS)
    cells: List[Tuple[str, ...]] = [(row.vessel, row.angle, row.category, row.contact, row.encasement)
                                    for row in table_rows(involvement, level)]
    scale = (f"calibrated to {involvement.raters} raters" if involvement.calibrated and involvement.raters
             else "not calibrated: probability levels, not shares of experts")
    note = " ".join([f"Vessels: {source}; {scale}; angles at {level_text(involvement, level)}, widest axial slice.",
                     *(notes or [])])
    return InvolvementView(True, cells, vessel_sentence(involvement, vessel, level), note)


def vessel_centre(result, vessel: str, level: float) -> Optional[Tuple[Tuple[float, float, float], int]]:
    """(RAS in mm, axial slice) to centre the views on: the middle of ``vessel`` in the axial slice (array
    z index) of its widest contact with the tumour at ``level``; None without contact there."""
    involvement = result.involvement
    if involvement is None or vessel not in involvement.contacts:
        return None
    widest = involvement.contacts[vessel].at(level).max_slice
    if widest is None:
        return None
    jj, ii = np.nonzero(result.vessels[widest] == VESSEL_LABELS[vessel])
    ras = ijk_to_ras(result.geometry) @ np.array([ii.mean(), jj.mean(), float(widest), 1.0])
    return (float(ras[0]), float(ras[1]), float(ras[2])), int(widest)
