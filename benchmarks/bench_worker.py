"""The worker process against the CLI and the in-process thread, on the demo phantom.

Measures, in one run and on the same case (demo phantom, demo bundle, CPU):

1. inference end to end: ``twintrack predict`` as a user runs it (a new Python, reading the CT,
   writing its outputs) against :func:`TwinTrackLogic.worker.process.start_inference` (a new Python via
   the worker, CT written to and result read from its private folder) and against the
   in-process :class:`~TwinTrackLogic.worker.jobs.BackgroundJob` (no new Python, no files);
   rounds alternate so that machine load hits all three alike; medians and ratios are printed;
2. cancel latency: Cancel pressed once the ensemble is under way -> the outcome is in, the
   process tree is gone and the private folder removed;
3. with ``--gil-model``: the thread and the worker while the main thread holds the GIL between
   100 ms polls, the audit's model of Slicer's idle Qt loop under PythonQt (finding F1);
4. Apply -> first overlay, headless (slicer-core): the presenter with the worker process, polled
   every 100 ms like the module's QTimer, until the agreement map is the slice views' foreground.

    .venv/bin/python benchmarks/bench_worker.py [--rounds 5] [--cancels 5] [--size small|full] [--gil-model]
                                                [--no-overlay]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPOSITORY), str(REPOSITORY / "TwinTrack")]

from TwinTrackLogic.worker import jobs  # noqa: E402
from TwinTrackLogic.worker import process as worker
from TwinTrackLogic.io import Volume, write_image  # noqa: E402
from TwinTrackLogic.phantom import generate_case  # noqa: E402

POLL_S = 0.1  # the module's QTimer interval


def time_cli(image: Path, folder: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "TwinTrackCLI", "predict", "--image", str(image), "--device", "cpu",
                    "--out", str(folder / "probability.nii.gz")], check=True, capture_output=True,
                   cwd=str(REPOSITORY))
    return time.perf_counter() - started


def time_worker(volume: Volume) -> float:
    started = time.perf_counter()
    outcome = worker.start_inference(volume, device="cpu").wait(600)
    assert outcome.status == jobs.DONE, outcome.message
    return time.perf_counter() - started


def time_thread(volume: Volume) -> float:
    started = time.perf_counter()
    outcome = jobs.BackgroundJob(jobs.ensemble_job(volume, device="cpu")).start().wait(600)
    assert outcome.status == jobs.DONE, outcome.message
    return time.perf_counter() - started


def held_gil_wait(job) -> None:
    """Wait as Slicer's main thread does (the audit's model of PythonQt, F1): the Qt loop idles
    for 100 ms *holding* the GIL (a ctypes.PyDLL call keeps it), then the QTimer's poll runs."""
    import ctypes

    usleep = ctypes.PyDLL(None).usleep
    while job.poll()[2] is None:
        usleep(int(POLL_S * 1e6))


def time_in_gil_model(start) -> float:
    started = time.perf_counter()
    job = start()
    held_gil_wait(job)
    outcome = job.poll()[2]
    assert outcome.status == jobs.DONE, outcome.message
    return time.perf_counter() - started


def cancel_latency(volume: Volume) -> float:
    job = worker.start_inference(volume, device="cpu")
    while job.poll()[0] < 0.2:
        assert job.poll()[2] is None
        time.sleep(0.005)
    started = time.perf_counter()
    job.cancel()
    outcome = job.poll()[2]
    latency = time.perf_counter() - started
    assert outcome.status == jobs.CANCELLED and not job.workdir.exists()
    if os.name != "nt":
        try:
            os.killpg(job.pid, 0)
            raise AssertionError("a process of the worker's group survived")
        except ProcessLookupError:
            pass
    return latency


def apply_to_overlay() -> float:
    from TwinTrackLib import display, headless, sampledata
    from TwinTrackLib.presenter import Parameters, Presenter

    scene, application_logic, _ = headless.make_scene()
    views = [headless.HeadlessSliceView(scene, application_logic, name) for name in ("Red", "Yellow", "Green")]
    presenter = Presenter(scene)
    params = Parameters(device="cpu")
    params.inputVolume = sampledata.load_demo_phantom(scene)
    started = time.perf_counter()
    presenter.apply(params)
    while True:
        time.sleep(POLL_S)
        presenter.poll(params)
        agreement = presenter.agreement
        if agreement is not None and all(c.GetForegroundVolumeID() == agreement.calibrated_node.GetID()
                                         for c in display.slice_composite_nodes(scene)):
            break
        assert presenter.job is not None, presenter.take_error()
    elapsed = time.perf_counter() - started
    del views
    scene.Clear(True)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cancels", type=int, default=5)
    parser.add_argument("--size", choices=("small", "full"), default="small",
                        help="phantom size: small (the demo, 96 x 96 x 48) or full (512 x 512 x 100)")
    parser.add_argument("--no-overlay", action="store_true", help="skip the Apply -> first overlay measurement")
    parser.add_argument("--gil-model", action="store_true",
                        help="also time the thread and the worker while the main thread holds the GIL between polls")
    args = parser.parse_args()
    case = generate_case(1, raters=5, seed=0, size=args.size)
    volume = Volume(case.image, case.geometry)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        image = write_image(folder / "ct.nii.gz", case.image, case.geometry)
        time_worker(volume)  # warm the file cache for both
        times = {"cli": [], "worker": [], "thread": []}
        for _ in range(args.rounds):
            times["cli"].append(time_cli(image, folder))
            times["worker"].append(time_worker(volume))
            times["thread"].append(time_thread(volume))
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"{args.size} phantom {case.image.shape} (z, y, x), CPU, {args.rounds} alternating rounds, median s:")
    for name, label in (("cli", "twintrack predict (new Python)"), ("worker", "worker process (new Python)"),
                        ("thread", "in-process thread")):
        print(f"  {label:32s} {median[name]:6.2f} s   (all: {', '.join(f'{t:.2f}' for t in times[name])})")
    print(f"  worker / CLI    = {median['worker'] / median['cli']:.2f}x  (target <= 1.2x)")
    print(f"  worker / thread = {median['worker'] / median['thread']:.2f}x  (outside Slicer; inside, "
          "the thread only runs while Slicer's main thread runs Python)")
    if args.gil_model and os.name != "nt":
        thread = time_in_gil_model(lambda: jobs.BackgroundJob(jobs.ensemble_job(volume, device="cpu")).start())
        process = time_in_gil_model(lambda: worker.start_inference(volume, device="cpu"))
        print(f"main thread holding the GIL between {POLL_S * 1000:.0f} ms polls (Slicer's idle loop, modelled): "
              f"thread {thread:.2f} s, worker process {process:.2f} s (thread / worker = {thread / process:.2f}; "
              f"free-running: thread {median['thread']:.2f} s, worker {median['worker']:.2f} s)")
    latencies = [cancel_latency(volume) for _ in range(args.cancels)]
    if latencies:
        print(f"cancel latency over {args.cancels} runs: median {statistics.median(latencies) * 1000:.0f} ms, "
              f"max {max(latencies) * 1000:.0f} ms (target < 1000 ms)")
    if args.no_overlay:
        return
    try:
        overlay = apply_to_overlay()
        print(f"Apply -> first overlay (headless presenter, worker process, {POLL_S * 1000:.0f} ms poll): "
              f"{overlay:.2f} s")
    except ImportError as error:
        print(f"Apply -> first overlay: skipped, needs slicer-core ({error})")


if __name__ == "__main__":
    main()
