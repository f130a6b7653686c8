"""OHIF Viewer over Orthanc's DICOMweb, in headless Chromium: the setup of Testing/test_ohif.py.

OHIF's prebuilt app (``npm pack @ohif/app@3.13.2``, unpacked; .ci/run caches it under
.cache/ohif/) is served by ONE small loopback server that also forwards ``/dicom-web`` and
``/wado`` to Orthanc, so the viewer and its data share an origin (no CORS). The forwarded requests
keep the browser's Host header, so the BulkDataURIs Orthanc writes point back at this server; they
carry the test PACS's credentials, which the page never sees. ``/app-config.js`` is generated:
one DICOMweb data source, OHIF's default extensions and modes.

Playwright drives Debian's chromium (``/usr/bin/chromium`` or ``$CHROMIUM``) with SwiftShader's
software WebGL; it never downloads a browser of its own. OHIF's state is read from the page
(``window.services``, ``window.cornerstone``).
"""

from __future__ import annotations

import base64
import http.client
import json
import mimetypes
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

import numpy as np

from web_harness import chromium_path  # noqa: F401 (one place that finds Debian's chromium)

REPOSITORY = Path(__file__).resolve().parents[1]
OHIF_VERSION = "3.13.2"
FORWARDED = ("/dicom-web/", "/wado")
# Headers that describe one connection, not the message: never forwarded.
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization",
              "proxy-authenticate", "content-length", "host", "authorization"}
BROWSER_ARGS = ["--no-sandbox", "--ignore-gpu-blocklist", "--use-gl=angle", "--use-angle=swiftshader",
                "--enable-unsafe-swiftshader", "--enable-webgl", "--disable-dev-shm-usage"]


def ohif_dist() -> Optional[Path]:
    """OHIF's prebuilt ``dist/`` folder ($TWINTRACK_OHIF_DIST, else .cache/ohif/package/dist), or None."""
    folder = Path(os.environ.get("TWINTRACK_OHIF_DIST") or REPOSITORY / ".cache" / "ohif" / "package" / "dist")
    return folder if (folder / "index.html").is_file() else None


def app_config(base: str) -> str:
    """OHIF's configuration: Orthanc (through this server) as the only data source."""
    source = {
        "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb", "sourceName": "orthanc",
        "configuration": {
            "friendlyName": "TwinTrack test PACS", "name": "orthanc",
            "qidoRoot": f"{base}/dicom-web", "wadoRoot": f"{base}/dicom-web", "wadoUriRoot": f"{base}/wado",
            "qidoSupportsIncludeField": False, "imageRendering": "wadors", "thumbnailRendering": "wadors",
            "enableStudyLazyLoad": True, "supportsFuzzyMatching": False, "supportsWildcard": True,
            "staticWado": False, "singlepart": "bulkdata,video",
            "bulkDataURI": {"enabled": True, "relativeResolution": "studies"},
            "omitQuotationForMultipartRequest": True,
        },
    }
    config = {
        "routerBasename": "/", "extensions": [], "modes": [], "customizationService": {}, "showStudyList": True,
        "maxNumberOfWebWorkers": 2, "showWarningMessageForCrossOrigin": False, "showCPUFallbackMessage": False,
        "showLoadingIndicator": True, "strictZSpacingForVolumeViewport": True, "defaultDataSourceName": "orthanc",
        "investigationalUseDialog": {"option": "never"}, "dataSources": [source],
    }
    return f"window.config = {json.dumps(config, indent=1)};\n"


