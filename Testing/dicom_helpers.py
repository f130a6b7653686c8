"""Shared by the DICOM tests: phantom CT series, the outside tools (dciodvfy, dcmqi), grid checks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from TwinTrackLogic.io import Geometry, Volume
from TwinTrackLogic.phantom import generate_case

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
CALIBRATED_FLOOR = 0.00126  # the isotonic's lowest knot: small but not zero, inside the region


def tool(name: str) -> str:
    """The path of an outside tool; CI installs every one (a missing one fails there), locally skip."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        if IN_CI:
            pytest.fail(f"{name} is not installed; .ci/run installs it")
        pytest.skip(f"{name} is not installed here")
    return found


def phantom_ct(index: int, folder: Path, size: str = "small"):
    """Phantom case ``index`` as a DICOM CT series in ``folder``, and a probability map on its grid.

    The map is the phantom's tumour field with the calibrated floor inside the pancreas, one voxel
    at exactly 1.0, and asymmetric along z (so an upside-down read cannot pass for a right one).
    """
    from TwinTrackLogic.dicom.ct_series import write_ct_series

    case = generate_case(index, size=size)
    write_ct_series(Volume(case.image, case.geometry), folder)
    probability = case.latent.astype(np.float32).copy()
    probability[(case.pancreas > 0) & (probability == 0)] = CALIBRATED_FLOOR
    peak = np.unravel_index(np.argmax(probability), probability.shape)
    probability[peak] = 1.0
    assert not np.array_equal(probability, probability[::-1])
    return case, probability


def dciodvfy_problems(path: Path) -> list:
    """dciodvfy's error and warning lines for one file."""
    run = subprocess.run([tool("dciodvfy"), str(path)], capture_output=True, text=True)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith(("Error", "Warning"))]


def dcmqi(converter: str, dicom_file: Path, out: Path, *extra: str) -> dict:
    """Run one of dcmqi's converters (the code Slicer's importer runs); return its meta.json."""
    out.mkdir(parents=True, exist_ok=True)
    run = subprocess.run([tool(converter), "--inputDICOM", str(dicom_file), "--outputDirectory", str(out), *extra],
                         capture_output=True, text=True)
    assert run.returncode == 0, f"{converter} failed ({run.returncode}): {run.stdout[-800:]} {run.stderr[-800:]}"
    return json.loads((out / "meta.json").read_text())


def on_ct_grid(image: sitk.Image, ct: Geometry) -> np.ndarray:
    """``image`` pasted onto the CT's grid; it must be a slab of that grid exactly (no resampling)."""
    np.testing.assert_allclose(image.GetDirection(), ct.direction, atol=1e-5)
    np.testing.assert_allclose(image.GetSpacing(), ct.spacing, rtol=1e-5)
    matrix = ct.index_to_physical_matrix()
    index = np.linalg.solve(matrix[:3, :3], np.asarray(image.GetOrigin()) - matrix[:3, 3])
    np.testing.assert_allclose(index, np.round(index), atol=1e-3)
    start = [int(v) for v in np.round(index)]
    assert start[0] == 0 and start[1] == 0 and tuple(image.GetSize()[:2]) == ct.size[:2]
    array = sitk.GetArrayFromImage(image)
    assert 0 <= start[2] and start[2] + array.shape[0] <= ct.shape[0], (start, array.shape, ct.shape)
    placed = np.zeros(ct.shape, dtype=array.dtype)
    placed[start[2]:start[2] + array.shape[0]] = array
    return placed


# The real scanner series (shared/data/real_ct_dicom; its README says where it is from).
REAL_CT = Path(__file__).resolve().parents[1] / ".." / ".." / "shared" / "data" / "real_ct_dicom"
for candidate in (REAL_CT, Path("/work/shared/data/real_ct_dicom")):
    if candidate.is_dir():
        REAL_CT = candidate
        break


def real_slices():
    """The real series' datasets, sorted by position along z (foot to head)."""
    import pydicom

    files = sorted(p for p in REAL_CT.iterdir() if p.name.startswith("CT"))
    datasets = [pydicom.dcmread(p) for p in files]
    return sorted(datasets, key=lambda ds: float(ds.ImagePositionPatient[2]))


def write(folder: Path, datasets) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index, ds in enumerate(datasets):
        ds.save_as(folder / f"slice{index:03d}.dcm")
    return folder


def with_uids(datasets, series_uid="1.2.826.0.1.3680043.10.1.1", study_uid="1.2.826.0.1.3680043.10.1.2"):
    for ds in datasets:
        ds.SeriesInstanceUID = series_uid
        ds.StudyInstanceUID = study_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    return datasets
