"""The TwinTrack review in a web browser: trame-slicer over the scene layer.

A thin front end (``pip install ".[review]"``, started by ``twintrack review``):
the scene layer (``TwinTrackLib``: AgreementScene and its setters, read-outs,
legends, contours) runs unchanged on trame-slicer's MRML scene, and the
ensemble runs through the core's job runner. This package holds only what a
browser needs: the page, the access token, and the mapping from page controls
to the scene layer's setters.

In a checkout it takes the scene layer from the Slicer module's ``TwinTrack/``
folder (or ``$TWINTRACK_MODULE_DIR``), the copy Slicer runs; an installed wheel
carries ``TwinTrackLib`` as a package of its own (pyproject.toml), so
``import TwinTrackLib`` works in both, as inside Slicer.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Before VTK is imported: render offscreen through EGL (Mesa on headless machines);
# without it VTK tries X, then OSMesa.
os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")


def _scene_layer_folder() -> Path:
    configured = os.environ.get("TWINTRACK_MODULE_DIR")
    return Path(configured) if configured else Path(__file__).resolve().parents[1] / "TwinTrack"


_FOLDER = _scene_layer_folder()
if (_FOLDER / "TwinTrackLib").is_dir() and str(_FOLDER) not in sys.path:
    sys.path.insert(0, str(_FOLDER))