class ViewerServer:
    """Serves ``dist`` and forwards DICOMweb to ``orthanc_url`` on a free loopback port, until :meth:`stop`."""

    def __init__(self, dist: Path, orthanc_url: str, user: str, password: str):
        target = urlsplit(orthanc_url)
        self.dist = Path(dist).resolve()
        self.requests: list = []  # (method, path, status) of every forwarded request and every 404
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # the test reads self.requests, not stderr
                pass

            def do_GET(self):
                server._answer(self)

            def do_HEAD(self):
                server._answer(self)

            def do_POST(self):
                server._answer(self)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._orthanc = (target.hostname, target.port)
        self._authorization = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self._config = app_config(self.url).encode()
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _answer(self, handler) -> None:
        path = urlsplit(handler.path).path
        if path.startswith(FORWARDED):
            self._forward(handler)
        elif path == "/app-config.js":
            self._send(handler, 200, self._config, "application/javascript")
        else:
            self._static(handler, path)

    def _static(self, handler, path: str) -> None:
        file = (self.dist / path.lstrip("/")).resolve()
        if self.dist not in file.parents or not file.is_file():
            if Path(path).suffix:  # a file the app asked for and dist/ lacks
                self.requests.append((handler.command, handler.path, 404))
                self._send(handler, 404, b"not found", "text/plain")
                return
            file = self.dist / "index.html"  # the app's own routes (/viewer?StudyInstanceUIDs=...)
        kind = "application/wasm" if file.suffix == ".wasm" else mimetypes.guess_type(file.name)[0]
        self._send(handler, 200, file.read_bytes(), kind or "application/octet-stream")

    def _forward(self, handler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Host"] = handler.headers.get("Host", f"127.0.0.1:{self.port}")  # BulkDataURIs point here
        headers["Authorization"] = self._authorization
        connection = http.client.HTTPConnection(*self._orthanc, timeout=120)
        try:
            connection.request(handler.command, handler.path, body=body, headers=headers)
            response = connection.getresponse()
            content = response.read()
            passed = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
        finally:
            connection.close()
        self.requests.append((handler.command, handler.path, response.status))
        self._send(handler, response.status, content, None, passed)

    @staticmethod
    def _send(handler, status: int, content: bytes, kind: Optional[str], headers=()) -> None:
        handler.send_response(status)
        if kind:
            handler.send_header("Content-Type", kind)
        for key, value in headers:
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(content)))
        # Cross-origin isolation: OHIF's volume loading uses SharedArrayBuffer.
        handler.send_header("Cross-Origin-Opener-Policy", "same-origin")
        handler.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        handler.send_header("Cache-Control", "no-store")
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(content)


def launch_browser(playwright):
    return playwright.chromium.launch(executable_path=chromium_path(), args=BROWSER_ARGS)


def new_context(browser):
    """A fresh browser profile for one study: device scale 1, no service worker, OHIF's
    first-visit tour marked as seen (it would float over the viewport)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, device_scale_factor=1,
                                  service_workers="block")
    context.add_init_script("localStorage.setItem('shownTours', JSON.stringify(['basicViewerTour']))")
    return context


def open_study(page, viewer: ViewerServer, study_uid: str, objects: int, timeout_s: float = 120.0) -> dict:
    """Open ``study_uid`` in OHIF's default mode; wait for its ``objects`` display sets and the first
    image. Returns the display sets' instance UIDs by modality."""
    page.goto(f"{viewer.url}/viewer?StudyInstanceUIDs={study_uid}")
    page.wait_for_function(
        """(objects) => {
            const services = window.services, cs = window.cornerstone;
            if (!services || !cs || services.displaySetService.getActiveDisplaySets().length < objects) return false;
            const engine = cs.getRenderingEngines()[0];
            return !!engine && engine.getViewports().some(vp => vp.getCurrentImageId && vp.getCurrentImageId());
        }""", arg=objects, timeout=timeout_s * 1000)
    return page.evaluate("""() => Object.fromEntries(window.services.displaySetService.getActiveDisplaySets()
                              .map(set => [set.Modality, set.displaySetInstanceUID]))""")


def open_display_set(page, uid: str) -> None:
    """Double-click a series in OHIF's study browser, as a reader does."""
    page.locator(f"[id='thumbnail-{uid}']").dblclick()


