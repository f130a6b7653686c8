"""Cost of verifying an output before it is published, against the write itself, same run.

Every image TwinTrack writes is checked complete before its rename (io/verify.py: for
.nii.gz the whole gzip stream is inflated, so zlib checks its end, CRC-32 and length). This
times, on a 512 x 512 x 300 float32 map, ITK's write of the file (the reference) and the
check, and prints the ratio; the issue's bound is 15 % of the write time.

Two maps: a probability map as `predict` writes it (zero outside a pancreas-sized region,
smooth inside) and a worst case for compression (uniform noise in [0, 1]).

    .venv/bin/python benchmarks/bench_write_verify.py                 # .nii.gz, 3 repeats
    .venv/bin/python benchmarks/bench_write_verify.py --suffix .nrrd --repeats 1
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from TwinTrackLogic.io import Geometry
from TwinTrackLogic.io.outputs import _write_image_to, check_image_output_suffix
from TwinTrackLogic.io.verify import image_file_problem

SHAPE = (300, 512, 512)  # z, y, x


def probability_map() -> np.ndarray:
    """Zero outside an ellipsoid region of ~350 mL at 0.8 x 0.8 x 2.5 mm; a smooth bump inside."""
    z, y, x = np.ogrid[:SHAPE[0], :SHAPE[1], :SHAPE[2]]
    r2 = ((z - 150) / 30.0) ** 2 + ((y - 256) / 90.0) ** 2 + ((x - 256) / 110.0) ** 2
    return np.where(r2 < 1.0, np.exp(-3.0 * r2), 0.0).astype(np.float32)


def noise_map() -> np.ndarray:
    return np.random.default_rng(0).random(SHAPE, dtype=np.float32)


def measure(array: np.ndarray, suffix: str, repeats: int, folder: Path):
    geometry = Geometry(tuple(reversed(SHAPE)), (0.8, 0.8, 2.5), (0.0, 0.0, 0.0))
    path = folder / f"map{suffix}"
    writes, checks = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        written = _write_image_to(path, array, geometry, compress=True)
        writes.append(time.perf_counter() - start)
        start = time.perf_counter()
        problem = image_file_problem(path, written)
        checks.append(time.perf_counter() - start)
        assert problem is None, problem
    size_mb = path.stat().st_size / 2**20
    path.unlink()
    return min(writes), min(checks), size_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suffix", default=".nii.gz", help="output format (default .nii.gz)")
    parser.add_argument("--repeats", type=int, default=3, help="timings per map; the fastest counts")
    args = parser.parse_args()
    suffix = check_image_output_suffix(Path(f"map{args.suffix}"), "--suffix")
    print(f"512 x 512 x 300 float32 ({np.prod(SHAPE) * 4 / 2**20:.0f} MB of voxels) as {suffix}, "
          f"fastest of {args.repeats}")
    with tempfile.TemporaryDirectory() as folder:
        for name, make in (("probability map", probability_map), ("uniform noise", noise_map)):
            write_s, check_s, size_mb = measure(make(), suffix, args.repeats, Path(folder))
            print(f"  {name:<16} file {size_mb:7.1f} MB  write {write_s:6.2f} s  verify {check_s:5.2f} s  "
                  f"verify/write {100 * check_s / write_s:5.1f} %")


if __name__ == "__main__":
    main()
