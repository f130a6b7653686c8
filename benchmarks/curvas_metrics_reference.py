"""Cross-check TwinTrack's CURVAS-PDACVI metrics against reference computations.

ece_curvas against torchmetrics' MulticlassCalibrationError fed the way the
official evaluation feeds it (two classes [1 - p, p], clamped at 1e-8,
renormalised, 50 bins); thresh_dsc against a float64 numpy reading of the
definition; crps_volume against adaptive quadrature of the interpolated
Gaussian CDF. Probabilities are rounded to multiples of 0.01 on purpose, so
that many confidences fall exactly on bin edges.

Needs the ``bench`` extra (`pip install -e ".[bench]"`: torch and torchmetrics).

    python benchmarks/curvas_metrics_reference.py [--cases 4]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from scipy.integrate import quad
from scipy.stats import norm
from torchmetrics.classification import MulticlassCalibrationError

from TwinTrackLogic.evaluation.curvas import (annotation_box, crps_volume, ece_curvas, predicted_volume_mm3,
                                           rater_volumes_mm3, thresh_dsc)
from TwinTrackLogic.phantom import generate_case


def reference_ece(label: np.ndarray, probability: np.ndarray) -> float:
    tumour = torch.from_numpy(np.ascontiguousarray(probability, dtype=np.float32)).reshape(-1)
    both = torch.stack([1 - tumour, tumour], dim=1).clamp(min=1e-8)
    both = both / both.sum(dim=1, keepdim=True)
    metric = MulticlassCalibrationError(num_classes=2, n_bins=50)
    return float(metric(both, torch.from_numpy(label.astype(np.int64)).reshape(-1)))


def reference_thresh_dsc(probability: np.ndarray, annotations) -> float:
    mhr = np.mean(np.stack(annotations).astype(np.float64), axis=0)
    scores = []
    for t in np.linspace(0.1, 0.8, 6):
        a, b = probability.astype(np.float64) > t, mhr > t
        if not a.any() and not b.any():
            scores.append(1.0)
        else:
            scores.append(2.0 * np.sum(a & b) / (a.sum() + b.sum() + 1e-6))
    return float(np.mean(scores))


def reference_crps(predicted: float, volumes) -> float:
    mean, std = np.mean(volumes), np.std(volumes)
    if std == 0:
        return 0.0
    grid = np.linspace(norm.ppf(0.01, mean, std), norm.ppf(0.99, mean, std), 100)
    values = norm.cdf(grid, mean, std)

    def integrand(y):
        cdf = 0.0 if y < grid[0] else 1.0 if y > grid[-1] else float(np.interp(y, grid, values))
        return (cdf - 0.5 * (np.sign(y - predicted) + 1)) ** 2

    points = [p for p in [*grid, predicted] if mean - 3 * std < p < mean + 3 * std]
    return quad(integrand, mean - 3 * std, mean + 3 * std, points=points, limit=1000)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=4)
    args = parser.parse_args()
    worst = {"ece": 0.0, "thresh_dsc": 0.0, "crps_relative": 0.0}
    for index in range(args.cases):
        case = generate_case(index, raters=5, seed=2025, size="small")
        clipped = np.clip(case.latent, 1e-4, 1 - 1e-4)
        sharpened = 1 / (1 + np.exp(-3.0 * (np.log(clipped / (1 - clipped)) + 0.5)))
        probability = (np.round(sharpened * 100) / 100).astype(np.float32)
        probability[case.latent == 0] = 0.0
        annotations = [mask.astype(bool) for mask in case.annotations]

        box = annotation_box(annotations)
        _, ours = ece_curvas(probability, annotations)
        theirs = [reference_ece(mask[box], probability[box]) for mask in annotations]
        worst["ece"] = max(worst["ece"], float(np.max(np.abs(np.subtract(ours, theirs)))))
        worst["thresh_dsc"] = max(worst["thresh_dsc"], abs(thresh_dsc(probability, annotations)
                                                             - reference_thresh_dsc(probability, annotations)))
        voxel_mm3 = case.geometry.voxel_volume_ml * 1000
        volumes = rater_volumes_mm3(annotations, voxel_mm3)
        predicted = predicted_volume_mm3(probability, voxel_mm3)
        ours_crps, theirs_crps = crps_volume(predicted, volumes), reference_crps(predicted, volumes)
        worst["crps_relative"] = max(worst["crps_relative"], abs(ours_crps - theirs_crps) / max(theirs_crps, 1e-12))
        print(f"{case.name}: ece per rater ours {np.round(ours, 6).tolist()} reference {np.round(theirs, 6).tolist()}; "
              f"crps ours {ours_crps:.4f} reference {theirs_crps:.4f} mm³")
    print("largest differences:", {k: f"{v:.2e}" for k, v in worst.items()})


if __name__ == "__main__":
    main()
