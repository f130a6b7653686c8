"""PNG plots of an evaluation report and of a calibration cross-validation.

- evaluation (``evaluate --plots``): reliability diagram before and after
  calibration, with a bootstrap band over cases; per-case ECE before against
  after; volume-versus-agreement curve;
- cross-validation (``calibrate --cv --plots``): the same two calibration plots
  from held-out predictions.

Drawn from the saved JSON only (report.json, or the calibrator's
``fitting.cross_validation``), so either can be plotted again later.
matplotlib is optional (extra ``plots``) and imported
only here, only when plots are asked for.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

from ..review.figures import require_matplotlib, save_png

BAND_RESAMPLES = 1000


def reliability_band(count: np.ndarray, sum_value: np.ndarray, sum_mhr: np.ndarray,
                     resamples: int = BAND_RESAMPLES, seed: int = 0):
    """Pooled reliability curve and its 95 % bootstrap band over cases.

    count, sum_value, sum_mhr: cases x bins (per case: voxels, summed value, summed MHR per bin).
    Returns (mean value, mean MHR, band low, band high) of the bins with voxels.
    """
    count, sum_value, sum_mhr = (np.asarray(a, dtype=np.float64) for a in (count, sum_value, sum_mhr))
    cases = count.shape[0]
    draws = np.random.default_rng(seed).integers(0, cases, size=(resamples, cases))
    multiplicity = np.zeros((resamples, cases))
    np.add.at(multiplicity, (np.arange(resamples)[:, None], draws), 1.0)
    filled = count.sum(axis=0) > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        resampled = (multiplicity @ sum_mhr) / (multiplicity @ count)
        low, high = np.nanpercentile(resampled[:, filled], [2.5, 97.5], axis=0)
        totals = count.sum(axis=0)[filled]
        return sum_value.sum(axis=0)[filled] / totals, sum_mhr.sum(axis=0)[filled] / totals, low, high


def _reliability_figure(pyplot, curves: Sequence[Tuple[str, str, str, Tuple]], title: str):
    figure, axes = pyplot.subplots(figsize=(5.5, 5))
    axes.plot([0, 1], [0, 1], color="0.6", linestyle=":", label="perfect calibration (p = MHR)")
    for label, colour, marker, (x, y, low, high) in curves:
        axes.fill_between(x, low, high, color=colour, alpha=0.18, linewidth=0)
        axes.plot(x, y, color=colour, marker=marker, label=label)
    axes.set_xlabel("mean predicted p in bin")
    axes.set_ylabel("mean MHR in bin (fraction of raters)")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_title(title, fontsize=10)
    axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    return figure


def _per_case_ece_figure(pyplot, raw_eces: Sequence[float], calibrated_eces: Sequence[float], after_label: str,
                         title: str):
    before, after = np.asarray(raw_eces, dtype=np.float64), np.asarray(calibrated_eces, dtype=np.float64)
    figure, axes = pyplot.subplots(figsize=(5, 5))
    top = max(float(np.nanmax(before)), float(np.nanmax(after)), 1e-3) * 1.08
    axes.plot([0, top], [0, top], color="0.6", linestyle=":", label="no change")
    better = after < before
    axes.scatter(before[better], after[better], color="tab:blue", s=22, label=f"lower after: {better.sum()}")
    axes.scatter(before[~better], after[~better], color="tab:red", marker="^", s=26,
                 label=f"not lower: {(~better).sum()}")
    axes.set_xlim(0, top)
    axes.set_ylim(0, top)
    axes.set_xlabel("per-case ECE against MHR, raw map")
    axes.set_ylabel(f"per-case ECE against MHR, {after_label}")
    axes.set_title(title, fontsize=8)
    axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    return figure


def _case_bins(cases: Sequence[Dict]):
    """cases x bins (count, summed p, summed MHR) from the per-case reliability JSON of a report."""
    count = np.array([case["count"] for case in cases], dtype=np.float64)
    mean_value = np.array([[np.nan if v is None else v for v in case["mean_probability"]] for case in cases])
    mean_mhr = np.array([[np.nan if v is None else v for v in case["mean_mhr"]] for case in cases])
    return count, np.nan_to_num(mean_value) * count, np.nan_to_num(mean_mhr) * count


def write_plots(report: Dict, folder) -> List[Path]:
    """reliability.png, agreement_volume.png and, with a calibrator, per_case_ece.png in ``folder``."""
    pyplot = require_matplotlib()
    folder = Path(folder)
    pooled = report["pooled"]
    cases = [report["cases"][name] for name in sorted(report["cases"])]
    written = []

    styles = {"uncalibrated": ("tab:red", "s", "before calibration"),
              "calibrated": ("tab:blue", "o", "after calibration"),
              "probability": ("tab:blue", "o", "probability")}
    curves = []
    for key in ("uncalibrated", "calibrated", "probability"):
        if key in pooled:
            colour, marker, label = styles[key]
            per_case = [case[key] if key == "uncalibrated" else case for case in cases]
            band = reliability_band(*_case_bins([case["reliability"] for case in per_case]))
            curves.append((f"{label} (ECE-MHR {pooled[key]['ece_mhr']:.3f})", colour, marker, band))
    figure = _reliability_figure(pyplot, curves, f"Reliability inside the calibration region, {len(cases)} "
                                                 "case(s); bands: 95 % bootstrap over cases")
    written.append(save_png(figure, folder / "reliability.png"))

    if "uncalibrated" in pooled:
        figure = _per_case_ece_figure(pyplot, [case["uncalibrated"]["ece_mhr"] for case in cases],
                                      [case["ece_mhr"] for case in cases], "calibrated",
                                      f"Per-case ECE against MHR before and after, {len(cases)} case(s)")
        written.append(save_png(figure, folder / "per_case_ece.png"))

    figure, axes = pyplot.subplots(figsize=(6, 4.5))
    main = "calibrated" if "calibrated" in pooled else "probability"
    curve = pooled[main]["agreement_curve"]
    # Level 0 counts every voxel of the image: leave it out so the tumour scale shows.
    shown = [i for i, level in enumerate(curve["levels"]) if level > 0]
    levels = [100 * curve["levels"][i] for i in shown]

    def volumes(values):
        return [values[i] for i in shown]

    axes.plot(levels, volumes(curve["mean_raters_ml"]), color="black",
              label="raters: at least this fraction marked it")
    axes.plot(levels, volumes(curve["mean_probability_ml"]), color="tab:blue", label=f"{main} p >= level")
    if "uncalibrated" in pooled:
        axes.plot(levels, volumes(pooled["uncalibrated"]["agreement_curve"]["mean_probability_ml"]),
                  color="tab:red", linestyle="--", label="uncalibrated p >= level")
    axes.set_xlabel("agreement level (%)")
    axes.set_ylabel("tumour volume (mL), mean over cases")
    axes.set_xlim(0, 100)
    axes.set_ylim(bottom=0)
    axes.set_title("Volume versus agreement level")
    axes.legend(fontsize=8)
    figure.tight_layout()
    written.append(save_png(figure, folder / "agreement_volume.png"))
    return written


def write_cross_validation_plots(cross_validation: Dict, folder) -> List[Path]:
    """cv_reliability.png and cv_per_case_ece.png in ``folder`` from a ``--cv`` report (held-out values)."""
    pyplot = require_matplotlib()
    folder = Path(folder)
    methods, reliability = cross_validation["methods"], cross_validation["reliability"]
    compared = cross_validation["chosen"] if cross_validation["chosen"] != "identity" else cross_validation["best"]
    curves = []
    for label, colour, marker in (("identity", "tab:red", "s"), (compared, "tab:blue", "o")):
        bins = reliability[label]
        curves.append((f"{label} (pooled ECE-MHR {methods[label]['pooled_ece']['value']:.3f})", colour, marker,
                       reliability_band(bins["count"], bins["sum_value"], bins["sum_mhr"])))
    cases = cross_validation["cases"]
    written = []
    figure = _reliability_figure(pyplot, curves, f"Held-out reliability ({cross_validation['cv']}, {cases} cases); "
                                                 "bands: 95 % bootstrap over cases")
    written.append(save_png(figure, folder / "cv_reliability.png"))
    per_case = cross_validation["per_case"]
    names = sorted(per_case)
    figure = _per_case_ece_figure(pyplot, [per_case[n]["identity"]["ece"] for n in names],
                                  [per_case[n][compared]["ece"] for n in names], f"{compared}, held out",
                                  textwrap.fill(cross_validation["verdict"], 62))
    written.append(save_png(figure, folder / "cv_per_case_ece.png"))
    return written