SEGMENTATION_STATE = """(viewportId) => {
    const cs = window.cornerstone, service = window.services.segmentationService;
    const [segmentation] = service.getSegmentations();
    if (!segmentation) return null;
    const labelmap = segmentation.representationData.Labelmap;
    const segments = Object.values(segmentation.segments).map(segment => ({
        index: segment.segmentIndex, label: segment.label, binding: labelmap.segmentBindings[segment.segmentIndex],
        color: Array.from(service.getSegmentColor(viewportId, segmentation.segmentationId, segment.segmentIndex))}));
    const images = [];
    for (const [id, layer] of Object.entries(labelmap.labelmaps)) {
        for (const imageId of layer.imageIds) {
            const image = cs.cache.getImage(imageId);
            const data = image.voxelManager.getScalarData();
            const voxels = [];
            for (let i = 0; i < data.length; i++) if (data[i]) voxels.push([i, data[i]]);
            images.push({labelmap: id, referenced: image.referencedImageId, voxels});
        }
    }
    return {id: segmentation.segmentationId, segments, images};
}"""

VOLUME_STATE = """(volumeId) => {
    const volume = window.cornerstone.cache.getVolume(volumeId);
    if (!volume) return null;
    const bytes = new Uint8Array(new Float32Array(volume.voxelManager.getCompleteScalarDataArray()).buffer);
    let text = '';
    for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return {dimensions: volume.dimensions, referenced: volume.referencedImageIds, data: btoa(text)};
}"""

VIEWPORTS = """() => window.cornerstone.getRenderingEngines()[0].getViewports().map(vp => ({
    id: vp.id, actors: vp.getActors().map(actor => actor.referencedId || actor.uid),
    current: vp.getCurrentImageId ? vp.getCurrentImageId() : null}))"""

# Render a viewport and wait until cornerstone says the frame is drawn, then for the browser to
# paint it (SwiftShader on a busy machine can take longer than any fixed pause). A render request
# that coincides with one under way can go without its own event: ask again, and after 15 s go
# on regardless (changed_when_shown retries, and the placement check names the slice on screen).
RENDERED = """async (vp) => {
    const event = window.cornerstone.Enums.Events.IMAGE_RENDERED;
    for (let attempt = 0; attempt < 3; attempt++) {
        const drawn = await new Promise(resolve => {
            const timer = setTimeout(() => resolve(false), 5000);
            vp.element.addEventListener(event, () => { clearTimeout(timer); resolve(true); }, {once: true});
            vp.render();
        });
        if (drawn) break;
    }
    await new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)));
}"""

# Bring the slice through ``world`` (volume viewports: move the camera along its normal, as
# scrolling does) or the image ``imageId`` (stack viewports) into view.
CURRENT_IMAGE_ID = """(viewportId) => window.cornerstone.getRenderingEngines()[0].getViewport(viewportId)
    .getCurrentImageId()"""


