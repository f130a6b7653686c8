"""The module's workflow headless: background jobs, the self-test scenario,
read-outs, segments at a level, calibrator fitting from a cohort folder."""

import threading
import time

import numpy as np
import pytest

from scene_fixtures import REPOSITORY, make_work_for, mrml, phantom_calibrator  # noqa: F401  (fixtures)

from TwinTrackLogic import pipeline  # noqa: E402
from TwinTrackLogic.worker import jobs
from TwinTrackLogic.review import readout
import scenario  # noqa: E402
from TwinTrackLib import outputs  # noqa: E402
from TwinTrackLib.sampledata import load_demo_phantom, phantom_case  # noqa: E402
from TwinTrackLib.segmentation import segment_name, segment_voxel_counts  # noqa: E402
from TwinTrackLogic.review.agreement import AgreementCurve
from TwinTrackLogic.errors import InputError


# --- background jobs -------------------------------------------------------

def test_job_reports_progress_and_returns_the_value():
    seen = []

    def work(progress, token):
        for step in range(5):
            progress(step / 5, f"step {step}")
            time.sleep(0.01)
        return 42

    job = jobs.BackgroundJob(work).start()
    while job.wait(0.005) is None:
        seen.append(job.poll()[:2])
    outcome = job.poll()[2]
    assert outcome.status == jobs.DONE and outcome.value == 42
    assert not job.running


def test_cancel_stops_a_running_job_and_discards_its_result():
    started = threading.Event()

    def work(progress, token):
        started.set()
        for _ in range(1000):
            token.check()
            time.sleep(0.01)
        return "should never be used"

    job = jobs.BackgroundJob(work).start()
    assert started.wait(5)
    cancel_time = time.monotonic()
    job.cancel()
    outcome = job.wait(5)
    assert outcome.status == jobs.CANCELLED and outcome.value is None
    assert time.monotonic() - cancel_time < 1.0, "cancel took effect too slowly"


def test_result_finished_after_cancel_is_discarded():
    def work(progress, token):
        while not token.cancelled:
            time.sleep(0.005)
        return "finished anyway"  # a job that ignores the token at the end

    job = jobs.BackgroundJob(work).start()
    job.cancel()
    assert job.wait(5).status == jobs.CANCELLED


@pytest.mark.parametrize("error, expected", [
    (InputError("The CT is 2D. Load a 3D volume."), "The CT is 2D. Load a 3D volume."),
    (MemoryError(), "Not enough memory"),
    (ZeroDivisionError("boom"), "Unexpected error (ZeroDivisionError: boom)"),
])
def test_every_failure_becomes_a_message_for_people(error, expected):
    def work(progress, token):
        raise error

    outcome = jobs.BackgroundJob(work).start().wait(5)
    assert outcome.status == jobs.FAILED
    assert outcome.message.startswith(expected)
    if isinstance(error, ZeroDivisionError):
        assert "Traceback" in outcome.details


# --- the self-test scenario --------------------------------------------------

def test_self_test_scenario_runs_headless(mrml, phantom_calibrator):
    case = phantom_case()
    outcome = scenario.run_scenario(mrml.scene, make_work_for(phantom_calibrator, case.latent, slow_s=0.2))
    assert any("stand-in ensemble" in message for message in outcome.progress_messages)
    agreement = outcome.agreement
    # One result's nodes: table, 2 maps (+display, legend, storage), contours, chart, series, table.
    assert len(outputs.output_nodes(mrml.scene)) >= 9
    before = mrml.scene.GetNumberOfNodes()
    removed = outputs.remove_outputs(mrml.scene)
    assert removed > 0 and mrml.scene.GetNumberOfNodes() == before - removed
    assert outputs.output_nodes(mrml.scene) == []
    assert mrml.scene.GetNodeByID(outcome.ct_node.GetID()) is not None, "the CT must survive"
    del agreement


