"""`twintrack review` end to end in headless Chromium (Playwright driving Debian's chromium).

One server (the demo phantom through the demo bundle, started by the test on a free loopback
port) and one page for the module; the tests run in order, as a reviewer would: the page
refuses visitors without the token; the first frame arrives in all four views; the ensemble
starts and is cancelled; it runs to the end; the slider moves the read-out to the volume the
map has at that level and the slice gains overlay pixels; band mode shows only the band; the
mask at the current level downloads. Screenshots go to Testing/artefacts/web/, or to
$TWINTRACK_SCREENSHOTS (e.g. docs/images for the documentation).

Skipped, with the reason, without the .[review] extra or chromium.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("trame_slicer", reason="the web review needs pip install -e '.[review]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="the browser tests need playwright (.[review])")
pytest.importorskip("PIL.Image", reason="the browser tests decode screenshots with Pillow")

import web_harness as harness  # noqa: E402

if not harness.chromium_path():
    pytest.skip("no chromium (apt-get install -y chromium)", allow_module_level=True)

REPOSITORY = Path(__file__).resolve().parents[1]
SHOTS = Path(os.environ.get("TWINTRACK_SCREENSHOTS") or REPOSITORY / "Testing" / "artefacts" / "web")
LEVEL = "#level-control .v-slider-thumb"


@pytest.fixture(scope="module")
def demo_result():
    """The demo phantom through the demo bundle, computed here: what the page must read out."""
    from TwinTrackLogic.io import Volume
    from TwinTrackLogic.worker.jobs import ensemble_job
    from TwinTrackLogic.phantom import generate_case
    from TwinTrackLogic.progress import CancelToken

    case = generate_case(1, raters=5, seed=0, size="small")  # TwinTrackLib.sampledata's demo case
    return ensemble_job(Volume(case.image, case.geometry))(lambda *_: None, CancelToken())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    review = harness.ReviewServer(tmp_path_factory.mktemp("review") / "server.log", "--level", "60")
    yield review
    review.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = harness.launch_browser(playwright)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    page = context.new_page()
    page.goto(server.url)
    harness.wait_for_first_frame(page)
    yield page
    context.close()


def _ml(result, low, high=None) -> str:
    p = result.calibrated
    inside = (p >= low) if high is None else (p >= low) & (p < high)
    return f"{np.count_nonzero(inside) * result.geometry.voxel_volume_ml:.1f} mL"


def _text(page, selector) -> str:
    return page.inner_text(selector).strip()


def _shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name))


def test_without_the_token_the_page_and_the_websocket_are_refused(server, browser):
    for url in (f"{server.base}/index.html", f"{server.base}/index.html?secret=wrong", f"{server.base}/ws",
                f"{server.base}/"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=10)
        assert refused.value.code == 403, url
    context = browser.new_context()  # no cookie from an earlier visit
    try:
        page = context.new_page()
        response = page.goto(f"{server.base}/index.html")
        assert response.status == 403
        assert "access token" in page.inner_text("body")
        opened = page.evaluate("""(url) => new Promise(done => {
            const socket = new WebSocket(url);
            socket.onopen = () => done(true);
            socket.onerror = () => done(false);
        })""", f"ws://127.0.0.1:{server.port}/ws")
        assert opened is False, "the websocket opened without the token"
    finally:
        context.close()


def test_the_first_frame_shows_the_ct_in_four_views(page):
    views = harness.view_pixels(page)
    assert sorted(views) == ["bottom-left", "bottom-right", "top-left", "top-right"]
    axial = views["bottom-right"]
    assert axial.std() > 10, "the axial view shows no CT"
    assert harness.coloured_share(axial) < 0.001, "an overlay before any run"
    assert _text(page, "#status") == "Press Run ensemble to compute the agreement map."


def _children(pid: int) -> list:
    """Process ids of ``pid``'s children (Linux /proc)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid):
            found.append(int(status.parent.name))
    return found


def test_the_ensemble_starts_and_cancel_stops_it(page, server):
    page.click("#run-button")
    page.wait_for_function("document.querySelector('#run-button').textContent.includes('Cancel')", timeout=30000)
    assert page.evaluate("window.trame.state.get('busy')") is True
    assert page.locator("#progress").is_visible()
    if Path("/proc").is_dir():
        assert _children(server.process.pid), "the ensemble runs in a worker process, and there is none"
    page.click("#run-button")
    page.wait_for_function("document.querySelector('#status').textContent.includes('Cancelled')", timeout=60000)
    assert _text(page, "#status") == "Cancelled; nothing was added to the scene."
    assert _text(page, "#readout-level") == ""
    assert page.text_content("#run-button").strip() == "Run ensemble"
    if Path("/proc").is_dir():
        assert _children(server.process.pid) == [], "Cancel left the worker process running"


