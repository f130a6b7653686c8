"""Render the README's 3D Slicer screenshots headless (rerun to regenerate).

Runs the test suite's scenario (Testing/scenario.py) on the demo phantom in
a slicer-core scene and renders an axial slice view offscreen: CT with the
calibrated agreement map, contour segments' levels in the legend, the colour
legend. Uses the real ensemble when the demo bundle (Resources/DemoBundle) is
present; otherwise a clearly labelled stand-in (see --help).

    .venv/bin/python docs/make_slicer_screenshots.py [--out docs/images]
"""

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY / "TwinTrack"))
sys.path.insert(0, str(REPOSITORY / "Testing"))

import numpy as np  # noqa: E402

import headless  # noqa: E402  (Testing/)
import scenario  # noqa: E402  (Testing/)
from TwinTrackLib import volumes  # noqa: E402
from TwinTrackLib.sampledata import phantom_case  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPOSITORY / "docs" / "images")
    parser.add_argument("--stand-in", action="store_true",
                        help="use the test suite's stand-in ensemble (phantom latent field + isotonic "
                             "calibrator fitted on phantom case 0) even if the demo bundle exists")
    arguments = parser.parse_args()

    work_for = None
    label = "demo bundle ensemble + its default calibrator"
    if arguments.stand_in or not (REPOSITORY / "Resources" / "DemoBundle" / "manifest.json").exists():
        from scene_fixtures import make_work_for, phantom_calibrator

        work_for = make_work_for(phantom_calibrator.__wrapped__(), phantom_case().latent)
        label = "stand-in ensemble (phantom latent field), isotonic calibrator fitted on phantom case 0"

    scene, application_logic, color_logic = headless.make_scene()
    view = headless.HeadlessSliceView(scene, application_logic, size=(560, 560))
    view.attach_render_window()
    outcome = scenario.run_scenario(scene, work_for, level=0.5)
    case = outcome.case
    k, j, i = np.argwhere(case.latent > 0.5).mean(axis=0)
    centre = (volumes.ijk_to_ras(case.geometry) @ np.array([i, j, k, 1.0]))[:3]
    view.fit()
    view.slice_node.SetFieldOfView(110.0, 110.0, view.slice_node.GetFieldOfView()[2])
    view.jump_to_ras(centre)
    view.slice_node.SetXYZOrigin(0.0, 0.0, 0.0)
    view.jump_to_ras(centre)
    agreement = outcome.agreement
    agreement.set_opacity(0.8)
    agreement.set_level(0.5)
    view.render_full(arguments.out / "slicer_view_with_legend.png")
    agreement.set_range(0.2, 0.8)
    view.render_full(arguments.out / "slicer_ambiguous_band.png")
    agreement.set_range(None)
    print(f"Rendered with the {label}.")
    for key, text in agreement.readouts().items():
        print(f"  {key}: {text}")
    view.close()
    del color_logic


if __name__ == "__main__":
    main()
