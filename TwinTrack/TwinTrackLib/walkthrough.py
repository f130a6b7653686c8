"""The module's self-test as one walk through the panel, for any view that drives a Presenter.

Inside Slicer, ``TwinTrackTest`` runs :func:`run_walkthrough` with a driver that works the real
widget (parameter node, Apply button, Qt event loop, labels); pytest runs the same steps with a
headless driver against the :class:`~.presenter.Presenter`. The steps: load the sample phantom
and its vessels (a labelmap node), set the parameters through the parameter node, press Apply,
wait for the worker, move the agreement level and check the read-outs, the involvement table and
the nodes' display properties, centre the views on a vessel's widest contact, delete a result
node and move the slider again, re-enter the module and check the choices survived.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np

from TwinTrackLogic.involvement import read_involvement
from TwinTrackLogic.review import readout

from . import display, sampledata
from .volumes import ijk_to_ras


class Driver:
    """What the walkthrough needs from a view. ``params`` is the parameter node."""

    scene: Any
    presenter: Any
    params: Any

    def load_phantom(self):  # -> the CT node, loaded as the user would (Sample Data)
        raise NotImplementedError

    def set(self, name: str, value) -> None:  # through the parameter node, as a widget would
        raise NotImplementedError

    def press_apply(self) -> None:
        raise NotImplementedError

    def press_centre_vessel(self) -> None:  # the Involvement section's centre button
        raise NotImplementedError

    def pump(self) -> None:  # one turn of the event loop
        raise NotImplementedError

    def shown(self) -> Dict[str, Any]:  # what the panel shows: texts and enabled flags
        raise NotImplementedError

    def reenter(self) -> None:  # leave the module and come back
        raise NotImplementedError


@dataclass
class WalkthroughOutcome:
    apply_to_overlay_s: float  # press Apply -> the agreement map is the slice views' foreground
    apply_to_done_s: float
    statuses: List[str] = field(default_factory=list)


def _check(condition: bool, message: str) -> None:
    # Explicit raises, not `assert`: the self-test must check even under python -O.
    if not condition:
        raise AssertionError(message)


def _foreground_is(scene, node) -> bool:
    composites = display.slice_composite_nodes(scene)
    return bool(composites) and all(c.GetForegroundVolumeID() == node.GetID() for c in composites)


def _pump_until(driver: Driver, done, timeout_s: float, what: str, statuses: list) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        _check(time.monotonic() < deadline, f"{what} did not happen within {timeout_s:.0f} s")
        driver.pump()
        status = driver.shown().get("status", "")
        if status and (not statuses or statuses[-1] != status):
            statuses.append(status)


def run_walkthrough(driver: Driver, timeout_s: float = 600.0) -> WalkthroughOutcome:
    presenter, scene = driver.presenter, driver.scene
    ct_node = driver.load_phantom()
    _check(ct_node is not None and ct_node.GetScene() is scene, "the sample phantom did not load")
    case = sampledata.phantom_case()
    case_vessels = case.vessels
    vessels_node = sampledata.add_vessels(scene, case, like=ct_node)
    for name, value in (("inputVolume", ct_node), ("device", "cpu"), ("colorMap", "Grey"),
                        ("agreementLevel", 60.0), ("opacity", 0.5), ("contourLevels", "20, 50, 80"),
                        ("vesselsNode", vessels_node)):
        driver.set(name, value)
    _check(driver.shown()["apply_enabled"], "Apply is not live with a CT selected")

    # Apply: the button turns into Cancel while the worker runs; the result arrives afterwards.
    statuses: List[str] = []
    started = time.monotonic()
    driver.press_apply()
    _check(presenter.job is not None, f"Apply started nothing: {presenter.take_error()}")
    _check(driver.shown()["apply_text"] == "Cancel", "Apply did not turn into Cancel")
    _check(not driver.shown()["fit_enabled"], "Fit stays live during an inference")
    overlay = {}

    def overlay_shown():
        if "t" not in overlay and presenter.agreement is not None \
                and _foreground_is(scene, presenter.agreement.calibrated_node):
            overlay["t"] = time.monotonic() - started
        return presenter.job is None

    _pump_until(driver, overlay_shown, timeout_s, "the inference", statuses)
    done_s = time.monotonic() - started
    error = presenter.take_error()
    _check(error is None and presenter.agreement is not None,
           f"the run failed: {error or driver.shown().get('errors')} (status {driver.shown()['status']!r})")
    overlay.setdefault("t", done_s)
    agreement = presenter.agreement
    result = agreement.result
    shown = driver.shown()
    _check(shown["status"].startswith("Done"), f"status after the run: {shown['status']!r}")
    _check(shown["apply_text"] == "Apply" and shown["review_enabled"], "the panel did not return to review")

    # Read-outs and display properties follow the parameter node.
    def check_level(percent: float) -> None:
        level = percent / 100.0
        text = driver.shown()["level_readout"]
        expected_ml = np.count_nonzero(result.calibrated >= np.float32(level)) * result.geometry.voxel_volume_ml
        _check(text == readout.level_text(result.calibrated_curve, level, result.raters),
               f"level read-out {text!r}")
        _check(f"{expected_ml:.1f} mL" in text, f"level read-out {text!r} is not {expected_ml:.1f} mL")
        lower = agreement.calibrated_node.GetDisplayNode().GetLowerThreshold()
        _check(abs(lower - level) < 1e-9, f"display threshold {lower} does not follow the level {level}")

    check_level(60.0)
    _check(_foreground_is(scene, agreement.calibrated_node), "the agreement map is not shown")
    for composite in display.slice_composite_nodes(scene):
        _check(abs(composite.GetForegroundOpacity() - 0.5) < 1e-9, "the opacity is not the parameter's")
    _check(agreement.color_map == "Grey", "the colour map is not the parameter's")
    _check(driver.shown()["expected_readout"] == readout.expected_text(result.calibrated_curve),
           "the expected-volume read-out is wrong")
    driver.set("agreementLevel", 80.0)
    driver.pump()
    check_level(80.0)

    # Involvement: the vessels node went to the worker and came back with the read-out of the calibrated map.
    involvement = result.involvement
    _check(involvement is not None, "no involvement read-out although the vessels were given")
    _check(result.provenance.get("vessels_source") == f"Slicer node {vessels_node.GetName()}",
           f"vessels_source {result.provenance.get('vessels_source')!r}")
    expected = read_involvement(result.calibrated, case_vessels, result.raters)
    _check(involvement.to_json() == expected.to_json(), "the worker's read-out is not the calibrated map's")
    touched = sorted(expected.vessels.values(), key=lambda vessel: -vessel.contact_share)[0]
    _check(touched.contact_share > 0, "the demo phantom's tumour touches no vessel: nothing to check")
    for percent in (80.0, 40.0):
        driver.set("agreementLevel", percent)
        driver.pump()
        _check_involvement(driver, expected, percent / 100.0)
    # The read-out line follows the slider for the chosen vessel; the button finds its widest contact there.
    driver.set("involvementVessel", touched.name)
    percent = round(100.0 * touched.contact_share)  # the most agreement at which this vessel is still touched
    driver.set("agreementLevel", float(percent))
    driver.pump()
    sentence = driver.shown()["involvement_readout"]
    angle = expected.contacts[touched.name].at(percent / 100.0)
    _check(sentence == f"{touched.name} at ≥ {percent} %: {angle.contact_deg:.0f}° {angle.category}",
           f"involvement read-out {sentence!r}")
    driver.press_centre_vessel()
    _check_centred_on(scene, result, case_vessels, touched.label, angle.max_slice)

    # A result node deleted by hand: the review detaches, the slider keeps working.
    scene.RemoveNode(agreement.raw_node)
    driver.set("agreementLevel", 70.0)
    driver.pump()
    shown = driver.shown()
    _check(presenter.agreement is None and not shown["review_enabled"],
           "the review still drives a result with a deleted node")
    _check("deleted" in shown["status"], f"status after deleting a node: {shown['status']!r}")
    _check(shown["apply_enabled"], "Apply is not live after a result node was deleted")

    # Leave and come back: every choice survives.
    driver.reenter()
    params = driver.params
    survived = {"device": params.device, "colorMap": params.colorMap, "agreementLevel": params.agreementLevel,
                "opacity": params.opacity, "input": params.inputVolume, "vessels": params.vesselsNode,
                "vessel": params.involvementVessel}
    _check(survived == {"device": "cpu", "colorMap": "Grey", "agreementLevel": 70.0, "opacity": 0.5,
                        "input": ct_node, "vessels": vessels_node, "vessel": touched.name},
           f"choices after re-entering the module: {survived}")
    return WalkthroughOutcome(apply_to_overlay_s=overlay["t"], apply_to_done_s=done_s, statuses=statuses)


def _check_involvement(driver: Driver, expected, level: float) -> None:
    """The table shows, per vessel, involvement.py's angle, category and shares at the slider's level."""
    shown = driver.shown()
    _check(shown["involvement_enabled"], "the Involvement section is not live after a run with vessels")
    rows = {cells[0]: tuple(cells[1:]) for cells in shown["involvement_cells"]}
    raters = expected.raters
    for name, vessel in expected.vessels.items():
        contact = expected.contacts[name].at(level)
        want = (f"{contact.contact_deg:.0f}°", contact.category, f"{round(vessel.contact_share * raters)} of {raters} "
                "experts", f"{round(vessel.encasement_share * raters)} of {raters} experts")
        _check(rows.get(name) == want, f"involvement row of the {name} at {level:.0%}: {rows.get(name)}, not {want}")


def _check_centred_on(scene, result, vessels, label: int, axial_slice: Optional[int]) -> None:
    """Every slice view passes through the middle of the vessel in ``axial_slice``."""
    if axial_slice is None:
        raise AssertionError("the vessel has no contact at its own contact share")
    jj, ii = (index.mean() for index in np.nonzero(vessels[axial_slice] == label))
    target = (ijk_to_ras(result.geometry) @ np.array([ii, jj, float(axial_slice), 1.0]))[:3]
    slice_nodes = scene.GetNodesByClass("vtkMRMLSliceNode")
    _check(slice_nodes.GetNumberOfItems() > 0, "no slice views to centre")
    for index in range(slice_nodes.GetNumberOfItems()):
        node = slice_nodes.GetItemAsObject(index)
        origin = np.array([node.GetSliceToRAS().GetElement(row, 3) for row in range(3)])
        _check(np.allclose(origin, target, atol=1e-3),
               f"the {node.GetName()} view is at {origin}, not at the vessel's widest-contact slice {target}")
