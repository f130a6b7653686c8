"""Vascular involvement read from the calibrated map: per vessel, how many experts would draw contact.

A calibrated value p reads as the expected share of annotators who would call a voxel tumour, so
the tumour at agreement level t (``p >= t``) is the tumour about that share of experts would draw.
For each vessel of a label map (:mod:`.vessels`) and each level this module measures the tumour's
contact with the vessel, in the axial slices of the CT grid (the array's z planes):

- the vessel's *rim* in a slice: its voxels with an in-plane 8-neighbour outside the vessel;
- the *contact*: rim voxels with an in-plane 8-neighbour in the tumour at that level; the tumour
  never includes a vessel voxel (of any vessel), so one vessel never "touches" another;
- the slice's angle: 360 deg x contact / rim, a share of the vessel's circumference, never above
  360 deg because every rim voxel counts once; the vessel's angle is the largest over slices,
  with the slice where it occurs;
- the NCCN-style category per level: "no contact", "abutment" (<= 180 deg), "encasement" (> 180 deg);
- ``contact_share``: the largest level with any contact, the expected share of annotators who would
  draw the tumour touching the vessel (0: fewer than the lowest level); ``encasement_share``: the
  largest level with more than 180 deg.

The levels are k/K (k = 1..K) for a calibrator fitted to K raters: exactly "k of K experts". When
K is unknown (or the map is not calibrated) they are tenths, 0.1 to 1.0: fine enough to place the
flip of a call within 10 % agreement, and no claim about a panel size that is not known.

Why not the challenge's angle (``metrics_vascular``): CURVAS-PDACVI dilates the tumour and counts a
rim pixel once per directional kernel, so its angles can pass 360 deg, and it averages three array
planes whose names depend on the array order. This read-out uses one plane a radiologist reads
(axial), each rim voxel once, and the calibrated levels instead of six fixed thresholds. What it
cannot see: contact along a vessel segment that runs within the axial plane (the portal vein's
confluence, a celiac trunk running forwards), where an axial slice cuts the vessel lengthwise and
its "rim" is the wall of a long strip, not a circumference; nor contact across a gap of one voxel
or less that partial volume hides. Research and review support, not a diagnosis.

Cost: levels are nested, so each rim voxel is visited once: the highest calibrated value among its
in-plane tumour-side neighbours, computed inside the vessel's bounding box; any level's count per
slice is then one pass over the rim voxels. No full-volume array is made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from .vessels import VESSEL_LABELS, VESSEL_NAMES

TABLE_LEVELS = (0.2, 0.5, 0.8)  # the agreement levels `twintrack predict` prints
UNKNOWN_PANEL_LEVELS = tuple(round(0.1 * k, 1) for k in range(1, 11))
IN_PLANE = (1, 3, 3)  # an axial slice's 8-neighbourhood (and the voxel itself), (z, y, x)
FORMAT = "twintrack-involvement"
VERSION = 1


def agreement_levels(raters: int) -> Tuple[float, ...]:
    """k/K for k = 1..K (``raters`` = K); tenths when K is unknown (0)."""
    if raters > 0:
        return tuple(k / raters for k in range(1, raters + 1))
    return UNKNOWN_PANEL_LEVELS


def category(contact: int, rim: int) -> str:
    """NCCN-style call for ``contact`` of ``rim`` voxels; exact in whole numbers (no rounding at 180 deg)."""
    if contact == 0:
        return "no contact"
    return "encasement" if 2 * contact > rim else "abutment"


@dataclass(frozen=True)
class LevelContact:
    """One vessel at one level: the largest axial contact and where it is."""

    level: float
    contact_deg: float
    max_slice: Optional[int]  # axial slice (array z index) of the largest contact; None without contact
    category: str
    rim_voxels: int = 0  # the vessel's rim in that slice: the angle moves in steps of 360 deg / rim_voxels


@dataclass(frozen=True)
class VesselContact:
    """One vessel's axial rim, and per rim voxel the highest calibrated p among its in-plane tumour-side
    neighbours: enough to read its contact at any level (a slider) without touching the volume again."""

    name: str
    label: int
    first_slice: int  # z index of the vessel's first slice
    rim_per_slice: np.ndarray  # int: rim voxels per slice, from first_slice on
    rim_slice: np.ndarray  # int: each rim voxel's slice, counted from first_slice
    neighbour_p: np.ndarray  # float32: each rim voxel's highest tumour-side neighbour p (0: none)

    def at(self, level: float) -> LevelContact:
        """The contact of the tumour ``p >= level``."""
        touching = self.neighbour_p >= np.float32(level)
        contact = np.bincount(self.rim_slice[touching], minlength=self.rim_per_slice.size)
        share = contact / np.maximum(self.rim_per_slice, 1)
        widest = int(np.argmax(share))
        if contact[widest] == 0:
            return LevelContact(level, 0.0, None, "no contact")
        rim = int(self.rim_per_slice[widest])
        return LevelContact(level, 360.0 * float(share[widest]), self.first_slice + widest,
                            category(int(contact[widest]), rim), rim)


def vessel_contacts(calibrated: np.ndarray, vessels: np.ndarray) -> Dict[str, VesselContact]:
    """Every vessel present in ``vessels`` (uint8 CURVAS labels) with its rim against ``calibrated``
    (same (z, y, x) grid), in label order."""
    around = _occupied(vessels)
    if around is None:
        return {}
    boxes = ndimage.find_objects(vessels[around], max_label=max(VESSEL_NAMES))
    contacts = {}
    for label, box in enumerate(boxes, start=1):
        if box is not None:
            box = tuple(slice(outer.start + inner.start, outer.start + inner.stop) for outer, inner in zip(around, box))
            contacts[VESSEL_NAMES[label]] = _vessel_contact(calibrated, vessels, label, box)
    return contacts


def _occupied(vessels: np.ndarray) -> Optional[Tuple[slice, slice, slice]]:
    """The box holding every vessel voxel, None without any. Three max-reductions over ever smaller crops
    take a fraction of the time of find_objects' pass over the whole grid, which then runs on this box."""
    box: List[slice] = [slice(0, n) for n in vessels.shape]
    for axis in range(3):
        others = tuple(other for other in range(3) if other != axis)
        hits = np.flatnonzero(vessels[tuple(box)].max(axis=others))
        if hits.size == 0:
            return None
        box[axis] = slice(int(hits[0]), int(hits[-1]) + 1)
    return box[0], box[1], box[2]


