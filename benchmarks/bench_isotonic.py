"""Isotonic calibration: TwinTrack against scikit-learn's IsotonicRegression, same data, same run.

Fit on 10^7 and 10^8 (p, MHR) pairs, apply to a 512 x 512 x 300 float32 map,
and compare the calibrated values (windowed means over p-sorted held-out
voxels). Each side runs in its own subprocess so its memory is its own;
peak memory is the rise of the process's peak resident set (VmHWM, reset
before each phase through /proc/self/clear_refs) over its resident set at the
start of the phase.

TwinTrack streams the pairs in chunks of 2^18 (that is the point: memory does
not grow with voxels). scikit-learn needs the pairs as arrays, so its fit
figure includes them (float64, 16 bytes per pair: in float32 it merges p
values closer than 1e-6 and is no longer exact near p = 1); the figure without
them is printed too.

    .venv/bin/python benchmarks/bench_isotonic.py                      # 1e7 and 1e8, sklearn at 1e7
    .venv/bin/python benchmarks/bench_isotonic.py --sklearn-max 1e8    # sklearn at 1e8 too (~7 GB, ~1 min)

Needs scikit-learn (the `test` or `bench` extra). Linux only (/proc).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from measure import status_mb  # benchmarks/measure.py

CHUNK = 1 << 18  # small, so the generator itself does not dominate our side's memory
RATERS = 5
PROBE = 1_000_000
WINDOW = 300
APPLY_SHAPE = (300, 512, 512)


# --- data: the same pairs for both sides, generated chunk by chunk ---------------------

def pair_chunk(index: int, size: int, seed: int = 2025):
    """Chunk ``index`` of the (p, MHR) stream: an agreement level per voxel, K binomial raters,
    and an over-confident, noisy ensemble probability. Most voxels are far-away background."""
    rng = np.random.default_rng([seed, index])
    latent = np.where(rng.uniform(size=size) < 0.7, rng.beta(0.3, 6.0, size), rng.beta(0.6, 0.6, size))
    mhr = (rng.binomial(RATERS, latent) / RATERS).astype(np.float32)
    z = 3.0 * (np.log(latent + 1e-12) - np.log1p(-latent + 1e-12)) + rng.normal(0.0, 0.5, size)
    p = (1.0 / (1.0 + np.exp(-z))).astype(np.float32)
    return p, mhr


def chunks(n: int):
    for index, start in enumerate(range(0, n, CHUNK)):
        yield pair_chunk(index, min(CHUNK, n - start))


def probe():
    return pair_chunk(10**6, PROBE)[0]


def apply_map():
    volume = np.empty(APPLY_SHAPE, dtype=np.float32)
    flat = volume.reshape(-1)
    for index, start in enumerate(range(0, flat.size, CHUNK)):
        stop = min(start + CHUNK, flat.size)
        flat[start:stop] = pair_chunk(2 * 10**6 + index, stop - start)[0]
    return volume


# --- memory ---------------------------------------------------------------------------

class Phase:
    """Wall time and peak memory rise of one phase of this process."""

    def __enter__(self):
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        self.start_mb = status_mb("VmRSS")
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        self.peak_mb = status_mb("VmHWM") - self.start_mb


# --- the two sides (each in its own subprocess) --------------------------------------------

def worker_ours(n: int, folder: Path, do_apply: bool) -> dict:
    from TwinTrackLogic.calibration import CalibrationStatistics, fit_calibrator
    CalibrationStatistics().add(np.zeros(10, np.float32), np.zeros(10, np.float32))  # warm imports
    adding = 0.0
    with Phase() as fit:
        statistics = CalibrationStatistics()
        for p, mhr in chunks(n):
            start = time.perf_counter()
            statistics.add(p, mhr, raters=RATERS)
            adding += time.perf_counter() - start
        start = time.perf_counter()
        calibrator = fit_calibrator(statistics)
        adding += time.perf_counter() - start
    result = {"fit_seconds": adding, "fit_peak_mb": fit.peak_mb, "knots": int(calibrator.x.size)}
    np.save(folder / f"ours_{n}.npy", calibrator.transform(probe()))
    if do_apply:
        volume = apply_map()
        calibrator.transform(volume[:1])  # warm
        with Phase() as applying:
            calibrated = calibrator.transform(volume)
        result.update(apply_seconds=applying.seconds, apply_peak_mb=applying.peak_mb,
                      apply_checksum=float(calibrated[::7, ::7, ::7].sum(dtype=np.float64)))
    return result


def worker_sklearn(n: int, folder: Path, do_apply: bool) -> dict:
    from sklearn.isotonic import IsotonicRegression
    with Phase() as whole:
        # float64: given float32, scikit-learn merges x values closer than float32's
        # resolution (1e-6) and so pools everything within 1e-6 of p = 1; in float64 it is exact.
        p_all = np.empty(n, dtype=np.float64)
        mhr_all = np.empty(n, dtype=np.float64)
        for index, (p, mhr) in enumerate(chunks(n)):
            p_all[index * CHUNK:index * CHUNK + p.size] = p
            mhr_all[index * CHUNK:index * CHUNK + p.size] = mhr
        with Phase() as fit:
            model = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(p_all, mhr_all)
    result = {"fit_seconds": fit.seconds, "fit_peak_mb": whole.peak_mb,
              "fit_peak_beyond_input_mb": fit.peak_mb, "input_mb": (p_all.nbytes + mhr_all.nbytes) / 2**20,
              "knots": int(model.X_thresholds_.size)}
    del p_all, mhr_all
    np.save(folder / f"sklearn_{n}.npy", model.predict(probe().astype(np.float64)).astype(np.float32))
    if do_apply:
        volume = apply_map()
        model.predict(volume[:1].reshape(-1))  # warm
        with Phase() as applying:  # the map as it comes, float32
            predicted = model.predict(volume.reshape(-1)).reshape(volume.shape)
        result.update(apply_seconds=applying.seconds, apply_peak_mb=applying.peak_mb,
                      apply_checksum=float(predicted[::7, ::7, ::7].sum(dtype=np.float64)))
    return result


def run_worker(side: str, n: int, folder: Path, do_apply: bool) -> dict:
    command = [sys.executable, __file__, "--worker", side, "--n", str(n), "--folder", str(folder)]
    if do_apply:
        command.append("--apply")
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def windowed_difference(ours: np.ndarray, theirs: np.ndarray, p: np.ndarray):
    order = np.argsort(p, kind="stable")
    usable = (p.size // WINDOW) * WINDOW
    means = [values[order][:usable].reshape(-1, WINDOW).mean(axis=1) for values in (ours, theirs)]
    return float(np.abs(means[0] - means[1]).max()), float(np.abs(ours - theirs).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=float, default=[1e7, 1e8], help="numbers of (p, MHR) pairs")
    parser.add_argument("--sklearn-max", type=float, default=1e7,
                        help="largest size scikit-learn is run on (default 1e7: at 1e8 it needs several GB)")
    parser.add_argument("--worker", choices=["ours", "sklearn"], help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--apply", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        work = worker_ours if args.worker == "ours" else worker_sklearn
        print(json.dumps(work(args.n, args.folder, args.apply)))
        return

    sizes = [int(size) for size in args.sizes]
    apply_size = min(size for size in sizes if size <= args.sklearn_max)
    print(f"{'pairs':>12} {'side':>8} {'fit s':>8} {'peak MB':>9} {'knots':>7}   apply to a "
          f"{' x '.join(map(str, reversed(APPLY_SHAPE)))} float32 map")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        p_probe = probe()
        for n in sizes:
            sides = {"ours": run_worker("ours", n, folder, n == apply_size)}
            if n <= args.sklearn_max:
                sides["sklearn"] = run_worker("sklearn", n, folder, n == apply_size)
            for side, result in sides.items():
                apply_text = (f"   {result['apply_seconds']:.2f} s, peak +{result['apply_peak_mb']:.0f} MB"
                              if "apply_seconds" in result else "")
                print(f"{n:>12.0e} {side:>8} {result['fit_seconds']:>8.2f} {result['fit_peak_mb']:>9.0f} "
                      f"{result['knots']:>7}{apply_text}")
            if "sklearn" not in sides:
                print(f"{'':>12} scikit-learn not run at this size (--sklearn-max {args.sklearn_max:.0e})")
                continue
            ours, theirs = sides["ours"], sides["sklearn"]
            window, voxel = windowed_difference(np.load(folder / f"ours_{n}.npy"),
                                                np.load(folder / f"sklearn_{n}.npy"), p_probe)
            print(f"{'':>12} fit {theirs['fit_seconds'] / ours['fit_seconds']:.0f}x faster, peak memory "
                  f"1/{theirs['fit_peak_mb'] / max(ours['fit_peak_mb'], 1):.0f} of scikit-learn's "
                  f"({theirs['fit_peak_beyond_input_mb']:.0f} MB, 1/"
                  f"{theirs['fit_peak_beyond_input_mb'] / max(ours['fit_peak_mb'], 1):.0f}, not counting "
                  f"its {theirs['input_mb']:.0f} MB input)")
            if "apply_seconds" in ours:
                print(f"{'':>12} apply {theirs['apply_seconds'] / ours['apply_seconds']:.1f}x faster, peak "
                      f"memory 1/{theirs['apply_peak_mb'] / max(ours['apply_peak_mb'], 1):.1f} of "
                      f"scikit-learn's predict (the output map alone is "
                      f"{np.prod(APPLY_SHAPE) * 4 / 2**20:.0f} MB)")
            print(f"{'':>12} calibrated values: windowed means (windows of {WINDOW} held-out voxels) "
                  f"differ by at most {window:.1e}; single voxels by at most {voxel:.1e}")


if __name__ == "__main__":
    main()