def test_the_run_shows_the_map_and_the_slider_reads_out_its_volume(page, demo_result):
    page.click("#run-button")
    page.wait_for_function("document.querySelector('#readout-level').textContent.includes('mL')",
                           timeout=180000)
    harness.wait_for_frame_after(page, -1.0)
    at_60 = harness.view_pixels(page)["bottom-right"]
    assert _text(page, "#readout-level") == \
        f"≥ 60 % of annotators (3 of 5) expected to label tumour: {_ml(demo_result, 0.6)}"
    assert harness.coloured_share(at_60) > 0.002, "no agreement overlay in the axial view"
    _shot(page, "web_review.png")

    since = harness.now_ms(page)
    page.locator(LEVEL).press("PageDown")  # Vuetify: a tenth of the range per PageDown
    page.locator(LEVEL).press("PageDown")
    page.wait_for_function("document.querySelector('#readout-level').textContent.startsWith('≥ 40 %')")
    harness.wait_for_frame_after(page, since)
    at_40 = harness.view_pixels(page)["bottom-right"]
    assert page.locator(LEVEL).get_attribute("aria-valuenow") == "40"
    assert _text(page, "#readout-level") == \
        f"≥ 40 % of annotators (2 of 5) expected to label tumour: {_ml(demo_result, 0.4)}"
    # How many pixels the step recolours depends on the phantom's margin on the shown slice (18 on
    # today's demo case, whose tumour lies against a vessel); the view must have been redrawn, and
    # show more of the map.
    changed = np.count_nonzero(np.abs(at_40 - at_60).max(axis=2) > 24)
    assert changed > 0, "the view did not change between 60 % and 40 %"
    assert harness.coloured_share(at_40) > harness.coloured_share(at_60), "a lower level must show more of the map"


