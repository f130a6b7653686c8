"""The TwinTrack review in a web browser: trame-slicer over the scene layer.

A thin front end (``pip install ".[review]"``, started by ``twintrack review``):
the scene layer (``TwinTrackLib``: AgreementScene and its setters, read-outs,
legends, contours) runs unchanged on trame-slicer's MRML scene, and the
ensemble runs through the core's job runner. This package holds only what a
browser needs: the page, the access token, and the mapping from page controls
to the scene layer's setters.

The scene layer lives in the Slicer module's ``TwinTrack/`` folder, the copy
Slicer runs; an install (``pip install -e ".[review]"`` from a checkout, or a
wheel) carries ``TwinTrackLib`` as a package of its own (pyproject.toml), so
``import TwinTrackLib`` works here as it does inside Slicer, with no path edits.
"""

from __future__ import annotations

import os

# Before VTK is imported: render offscreen through EGL (Mesa on headless machines);
# without it VTK tries X, then OSMesa.
os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