def show_slice_and_stay(page, viewport_id: str, image_id: str, timeout_s: float = 30.0) -> None:
    """Show ``image_id`` in the viewport and wait until it stays there for a second: OHIF jumps to a
    segmentation's centre slice on its own after loading it, which can come after our request."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        page.evaluate(SHOW_SLICE, [viewport_id, image_id, None])
        page.wait_for_timeout(1000)
        if page.evaluate(CURRENT_IMAGE_ID, viewport_id) == image_id:
            return
    raise AssertionError(f"OHIF did not stay on {image_id} for a second within {timeout_s:g} s")


SHOW_SLICE = """async ([viewportId, imageId, world]) => {
    const rendered = %s;
    const vp = window.cornerstone.getRenderingEngines()[0].getViewport(viewportId);
    if (imageId) {
        await vp.setImageIdIndex(vp.getImageIds().indexOf(imageId));
    } else {
        const camera = vp.getCamera(), n = camera.viewPlaneNormal;
        const step = (world[0] - camera.focalPoint[0]) * n[0] + (world[1] - camera.focalPoint[1]) * n[1]
                   + (world[2] - camera.focalPoint[2]) * n[2];
        vp.setCamera({focalPoint: camera.focalPoint.map((v, i) => v + step * n[i]),
                      position: camera.position.map((v, i) => v + step * n[i])});
    }
    await rendered(vp);
}""" % RENDERED

ACTOR_VISIBLE = """async ([viewportId, actorId, visible]) => {
    const vp = window.cornerstone.getRenderingEngines()[0].getViewport(viewportId);
    vp.getActors().find(a => (a.referencedId || a.uid) === actorId).actor.setVisibility(visible);
    await (%s)(vp);
}""" % RENDERED

SEGMENTS_VISIBLE = """async ([viewportId, segmentationId, indices, visible]) => {
    for (const index of indices) {
        window.services.segmentationService.setSegmentVisibility(viewportId, segmentationId, index, visible);
    }
    await (%s)(window.cornerstone.getRenderingEngines()[0].getViewport(viewportId));
}""" % RENDERED

# The view's plane in LPS mm: canvas (x, y) -> origin + x * right + y * down (cornerstone's views
# are orthographic, so three points give the whole mapping).
VIEW_PLANE = """(viewportId) => {
    const vp = window.cornerstone.getRenderingEngines()[0].getViewport(viewportId);
    const origin = vp.canvasToWorld([0, 0]), right = vp.canvasToWorld([1, 0]), down = vp.canvasToWorld([0, 1]);
    return {origin: Array.from(origin), right: right.map((v, i) => v - origin[i]), down: down.map((v, i) => v - origin[i]),
            width: vp.canvas.width, height: vp.canvas.height, cssWidth: vp.canvas.clientWidth};
}"""

# Cornerstone draws each viewport into a 2D canvas: keep its pixels, then list the (x, y) pixel
# centres that differ from the kept ones by more than ``tolerance`` in a channel.
KEEP_CANVAS = """(viewportId) => {
    const canvas = window.cornerstone.getRenderingEngines()[0].getViewport(viewportId).canvas;
    window.__twintrackKept = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
}"""

CANVAS_CHANGES = """([viewportId, tolerance]) => {
    const canvas = window.cornerstone.getRenderingEngines()[0].getViewport(viewportId).canvas;
    const now = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    const kept = window.__twintrackKept, changed = [];
    for (let i = 0; i < now.length; i += 4) {
        if (Math.max(Math.abs(now[i] - kept[i]), Math.abs(now[i + 1] - kept[i + 1]),
                     Math.abs(now[i + 2] - kept[i + 2])) > tolerance) {
            const pixel = i / 4;
            changed.push([pixel % canvas.width + 0.5, Math.floor(pixel / canvas.width) + 0.5]);
        }
    }
    return changed;
}"""


class ViewPlane:
    """What one viewport shows: canvas pixels <-> LPS mm on the plane of its current slice."""

    def __init__(self, page, viewport_id: str):
        plane = page.evaluate(VIEW_PLANE, viewport_id)
        assert plane["width"] == plane["cssWidth"], "the canvas is scaled: run the browser at device scale 1"
        self.shape = (plane["height"], plane["width"])
        self.origin = np.asarray(plane["origin"])
        self.axes = np.column_stack([plane["right"], plane["down"]])  # mm per canvas pixel

    def to_world(self, canvas_xy: np.ndarray) -> np.ndarray:
        return self.origin + np.asarray(canvas_xy, float) @ self.axes.T

    def to_canvas(self, world: np.ndarray) -> np.ndarray:
        return np.linalg.lstsq(self.axes, (np.asarray(world, float) - self.origin).T, rcond=None)[0].T


def changed_when_shown(page, viewport_id: str, show, tolerance: int = 8, timeout_s: float = 30.0) -> np.ndarray:
    """(x, y) canvas pixels that showing an object (``show(bool)`` toggles it) changes.

    OHIF marks a Parametric Map loaded a moment before its texture reaches the screen, so this
    waits (up to ``timeout_s``) until showing the object changes the picture at all.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        show(False)
        page.evaluate(KEEP_CANVAS, viewport_id)
        show(True)
        changed = np.asarray(page.evaluate(CANVAS_CHANGES, [viewport_id, tolerance]), float).reshape(-1, 2)
        if len(changed) or time.monotonic() > deadline:
            return changed
        page.wait_for_timeout(500)


def wait_for(page, condition: str, arg, problems: list, timeout_s: float = 60.0, what: str = "OHIF"):
    """Poll ``condition`` (a JS function of ``arg``) until it returns a truthy value; stop at the
    first console error instead of waiting out the timeout (a failed load never turns true)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = page.evaluate(condition, arg)
        if value:
            return value
        if problems:
            raise AssertionError(f"{what}: the console reported {problems}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: nothing after {timeout_s:.0f} s")
        page.wait_for_timeout(250)
