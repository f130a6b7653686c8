"""Time of the CURVAS-PDACVI vascular-involvement score next to the rest of `evaluate`'s metrics.

One full-size case (512 x 512 x 100 voxels by default, 5 raters): a tumour of about 4 cm
against the SMV and the SMA, vessels running the whole scan, a graded probability. Times, in
one process and the same run: ``case_metrics`` without vessels (every other metric `evaluate`
computes for a case) and the VI score alone as `evaluate` adds it (the raters' angles, which
`evaluate` computes once per case, and the probability's six thresholds). Prints the medians
and their ratio.

    python benchmarks/bench_vascular.py [--slices 100] [--repeats 3]
"""

from __future__ import annotations

import argparse

import numpy as np
from measure import median_seconds

from TwinTrackLogic.evaluation.metrics import CaseReference, case_metrics
from TwinTrackLogic.evaluation.vascular import contact_angles_deg, prediction_masks, vascular_involvement
from TwinTrackLogic.io import Geometry
from TwinTrackLogic.raters import mhr_from_masks


def full_size_case(slices: int, side: int = 512):
    """(probability, annotations, vessel labels, geometry) of one synthetic full-size case, (z, y, x)."""
    shape = (slices, side, side)
    z, y, x = np.ogrid[:slices, :side, :side]
    vessels = np.zeros(shape, np.uint8)
    for label, (cy, cx, radius) in {1: (200, 200, 9), 2: (300, 250, 8), 3: (330, 330, 14), 5: (280, 300, 6)}.items():
        vessels[np.broadcast_to((y - cy) ** 2 + (x - cx) ** 2 <= radius ** 2, shape)] = label
    vessels[np.broadcast_to(((z - 20) ** 2 + (y - 240) ** 2 <= 25) & (x >= 280) & (x <= 360), shape)] = 4
    centre = (slices // 2, 290, 275)
    distance = np.sqrt(((z - centre[0]) * 2.5) ** 2 + ((y - centre[1]) * 0.8) ** 2 + ((x - centre[2]) * 0.8) ** 2)
    outside = vessels == 0
    annotations = [(distance <= radius_mm) & outside for radius_mm in (15.0, 17.0, 18.0, 19.0, 21.0)]
    probability = np.clip(1.6 - distance / 15.0, 0.0, 1.0).astype(np.float32) * outside
    geometry = Geometry((side, side, slices), (0.8, 0.8, 2.5), (0.0, 0.0, 0.0))
    return probability.astype(np.float32), annotations, vessels, geometry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    probability, annotations, vessels, geometry = full_size_case(args.slices)
    mhr = mhr_from_masks(annotations)
    region = np.ones(probability.shape, bool)

    def rest() -> None:
        case_metrics(probability, CaseReference(annotations, mhr, region, geometry))

    def vascular() -> None:
        vascular_involvement(contact_angles_deg(annotations, vessels),
                             contact_angles_deg(prediction_masks(probability), vessels))

    scores = {name: round(entry["challenge_score"], 2)
              for name, entry in vascular_involvement(contact_angles_deg(annotations, vessels),
                                                      contact_angles_deg(prediction_masks(probability),
                                                                         vessels)).items()}
    rest_s = median_seconds(rest, args.repeats)
    vascular_s = median_seconds(vascular, args.repeats)
    print(f"case {probability.shape} (z, y, x), 5 raters; VI scores (deg): {scores}")
    print(f"other evaluate metrics (case_metrics without vessels): {rest_s:.2f} s")
    print(f"vascular involvement (raters + 6 thresholds, 5 vessels): {vascular_s:.2f} s")
    print(f"ratio VI / other metrics: {vascular_s / rest_s:.2f}")


if __name__ == "__main__":
    main()
