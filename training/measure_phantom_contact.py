"""How often the phantom's raters disagree about tumour-vessel contact.

    python training/measure_phantom_contact.py --cases 60 --seed 5151

Generates phantom cases (``TwinTrackLogic.phantom``) and, per vessel, counts the cases where no
rater, some but not all raters, or all raters draw the tumour touching it, and the cases where
every rater wraps it by more than 180 degrees (encasement). Touching is the axial reading of
issue 22's read-out: in each axial slice of the CT grid the vessel's rim (vessel voxels with an
in-plane 8-neighbour outside the vessel) is in contact where a rim voxel has an in-plane
8-neighbour in the rater's mask; the slice's angle is 360 x contact / rim, the vessel's the
maximum over slices. The table is the one docs/bundle.md quotes for the demo's phantoms.
"""

from __future__ import annotations

import argparse
import sys
from typing import Dict, List, Tuple

import numpy as np
from scipy import ndimage

from TwinTrackLogic.phantom import generate_case
from TwinTrackLogic.vessels import VESSEL_LABELS

IN_PLANE = np.ones((1, 3, 3), dtype=bool)  # 8-neighbourhood within one axial slice (z, y, x)


def axial_contact_deg(tumour: np.ndarray, vessel: np.ndarray) -> float:
    """Largest per-slice share of the vessel rim touched by ``tumour``, in degrees (0 to 360)."""
    rim = vessel & ~ndimage.binary_erosion(vessel, IN_PLANE, border_value=1)
    contact = rim & ndimage.binary_dilation(tumour, IN_PLANE)
    rim_per_slice = rim.sum(axis=(1, 2))
    touched = rim_per_slice > 0
    if not touched.any():
        return 0.0
    return float((360.0 * contact.sum(axis=(1, 2))[touched] / rim_per_slice[touched]).max())


def contact_table(cases: int, seed: int, first_index: int = 0,
                  raters: int = 5) -> Tuple[Dict[str, Dict[str, int]], Dict[str, int]]:
    """Per vessel: cases where none / some / all raters touch it, and where all wrap it > 180 degrees;
    per case: disputed contact with any vessel, contact all agree on (and none disputed), no contact."""
    table = {name: {"none": 0, "disputed": 0, "all": 0, "encased by all": 0} for name in VESSEL_LABELS}
    per_case = {"disputed": 0, "all": 0, "none": 0, "encased by all": 0}
    for index in range(first_index, first_index + cases):
        case = generate_case(index, raters=raters, seed=seed)
        seen = set()
        for name, label in VESSEL_LABELS.items():
            vessel = case.vessels == label
            angles: List[float] = [axial_contact_deg(mask > 0, vessel) for mask in case.annotations]
            touching = sum(angle > 0 for angle in angles)
            situation = "none" if touching == 0 else "all" if touching == raters else "disputed"
            table[name][situation] += 1
            seen.add(situation)
            if all(angle > 180 for angle in angles):
                table[name]["encased by all"] += 1
                seen.add("encased by all")
        per_case["disputed" if "disputed" in seen else "all" if "all" in seen else "none"] += 1
        per_case["encased by all"] += "encased by all" in seen
    return table, per_case


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=60)
    parser.add_argument("--seed", type=int, default=5151)
    parser.add_argument("--first-index", type=int, default=0)
    args = parser.parse_args(argv)
    table, per_case = contact_table(args.cases, args.seed, args.first_index)
    print(f"{args.cases} phantom cases (seed {args.seed}, 5 raters), raters touching each vessel:")
    print("| vessel | no rater | some, not all | all raters | all raters > 180 deg |")
    print("| --- | --- | --- | --- | --- |")
    for name, row in table.items():
        print(f"| {name} | {row['none']} | {row['disputed']} | {row['all']} | {row['encased by all']} |")
    print(f"| any vessel (cases) | {per_case['none']} | {per_case['disputed']} | {per_case['all']} | "
          f"{per_case['encased by all']} |")
    print("(any vessel: a case counts as 'some, not all' when raters disagree about at least one vessel, "
          "as 'all raters' when they agree on every contact)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
