"""The panel's decisions headless (TwinTrackLib.presenter), on real MRML (slicer-core).

The self-test's walkthrough runs here with the real worker process and with an injected
stand-in ensemble; the rest pins the lifecycle: Cancel, failures, refused inputs, a deleted
result node, the warnings banner, centring on the tumour.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from types import SimpleNamespace

import numpy as np
import pytest

from scene_fixtures import make_work_for, mrml, phantom_calibrator  # noqa: F401  (fixtures)

from TwinTrackLogic.worker import jobs
from TwinTrackLib import outputs, sampledata
from headless import HeadlessSliceView
from TwinTrackLib.presenter import Parameters, Presenter, tumour_centre_ras
from TwinTrackLib.volumes import ijk_to_ras
from TwinTrackLib.walkthrough import Driver, run_walkthrough


class HeadlessDriver(Driver):
    """The widget's forwarding, without Qt: every parameter change and timer tick goes to the presenter."""

    def __init__(self, mrml, **presenter_options):
        self.scene = mrml.scene
        self.views = [HeadlessSliceView(mrml.scene, mrml.app, name, orientation)
                      for name, orientation in (("Red", "Axial"), ("Yellow", "Sagittal"), ("Green", "Coronal"))]
        self.presenter = Presenter(mrml.scene, **presenter_options)
        self.params = Parameters()
        self._state = self.presenter.enter(self.params)

    def load_phantom(self):
        return sampledata.load_demo_phantom(self.scene)

    def set(self, name, value):
        setattr(self.params, name, value)
        self._state = self.presenter.parameters_changed(self.params)

    def press_apply(self):
        self._state = self.presenter.apply(self.params)

    def press_centre_vessel(self):
        self._state = self.presenter.centre_on_vessel(self.params)

    def pump(self):
        time.sleep(0.01)
        self._state = self.presenter.poll(self.params)

    def shown(self):
        return asdict(self._state)

    def reenter(self):
        self._state = self.presenter.enter(self.params)


def stand_in(calibrator, latent, slow_s=0.0, calls=None):
    """start_inference with the injected stand-in ensemble, on a thread (no ONNX Runtime)."""
    work_for = make_work_for(calibrator, latent, slow_s)

    def start(volume, calibrator_path=None, device="auto", vessels=None, vessels_source=None):
        if calls is not None:
            calls.append({"calibrator_path": calibrator_path, "device": device, "vessels_source": vessels_source})
        return jobs.BackgroundJob(work_for(volume, vessels=vessels, vessels_source=vessels_source)).start()

    return start


