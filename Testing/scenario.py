"""The scene layer end to end, below the panel: the headless scene tests run this.

Sample phantom -> MRML volume -> core volume -> background job (ensemble +
calibrator) -> result nodes -> review controls, asserting at every step what
a radiologist relies on. pytest calls it headless on slicer-core, with the real
ensemble when the demo bundle is present or with an injected job body. The
module's self-test works the panel instead (:mod:`.walkthrough`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from TwinTrackLogic.io import Volume
from TwinTrackLogic.pipeline import CaseResult
from TwinTrackLogic.review.levels import DEFAULT_CONTOUR_LEVELS
from TwinTrackLogic.worker import jobs
from TwinTrackLogic.worker.jobs import ensemble_job

from TwinTrackLib import outputs, sampledata
from TwinTrackLib.segmentation import segment_name, segment_voxel_counts
from TwinTrackLib.volumes import node_ijk_to_ras, volume_from_node

# work_for(volume) -> job body (progress, token) -> CaseResult
WorkFor = Callable[[Volume], Callable]


@dataclass
class ScenarioOutcome:
    ct_node: object
    agreement: outputs.AgreementScene
    result: CaseResult
    case: object
    progress_messages: list


def _check(condition: bool, message: str) -> None:
    # Explicit raises, not `assert`: the self-test must check even under python -O.
    if not condition:
        raise AssertionError(message)


def _finished(outcome: Optional[jobs.Outcome], message: str) -> jobs.Outcome:
    """``outcome``, which must be there (AssertionError with ``message`` otherwise)."""
    if outcome is None:
        raise AssertionError(message)
    return outcome


def run_job(work, timeout_s: float = 600.0) -> jobs.Outcome:
    job = jobs.BackgroundJob(work).start()
    return _finished(job.wait(timeout_s), f"the job did not finish within {timeout_s:.0f} s")


def run_scenario(scene, work_for: Optional[WorkFor] = None, level: float = 0.6,
                 timeout_s: float = 600.0) -> ScenarioOutcome:
    work_for = work_for or (lambda volume: ensemble_job(volume))
    case = sampledata.phantom_case()
    ct_node = sampledata.add_ct(scene, case)

    # 1. The CT goes through the core on the same physical points.
    volume = volume_from_node(ct_node)
    _check(not volume.geometry.differences(case.geometry),
           f"MRML -> core geometry changed: {volume.geometry.differences(case.geometry)}")
    _check(np.array_equal(volume.array, case.image), "MRML -> core changed the CT voxels")

    # 2. A cancelled run leaves nothing behind.
    before = scene.GetNumberOfNodes()
    cancelled = jobs.BackgroundJob(work_for(volume))
    cancelled.cancel()
    outcome = _finished(cancelled.start().wait(timeout_s), f"the cancelled job did not end within {timeout_s:.0f} s")
    _check(outcome.status == jobs.CANCELLED, f"cancelled job ended as {outcome.status}: {outcome.message}")
    _check(scene.GetNumberOfNodes() == before, "a cancelled run added nodes to the scene")

    # 3. The real run, off the main thread, with progress.
    messages = []
    job = jobs.BackgroundJob(work_for(volume)).start()
    while job.wait(0.05) is None:
        messages.append(job.poll()[1])
    outcome = _finished(job.poll()[2], "the finished run has no outcome")
    _check(outcome.status == jobs.DONE, f"the run failed: {outcome.message}\n{outcome.details}")
    result: CaseResult = outcome.value
    _check(result.calibrated.shape == case.image.shape, "the agreement map is not on the CT grid")
    _check(float(result.calibrated.min()) >= 0.0 and float(result.calibrated.max()) <= 1.0,
           "calibrated probabilities leave [0, 1]")
    _check(result.raters >= 1, "the calibrator does not know its rater count")

    # 4. The scene: maps on the CT's grid, contours, chart, legend.
    agreement = outputs.AgreementScene(scene, ct_node, result, level=level)
    matrix_ct, matrix_map = node_ijk_to_ras(ct_node), node_ijk_to_ras(agreement.calibrated_node)
    _check(np.allclose(matrix_ct, matrix_map), "the agreement map does not lie on the CT's voxels")
    counts = segment_voxel_counts(agreement.segmentation_node)
    for contour_level in DEFAULT_CONTOUR_LEVELS:
        expected = int(np.count_nonzero(result.calibrated >= contour_level))
        _check(counts[segment_name(contour_level)] == expected,
               f"segment at {contour_level:.0%} has {counts[segment_name(contour_level)]} voxels, "
               f"the map {expected}")

    # 5. Review controls read from the precomputed curve.
    voxel_ml = result.geometry.voxel_volume_ml
    texts = agreement.readouts()
    expected_ml = np.count_nonzero(result.calibrated >= level) * voxel_ml
    _check(f"{expected_ml:.1f} mL" in texts["level"], f"level read-out {texts['level']!r} is not {expected_ml:.1f} mL")
    agreement.set_level(0.8)
    _check(abs(agreement.calibrated_node.GetDisplayNode().GetLowerThreshold() - 0.8) < 1e-9,
           "the display threshold does not follow the level")
    agreement.set_level(level)

    # 6. A rerun replaces, never accumulates.
    made = len(outputs.output_nodes(scene))
    agreement = outputs.AgreementScene(scene, ct_node, result, level=level)
    _check(len(outputs.output_nodes(scene)) == made, "a rerun left the previous result's nodes behind")
    return ScenarioOutcome(ct_node, agreement, result, case, messages)