def test_scenario_with_the_real_ensemble_and_demo_bundle(mrml):
    """The self-test's own configuration: demo bundle + its default calibrator."""
    bundle_dir = REPOSITORY / "Resources" / "DemoBundle"
    if not (bundle_dir / "manifest.json").exists():
        pytest.skip("the demo model bundle (Resources/DemoBundle) is not in this checkout yet")
    pytest.importorskip("onnxruntime")
    outcome = scenario.run_scenario(mrml.scene)
    assert outcome.result.raters >= 1
    assert outcome.result.calibrated_curve.expected_volume_ml > 0.0


def test_segment_at_current_level_matches_the_map(mrml, phantom_calibrator):
    case = phantom_case()
    outcome = scenario.run_scenario(mrml.scene, make_work_for(phantom_calibrator, case.latent))
    outcome.agreement.set_level(0.37)
    outcome.agreement.add_segment_at_level()
    counts = segment_voxel_counts(outcome.agreement.segmentation_node)
    assert counts[segment_name(0.37)] == int(np.count_nonzero(outcome.result.calibrated >= 0.37))
    assert counts[segment_name(0.2)] >= counts[segment_name(0.37)] >= counts[segment_name(0.5)]
    display = outcome.agreement.segmentation_node.GetDisplayNode()
    assert display.GetVisibility2DOutline() and not display.GetVisibility2DFill()


def test_volume_chart_holds_the_curve(mrml, phantom_calibrator):
    case = phantom_case()
    outcome = scenario.run_scenario(mrml.scene, make_work_for(phantom_calibrator, case.latent))
    chart = outcome.agreement.chart
    series = mrml.scene.GetNodeByID(chart.GetPlotSeriesNodeID())
    table = series.GetTableNode().GetTable()
    levels = [table.GetValue(row, 0).ToDouble() for row in range(table.GetNumberOfRows())]
    volumes_ml = [table.GetValue(row, 1).ToDouble() for row in range(table.GetNumberOfRows())]
    assert levels[0] == 0.0 and levels[-1] == 100.0 and len(levels) == 101
    assert all(a >= b for a, b in zip(volumes_ml, volumes_ml[1:])), "volume must fall with agreement"
    assert volumes_ml[60] == pytest.approx(outcome.result.calibrated_curve.volume_ml(0.6))


def test_sample_data_loads_the_demo_phantom(mrml):
    node = load_demo_phantom(mrml.scene)
    assert node.GetName() == "TwinTrackPhantom"
    assert node.GetImageData().GetDimensions() == (96, 96, 48)
    assert node.GetDisplayNode().GetWindow() == 400.0


# --- read-outs ---------------------------------------------------------------

def test_readouts_speak_in_annotators_and_millilitres():
    probability = np.array([0.0, 0.2, 0.4, 0.6, 0.6, 0.8, 1.0], dtype=np.float32)
    curve = AgreementCurve(probability, voxel_volume_ml=2.0)
    assert readout.level_text(curve, 0.6, 5) == \
        "≥ 60 % of annotators (3 of 5) expected to label tumour: 8.0 mL"
    assert readout.level_text(curve, 0.5, 5).startswith("≥ 50 % of annotators (3 of 5)")
    assert readout.level_text(curve, 0.5, 4).startswith("≥ 50 % of annotators (2 of 4)")
    assert readout.band_text(curve, 0.2, 0.8, 5) == \
        "Ambiguous band 20 %–80 % of annotators (1 to 3 of 5): 8.0 mL"
    assert readout.expected_text(curve) == \
        "Expected tumour volume: 7.2 mL (from 2.0 mL at 90 % agreement to 12.0 mL at 10 %)"


def test_calibrator_fitting_from_a_cohort_folder(tmp_path, phantom_calibrator):
    """Pick a CURVAS folder, fit, save the JSON, load it back and use it."""
    from TwinTrackLogic.calibration import load_calibrator
    from TwinTrackLogic.io import write_image
    from TwinTrackLogic.phantom import generate_case, write_case
    from scene_fixtures import overconfident_probability

    for index in range(2):
        case = generate_case(index, raters=3, seed=1)
        folder = write_case(case, tmp_path / "cohort")
        write_image(folder / "probability.nii.gz", overconfident_probability(case.latent), case.geometry)
    output = tmp_path / "calibrator.json"
    outcome = jobs.BackgroundJob(jobs.calibration_job(tmp_path / "cohort", output)).start().wait(120)
    assert outcome.status == jobs.DONE, outcome.message
    calibrator = load_calibrator(output)
    assert calibrator.raters == 3
    assert outcome.value.ece_after < outcome.value.ece_before
    p = np.linspace(0, 1, 11, dtype=np.float32)
    assert np.all(np.diff(calibrator.transform(p)) >= 0)


