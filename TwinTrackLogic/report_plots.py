"""PNG plots of an evaluation report: reliability diagram and volume-versus-agreement curve.

Drawn from the report's ``pooled`` section only, so a saved report.json can be
plotted again later. matplotlib is optional (extra ``plots``) and imported
only here, only when plots are asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

from .figures import require_matplotlib, save_png


def _reliability_points(reliability: Dict):
    points = [(p, m, n) for p, m, n in zip(reliability["mean_probability"], reliability["mean_mhr"],
                                           reliability["count"]) if n > 0]
    return [p for p, _, _ in points], [m for _, m, _ in points]


def write_plots(report: Dict, folder) -> List[Path]:
    """reliability.png and agreement_volume.png in ``folder``; returns their paths."""
    pyplot = require_matplotlib()
    folder = Path(folder)
    pooled = report["pooled"]
    written = []

    figure, axes = pyplot.subplots(figsize=(5.5, 5))
    axes.plot([0, 1], [0, 1], color="0.6", linestyle=":", label="perfect calibration (p = MHR)")
    styles = {"uncalibrated": ("tab:red", "s", "before calibration"),
              "calibrated": ("tab:blue", "o", "after calibration"),
              "probability": ("tab:blue", "o", "probability")}
    for key in ("uncalibrated", "calibrated", "probability"):
        if key in pooled:
            colour, marker, label = styles[key]
            x, y = _reliability_points(pooled[key]["reliability"])
            axes.plot(x, y, color=colour, marker=marker, label=f"{label} (ECE-MHR {pooled[key]['ece_mhr']:.3f})")
    axes.set_xlabel("mean predicted p in bin")
    axes.set_ylabel("mean MHR in bin (fraction of raters)")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_title(f"Reliability inside the calibration region, {len(report['cases'])} case(s)")
    axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    written.append(save_png(figure, folder / "reliability.png"))

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
