"""PNG previews: axial CT slices with the calibrated probability as an overlay.

The colour bar is labelled as expected annotator agreement, with ticks at
whole raters (k of K), so a reader sees what the colours mean. Slices are
reoriented to LPS and shown in radiological convention (patient left on the
image right, anterior up), whatever the file's direction matrix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk

from ..io import Volume
from .figures import agreement_colour_map, require_matplotlib, save_png

CT_WINDOW_HU = (-160.0, 240.0)  # abdominal soft-tissue window (W 400, L 40)
OVERLAY_FLOOR = 0.05  # below this the overlay is transparent


def _to_lps(volume: Volume, array: np.ndarray) -> tuple:
    image = volume.geometry.apply_to(sitk.GetImageFromArray(array))
    oriented = sitk.DICOMOrient(image, "LPS")
    return sitk.GetArrayFromImage(oriented), oriented.GetSpacing()


def choose_slices(calibrated_lps: np.ndarray, count: int) -> list:
    """The slice with the most expected tumour, and neighbours spread around it."""
    mass = calibrated_lps.reshape(calibrated_lps.shape[0], -1).sum(axis=1)
    if mass.max() <= 0:
        return [calibrated_lps.shape[0] // 2]
    marked = np.nonzero(mass > 0.02 * mass.max())[0]
    return sorted({int(v) for v in np.linspace(marked.min(), marked.max(), count + 2)[1:-1].round()}
                  | {int(np.argmax(mass))})[:count] if count > 1 else [int(np.argmax(mass))]


def save_preview(path: Path, ct: Volume, calibrated: np.ndarray, raters: Optional[int] = None,
                 title: str = "", slices: int = 3, levels: Sequence[float] = (0.5,)) -> Path:
    """Write a PNG of ``slices`` axial slices with the calibrated overlay and a colour bar.

    ``levels`` are drawn as contour lines (for example 0.5: half the raters).
    """
    ct_lps, spacing = _to_lps(ct, ct.array.astype(np.float32))
    calibrated_lps, _ = _to_lps(ct, calibrated.astype(np.float32))
    panels = [(f"axial slice {index + 1} of {ct_lps.shape[0]}", ct_lps[index], calibrated_lps[index])
              for index in choose_slices(calibrated_lps, slices)]
    return _figure(path, panels, spacing, raters, title, levels)


def save_comparison(path: Path, ct: Volume, maps: "dict[str, np.ndarray]", raters: Optional[int] = None,
                    title: str = "") -> Path:
    """One axial slice (the one with the most tumour in the last map), one panel per map.

    For example raw ensemble probability, calibrated probability and the raters'
    MHR side by side, on the same colour scale.
    """
    ct_lps, spacing = _to_lps(ct, ct.array.astype(np.float32))
    oriented = {name: _to_lps(ct, values.astype(np.float32))[0] for name, values in maps.items()}
    index = choose_slices(list(oriented.values())[-1], 1)[0]
    panels = [(name, ct_lps[index], values[index]) for name, values in oriented.items()]
    return _figure(path, panels, spacing, raters, title or f"axial slice {index + 1} of {ct_lps.shape[0]}")


def _figure(path: Path, panels, spacing, raters: Optional[int], title: str,
            levels: Sequence[float] = ()) -> Path:
    """Panels of (title, CT slice, overlay slice) side by side, one agreement colour bar."""
    plt = require_matplotlib()
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels) + 1.2, 4.6), squeeze=False)
    colour_map = agreement_colour_map()
    aspect = spacing[1] / spacing[0]
    image = None
    for axis, (name, ct_slice, overlay) in zip(axes[0], panels):
        axis.imshow(ct_slice, cmap="gray", vmin=CT_WINDOW_HU[0], vmax=CT_WINDOW_HU[1], aspect=aspect)
        image = axis.imshow(overlay, cmap=colour_map, vmin=OVERLAY_FLOOR, vmax=1.0, alpha=0.75, aspect=aspect)
        for level in levels:
            if overlay.max() >= level:
                axis.contour(overlay, [level], colors="cyan", linewidths=0.8)
        axis.set_title(name, fontsize=9)
        axis.set_xticks([])
        axis.set_yticks([])
        axis.text(0.02, 0.02, "R", color="white", transform=axis.transAxes, fontsize=8)
        axis.text(0.95, 0.02, "L", color="white", transform=axis.transAxes, fontsize=8)
    _agreement_bar(figure, image, axes, raters)
    if title:
        figure.suptitle(title, fontsize=10)
    return save_png(figure, path, dpi=110, tight=True)


def _agreement_bar(figure, image, axes, raters: Optional[int]) -> None:
    bar = figure.colorbar(image, ax=list(axes[0]), fraction=0.025, pad=0.02, extend="min")
    bar.set_label("Expected annotator agreement")
    if raters:
        ticks = [k / raters for k in range(1, raters + 1) if k / raters >= OVERLAY_FLOOR]
        bar.set_ticks(ticks)
        bar.set_ticklabels([f"{k}/{raters}" for k in range(raters + 1 - len(ticks), raters + 1)])