def test_calibrator_fitting_on_a_folder_without_cases_fails_with_a_message(tmp_path):
    outcome = jobs.BackgroundJob(jobs.calibration_job(tmp_path, tmp_path / "c.json")).start().wait(30)
    assert outcome.status == jobs.FAILED and "holds no case folders" in outcome.message


def test_a_failure_while_building_the_result_leaves_no_half_made_nodes(mrml, phantom_calibrator, monkeypatch):
    case = phantom_case()
    outcome = scenario.run_scenario(mrml.scene, make_work_for(phantom_calibrator, case.latent))
    outputs.remove_outputs(mrml.scene)
    before = mrml.scene.GetNumberOfNodes()

    def broken_chart(*args, **kwargs):
        raise RuntimeError("chart failed")

    monkeypatch.setattr(outputs.plots, "add_volume_curve_chart", broken_chart)
    with pytest.raises(RuntimeError, match="chart failed"):
        outputs.AgreementScene(mrml.scene, outcome.ct_node, outcome.result)
    assert mrml.scene.GetNumberOfNodes() == before
    assert outputs.output_nodes(mrml.scene) == []


def test_cached_demo_phantom_file_loads_as_the_same_ct(mrml, tmp_path):
    """The file Sample Data's file API serves, read back by Slicer's own reader."""
    from TwinTrackLib.sampledata import write_demo_phantom
    from TwinTrackLib.volumes import volume_from_node

    path = write_demo_phantom(tmp_path / "TwinTrackPhantom.nrrd")
    node = mrml.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    storage = mrml.scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    assert storage.ReadData(node)
    loaded, case = volume_from_node(node), phantom_case()
    assert np.array_equal(loaded.array, case.image)
    assert loaded.geometry.differences(case.geometry) == []


def test_contour_levels_are_parsed_from_percentages():
    from TwinTrackLib.segmentation import parse_levels

    assert parse_levels("20, 50, 80") == (0.2, 0.5, 0.8)
    assert parse_levels("10;90") == (0.1, 0.9)
    assert parse_levels("") == ()
    with pytest.raises(InputError, match="takes a percentage of annotators, like 50, not 'twenty'"):
        parse_levels("twenty")
    with pytest.raises(InputError, match="at most 100, not 150"):
        parse_levels("50, 150")
    with pytest.raises(InputError, match="0.5 looks like a fraction: write 50"):
        parse_levels("0.5")


def _test_bundle(tmp_path):
    onnx = pytest.importorskip("onnx")  # noqa: F841
    from bundle_helpers import identity_bundle

    # Identity members (probability = sigmoid(HU)) on the phantom's own spacing.
    return identity_bundle(tmp_path / "bundle", spacing=(2.6, 2.6, 4.0), patch=(16, 32, 32), members=3)


def test_scenario_through_the_real_ensemble_code_with_a_test_bundle(mrml, tmp_path, phantom_calibrator):
    """ensemble_work end to end: bundle loading, onnxruntime sessions, sliding
    windows, calibrator JSON, on the worker thread, into the scene."""
    bundle = _test_bundle(tmp_path)
    calibrator_path = tmp_path / "calibrator.json"
    phantom_calibrator.save(calibrator_path)
    seen = []

    def recording(work):
        def run(progress, token):
            def report(fraction, message):
                seen.append(message)
                progress(fraction, message)
            return work(report, token)
        return run

    outcome = scenario.run_scenario(
        mrml.scene, lambda volume: recording(jobs.ensemble_job(volume, bundle, calibrator_path, device="cpu")))
    assert any("member 3/3" in message for message in seen), seen[-5:]
    assert outcome.result.raters == 5
    assert float(outcome.result.raw.max()) > 0.9  # sigmoid of soft tissue HU