def wait_for(driver, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while driver.presenter.job is not None:
        assert time.monotonic() < deadline
        driver.pump()


# --- the self-test's walkthrough --------------------------------------------------------


def test_walkthrough_with_the_worker_process(mrml):
    pytest.importorskip("onnxruntime")
    outcome = run_walkthrough(HeadlessDriver(mrml), timeout_s=300)
    assert 0 < outcome.apply_to_overlay_s <= outcome.apply_to_done_s + 0.05
    assert any("Worker process started" in s or "ensemble" in s.lower() for s in outcome.statuses), outcome.statuses


def test_walkthrough_with_a_stand_in_ensemble(mrml, phantom_calibrator):
    calls = []
    driver = HeadlessDriver(mrml, start_inference=stand_in(phantom_calibrator, sampledata.phantom_case().latent,
                                                           calls=calls))
    run_walkthrough(driver, timeout_s=120)
    assert calls == [{"calibrator_path": None, "device": "cpu", "vessels_source": "Slicer node TwinTrackPhantom vessels"}], \
        "the parameters did not reach the job"


# --- lifecycle -----------------------------------------------------------------------------


def test_cancel_shows_cancelling_then_leaves_nothing(mrml, phantom_calibrator):
    driver = HeadlessDriver(mrml, start_inference=stand_in(phantom_calibrator, sampledata.phantom_case().latent,
                                                           slow_s=5.0))
    driver.set("inputVolume", driver.load_phantom())
    before = mrml.scene.GetNumberOfNodes()
    driver.press_apply()
    assert driver.shown()["apply_text"] == "Cancel" and driver.shown()["progress_visible"]
    driver.press_apply()  # Cancel
    if driver.presenter.job is not None:
        assert driver.shown()["status"] == "Cancelling..."
    wait_for(driver)
    shown = driver.shown()
    assert shown["status"] == "Cancelled; nothing was added to the scene."
    assert shown["apply_text"] == "Apply" and shown["fit_enabled"] and not shown["progress_visible"]
    assert mrml.scene.GetNumberOfNodes() == before and driver.presenter.agreement is None


def test_a_failed_run_queues_its_message_and_frees_both_buttons(mrml):
    def failing(volume, **options):
        def work(progress, token):
            from TwinTrackLogic.errors import InputError
            raise InputError("The calibrator file x.json is not JSON.")
        return jobs.BackgroundJob(work).start()

    driver = HeadlessDriver(mrml, start_inference=failing)
    driver.set("inputVolume", driver.load_phantom())
    driver.press_apply()
    wait_for(driver)
    assert driver.presenter.take_error() == ("The calibrator file x.json is not JSON.", "")
    assert driver.presenter.take_error() is None
    shown = driver.shown()
    assert shown["status"] == "Failed: see the message." and shown["fit_enabled"] and shown["apply_enabled"]


def test_a_failure_while_showing_the_result_is_reported_and_the_panel_recovers(mrml, phantom_calibrator,
                                                                             monkeypatch):
    driver = HeadlessDriver(mrml, start_inference=stand_in(phantom_calibrator, sampledata.phantom_case().latent))
    driver.set("inputVolume", driver.load_phantom())
    monkeypatch.setattr(outputs.plots, "add_volume_curve_chart",
                        lambda *a, **k: (_ for _ in ()).throw(RuntimeError("chart failed")))
    driver.press_apply()
    wait_for(driver)
    message, details = driver.presenter.take_error()
    assert "chart failed" in message and "RuntimeError" in details
    assert driver.shown()["fit_enabled"] and not driver.shown()["review_enabled"]
    assert outputs.output_nodes(mrml.scene) == []


def test_a_twintrack_output_is_refused_as_input_and_survives(mrml, phantom_calibrator):
    driver = HeadlessDriver(mrml, start_inference=stand_in(phantom_calibrator, sampledata.phantom_case().latent))
    driver.set("inputVolume", driver.load_phantom())
    driver.press_apply()
    wait_for(driver)
    output = driver.presenter.agreement.calibrated_node
    driver.set("inputVolume", output)
    driver.press_apply()
    assert driver.presenter.job is None
    message, _ = driver.presenter.take_error()
    assert "is a TwinTrack result, not a CT" in message and output.GetName() in message
    assert output.GetScene() is mrml.scene, "the rerun deleted its own input"


def test_a_contour_level_typo_is_a_message_not_a_run(mrml, phantom_calibrator):
    calls = []
    driver = HeadlessDriver(mrml, start_inference=stand_in(phantom_calibrator, sampledata.phantom_case().latent,
                                                           calls=calls))
    driver.set("inputVolume", driver.load_phantom())
    driver.set("contourLevels", "20, fifty")
    driver.press_apply()
    message, details = driver.presenter.take_error()
    assert "fifty" in message and details == "" and calls == []
    assert driver.shown()["apply_text"] == "Apply"


def test_no_room_for_the_workers_copy_is_a_message(mrml):
    def disk_full(volume, **options):
        raise OSError(28, "No space left on device", "/tmp/twintrack-worker-x/ct.nrrd")

    driver = HeadlessDriver(mrml, start_inference=disk_full)
    driver.set("inputVolume", driver.load_phantom())
    driver.press_apply()
    message, details = driver.presenter.take_error()
    assert message.startswith("No space left on device (/tmp/twintrack-worker-x/ct.nrrd). Check that the folder")
    assert details == "" and driver.presenter.job is None
    assert driver.shown()["status"] == "Not started: see the message." and driver.shown()["apply_enabled"]


def test_no_input_means_apply_is_not_live(mrml):
    driver = HeadlessDriver(mrml)
    assert driver.params.inputVolume is None and not driver.shown()["apply_enabled"]
    driver.press_apply()
    assert driver.presenter.job is None and "Select the input CT" in driver.presenter.take_error()[0]


def test_enter_preselects_a_ct_but_never_an_output_and_keeps_a_choice(mrml, phantom_calibrator):
    driver = HeadlessDriver(mrml, start_inference=stand_in(phantom_calibrator, sampledata.phantom_case().latent))
    ct = driver.load_phantom()
    driver.reenter()
    assert driver.params.inputVolume is ct
    driver.press_apply()
    wait_for(driver)
    mrml.scene.RemoveNode(ct)
    driver.params.inputVolume = None
    driver.reenter()
    assert driver.params.inputVolume is None, "a TwinTrack output was preselected as the input"


def test_the_warnings_banner_shows_the_results_warnings(mrml, phantom_calibrator):
    base = stand_in(phantom_calibrator, sampledata.phantom_case().latent)

    def with_warning(volume, **options):
        job = base(volume, **options)
        job.wait(60)
        job.poll()[2].value.warnings.append("The CT's spacing (5 mm) is coarser than the bundle was trained on.")
        return job

    driver = HeadlessDriver(mrml, start_inference=with_warning)
    driver.set("inputVolume", driver.load_phantom())
    assert driver.shown()["warnings"] == ""
    driver.press_apply()
    wait_for(driver)
    assert driver.shown()["warnings"] == "Warning: The CT's spacing (5 mm) is coarser than the bundle was trained on."
    mrml.scene.RemoveNode(driver.presenter.agreement.table)
    driver.pump()
    assert driver.shown()["warnings"] == "", "a detached result keeps its banner"


def test_the_views_are_centred_on_the_tumour(mrml, phantom_calibrator):
    driver = HeadlessDriver(mrml, start_inference=stand_in(phantom_calibrator, sampledata.phantom_case().latent))
    driver.set("inputVolume", driver.load_phantom())
    driver.press_apply()
    wait_for(driver)
    result = driver.presenter.agreement.result
    zyx = np.argwhere(result.calibrated >= 0.5).mean(axis=0)
    expected = (ijk_to_ras(result.geometry) @ np.array([zyx[2], zyx[1], zyx[0], 1.0]))[:3]
    assert np.allclose(tumour_centre_ras(result, 0.5), expected)
    for view in driver.views:
        origin = np.array([view.slice_node.GetSliceToRAS().GetElement(r, 3) for r in range(3)])
        assert np.allclose(origin, expected, atol=1e-6), view.slice_node.GetName()
    # The tumour is off the volume's centre, so centring moved the views.
    assert not np.allclose(expected, (ijk_to_ras(result.geometry) @ np.r_[np.array(result.geometry.size) / 2, 1])[:3])


def test_closing_the_scene_cancels_the_job(mrml, phantom_calibrator):
    driver = HeadlessDriver(mrml, start_inference=stand_in(phantom_calibrator, sampledata.phantom_case().latent,
                                                           slow_s=5.0))
    driver.set("inputVolume", driver.load_phantom())
    driver.press_apply()
    job = driver.presenter.job
    driver.presenter.scene_closing()
    assert job.token.cancelled and driver.presenter.job is None
    assert job.wait(5).status == jobs.CANCELLED


def test_fit_lifecycle_hands_the_calibrator_to_the_next_run(mrml, tmp_path):
    output = tmp_path / "calibrator.json"

    def fake_fit(cohort, out, device="auto"):
        def work(progress, token):
            return SimpleNamespace(used=["case_000", "case_001"], failures=[("case_002", "no annotations")],
                                   warnings=[("case_001", "its spacing is outside the training range.")],
                                   ece_before=0.12, ece_after=0.03)
        return jobs.BackgroundJob(work).start()

    driver = HeadlessDriver(mrml, start_calibration=fake_fit)
    driver.presenter.fit(driver.params, "", str(output))
    assert "Choose the cohort folder" in driver.presenter.take_error()[0] and driver.presenter.job is None
    state = driver.presenter.fit(driver.params, str(tmp_path), str(output))
    assert state.fit_text == "Cancel" and not state.apply_enabled
    wait_for(driver)
    assert driver.presenter.take_fitted_calibrator() == str(output)
    assert driver.presenter.take_fitted_calibrator() is None
    assert driver.shown()["status"] == ("Calibrator fitted on 2 case(s): ECE against MHR 0.120 before, 0.030 "
                                        "after. Skipped case_002: no annotations. Warning, case_001: its spacing is "
                                        "outside the training range. It will be used for the next run.")


def test_a_labelmap_is_never_preselected_and_is_refused_as_input(mrml):
    """N7: GetNodesByClass("vtkMRMLScalarVolumeNode") returns labelmaps too."""
    driver = HeadlessDriver(mrml)
    labelmap = mrml.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "Pancreas label")
    driver.reenter()
    assert driver.params.inputVolume is None
    ct = driver.load_phantom()
    driver.reenter()
    assert driver.params.inputVolume is ct
    driver.set("inputVolume", labelmap)
    driver.press_apply()
    assert driver.presenter.job is None
    message, _ = driver.presenter.take_error()
    assert "is a labelmap" in message and "Pancreas label" in message