def _vessel_contact(calibrated: np.ndarray, vessels: np.ndarray, label: int, box) -> VesselContact:
    # One voxel more in-plane holds every rim voxel's neighbours; the slices stay the vessel's own.
    zs, ys, xs = box
    box = (zs, slice(max(ys.start - 1, 0), ys.stop + 1), slice(max(xs.start - 1, 0), xs.stop + 1))
    labels = vessels[box]
    vessel = labels == label
    tumour_side = np.where(labels == 0, calibrated[box], np.float32(0.0))
    # Outside the image is outside the vessel: a vessel cut by the image border has its rim there.
    rim = vessel & ~ndimage.binary_erosion(vessel, np.ones(IN_PLANE, dtype=bool), border_value=0)
    neighbour_best = ndimage.maximum_filter(tumour_side, size=IN_PLANE, mode="constant", cval=0.0)
    rim_slice = np.nonzero(rim)[0]
    return VesselContact(
        name=VESSEL_NAMES[label], label=label, first_slice=zs.start,
        rim_per_slice=np.bincount(rim_slice, minlength=vessel.shape[0]), rim_slice=rim_slice,
        neighbour_p=neighbour_best[rim].astype(np.float32, copy=False),
    )


@dataclass(frozen=True)
class VesselReadout:
    """One vessel at every level of the read-out, and the shares that summarise them."""

    name: str
    label: int
    levels: Tuple[LevelContact, ...]

    @property
    def contact_share(self) -> float:
        """Largest level with any contact: the expected share of annotators drawing contact (0: none)."""
        return max((entry.level for entry in self.levels if entry.contact_deg > 0), default=0.0)

    @property
    def encasement_share(self) -> float:
        """Largest level with encasement (> 180 deg); 0 when no level reaches it."""
        return max((entry.level for entry in self.levels if entry.category == "encasement"), default=0.0)


