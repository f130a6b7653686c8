"""The volume-versus-agreement curve, drawn in the page as SVG.

trame-slicer has no plot view for the scene layer's chart node, so the page
draws the same curve (``AgreementCurve.curve()``: volume in mL at 0 %, 1 %, ...
100 % agreement) itself, with a marker at the current level. Only numbers go
into the markup.
"""

from __future__ import annotations

import numpy as np

WIDTH, HEIGHT = 340, 170
LEFT, RIGHT, TOP, BOTTOM = 44, 10, 10, 30


def curve_svg(levels: np.ndarray, volumes_ml: np.ndarray, level: float, low=None, high=None) -> str:
    """SVG of volumes (mL) against levels (fractions); a line at ``level``, a band at [low, high)."""
    levels = np.asarray(levels, dtype=float)
    volumes_ml = np.asarray(volumes_ml, dtype=float)
    top_ml = float(volumes_ml.max()) if volumes_ml.size and volumes_ml.max() > 0 else 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(fraction):
        return LEFT + float(fraction) * plot_w

    def y(ml):
        return TOP + plot_h * (1.0 - float(ml) / top_ml)

    points = " ".join(f"{x(a):.1f},{y(v):.1f}" for a, v in zip(levels, volumes_ml))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
             f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="10">',
             f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#888"/>']
    if low is not None and high is not None:
        left, right = sorted((float(low), float(high)))
        parts.append(f'<rect class="band" x="{x(left):.1f}" y="{TOP}" width="{x(right) - x(left):.1f}" '
                     f'height="{plot_h}" fill="#1976d2" fill-opacity="0.15"/>')
    parts.append(f'<polyline class="curve" points="{points}" fill="none" stroke="#1976d2" stroke-width="2"/>')
    parts.append(f'<line class="level" x1="{x(level):.1f}" y1="{TOP}" x2="{x(level):.1f}" y2="{TOP + plot_h}" '
                 'stroke="#e65100" stroke-width="1.5"/>')
    for tick, anchor in ((0.0, "start"), (0.5, "middle"), (1.0, "end")):
        parts.append(f'<text x="{x(tick):.1f}" y="{HEIGHT - 16}" text-anchor="{anchor}">{tick * 100:.0f} %</text>')
    parts.append(f'<text x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 3}" text-anchor="middle">'
                 'agreement level (% of annotators)</text>')
    parts.append(f'<text x="{LEFT - 4}" y="{TOP + 8}" text-anchor="end">{top_ml:.0f} mL</text>')
    parts.append(f'<text x="{LEFT - 4}" y="{TOP + plot_h}" text-anchor="end">0</text>')
    parts.append("</svg>")
    return "".join(parts)