def test_a_parametric_map_from_the_dicom_database_is_never_an_input(mrml):
    """N7/F5: our exported Parametric Map, re-imported, loads as a scalar volume without our tag."""
    from TwinTrackLib import dicomexport

    classes = {"1.2.3.1": "1.2.840.10008.5.1.4.1.1.2", "1.2.3.9": "1.2.840.10008.5.1.4.1.1.30"}
    host = dicomexport.DicomHost(file_for_instance=lambda uid: "", install=lambda r: False,
                                 import_folder=lambda f: False, sop_class_for_instance=classes.get)
    driver = HeadlessDriver(mrml, dicom_host=host)
    pm = sampledata.load_demo_phantom(mrml.scene)
    pm.SetName("TwinTrack probability - ParametricMap")
    pm.SetAttribute(dicomexport.INSTANCE_UIDS_ATTRIBUTE, "1.2.3.9")
    driver.reenter()
    assert driver.params.inputVolume is None, "a Parametric Map was preselected as the CT"
    ct = driver.load_phantom()
    ct.SetAttribute(dicomexport.INSTANCE_UIDS_ATTRIBUTE, "1.2.3.1 1.2.3.2")
    driver.reenter()
    assert driver.params.inputVolume is ct
    driver.set("inputVolume", pm)
    driver.press_apply()
    assert driver.presenter.job is None
    assert "is a DICOM Parametric Map" in driver.presenter.take_error()[0]


