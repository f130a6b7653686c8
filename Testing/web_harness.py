"""Drive `twintrack review` in headless Chromium: shared by the browser tests and the benchmark.

The server runs as the user runs it (``python -m TwinTrackCLI review``) on a free loopback
port; its URL, token included, is read from what it prints. Playwright drives Debian's
chromium (``/usr/bin/chromium`` or ``$CHROMIUM``), never a browser of its own.

Frames: trame-slicer streams each view as an ``<img>`` whose ``src`` changes per frame. An
observer records when each frame arrives; :func:`settled_views` waits for a frame newer than
an action and then for quiet (each change brings an interactive frame, then a sharper one).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPOSITORY = Path(__file__).resolve().parents[1]
VIEWS = "#views img.image-display-area >> visible=true"
URL_PATTERN = re.compile(r"Open (http://\S+)")


def chromium_path():
    return os.environ.get("CHROMIUM") or shutil.which("chromium")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ReviewServer:
    """``twintrack review ARGS`` in a child process, until :meth:`stop`."""

    def __init__(self, log_path: Path, *args: str, timeout_s: float = 240.0):
        self.port = free_port()
        self.log_path = Path(log_path)
        self.started = time.perf_counter()
        environment = dict(os.environ, PYTHONUNBUFFERED="1")
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "TwinTrackCLI", "review", "--host", "127.0.0.1", "--port", str(self.port),
             *args], stdout=self._log, stderr=subprocess.STDOUT, cwd=REPOSITORY, env=environment)
        self.url = self._wait_for_url(timeout_s)
        self.ready_s = time.perf_counter() - self.started
        self.base = f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _wait_for_url(self, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = URL_PATTERN.search(self.log())
            if found:
                return found.group(1)
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"the review server did not start:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()


def launch_browser(playwright):
    return playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])


OBSERVE_FRAMES = """() => {
    window.__frames = [performance.now()];  // the frame on show counts as the first
    const observer = new MutationObserver(() => window.__frames.push(performance.now()));
    for (const img of document.querySelectorAll('#views img.image-display-area')) {
        observer.observe(img, {attributes: true, attributeFilter: ['src']});
    }
    window.__keys = [];
    document.addEventListener('keydown', () => window.__keys.push(performance.now()), true);
}"""


def wait_for_first_frame(page, timeout_s: float = 120.0) -> float:
    """Wait until every view shows a decoded frame; returns seconds waited."""
    started = time.perf_counter()
    page.wait_for_function(
        """() => {
            const shown = [...document.querySelectorAll('#views img.image-display-area')]
                .filter(img => img.naturalWidth > 0 && img.getBoundingClientRect().width > 0);
            return shown.length >= 4;
        }""", timeout=timeout_s * 1000)
    page.evaluate(OBSERVE_FRAMES)
    return time.perf_counter() - started


def now_ms(page) -> float:
    return page.evaluate("performance.now()")


def wait_for_frame_after(page, since_ms: float, quiet_ms: float = 600.0, timeout_s: float = 20.0) -> float:
    """Wait for a frame newer than ``since_ms``, then ``quiet_ms`` without frames; returns the
    time (ms, page clock) of the first frame after ``since_ms``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        frames, now = page.evaluate("[window.__frames, performance.now()]")
        newer = [t for t in frames if t > since_ms]
        if newer and now - frames[-1] >= quiet_ms:
            return newer[0]
        time.sleep(0.05)
    raise AssertionError(f"no new frame after {since_ms:.0f} ms")


def view_pixels(page) -> dict:
    """RGB arrays of the visible views, by position: 'top-left', 'top-right', 'bottom-left', 'bottom-right'."""
    from PIL import Image

    views = page.locator(VIEWS)
    boxes = []
    for index in range(views.count()):
        element = views.nth(index)
        box = element.bounding_box()
        rgb = np.asarray(Image.open(io.BytesIO(element.screenshot())).convert("RGB"), dtype=np.int16)
        boxes.append((box["y"], box["x"], rgb))
    middle_y = np.median([b[0] for b in boxes])
    middle_x = np.median([b[1] for b in boxes])
    named = {}
    for y, x, rgb in boxes:
        named[("top" if y < middle_y else "bottom") + "-" + ("left" if x < middle_x else "right")] = rgb
    return named


def coloured_share(rgb: np.ndarray) -> float:
    """Fraction of pixels that are clearly coloured (the CT is grey, the agreement map is not)."""
    return float(((rgb.max(axis=2) - rgb.min(axis=2)) > 60).mean())
