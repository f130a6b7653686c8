"""The worker process against the CLI and the in-process thread, on the demo phantom.

Measures, in one run and on the same case (demo phantom, demo bundle, CPU). The worker is started
as Slicer starts it: through a ``PythonSlicer`` that, like CTKAppLauncher, runs the interpreter as
its child (``Testing/slicer_app_stand_in.write_python_launcher``); "direct" is the same worker
with the interpreter started straight away, to show what the launcher costs.

1. inference end to end: ``twintrack predict`` as a user runs it (a new Python, reading the CT,
   writing its outputs) against :func:`TwinTrackLogic.worker.process.start_inference` (through the
   launcher, and direct; CT written to and result read from its private folder) and against the
   in-process :class:`~TwinTrackLogic.worker.jobs.BackgroundJob` (no new Python, no files);
   rounds alternate so that machine load hits all alike; medians and ratios are printed;
2. Cancel -> process tree gone (through the launcher): Cancel pressed once the ensemble is under
   way, until the outcome is in, the launcher and python-real are gone (Linux: /proc) and the
   private folder is removed;
3. with ``--gil-model``: the thread and the worker while the main thread holds the GIL between
   100 ms polls, the audit's model of Slicer's idle Qt loop under PythonQt (finding F1);
4. Apply -> first overlay, headless (slicer-core): the presenter with the worker process through
   the launcher, polled every 100 ms like the module's QTimer, until the agreement map is the
   slice views' foreground; median of ``--overlays`` runs, with the CLI's median as reference.

    .venv/bin/python benchmarks/bench_worker.py [--rounds 5] [--cancels 5] [--overlays 3]
                                                [--size small|full] [--gil-model] [--no-overlay]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPOSITORY), str(REPOSITORY / "TwinTrack"), str(REPOSITORY / "Testing")]

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


def time_worker(volume: Volume, python: Optional[str] = None) -> float:
    started = time.perf_counter()
    outcome = worker.start_inference(volume, device="cpu", python=python).wait(600)
    assert outcome.status == jobs.DONE, outcome.message
    return time.perf_counter() - started


def _children(pid: int) -> List[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _gone(pid: int) -> bool:
    """No such process, or a zombie waiting for init."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state == "Z"


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


def cancel_latency(volume: Volume, python: str) -> float:
    """Cancel -> outcome in, launcher and python-real gone, private folder removed (s)."""
    job = worker.start_inference(volume, device="cpu", python=python)
    while job.poll()[0] < 0.2:
        assert job.poll()[2] is None, job.poll()[2].message
        time.sleep(0.005)
    tree = [job.pid, *_children(job.pid)]
    assert len(tree) == 2, "the launcher did not start python-real as its child"
    started = time.perf_counter()
    job.cancel()
    outcome = job.poll()[2]
    while not all(_gone(pid) for pid in tree):
        assert time.perf_counter() - started < 5, "the worker's process tree survived the cancel"
        time.sleep(0.001)
    latency = time.perf_counter() - started
    assert outcome.status == jobs.CANCELLED and not job.workdir.exists()
    return latency


def apply_to_overlay(python: str) -> float:
    import headless  # Testing/
    from TwinTrackLib import display, sampledata
    from TwinTrackLib.presenter import Parameters, Presenter

    scene, application_logic, _ = headless.make_scene()
    views = [headless.HeadlessSliceView(scene, application_logic, name) for name in ("Red", "Yellow", "Green")]
    presenter = Presenter(scene, start_inference=functools.partial(worker.start_inference, python=python))
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
    from slicer_app_stand_in import write_python_launcher

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cancels", type=int, default=5)
    parser.add_argument("--overlays", type=int, default=3, help="Apply -> first overlay runs (median)")
    parser.add_argument("--size", choices=("small", "full"), default="small",
                        help="phantom size: small (the demo, 96 x 96 x 48) or full (512 x 512 x 100)")
    parser.add_argument("--no-overlay", action="store_true", help="skip the Apply -> first overlay measurement")
    parser.add_argument("--gil-model", action="store_true",
                        help="also time the thread and the worker while the main thread holds the GIL between polls")
    args = parser.parse_args()
    if os.name == "nt":
        raise SystemExit("bench_worker: the PythonSlicer stand-in is a #! script; run this on Linux or macOS")
    case = generate_case(1, raters=5, seed=0, size=args.size)
    volume = Volume(case.image, case.geometry)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        python_slicer = str(write_python_launcher(folder / "slicer-home" / "bin"))
        image = write_image(folder / "ct.nii.gz", case.image, case.geometry)
        time_worker(volume, python_slicer)  # warm the file cache for all
        times: dict = {"cli": [], "launcher": [], "direct": [], "thread": []}
        for _ in range(args.rounds):
            times["cli"].append(time_cli(image, folder))
            times["launcher"].append(time_worker(volume, python_slicer))
            times["direct"].append(time_worker(volume))
            times["thread"].append(time_thread(volume))
        median = {name: statistics.median(values) for name, values in times.items()}
        print(f"{args.size} phantom {case.image.shape} (z, y, x), CPU, {args.rounds} alternating rounds, median s:")
        for name, label in (("cli", "twintrack predict (new Python)"),
                            ("launcher", "worker via PythonSlicer stand-in"),
                            ("direct", "worker, interpreter direct"), ("thread", "in-process thread")):
            print(f"  {label:34s} {median[name]:6.2f} s   (all: {', '.join(f'{t:.2f}' for t in times[name])})")
        print(f"  worker via launcher / CLI    = {median['launcher'] / median['cli']:.2f}x  (target <= 1.2x)")
        print(f"  worker via launcher / direct = {median['launcher'] / median['direct']:.2f}x  (the launcher's cost)")
        print(f"  worker via launcher / thread = {median['launcher'] / median['thread']:.2f}x  (outside Slicer; "
              "inside, the thread only runs while Slicer's main thread runs Python)")
        if args.gil_model:
            thread = time_in_gil_model(lambda: jobs.BackgroundJob(jobs.ensemble_job(volume, device="cpu")).start())
            process = time_in_gil_model(lambda: worker.start_inference(volume, device="cpu", python=python_slicer))
            print(f"main thread holding the GIL between {POLL_S * 1000:.0f} ms polls (Slicer's idle loop, modelled): "
                  f"thread {thread:.2f} s, worker process {process:.2f} s (thread / worker = {thread / process:.2f})")
        latencies = [cancel_latency(volume, python_slicer) for _ in range(args.cancels)]
        if latencies:
            print(f"Cancel -> launcher and python-real gone, folder removed, over {args.cancels} runs: median "
                  f"{statistics.median(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms "
                  "(target < 1000 ms)")
        if args.no_overlay:
            return
        try:
            overlays = [apply_to_overlay(python_slicer) for _ in range(args.overlays)]
        except ImportError as error:
            print(f"Apply -> first overlay: skipped, needs slicer-core ({error})")
            return
        overlay = statistics.median(overlays)
        print(f"Apply -> first overlay (headless presenter, worker via the launcher, {POLL_S * 1000:.0f} ms poll), "
              f"median of {args.overlays}: {overlay:.2f} s (all: {', '.join(f'{t:.2f}' for t in overlays)}); "
              f"/ CLI end to end = {overlay / median['cli']:.2f}x")


if __name__ == "__main__":
    main()