def test_zero_percent_does_not_read_as_the_whole_ct_and_range_mode_freezes_the_level(mrml, phantom_calibrator):
    """N10: at 0 % every voxel qualifies; in range mode the level does not act on the display."""
    import xml.etree.ElementTree as ElementTree

    from scene_fixtures import MODULE_DIR

    driver = HeadlessDriver(mrml, start_inference=stand_in(phantom_calibrator, sampledata.phantom_case().latent))
    driver.set("inputVolume", driver.load_phantom())
    driver.press_apply()
    wait_for(driver)
    whole_ct_ml = driver.presenter.agreement.result.calibrated_curve.volume_ml(0.0)
    assert driver.shown()["level_readout"].startswith("≥ 50 %")
    driver.set("agreementLevel", 0.0)  # a script, or a scene saved by an older version
    text = driver.shown()["level_readout"]
    assert "1 % or more" in text and f"{whole_ct_ml:.1f}" not in text and "mL" not in text
    driver.set("agreementLevel", 60.0)
    driver.set("rangeMode", True)
    shown = driver.shown()
    assert not shown["level_slider_enabled"] and shown["range_sliders_enabled"]
    assert shown["level_readout"] == "" and shown["band_readout"].startswith("Ambiguous band 20 %–80 %")
    driver.set("rangeLow", 0.0)
    assert "band's lower end to 1 % or more" in driver.shown()["level_readout"]
    driver.set("rangeMode", False)
    assert driver.shown()["level_slider_enabled"] and driver.shown()["level_readout"].startswith("≥ 60 %")
    ui = ElementTree.parse(MODULE_DIR / "Resources" / "UI" / "TwinTrack.ui").getroot()
    for name in ("levelSlider", "rangeLowSlider"):
        slider = ui.find(f".//widget[@name='{name}']")
        assert float(slider.find("property[@name='minimum']/double").text) == 1.0, name


