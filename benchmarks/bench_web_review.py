"""How fast is `twintrack review` in a real browser? Start-up, first frame, slider step to frame.

Starts the review of the demo phantom on a free loopback port (as a user would), opens it in
headless Debian chromium (Playwright), and measures:

- process launch to the URL being printed, to the first frame in all four views, and to the
  agreement read-out after Run ensemble;
- slider step to new frame: ``--steps`` single steps of the agreement slider (arrow keys on the
  thumb, alternating down and up, one level each), from the page's own ``keydown`` event to the
  first new frame of any view, and to the new read-out text; median and 90th percentile.

The reference, in the same run: the same measurements with trame-slicer's default 8x
anti-aliasing (``TWINTRACK_REVIEW_MULTISAMPLES=8``); the review renders with none. Ratios
are printed. Target: slider step to frame under 150 ms median.

    .venv/bin/python benchmarks/bench_web_review.py [--steps 50] [--no-reference]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY / "Testing"))

import web_harness as harness  # noqa: E402

LEVEL = "#level-control .v-slider-thumb"


def measure(steps: int, multisamples: int, folder: Path) -> dict:
    from playwright.sync_api import sync_playwright

    os.environ["TWINTRACK_REVIEW_MULTISAMPLES"] = str(multisamples)
    server = harness.ReviewServer(folder / f"server_msaa{multisamples}.log", "--level", "60")
    try:
        with sync_playwright() as playwright:
            browser = harness.launch_browser(playwright)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(server.url)
            harness.wait_for_first_frame(page, timeout_s=180)
            first_frame_s = time.perf_counter() - server.started
            page.click("#run-button")
            page.wait_for_function("document.querySelector('#readout-level').textContent.includes('mL')",
                                   timeout=300000)
            harness.wait_for_frame_after(page, -1.0)
            readout_s = time.perf_counter() - server.started
            to_frame, to_text = [], []
            page.locator(LEVEL).focus()
            for step in range(steps):
                before = page.inner_text("#readout-level")
                since = harness.now_ms(page)
                page.keyboard.press("ArrowLeft" if (step // 10) % 2 == 0 else "ArrowRight")
                page.wait_for_function("(before) => document.querySelector('#readout-level').textContent !== before",
                                       arg=before, timeout=20000)
                text_ms = page.evaluate("performance.now()")
                frame_ms = harness.wait_for_frame_after(page, since, quiet_ms=400)
                key_ms = page.evaluate("(since) => window.__keys.find(t => t > since)", since)
                to_frame.append(frame_ms - key_ms)
                to_text.append(text_ms - key_ms)
            browser.close()
    finally:
        server.stop()
    return {"ready_s": server.ready_s, "first_frame_s": first_frame_s, "readout_s": readout_s,
            "frame": np.array(to_frame), "text": np.array(to_text)}


def summary(name: str, result: dict) -> None:
    frame, text = result["frame"], result["text"]
    print(f"{name}: launch -> URL {result['ready_s']:.1f} s, -> first frame {result['first_frame_s']:.1f} s, "
          f"-> read-out after Run {result['readout_s']:.1f} s")
    print(f"  slider step -> new frame: median {np.median(frame):.0f} ms, p90 {np.percentile(frame, 90):.0f} ms, "
          f"max {frame.max():.0f} ms ({frame.size} steps)")
    print(f"  slider step -> new read-out (upper bound, polled): median {np.median(text):.0f} ms, "
          f"p90 {np.percentile(text, 90):.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--no-reference", action="store_true", help="skip the 8x anti-aliasing reference run")
    args = parser.parse_args()
    if not harness.chromium_path():
        sys.exit("No chromium: apt-get install -y chromium (or set $CHROMIUM).")
    with tempfile.TemporaryDirectory(prefix="bench-web-") as folder:
        ours = measure(args.steps, 0, Path(folder))
        summary("twintrack review (no anti-aliasing)", ours)
        if args.no_reference:
            return
        reference = measure(args.steps, 8, Path(folder))
        summary("reference: trame-slicer's default 8x anti-aliasing", reference)
    ratio = np.median(reference["frame"]) / np.median(ours["frame"])
    print(f"median step -> frame: reference / review = {ratio:.2f}x; "
          f"target < 150 ms median: {'met' if np.median(ours['frame']) < 150 else 'NOT met'}")


if __name__ == "__main__":
    main()
