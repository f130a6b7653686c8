"""DICOM costs: header check per series, and write time and size of the Parametric Map and SEG.

For the real scanner series (shared/data/real_ct_dicom, 512 x 512 x 20) and a full-size phantom CT
written as DICOM (512 x 512 x 100, case 002, oblique), prints the median time of
``io.dicom_series.check_series`` next to SimpleITK's own series read (GDCM file ordering and
pixel read: the reference) and the ratio; then, for the phantom, the time and size of the
Parametric Map and the SEG next to writing the CT series itself. The map is the phantom's tumour
field with the calibrated floor (0.00126) inside the pancreas, as a calibrated run gives.

    .venv/bin/python benchmarks/bench_dicom.py [--repeats 3] [--real-ct PATH]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from measure import median_seconds  # benchmarks/measure.py

from TwinTrackLogic.dicom.ct_series import write_ct_series
from TwinTrackLogic.dicom.export import export_results
from TwinTrackLogic.io import Volume
from TwinTrackLogic.io.dicom_series import check_series
from TwinTrackLogic.phantom import generate_case


def itk_read(folder: Path) -> None:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
    reader.Execute()


def header_check(name: str, folder: Path, repeats: int) -> None:
    check = median_seconds(lambda: check_series(folder), repeats)
    reference = median_seconds(lambda: itk_read(folder), repeats)
    slices = len(check_series(folder).files)
    print(f"{name}: {slices} slices; header check {check * 1000:.0f} ms ({check / slices * 1000:.1f} ms/slice), "
          f"SimpleITK series read {reference * 1000:.0f} ms, ratio check/read {check / reference:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--real-ct", type=Path,
                        default=Path(__file__).resolve().parents[1] / ".." / ".." / "shared" / "data" / "real_ct_dicom")
    args = parser.parse_args()
    if args.real_ct.is_dir():
        header_check("real CT (Siemens, JPEG 2000)", args.real_ct, args.repeats)
    case = generate_case(2, size="full")
    probability = case.latent.astype(np.float32)
    probability[(case.pancreas > 0) & (probability == 0)] = 0.00126
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        started = time.perf_counter()
        write_ct_series(Volume(case.image, case.geometry), scratch / "ct")
        ct_seconds = time.perf_counter() - started
        ct_mb = sum(p.stat().st_size for p in (scratch / "ct").iterdir()) / 1e6
        header_check(f"phantom CT {'x'.join(map(str, case.geometry.size))}", scratch / "ct", args.repeats)
        series = check_series(scratch / "ct")
        runs = []
        for repeat in range(args.repeats):
            started = time.perf_counter()
            exported = export_results(series, probability, scratch / f"out{repeat}")
            runs.append((time.perf_counter() - started, exported))
        seconds, exported = sorted(runs, key=lambda run: run[0])[len(runs) // 2]
        sizes = {name: path.stat().st_size / 1e6 for name, path in
                 (("parametric_map", exported.parametric_map), ("segmentation", exported.segmentation))}
    print(f"CT series write (reference): {ct_seconds:.2f} s, {ct_mb:.1f} MB in {len(series.files)} files")
    nonzero = int(np.count_nonzero(probability.reshape(len(probability), -1).max(axis=1) > 0))
    for name in ("parametric_map", "segmentation"):
        print(f"{name}: {exported.seconds[name]:.2f} s, {sizes[name]:.2f} MB, {exported.frames[name]} frames "
              f"(ratio to the CT: time {exported.seconds[name] / ct_seconds:.2f}, size {sizes[name] / ct_mb:.3f})")
    print(f"both, incl. reading {len(series.files)} CT headers and the atomic write: {seconds:.2f} s "
          f"(median of {args.repeats}); slices with p > 0: {nonzero} of {len(probability)}")


if __name__ == "__main__":
    main()