def test_the_status_names_the_provider_and_a_cuda_fallback_to_the_cpu_is_a_warning(mrml, phantom_calibrator):
    """N5: onnxruntime-gpu without usable CUDA libraries runs on the CPU without a word."""
    work_for = make_work_for(phantom_calibrator, sampledata.phantom_case().latent)

    def on_the_cpu(volume, calibrator_path=None, device="auto"):
        def work(progress, token):
            result = work_for(volume)(progress, token)
            result.provenance["execution_provider"] = "CPUExecutionProvider"  # what the session reported
            return result
        return jobs.BackgroundJob(work).start()

    driver = HeadlessDriver(mrml, start_inference=on_the_cpu)
    driver.set("inputVolume", driver.load_phantom())
    driver.set("device", "cuda")
    driver.press_apply()
    wait_for(driver)
    shown = driver.shown()
    assert shown["status"].endswith("annotators. Ran on the CPU.")
    assert "'cuda' was chosen, but ONNX Runtime ran on the CPU" in shown["warnings"]
    driver.set("device", "cpu")
    driver.press_apply()
    wait_for(driver)
    assert "cuda" not in driver.shown()["warnings"]


# --- the Involvement section ---------------------------------------------------------------


def _run_with_vessels(driver, vessels_node):
    driver.set("inputVolume", driver.scene.GetFirstNodeByName(sampledata.SAMPLE_NAME) or driver.load_phantom())
    driver.set("vesselsNode", vessels_node)
    driver.press_apply()
    wait_for(driver)


def test_involvement_notes_say_what_the_vessels_node_left_out(mrml, phantom_calibrator):
    import slicer

    from TwinTrackLib import segmentation

    case = sampledata.phantom_case()
    driver = HeadlessDriver(mrml, start_inference=stand_in(phantom_calibrator, case.latent))
    ct = driver.load_phantom()
    node = mrml.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "drawn")
    node.SetReferenceImageGeometryParameterFromVolumeNode(ct)
    for name, mask in (("Superior mesenteric artery", case.vessels == 5), ("tumour", case.latent > 0.5)):
        segment = slicer.vtkSegment()
        segment.SetName(name)
        segment.AddRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName(),
                                  segmentation._oriented_labelmap(mask, case.geometry))
        node.GetSegmentation().AddSegment(segment)
    _run_with_vessels(driver, node)
    shown = driver.shown()
    assert shown["involvement_enabled"]
    note = shown["involvement_note"]
    assert note.startswith("Vessels: Slicer node drawn; calibrated to 5 raters;")
    assert "left out: 'tumour'" in note and "Not in 'drawn': portal vein, SMV, aorta, celiac trunk" in note
    rows = {cells[0]: cells[1:] for cells in shown["involvement_cells"]}
    assert rows["aorta"] == ("", "not in the label map", "", "")
    assert driver.presenter.agreement.result.provenance["vessels_source"] == "Slicer node drawn"
    outlined = driver.presenter.agreement.vessels_node
    assert segmentation.segment_voxel_counts(outlined) == {"SMA": int(np.count_nonzero(case.vessels == 5))}
    assert not outlined.GetDisplayNode().GetVisibility2DFill(), "the vessels must not hide the map"


def test_a_vessels_node_that_names_no_vessel_is_a_message_not_a_run(mrml, phantom_calibrator):
    from TwinTrackLib.volumes import add_scalar_volume

    case = sampledata.phantom_case()
    calls = []
    driver = HeadlessDriver(mrml, start_inference=stand_in(phantom_calibrator, case.latent, calls=calls))
    ct = driver.load_phantom()
    wrong = add_scalar_volume(mrml.scene, "organs", (case.pancreas > 0).astype(np.uint8) * 8, case.geometry,
                              like=ct, node_class="vtkMRMLLabelMapVolumeNode")
    _run_with_vessels(driver, wrong)
    message, details = driver.presenter.take_error()
    assert "The labelmap 'organs'" in message and "the value(s) 8" in message and details == ""
    assert calls == [] and driver.shown()["status"] == "Not started: see the message."


