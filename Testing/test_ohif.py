"""TwinTrack's DICOM results in the OHIF Viewer, as a radiologist opens them from the PACS.

Orthanc (DICOMweb) holds a phantom CT; `twintrack predict --dicomweb ... --send` fetches it, runs
the pipeline and stores the Parametric Map and the SEG into its study (the PACS round trip).
OHIF 3.13.2's prebuilt app (Testing/ohif_harness.py) then opens that study in headless Chromium:
for an axial and an oblique CT, the SEG hydrates with its three agreement levels voxel-exact on the
CT slices they belong to, the map loads with OHIF's values (probability x 100) equal to ours on
every slice, both draw on the right pixels of the slice they are shown on, and nothing reaches the
console as an error. Read from OHIF's own state (window.services, cornerstone's cache) and from
screenshots with each object shown and hidden.

CI (CI=true) must run it: .ci/run installs chromium and caches OHIF under .cache/ohif/. A local
run without them skips, saying why.
"""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest

from dicom_helpers import IN_CI, phantom_ct

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _missing(reason: str):
    if IN_CI:
        pytest.fail(f"{reason}; .ci/run installs it", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


try:
    from playwright import sync_api
except ImportError:
    _missing("the OHIF test needs playwright (pip install -e '.[review]')")
pytest.importorskip("PIL.Image", reason="the OHIF test decodes screenshots with Pillow")
pydicom = pytest.importorskip("pydicom")
pytest.importorskip("dicomweb_client")

import ohif_harness as harness  # noqa: E402
from orthanc_server import PASSWORD, USER, orthanc  # noqa: E402
from TwinTrackCLI import main  # noqa: E402
from TwinTrackLogic.review.colormaps import DEFAULT_COLOR_MAP, map_colors  # noqa: E402
from TwinTrackLogic.dicom.export import DEFAULT_LEVELS, level_label, on_series_grid  # noqa: E402
from TwinTrackLogic.dicom.web import Pacs  # noqa: E402
from TwinTrackLogic.io import read_image  # noqa: E402
from TwinTrackLogic.io.dicom_series import check_series  # noqa: E402

if not harness.chromium_path():
    _missing("no chromium (apt-get install -y chromium)")
if harness.ohif_dist() is None:
    _missing(f"OHIF's prebuilt app is not in .cache/ohif/ (npm pack @ohif/app@{harness.OHIF_VERSION}; see .ci/run)")

CASES = {"axial": 0, "oblique": 2}  # phantom cases: identity direction; oblique (about 8 degrees)
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
PARAMETRIC_MAP_STORAGE = "1.2.840.10008.5.1.4.1.1.30"
SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
SOP_IN_IMAGE_ID = re.compile(r"/instances/([0-9.]+)/")
OHIF_PM_SCALE = 100.0  # OHIF multiplies a Parametric Map's values by 100 for display
VISIBLE_P = 0.3  # OHIF's rainbow ramp leaves lower probabilities nearly transparent


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("orthanc")
    with orthanc(folder) as url:
        credentials = folder / "pacs.json"
        credentials.write_text(json.dumps({"username": USER, "password": PASSWORD}))
        credentials.chmod(0o600)  # the PACS client refuses a credentials file others can read
        yield url, credentials


@pytest.fixture(scope="module")
def studies(pacs, tmp_path_factory):
    """Each case's CT stored in the PACS, then the round trip: predict fetches it and sends the results.

    The bundle is the demo bundle without its vessel stage, so the study holds the map and the SEG
    only: with an involvement report in the same study OHIF also draws the report's labels, which
    the pixel checks below cannot tell from the SEG's. The report's own OHIF check is
    Testing/test_dicom_sr.py; the round trip storing all three objects is Testing/test_dicom_pacs.py."""
    from bundle_helpers import demo_bundle_without_vessel_stage

    url, credentials = pacs
    bundle = demo_bundle_without_vessel_stage(tmp_path_factory.mktemp("bundle"))
    found = {}
    for name, index in CASES.items():
        folder = tmp_path_factory.mktemp(name)
        phantom_ct(index, folder / "ct")
        series = check_series(folder / "ct")
        Pacs(url, credentials).store([pydicom.dcmread(p) for p in series.files], series.study_uid)
        assert main(["predict", "--dicomweb", url, "--study", series.study_uid, "--series", series.series_uid,
                     "--dicomweb-credentials", str(credentials), "--send", "--out", str(folder / "p.nii.gz"),
                     "--bundle", str(bundle)]) == 0
        local = read_image(folder / "p.nii.gz")  # what predict computed: the reference for the viewer
        found[name] = series, on_series_grid(local.array, local.geometry, series)
    return found


@pytest.fixture(scope="module")
def viewer(pacs):
    server = harness.ViewerServer(harness.ohif_dist(), pacs[0], USER, PASSWORD)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = harness.launch_browser(playwright)
        yield browser
        browser.close()


def test_the_round_trip_stored_the_map_and_the_seg_in_the_cts_study(pacs, studies):
    url, credentials = pacs
    client = Pacs(url, credentials)._client
    for series, _ in studies.values():
        classes = {}
        for item in client.search_for_series(series.study_uid):
            uid = item["0020000E"]["Value"][0]
            classes[uid] = {i["00080016"]["Value"][0] for i in client.search_for_instances(series.study_uid, uid)}
        assert classes.pop(series.series_uid) == {CT_IMAGE_STORAGE}
        assert sorted(tuple(found) for found in classes.values()) == [(PARAMETRIC_MAP_STORAGE,), (SEGMENTATION_STORAGE,)]


def _sop(image_id: str) -> str:
    return SOP_IN_IMAGE_ID.search(image_id).group(1)


def _voxel_index(series, world) -> np.ndarray:
    """LPS mm -> continuous (x, y, z) voxel index on the CT's grid."""
    matrix = series.geometry.index_to_physical_matrix()
    return np.linalg.solve(matrix[:3, :3], (np.asarray(world, float) - matrix[:3, 3]).T).T


def _world(series, voxels_zyx) -> np.ndarray:
    matrix = series.geometry.index_to_physical_matrix()
    return (matrix[:3, :3] @ np.asarray(voxels_zyx, float)[:, ::-1].T).T + matrix[:3, 3]


def _placement(plane, series, changed, mask_2d, visible_2d, z) -> tuple:
    """Precision: share of the ``changed`` canvas pixels that fall on (or next to) a voxel of
    ``mask_2d`` on slice ``z``; recall: share of ``visible_2d``'s voxels whose pixel changed."""
    assert len(changed), "showing the object changed no pixel"
    index = _voxel_index(series, plane.to_world(changed))
    assert np.abs(index[:, 2] - z).max() < 0.5, "the object is drawn on another slice than the one shown"
    near = np.zeros_like(mask_2d)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            near |= np.roll(mask_2d, (dy, dx), axis=(0, 1))
    x, y = np.round(index[:, 0]).astype(int), np.round(index[:, 1]).astype(int)
    inside = (x >= 0) & (y >= 0) & (x < mask_2d.shape[1]) & (y < mask_2d.shape[0])
    precision = np.count_nonzero(near[y[inside], x[inside]]) / len(changed)
    voxels = np.argwhere(visible_2d)
    canvas = plane.to_canvas(_world(series, np.column_stack([np.full(len(voxels), z), voxels])))
    hit = np.zeros(plane.shape, bool)
    hit[(changed[:, 1] - 0.5).astype(int), (changed[:, 0] - 0.5).astype(int)] = True
    columns, rows = np.floor(canvas[:, 0]).astype(int), np.floor(canvas[:, 1]).astype(int)
    on_screen = (rows >= 1) & (columns >= 1) & (rows < hit.shape[0] - 1) & (columns < hit.shape[1] - 1)
    assert on_screen.all(), "part of the object is off screen"
    found = [hit[r - 1:r + 2, c - 1:c + 2].any() for r, c in zip(rows, columns)]
    return precision, float(np.mean(found))


def _check_segmentation(page, series, probability, sets, problems) -> None:
    harness.open_display_set(page, sets["SEG"])
    page.get_by_role("button", name="Yes").click()  # "Do you want to open this Segmentation?"
    harness.wait_for(page, "() => window.services.segmentationService.getSegmentations().length > 0", None,
                     problems, what="loading the SEG")
    viewport = next(vp for vp in page.evaluate(harness.VIEWPORTS) if vp["current"])
    state = page.evaluate(harness.SEGMENTATION_STATE, viewport["id"])
    assert [s["label"] for s in state["segments"]] == [level_label(level) for level in DEFAULT_LEVELS]
    palette = map_colors(DEFAULT_COLOR_MAP) * 255.0  # the colours the SEG recommends (as CIELab)
    for segment, level in zip(state["segments"], DEFAULT_LEVELS):
        np.testing.assert_allclose(segment["color"][:3], palette[int(round(level * 255))], atol=3)
    slice_of = {uid: z for z, uid in enumerate(series.sop_instance_uids)}
    for segment, level in zip(state["segments"], DEFAULT_LEVELS):
        binding = segment["binding"]
        mask = np.zeros(probability.shape, bool)
        for image in state["images"]:
            if image["labelmap"] != binding["labelmapId"] or not image["voxels"]:
                continue
            z = slice_of[_sop(image["referenced"])]
            voxels = np.asarray(image["voxels"])
            mask[z].flat[voxels[voxels[:, 1] == binding["labelValue"], 0]] = True
        expected = probability >= np.float32(level)
        assert expected.any()
        assert np.count_nonzero(mask != expected) == 0, f"segment {segment['index']} ({level:g}) is misplaced"
    # On screen: the largest slice of the lowest level, with every segment shown, then hidden.
    union = probability >= np.float32(DEFAULT_LEVELS[0])
    z = int(np.argmax(union.reshape(len(union), -1).sum(axis=1)))
    image_id = next(i["referenced"] for i in state["images"] if _sop(i["referenced"]) == series.sop_instance_uids[z])
    harness.show_slice_and_stay(page, viewport["id"], image_id)
    indices = [s["index"] for s in state["segments"]]
    changed = harness.changed_when_shown(page, viewport["id"], lambda visible: page.evaluate(
        harness.SEGMENTS_VISIBLE, [viewport["id"], state["id"], indices, visible]))
    precision, recall = _placement(harness.ViewPlane(page, viewport["id"]), series, changed, union[z], union[z], z)
    assert precision > 0.95 and recall > 0.95, (precision, recall)


def _check_parametric_map(page, series, probability, sets, problems) -> None:
    volume_id = sets["PMAP"]  # OHIF names the map's derived volume after its display set
    harness.open_display_set(page, volume_id)
    harness.wait_for(page, """(id) => window.cornerstone.getRenderingEngines()[0].getViewports()
                               .some(vp => vp.getActors().some(a => (a.referencedId || a.uid) === id))""",
                     volume_id, problems, what="loading the Parametric Map")
    harness.wait_for(page, "(id) => window.services.displaySetService.getDisplaySetByUID(id).isLoaded", volume_id,
                     problems, what="loading the Parametric Map")
    state = page.evaluate(harness.VOLUME_STATE, volume_id)
    assert state is not None, f"OHIF made no volume of the map; console: {problems}"
    values = np.frombuffer(base64.b64decode(state["data"]), "<f4").reshape(len(probability), *probability.shape[1:])
    order = [series.sop_instance_uids.index(_sop(image_id)) for image_id in state["referenced"]]
    assert order == list(range(len(probability))), "OHIF stacks the CT in another order"
    np.testing.assert_allclose(values / OHIF_PM_SCALE, probability, rtol=1e-6, atol=1e-7)
    # On screen: the slice with the most probability, the map actor shown, then hidden.
    z = int(np.argmax(probability.reshape(len(probability), -1).sum(axis=1)))
    (viewport,) = [vp for vp in page.evaluate(harness.VIEWPORTS) if volume_id in vp["actors"]]
    centre = _world(series, [[z, probability.shape[1] / 2, probability.shape[2] / 2]])[0]
    page.evaluate(harness.SHOW_SLICE, [viewport["id"], None, centre.tolist()])
    changed = harness.changed_when_shown(page, viewport["id"], lambda visible: page.evaluate(
        harness.ACTOR_VISIBLE, [viewport["id"], volume_id, visible]))
    precision, recall = _placement(harness.ViewPlane(page, viewport["id"]), series, changed, probability[z] > 0,
                                   probability[z] >= VISIBLE_P, z)
    assert precision > 0.95 and recall > 0.95, (precision, recall)


@pytest.mark.parametrize("name", list(CASES))
def test_ohif_shows_the_seg_and_the_map_on_the_right_voxels(name, studies, viewer, browser, tmp_path):
    series, probability = studies[name]
    context = harness.new_context(browser)
    page = context.new_page()
    problems: list = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    try:
        sets = harness.open_study(page, viewer, series.study_uid, objects=3)
        assert sorted(sets) == ["CT", "PMAP", "SEG"]
        _check_segmentation(page, series, probability, sets, problems)
        _check_parametric_map(page, series, probability, sets, problems)
    except Exception:
        page.screenshot(path=str(tmp_path / "ohif.png"))  # what the reader would have seen
        raise
    finally:
        context.close()
    assert problems == []
    assert [r for r in viewer.requests if r[2] >= 400] == []
