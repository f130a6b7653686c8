"""matplotlib, only when a figure is asked for: the import, the agreement colour map, PNG saving.

matplotlib is optional (extra ``plots``); report plots and PNG previews both come through here,
so there is one install message, one PNG writer (atomic) and one agreement colour map: the same
perceptually uniform map the Slicer overlay uses (:mod:`.colormaps`).
"""

from __future__ import annotations

import io
from pathlib import Path

from ..errors import TwinTrackError
from ..io import write_bytes_atomic
from .colormaps import DEFAULT_COLOR_MAP, map_colors


def require_matplotlib():
    """The pyplot module with a file-only backend, or an error that says how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise TwinTrackError(
            "Plots and PNG previews need matplotlib, which is not installed. Install it with "
            "`pip install 'twintrack[plots]'` (or `pip install matplotlib`), or leave out the plots."
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot
    return pyplot


def agreement_colour_map(name: str = DEFAULT_COLOR_MAP):
    """The Slicer overlay's colour map as a matplotlib colour map, transparent below its range."""
    from matplotlib.colors import ListedColormap

    return ListedColormap(map_colors(name), name=name).with_extremes(under=(0.0, 0.0, 0.0, 0.0))


def save_png(figure, path: Path, dpi: int = 120, tight: bool = False) -> Path:
    """Write ``figure`` as a PNG atomically and close it."""
    import matplotlib.pyplot as pyplot

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    pyplot.close(figure)
    return write_bytes_atomic(path, buffer.getvalue())