def test_without_vessels_the_section_says_how_to_give_them_and_centring_moves_nothing(mrml, phantom_calibrator):
    from TwinTrackLib.involvement_panel import NO_VESSELS

    driver = HeadlessDriver(mrml, start_inference=stand_in(phantom_calibrator, sampledata.phantom_case().latent))
    _run_with_vessels(driver, None)
    shown = driver.shown()
    assert not shown["involvement_enabled"] and shown["involvement_note"] == NO_VESSELS
    assert [cells[1:] for cells in shown["involvement_cells"]] == [("", "", "", "")] * 5
    driver.press_centre_vessel()
    assert driver.shown()["status"] == "SMA: no vessel label map, so no involvement read-out; nothing to centre on."


def test_centring_on_a_vessel_without_contact_at_the_level_says_so(mrml, phantom_calibrator):
    case = sampledata.phantom_case()
    driver = HeadlessDriver(mrml, start_inference=stand_in(phantom_calibrator, case.latent))
    _run_with_vessels(driver, sampledata.add_vessels(mrml.scene, case))
    involvement = driver.presenter.agreement.result.involvement
    untouched = next(name for name, vessel in involvement.vessels.items() if vessel.contact_share == 0)
    before = [view.slice_node.GetSliceOffset() for view in driver.views]
    driver.set("involvementVessel", untouched)
    driver.press_centre_vessel()
    assert driver.shown()["status"] == f"{untouched} at ≥ 50 %: no contact; nothing to centre on."
    assert [view.slice_node.GetSliceOffset() for view in driver.views] == before


def test_the_vessels_a_run_outlined_are_refused_as_the_next_runs_vessels(mrml, phantom_calibrator):
    case = sampledata.phantom_case()
    driver = HeadlessDriver(mrml, start_inference=stand_in(phantom_calibrator, case.latent))
    _run_with_vessels(driver, sampledata.add_vessels(mrml.scene, case))
    outlined = driver.presenter.agreement.vessels_node
    driver.set("vesselsNode", outlined)
    driver.press_apply()
    message, _ = driver.presenter.take_error()
    assert "'TwinTrack vessels' is a TwinTrack result" in message and driver.presenter.job is None
    assert outlined.GetScene() is mrml.scene


def test_deleting_the_vessel_outlines_keeps_the_review_and_a_rerun_replaces_them(mrml, phantom_calibrator):
    case = sampledata.phantom_case()
    driver = HeadlessDriver(mrml, start_inference=stand_in(phantom_calibrator, case.latent))
    _run_with_vessels(driver, sampledata.add_vessels(mrml.scene, case))
    mrml.scene.RemoveNode(driver.presenter.agreement.vessels_node)
    driver.set("agreementLevel", 30.0)
    shown = driver.shown()
    assert shown["review_enabled"] and shown["involvement_enabled"], "the outlines are a view, not the result"
    driver.press_apply()
    wait_for(driver)
    outlines = [node for node in outputs.output_nodes(mrml.scene) if node.GetName() == "TwinTrack vessels"]
    assert len(outlines) == 1 and outlines[0] is driver.presenter.agreement.vessels_node


def test_a_cancelled_run_with_other_vessels_leaves_the_shown_results_notes(mrml, phantom_calibrator):
    from TwinTrackLib.volumes import add_scalar_volume

    case = sampledata.phantom_case()
    driver = HeadlessDriver(mrml, start_inference=stand_in(phantom_calibrator, case.latent, slow_s=3.0))
    ct = driver.load_phantom()
    only_sma = add_scalar_volume(mrml.scene, "SMA only", np.where(case.vessels == 5, 5, 0).astype(np.uint8),
                                 case.geometry, like=ct, node_class="vtkMRMLLabelMapVolumeNode")
    _run_with_vessels(driver, only_sma)
    note = driver.shown()["involvement_note"]
    assert "Not in 'SMA only': portal vein, SMV, aorta, celiac trunk" in note
    driver.set("vesselsNode", sampledata.add_vessels(mrml.scene, case, like=ct))
    driver.press_apply()
    driver.press_apply()  # Cancel
    wait_for(driver)
    assert driver.shown()["status"].startswith("Cancelled") and driver.shown()["involvement_note"] == note