def test_cancel_during_real_inference_stops_at_the_next_patch(tmp_path, phantom_calibrator):
    bundle = _test_bundle(tmp_path)
    calibrator_path = tmp_path / "calibrator.json"
    phantom_calibrator.save(calibrator_path)
    case = phantom_case()
    from TwinTrackLogic.io import Volume

    work = jobs.ensemble_job(Volume(case.image, case.geometry), bundle, calibrator_path, device="cpu")
    cancelled_at = []

    def cancel_once_members_run(progress, token):
        def report(fraction, message):
            # Press Cancel while the first member's sliding window is running.
            if "member" in message and not cancelled_at:
                cancelled_at.append(time.monotonic())
                token.cancel()
            progress(fraction, message)
        return work(report, token)

    outcome = jobs.BackgroundJob(cancel_once_members_run).start().wait(60)
    assert cancelled_at, "the members never started"
    assert outcome.status == jobs.CANCELLED
    # Stopped by the token inside the sliding window, not finished and then discarded.
    assert "no partial output" in outcome.message, outcome.message
    assert time.monotonic() - cancelled_at[0] < 2.0


def test_missing_bundle_is_a_message_not_a_traceback(tmp_path):
    from TwinTrackLogic.io import Volume

    case = phantom_case()
    work = jobs.ensemble_job(Volume(case.image, case.geometry), tmp_path / "no-bundle", None)
    outcome = jobs.BackgroundJob(work).start().wait(30)
    assert outcome.status == jobs.FAILED and "manifest.json" in outcome.message
    assert not outcome.message.startswith("Unexpected error")


def test_agreement_is_zero_outside_the_ensemble_region():
    """A calibrator may map p = 0 to a small positive MHR (the demo's maps 0 to
    0.0013); outside the region no network looked, so that must not be summed
    over the whole body into the expected volume."""
    from types import SimpleNamespace

    from TwinTrackLogic.io import Volume

    case = phantom_case()
    region = case.latent > 0.05
    raw = np.where(region, np.sqrt(case.latent), 0.0).astype(np.float32)
    calibrator = SimpleNamespace(transform=lambda p: (0.01 + 0.98 * p).astype(np.float32), raters=5)

    def predict(volume, progress=None, token=None):
        return SimpleNamespace(probability=raw.copy(), region=region)

    result = pipeline.run_case(Volume(case.image, case.geometry), predict=predict, calibrator=calibrator)
    assert not result.calibrated[~region].any()
    assert np.allclose(result.calibrated[region], 0.01 + 0.98 * raw[region])
    assert result.calibrated_curve.expected_volume_ml == pytest.approx(
        float(result.calibrated.sum(dtype=np.float64)) * case.geometry.voxel_volume_ml, rel=1e-6)


def test_calibrator_fitting_runs_the_ensemble_on_cases_without_probability(tmp_path):
    """The module's 'Fit calibrator' on a plain CURVAS folder: the demo bundle's
    ensemble makes each case's probability, so the calibrator matches what the
    module shows."""
    bundle_dir = REPOSITORY / "Resources" / "DemoBundle"
    if not (bundle_dir / "manifest.json").exists():
        pytest.skip("the demo model bundle (Resources/DemoBundle) is not in this checkout yet")
    import json

    from TwinTrackLogic.calibration import load_calibrator
    from TwinTrackLogic.phantom import generate_case, write_case

    for index in (3, 4):
        write_case(generate_case(index, raters=4, seed=2), tmp_path / "cohort")
    output = tmp_path / "fitted.json"
    outcome = jobs.BackgroundJob(jobs.calibration_job(tmp_path / "cohort", output, device="cpu")).start().wait(300)
    assert outcome.status == jobs.DONE, outcome.message
    assert load_calibrator(output).raters == 4
    assert "bundle:" in json.dumps(json.loads(output.read_text()))