def test_band_mode_shows_only_the_ambiguous_band(page, demo_result):
    harness.wait_for_frame_after(page, -1.0)
    before = harness.view_pixels(page)["bottom-right"]
    rows, columns, _ = before.shape
    centre = before[rows // 2 - 2:rows // 2 + 3, columns // 2 - 2:columns // 2 + 3]
    # The views are centred on the tumour, whose core is above 80 %: coloured at the 40 % level.
    assert harness.coloured_share(centre) > 0.5

    since = harness.now_ms(page)
    page.click("#band-mode")
    page.wait_for_function("document.querySelector('#readout-band').textContent.includes('mL')")
    harness.wait_for_frame_after(page, since)
    band = harness.view_pixels(page)["bottom-right"]
    assert _text(page, "#readout-band") == \
        f"Ambiguous band 20 %–80 % of annotators (1 to 3 of 5): {_ml(demo_result, 0.2, 0.8)}"
    centre = band[rows // 2 - 2:rows // 2 + 3, columns // 2 - 2:columns // 2 + 3]
    assert harness.coloured_share(centre) < 0.5, "band mode still shows the tumour's core (above 80 %)"
    assert harness.coloured_share(band) > 0.001, "band mode shows nothing"
    _shot(page, "web_review_band.png")
    page.click("#band-mode")
    page.wait_for_function("document.querySelector('#readout-band').offsetParent === null")


def test_the_mask_at_the_current_level_downloads(page, demo_result, tmp_path):
    from TwinTrackLogic.io import read_image

    with page.expect_download(timeout=30000) as download:
        page.click("#export-button")
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    assert path.name == "twintrack_mask_40pct.nii.gz"
    mask = read_image(path)
    assert not mask.geometry.differences(demo_result.geometry)
    assert np.array_equal(mask.array > 0, demo_result.calibrated >= 0.4)


# --- a cohort: the case list, the annotators' masks, names that are not on the list ----------

@pytest.fixture(scope="module")
def cohort_page(browser, tmp_path_factory):
    from TwinTrackLogic.phantom import generate_case, write_case

    folder = tmp_path_factory.mktemp("cohort")
    for index in (3, 4):
        write_case(generate_case(index, raters=3, seed=2, size="small"), folder)
    review = harness.ReviewServer(folder.parent / "cohort_server.log", str(folder))
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(review.url)
    harness.wait_for_first_frame(page)
    yield page
    context.close()
    review.stop()


def test_a_cohort_lists_its_cases_and_shows_the_annotators(cohort_page):
    page = cohort_page
    assert page.evaluate("window.trame.state.get('case_names')") == ["case_003", "case_004"]
    harness.wait_for_frame_after(page, -1.0)
    first = harness.view_pixels(page)["bottom-right"]

    since = harness.now_ms(page)
    page.click("#case-control .v-field")
    page.get_by_role("option", name="case_004").click()
    harness.wait_for_frame_after(page, since)
    second = harness.view_pixels(page)["bottom-right"]
    assert np.count_nonzero(np.abs(second - first).max(axis=2) > 24) > 100, "the CT did not change"
    assert harness.coloured_share(second) < 0.001

    page.click("#run-button")  # the run centres the views on the tumour
    page.wait_for_function("document.querySelector('#readout-level').textContent.includes('mL')",
                           timeout=180000)
    harness.wait_for_frame_after(page, -1.0)
    without = harness.view_pixels(page)["bottom-right"]
    since = harness.now_ms(page)
    page.click("#show-raters")
    harness.wait_for_frame_after(page, since)
    outlined = harness.view_pixels(page)["bottom-right"]
    changed = np.count_nonzero(np.abs(outlined - without).max(axis=2) > 40)
    assert changed > 30, f"the annotators' outlines changed only {changed} pixels"


def _involvement_cells(page) -> list:
    return page.evaluate("""Array.from(document.querySelectorAll('#involvement-table tbody tr'))
        .map(tr => Array.from(tr.children).map(td => td.textContent.trim()))""")


def _expected_cells(involvement, level) -> list:
    """involvement.py's numbers at ``level``, as the table writes them."""
    from TwinTrackLogic.vessels import VESSEL_LABELS

    raters, readouts, rows = involvement.raters, involvement.vessels, []
    for name in VESSEL_LABELS:
        contact = involvement.contacts[name].at(level)
        rows.append([name, f"{contact.contact_deg:.0f}°", contact.category,
                     f"{round(readouts[name].contact_share * raters)} of {raters} experts",
                     f"{round(readouts[name].encasement_share * raters)} of {raters} experts"])
    return rows


def test_a_case_with_vessels_shows_the_involvement_table_and_its_read_out_follows_the_slider(cohort_page):
    from TwinTrackLogic.io import Volume
    from TwinTrackLogic.phantom import generate_case
    from TwinTrackLogic.progress import CancelToken
    from TwinTrackLogic.worker.jobs import ensemble_job

    # case_003 of the cohort folder, with its vessels.nii.gz, through the demo bundle in this process.
    case = generate_case(3, raters=3, seed=2, size="small")
    expected = ensemble_job(Volume(case.image, case.geometry), vessels=case.vessels)(
        lambda *_: None, CancelToken()).involvement
    touched = max(expected.vessels.values(), key=lambda vessel: vessel.contact_share)
    assert touched.contact_share >= 0.6, "case_003's tumour must touch a vessel at the page's 60 %"

    page = cohort_page
    page.click("#case-control .v-field")
    page.get_by_role("option", name="case_003").click()
    page.wait_for_function("window.trame.state.get('case_name') === 'case_003' && "
                           "!window.trame.state.get('review_enabled')")
    page.click("#run-button")
    page.wait_for_function("document.querySelector('#readout-level').textContent.includes('mL')", timeout=180000)
    page.wait_for_function("document.querySelector('#involvement-table').offsetParent !== null")
    assert _involvement_cells(page) == _expected_cells(expected, 0.6)
    assert "Vessels: case vessels.nii.gz; calibrated to 5 raters" in _text(page, "#involvement-note")

    page.click("#involvement-vessel .v-field")
    page.get_by_role("option", name=touched.name, exact=True).click()
    contact = expected.contacts[touched.name].at(0.6)
    page.wait_for_function(f"document.querySelector('#involvement-readout').textContent.startsWith({touched.name!r})")
    assert _text(page, "#involvement-readout") == f"{touched.name} at ≥ 60 %: {contact.contact_deg:.0f}° {contact.category}"

    page.locator(LEVEL).press("PageDown")  # 60 -> 50 %
    page.wait_for_function("document.querySelector('#involvement-readout').textContent.includes('≥ 50 %')")
    contact = expected.contacts[touched.name].at(0.5)
    assert _text(page, "#involvement-readout") == f"{touched.name} at ≥ 50 %: {contact.contact_deg:.0f}° {contact.category}"
    assert _involvement_cells(page) == _expected_cells(expected, 0.5)
    _shot(page, "web_review_involvement.png")


def test_a_case_name_that_is_not_on_the_list_is_refused(cohort_page):
    page = cohort_page
    # Rewriting the page's own copy of the list changes nothing: the server keeps its own.
    page.evaluate("window.trame.state.set('case_names', ['case_003', 'case_004', '../../../etc/passwd'])")
    page.evaluate("window.trame.state.set('case_name', '../../../etc/passwd')")
    page.wait_for_function("document.querySelector('#error') && "
                           "document.querySelector('#error').textContent.includes('No case named')")
    page.wait_for_function("window.trame.state.get('case_name') === 'case_003'")  # the case open before