@dataclass(frozen=True)
class Involvement:
    """The read-out of one case: every vessel present, at every level."""

    contacts: Dict[str, VesselContact]
    levels: Tuple[float, ...]
    raters: int  # K of the calibrator (0: unknown)
    calibrated: bool  # False: the levels are thresholds of the raw ensemble probability

    @property
    def vessels(self) -> Dict[str, VesselReadout]:
        return {name: VesselReadout(name, contact.label, tuple(contact.at(level) for level in self.levels))
                for name, contact in self.contacts.items()}

    @property
    def absent(self) -> List[str]:
        """Vessels the label map does not hold, in label order."""
        return [name for name in VESSEL_LABELS if name not in self.contacts]

    def share_text(self, share: float) -> str:
        """A share as a radiologist reads it: "2 of 5 experts" when K is known, else a percentage."""
        if self.calibrated and self.raters > 0:
            return f"{round(share * self.raters)} of {self.raters} experts"
        return f"{100.0 * share:.0f} %"

    def to_json(self) -> Dict:
        """The read-out file's content (docs/involvement.md describes every field)."""
        vessels = {}
        for name, readout in self.vessels.items():
            table = [self.contacts[name].at(level) for level in TABLE_LEVELS]
            vessels[name] = {
                "label": readout.label,
                "levels": [_level(entry.level) for entry in readout.levels],
                "contact_deg": [round(entry.contact_deg, 2) for entry in readout.levels],
                "max_slice": [entry.max_slice for entry in readout.levels],
                "category": [entry.category for entry in readout.levels],
                "rim_voxels": [entry.rim_voxels for entry in readout.levels],
                "contact_share": _level(readout.contact_share),
                "encasement_share": _level(readout.encasement_share),
                "table": {"levels": list(TABLE_LEVELS), "contact_deg": [round(entry.contact_deg, 2) for entry in table]},
            }
        return {
            "format": FORMAT, "version": VERSION,
            "probability": "calibrated" if self.calibrated else "raw ensemble (uncalibrated)",
            "raters": self.raters, "levels": [_level(level) for level in self.levels],
            "definition": "axial slices of the CT grid; angle = 360 deg x rim voxels with an in-plane 8-neighbour "
                          "in the tumour p >= level (vessel voxels excluded) / rim voxels; largest over slices",
            "vascular_involvement": vessels, "absent": self.absent,
        }

    def table_lines(self) -> List[str]:
        """The per-vessel table `twintrack predict` prints (ASCII, one line per vessel)."""
        scale = f"calibrated to {self.raters} raters" if self.calibrated and self.raters else (
            "calibrated, panel size unknown" if self.calibrated else "raw ensemble probability, not calibrated")
        header = "".join(f"{f'>= {100 * level:.0f} %':>10}" for level in TABLE_LEVELS)
        percents = "/".join(f"{100 * level:.0f}" for level in TABLE_LEVELS)
        share = "the share of experts expected to draw it" if self.calibrated else "the highest probability level with it"
        lines = [f"Vascular involvement ({scale}): contact angle of the tumour at >= {percents} % "
                 f"{'agreement' if self.calibrated else 'probability'} (widest axial slice); contact / encasement "
                 f"(> 180 deg): {share}.",
                 f"  {'vessel':<13}{header}   {'contact':<17}encasement"]
        for name, readout in self.vessels.items():
            angles = "".join(f"{self.contacts[name].at(level).contact_deg:>6.0f} deg" for level in TABLE_LEVELS)
            lines.append(f"  {name:<13}{angles}   {self.share_text(readout.contact_share):<17}"
                         f"{self.share_text(readout.encasement_share):<17}".rstrip())
        if self.absent:
            lines.append(f"  not in the vessel label map: {', '.join(self.absent)}")
        return lines


def _level(level: float) -> float:
    return round(float(level), 6)


def read_involvement(calibrated: np.ndarray, vessels: np.ndarray, raters: int = 0,
                     is_calibrated: bool = True, levels: Optional[Sequence[float]] = None) -> Involvement:
    """The involvement read-out of ``calibrated`` (float, (z, y, x)) against ``vessels`` (uint8 CURVAS
    labels, checked by :func:`~.vessels.check_vessel_labels`, same grid). ``raters``: K of the calibrator
    (0 unknown); ``levels`` default to :func:`agreement_levels` (tenths for an uncalibrated map).

    Examples
    --------
    An SMA of 3 x 3 voxels in one slice (a rim of 8), with tumour to its right that 4 of 5
    experts would draw: 3 of the 8 rim voxels touch it, 135 degrees, abutment.

    >>> import numpy as np
    >>> vessels = np.zeros((1, 7, 7), np.uint8)
    >>> vessels[0, 2:5, 2:5] = 5  # CURVAS label 5: SMA
    >>> calibrated = np.zeros((1, 7, 7), np.float32)
    >>> calibrated[0, :, 5:] = 0.8
    >>> sma = read_involvement(calibrated, vessels, raters=5).to_json()["vascular_involvement"]["SMA"]
    >>> sma["contact_deg"], sma["contact_share"], sma["encasement_share"]
    ([135.0, 135.0, 135.0, 135.0, 0.0], 0.8, 0.0)
    """
    if calibrated.shape != vessels.shape:
        raise ValueError(f"probability {calibrated.shape} and vessels {vessels.shape} are not on one grid")
    if levels is None:
        levels = agreement_levels(raters if is_calibrated else 0)
    return Involvement(vessel_contacts(calibrated, vessels), tuple(sorted(float(level) for level in levels)),
                       raters if is_calibrated else 0, is_calibrated)
