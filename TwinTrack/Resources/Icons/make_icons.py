"""Draw the module and extension icons (128 x 128 PNG): rerun to regenerate.

An axial CT-like disc with an agreement map in the module's colour map and
three contour rings (20, 50, 80 %). Needs numpy and vtk (both in Slicer and in
the test environment).
"""

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2] / "Testing"))  # the headless VTK helpers live with the tests

from headless import write_png  # noqa: E402
from TwinTrackLogic.review.colormaps import DEFAULT_COLOR_MAP, map_colors  # noqa: E402


def icon(size: int = 128) -> np.ndarray:
    y, x = (np.mgrid[0:size, 0:size] + 0.5) / size * 2 - 1
    rgba = np.zeros((size, size, 4))
    body = (x / 0.95) ** 2 + (y / 0.8) ** 2 < 1
    rgba[body] = (0.55, 0.55, 0.55, 1.0)
    spine = x ** 2 + (y - 0.55) ** 2 < 0.02
    rgba[spine] = (0.95, 0.95, 0.95, 1.0)
    # Agreement: 1 in the core, falling through a wobbly margin.
    radius = np.hypot(x + 0.05, (y + 0.05) * 1.2) * (1 + 0.08 * np.sin(5 * np.arctan2(y, x)))
    agreement = np.clip(1.2 - radius / 0.5, 0, 1)
    colors = map_colors(DEFAULT_COLOR_MAP, 256)
    shown = agreement > 0.05
    rgba[shown, :3] = colors[(agreement[shown] * 255).astype(int)]
    for level in (0.2, 0.5, 0.8):
        ring = np.abs(agreement - level) < 0.025
        rgba[ring] = (1.0, 1.0, 1.0, 1.0)
    return np.round(rgba * 255).astype(np.uint8)


if __name__ == "__main__":
    image = icon()
    write_png(HERE / "TwinTrack.png", image)
    write_png(HERE.parents[2] / "Resources" / "TwinTrack.png", image)
