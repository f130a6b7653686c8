"""Cohort calibration on Dask: in-process against 1 and 2 local workers, and a full-size case.

Fits the demo bundle's calibrator on N small phantom cases (the map runs the ensemble on each
case's CT and reduces it to its calibration statistics; the reduce adds them and fits once),
first in this process, then on a LocalCluster of 1 and of 2 worker processes. Prints each
wall time, the speed-up against in-process, checks that the calibrators are identical, and
counts the bytes the reduce moves back (each case's pickled statistics, as Dask ships them)
against the bytes of the voxels each case reads.

``--full`` also runs one full-size phantom case (512 x 512 x 100) through `twintrack predict
--cohort` in a fresh process and prints its wall time, CPU time and peak memory, and what 1,000
such cases would cost on N workers, computed from those numbers.

    .venv/bin/python benchmarks/bench_cohort_dask.py [--cases 40] [--full]    (--cases 0 --full: only the full-size case)
    .venv/bin/python benchmarks/bench_cohort_dask.py --reduce-only            (only the reduce's bytes per case)
"""

from __future__ import annotations

import argparse
import math
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path


from TwinTrackLogic.calibration import FitSettings, fit_cohort
from TwinTrackLogic.cohort.distributed import DaskCaseMap, dask_client, threads_per_task
from TwinTrackLogic.calibration.fitting import case_statistics
from TwinTrackLogic.io import find_cases, read_image
from TwinTrackLogic.phantom import write_cohort
from TwinTrackLogic.pipeline import ensemble_probability_hook

PROJECTED_CASES = 1000
PROJECTED_WORKERS = (1, 8, 32, 100)


def timed_fit(cases, case_map, threads):
    probability_for, source = ensemble_probability_hook(threads=threads)
    start = time.perf_counter()
    fit = fit_cohort(cases, FitSettings(probability_source=source), probability_for=probability_for, case_map=case_map)
    return time.perf_counter() - start, fit


def calibrator_record(fit) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.json"
        fit.calibrator.save(path)
        text = path.read_text().splitlines()
    return "\n".join(line for line in text if '"created"' not in line).encode()


def reduce_bytes(cases) -> tuple:
    """Bytes one case's result takes on the wire (pickle protocol 5, as Dask), the bytes its dense
    fine-bin arrays hold (what travelled before the statistics pickled only their filled bins),
    and the bytes of voxels it reads."""
    probability_for, _ = ensemble_probability_hook()
    case = cases[0]
    result = case_statistics(case, probability_for=probability_for)
    moved = len(pickle.dumps(result, protocol=5))
    statistics = result[0]
    dense = statistics.counts.nbytes + statistics.sum_p.nbytes + statistics.sum_mhr.nbytes
    read = read_image(case.image).array.nbytes + sum(read_image(p).array.nbytes for p in case.annotations)
    return moved, dense, read


def report_reduce(cases) -> None:
    moved, dense, read = reduce_bytes(cases)
    print(f"reduce: {moved:,} bytes per case travel back ({moved * len(cases):,} for the cohort), "
          f"against {dense:,} bytes of dense fine-bin arrays (x{moved / dense:.3f}) and {read:,} bytes of "
          f"voxels read per case (x{moved / read:.2f})")


def compare(cases) -> None:
    load = os.getloadavg()[0]
    print(f"{len(cases)} small phantom cases, demo bundle, load average {load:.1f} on {os.cpu_count()} CPUs")
    baseline, reference = timed_fit(cases, map, None)
    print(f"in-process:          {baseline:7.1f} s  (x1.00)")
    for workers in (1, 2):
        threads = threads_per_task("local", workers)
        with dask_client("local", workers) as client:  # started before the clock: a cluster is reused
            seconds, fit = timed_fit(cases, DaskCaseMap(client), threads)
        same = calibrator_record(fit) == calibrator_record(reference)
        print(f"{workers} local worker(s):   {seconds:7.1f} s  (x{baseline / seconds:.2f} the in-process speed; "
              f"{threads} onnxruntime thread(s) per case; calibrator identical: {same})")
        if not same:
            sys.exit("the calibrators differ")
    report_reduce(cases)


def full_case() -> None:
    with tempfile.TemporaryDirectory() as folder:
        cohort, out = Path(folder) / "cohort", Path(folder) / "out"
        write_cohort(cohort, 1, size="full")
        image_bytes = (cohort / "case_000" / "image.nii.gz").stat().st_size
        start = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-c",
                                  "import sys; from TwinTrackCLI import main; sys.exit(main())",
                                  "predict", "--cohort", str(cohort), "--out", str(out)],
                                 stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own CPU time and peak memory
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            sys.exit(f"predict --cohort on the full-size case exited {child.returncode}")
        written = sum(p.stat().st_size for p in (out / "case_000").iterdir())
    cpu = usage.ru_utime + usage.ru_stime
    peak_gb = usage.ru_maxrss / 1024 ** 2  # ru_maxrss is in KiB on Linux
    print(f"\none full-size case (512 x 512 x 100), `predict --cohort` in a fresh process (imports and model "
          f"loading included): wall {wall:.1f} s at load average {os.getloadavg()[0]:.1f}, CPU {cpu:.1f} s, "
          f"peak memory {peak_gb:.2f} GB; reads {image_bytes / 1e6:.1f} MB, writes {written / 1e6:.1f} MB")
    print(f"{PROJECTED_CASES} such cases on N single-threaded workers, one core each (a case then takes its "
          f"CPU time, {cpu:.1f} s): wall = ceil({PROJECTED_CASES} / N) x {cpu:.1f} s; memory = N x {peak_gb:.2f} GB")
    for workers in PROJECTED_WORKERS:
        hours = math.ceil(PROJECTED_CASES / workers) * cpu / 3600
        print(f"  N = {workers:3d}: {hours:6.2f} h wall, {workers * peak_gb:6.1f} GB of worker memory, "
              f"{PROJECTED_CASES * cpu / 3600:.1f} CPU-hours, {PROJECTED_CASES * written / 1e9:.2f} GB written")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--full", action="store_true", help="also measure one full-size case and project 1,000")
    parser.add_argument("--reduce-only", action="store_true", help="only the bytes one case's result moves")
    args = parser.parse_args()
    if args.reduce_only:
        with tempfile.TemporaryDirectory() as folder:
            write_cohort(Path(folder), 1, size="small")
            report_reduce(find_cases(folder))
    elif args.cases > 0:  # --cases 0: only the full-size case
        with tempfile.TemporaryDirectory() as folder:
            write_cohort(Path(folder), args.cases, size="small")
            compare(find_cases(folder))
    if args.full:
        full_case()


if __name__ == "__main__":
    main()
