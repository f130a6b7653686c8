"""The vascular-involvement read-out in words, for the Slicer panel and the browser review.

Qt-free and MRML-free: it turns a result's :class:`TwinTrackLogic.involvement.Involvement` and the
agreement slider's level into the sentences and table rows the panels show, e.g.
``"SMA at ≥ 40 %: 120° abutment"``. Any level is read from the per-rim-voxel values kept with the
result (``contacts[name].at(level)``), so moving the slider never touches the volume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from TwinTrackLogic.involvement import Involvement
from TwinTrackLogic.vessels import VESSEL_LABELS


def level_text(involvement: Involvement, level: float) -> str:
    """``"≥ 40 %"`` of expert agreement; ``"p ≥ 0.40"`` on an uncalibrated map, where it is no share of experts."""
    return f"≥ {100.0 * level:.0f} %" if involvement.calibrated else f"p ≥ {level:.2f}"


def vessel_sentence(involvement: Optional[Involvement], name: str, level: float) -> str:
    """One vessel at the slider's level: ``"SMA at ≥ 40 %: 120° abutment"``, ``"SMA at ≥ 40 %: no contact"``,
    or why there is no number (no read-out; the vessel not in the label map)."""
    if involvement is None:
        return f"{name}: no vessel label map, so no involvement read-out"
    if name not in involvement.contacts:
        return f"{name}: not in the vessel label map"
    contact = involvement.contacts[name].at(level)
    if contact.category == "no contact":
        return f"{name} at {level_text(involvement, level)}: no contact"
    return f"{name} at {level_text(involvement, level)}: {contact.contact_deg:.0f}° {contact.category}"


@dataclass(frozen=True)
class InvolvementRow:
    """One row of the panel's table at the slider's level."""

    vessel: str
    angle: str  # "120°", "" for a vessel not in the label map
    category: str
    contact: str  # the share of experts drawing contact ("4 of 5 experts", "80 %")
    encasement: str
    max_slice: Optional[int]  # axial slice (z index) to centre the views on; None without contact


def table_rows(involvement: Optional[Involvement], level: float) -> List[InvolvementRow]:
    """Every CURVAS vessel, in label order, at ``level``; empty without a read-out."""
    if involvement is None:
        return []
    readouts = involvement.vessels
    rows = []
    for name in VESSEL_LABELS:
        if name not in involvement.contacts:
            rows.append(InvolvementRow(name, "", "not in the label map", "", "", None))
            continue
        contact = involvement.contacts[name].at(level)
        readout = readouts[name]
        rows.append(InvolvementRow(name, f"{contact.contact_deg:.0f}°", contact.category,
                                   involvement.share_text(readout.contact_share),
                                   involvement.share_text(readout.encasement_share), contact.max_slice))
    return rows
