"""Perceptually uniform colour maps for agreement levels, defined in CIELAB.

Each map is a path through CIELAB with lightness rising linearly, so equal
steps in agreement look like equal steps in colour and the order survives a
greyscale print. Defined here (a few control points and the standard
CIELAB -> sRGB conversion) because the slicer-core wheel ships no colour files
and Slicer's own matplotlib maps are not available headless.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np

# (L*, a*, b*) control points, low agreement first.
COLOR_MAPS: Dict[str, List[Tuple[float, float, float]]] = {
    # dark violet -> blue -> teal -> green -> yellow
    "Blue-yellow": [(18, 30, -40), (36, 10, -45), (55, -28, -10), (74, -52, 40), (94, -12, 88)],
    # dark purple -> magenta -> orange -> light yellow
    "Purple-orange": [(15, 35, -45), (38, 60, -30), (58, 55, 40), (78, 20, 70), (96, -8, 50)],
    "Grey": [(10, 0, 0), (98, 0, 0)],
}
DEFAULT_COLOR_MAP = "Blue-yellow"

_D65_WHITE = np.array([0.95047, 1.0, 1.08883])
_XYZ_TO_LINEAR_SRGB = np.array([
    [3.2404542, -1.5371385, -0.4985314],
    [-0.9692660, 1.8760108, 0.0415560],
    [0.0556434, -0.2040259, 1.0572252],
])


def lab_to_srgb(lab: np.ndarray) -> np.ndarray:
    """CIELAB (D65) to sRGB in [0, 1], clipped to the gamut; ``lab`` is (n, 3)."""
    lab = np.asarray(lab, dtype=float)
    fy = (lab[:, 0] + 16.0) / 116.0
    f = np.stack([fy + lab[:, 1] / 500.0, fy, fy - lab[:, 2] / 200.0], axis=1)
    delta = 6.0 / 29.0
    xyz = np.where(f > delta, f ** 3, 3 * delta ** 2 * (f - 4.0 / 29.0)) * _D65_WHITE
    linear = np.clip(xyz @ _XYZ_TO_LINEAR_SRGB.T, 0.0, 1.0)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)


def map_colors(name: str, count: int = 256) -> np.ndarray:
    """``count`` sRGB colours (count, 3) sampled evenly along the named map."""
    if name not in COLOR_MAPS:
        raise ValueError(f"Unknown colour map '{name}'; choose one of {', '.join(COLOR_MAPS)}.")
    points = np.asarray(COLOR_MAPS[name], dtype=float)
    where = np.linspace(0.0, 1.0, len(points))
    samples = np.linspace(0.0, 1.0, count)
    lab = np.stack([np.interp(samples, where, points[:, c]) for c in range(3)], axis=1)
    return lab_to_srgb(lab)
