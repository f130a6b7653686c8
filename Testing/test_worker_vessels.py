"""The vessels through the real worker process: the label map goes to the child as a file, the one the
read-out used comes back, and the parent holds the involvement read-out of the calibrated map."""

from __future__ import annotations

import numpy as np
import pytest

from TwinTrackLogic.involvement import read_involvement
from TwinTrackLogic.io import Volume
from TwinTrackLogic.phantom import generate_case
from TwinTrackLogic.worker import jobs
from TwinTrackLogic.worker import process as worker

pytest.importorskip("onnxruntime", reason="the worker runs the ONNX Runtime ensemble")


@pytest.fixture(scope="module")
def phantom():
    return generate_case(1, raters=5, seed=0, size="small")


def _done(job):
    outcome = job.wait(300)
    assert outcome is not None and outcome.status == jobs.DONE, (outcome.message, outcome.details)
    assert not job.workdir.exists(), "the private folder (the CT, the vessels) was left behind"
    return outcome.value


def test_vessels_given_to_the_worker_come_back_with_the_involvement_read_out(phantom):
    vessels = phantom.vessels.copy()
    vessels[0, 0, 0] = 0  # a label map of the caller's, not the child's copy of the phantom
    job = worker.start_inference(Volume(phantom.image, phantom.geometry), device="cpu", vessels=vessels,
                                 vessels_source="Slicer node phantom vessels")
    result = _done(job)
    assert result.vessels is not None and result.vessels.dtype == np.uint8
    assert np.array_equal(result.vessels, vessels)
    assert result.provenance["vessels_source"] == "Slicer node phantom vessels"
    assert "involvement_s" in result.provenance["timings_s"], "the child computed no read-out"
    # The read-out of the map the worker calibrated, with the calibrator's panel, at every level.
    expected = read_involvement(result.calibrated, phantom.vessels, raters=5)
    assert result.involvement.to_json() == expected.to_json()
    assert result.involvement.levels == (0.2, 0.4, 0.6, 0.8, 1.0)
    touched = [name for name, readout in result.involvement.vessels.items() if readout.contact_share > 0]
    assert touched, "the demo phantom's tumour touches no vessel: the test would show nothing"
    for name in touched:  # any level, as the slider reads it
        assert result.involvement.contacts[name].at(0.3) == expected.contacts[name].at(0.3)


def test_without_given_vessels_the_worker_brings_back_the_bundle_vessel_stages(phantom):
    """The demo bundle's vessel stage finds the vessels in the child; the label map and read-out come back."""
    result = _done(worker.start_inference(Volume(phantom.image, phantom.geometry), device="cpu"))
    assert result.provenance["vessels_source"] == "bundle vessel stage"
    assert result.vessels is not None and result.vessels.shape == phantom.image.shape
    assert set(np.unique(result.vessels)) <= {0, 1, 2, 3, 4, 5} and result.involvement is not None


def test_without_vessels_the_worker_result_has_no_read_out_and_says_so(phantom, tmp_path):
    from bundle_helpers import demo_bundle_without_vessel_stage

    bundle = demo_bundle_without_vessel_stage(tmp_path)
    result = _done(worker.start_inference(Volume(phantom.image, phantom.geometry), device="cpu", bundle_dir=bundle))
    assert result.vessels is None and result.involvement is None
    assert result.provenance["vessels_source"] == "none"


def test_a_vessel_map_with_a_foreign_label_fails_in_the_worker_with_the_sources_name(phantom):
    vessels = phantom.vessels.copy()
    vessels[vessels == 3] = 7
    outcome = worker.start_inference(Volume(phantom.image, phantom.geometry), device="cpu", vessels=vessels,
                                     vessels_source="Slicer node bad vessels").wait(300)
    assert outcome.status == jobs.FAILED
    assert "Slicer node bad vessels" in outcome.message and "7" in outcome.message
    assert outcome.details == "", "a user's label map is a message, not a traceback"
