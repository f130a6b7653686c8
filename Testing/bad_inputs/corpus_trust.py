"""Bad-input corpus, part four: nothing trusted that was not checked (issue 24).

Extends :data:`corpus.CORPUS` (``corpus.py`` imports :data:`TRUST_CORPUS`), one group per class:

- verified before trusted: every file pair or single file the reader accepts holds what its
  header promises (Analyze .hdr/.img, NRRD .nhdr + data, MetaImage .mhd + data, compressed
  .mha, a NaN ``vox_offset``); formats whose completeness cannot be checked are refused; a
  provenance sidecar of another map, a calibrator of another panel than the bundle's, a manifest
  that lists one member or stage twice;
- DICOM out never writes what DICOM forbids: a CT whose Study, Series, Frame of Reference or SOP
  Instance UID is too long, has letters, a leading zero or an empty component;
- every failure a sentence: an RGB slice, a folder holding only a DICOMDIR, a DICOM slice whose
  pixel data is cut short, a --workers count the machine does not have.

The network limits have loopback servers of their own: ``Testing/test_dicomweb_limits.py``.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import struct
from pathlib import Path
from typing import Callable, List

import numpy as np
import SimpleITK as sitk
from corpus import GRID, PREDICT, BadInput, _calibrator, _ct
from corpus_writes import _entry, _noise_ct, _predict_to, full_disk

from bundle_helpers import identity_bundle
from TwinTrackLogic.io import write_image


def _predict_on(name: str) -> List[str]:
    return [part.replace("ct.nii.gz", name) for part in PREDICT]


def _ct_as(name: str, cut: int = 0, data_name: str = "", compress: bool = False,
           edit: Callable[[Path], None] = lambda root: None) -> Callable[[Path], None]:
    """The corpus CT saved as ``name`` by ITK, then its data file (``data_name``, default the file
    itself) cut short by ``cut`` bytes, then ``edit``."""
    def build(root: Path) -> None:
        _ct(root)
        array = np.random.default_rng(5).integers(-1000, 1000, GRID.shape).astype(np.int16)
        sitk.WriteImage(GRID.apply_to(sitk.GetImageFromArray(array)), str(root / name), compress)
        data = root / (data_name or name)
        if cut:
            whole = data.read_bytes()
            data.write_bytes(whole[: len(whole) - cut])
        edit(root)
    return build


def _nan_vox_offset(root: Path) -> None:
    header = bytearray((root / "ct.nii").read_bytes())
    struct.pack_into("<f", header, 108, float("nan"))
    (root / "ct.nii").write_bytes(bytes(header))


def _replace_line(name: str, old: str, new: str) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        path = root / name
        path.write_bytes(path.read_bytes().replace(old.encode(), new.encode(), 1))
    return edit


def _ascii_nrrd(root: Path) -> None:
    _ct(root)
    (root / "ct.nrrd").write_text("NRRD0004\ntype: short\ndimension: 3\nsizes: 2 2 2\nencoding: ascii\n\n"
                                  "1 2 3 4 5 6 7 8\n")


# --- provenance, raters, manifests -------------------------------------------------

def _dicom_ct_with_map(root: Path) -> Path:
    from dicom_helpers import phantom_ct

    case, probability = phantom_ct(0, root / "ct")
    write_image(root / "prob.nii.gz", probability, case.geometry)
    return root / "prob.nii.gz"


def _sidecar(root: Path, of: Path, **extra) -> None:
    from TwinTrackLogic.io.outputs import file_record

    record = {"bundle": {"id": "another-run"}, "calibrator": {"method": "isotonic", "raters": 5},
              "outputs": {"probability": str(of)}, "output_files": {str(of): file_record(of)}, **extra}
    (root / "prob.provenance.json").write_text(json.dumps(record))


def _foreign_provenance(root: Path) -> None:
    """The sidecar of another run's map, next to this map (copied along with the wrong file)."""
    prob = _dicom_ct_with_map(root)
    other = root / "other.nii.gz"
    shutil.copy(prob, other)
    with open(other, "r+b") as stream:  # another map: one byte differs
        stream.seek(-9, os.SEEK_END)
        byte = stream.read(1)
        stream.seek(-9, os.SEEK_END)
        stream.write(bytes([byte[0] ^ 1]))
    _sidecar(root, other)


def _raw_map_provenance(root: Path) -> None:
    """The sidecar names this file as its raw (uncalibrated) map: the calibrator it names does not apply."""
    prob = _dicom_ct_with_map(root)
    calibrated = root / "calibrated-elsewhere.nii.gz"
    calibrated.write_bytes(b"another map")
    _sidecar(root, calibrated)
    from TwinTrackLogic.io.outputs import file_record

    record = json.loads((root / "prob.provenance.json").read_text())
    record["outputs"]["raw"] = str(prob)
    record["output_files"][str(prob)] = file_record(prob)
    (root / "prob.provenance.json").write_text(json.dumps(record))
    calibrated.unlink()


def _nan_map(root: Path) -> None:
    """A map on the CT's grid with one NaN voxel, as NRRD (which keeps NaN)."""
    from dicom_helpers import phantom_ct

    case, probability = phantom_ct(0, root / "ct")
    probability[2, 3, 4] = np.nan
    sitk.WriteImage(case.geometry.apply_to(sitk.GetImageFromArray(probability)), str(root / "prob.nrrd"))


def _old_provenance(root: Path) -> None:
    _dicom_ct_with_map(root)
    (root / "prob.provenance.json").write_text(json.dumps({"bundle": {"id": "a"}, "calibrator": None}))


def _manifest(edit: Callable[[dict], None], members: int = 1) -> Callable[[Path], None]:
    def build(root: Path) -> None:
        identity_bundle(root / "bundle", spacing=GRID.spacing, patch=(8, 8, 8), members=members)
        write_image(root / "ct.nii.gz", np.zeros(GRID.shape, np.int16), GRID)
        path = root / "bundle" / "manifest.json"
        manifest = json.loads(path.read_text())
        edit(manifest)
        path.write_text(json.dumps(manifest))
    return build


def _same_member_twice(manifest: dict) -> None:
    manifest["members"].append(dict(manifest["members"][0]))


def _same_model_other_name(manifest: dict) -> None:
    manifest["members"].append({**manifest["members"][0], "name": "second opinion"})


def _two_stages_one_name(manifest: dict) -> None:
    for member in manifest["members"]:
        member["name"] = "unet"


def _calibrator_of_five(root: Path) -> None:
    _ct(root)  # the identity bundle declares 3 raters
    _calibrator(lambda data: None)(root)  # fitted with 5


# --- DICOM UIDs -----------------------------------------------------------------

def _ct_with_uid(keyword: str, value: str, every_slice: bool = True) -> Callable[[Path], None]:
    def build(root: Path) -> None:
        import pydicom

        _dicom_ct_with_map(root)
        files = sorted((root / "ct").glob("*.dcm"))
        for path in files if every_slice else files[3:4]:
            dataset = pydicom.dcmread(path)
            setattr(dataset, keyword, value)
            if keyword == "SOPInstanceUID":
                dataset.file_meta.MediaStorageSOPInstanceUID = value
            dataset.save_as(path, enforce_file_format=True)
    return build


EXPORT = ["export-dicom", "--image", "{root}/ct", "--probability", "{root}/prob.nii.gz", "--out", "{root}/out"]


# --- readers: failures that must be sentences -------------------------------------

def _rgb_slice(root: Path) -> None:
    import pydicom

    _dicom_ct_with_map(root)
    path = sorted((root / "ct").glob("*.dcm"))[5]
    dataset = pydicom.dcmread(path)
    rows, columns = dataset.Rows, dataset.Columns
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation, dataset.PlanarConfiguration = 3, "RGB", 0
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 8, 8, 7, 0
    dataset.PixelData = bytes(rows * columns * 3)
    dataset.save_as(path, enforce_file_format=True)


def _dicomdir_only(root: Path) -> None:
    _dicom_ct_with_map(root)
    disc = root / "disc"
    (disc / "DICOM" / "ST000001").mkdir(parents=True)
    for path in (root / "ct").glob("*.dcm"):
        shutil.move(str(path), disc / "DICOM" / "ST000001" / path.stem)
    (disc / "DICOMDIR").write_bytes(bytes(128) + b"DICM" + b"\x02\x00\x00\x00UL\x04\x00" + bytes(4))


def _short_pixel_data(root: Path) -> None:
    _dicom_ct_with_map(root)
    identity_bundle(root / "bundle", spacing=(2.6, 2.6, 4.0), patch=(8, 8, 8))
    path = sorted((root / "ct").glob("*.dcm"))[7]
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) - 4000])


COHORT_PREDICT = ["predict", "--cohort", "{root}/cohort", "--out", "{root}/out", "--no-calibration",
                  "--bundle", "{root}/bundle"]


def _cohort_with_bundle(root: Path) -> None:
    import corpus

    corpus._cohort(root)
    identity_bundle(root / "bundle", spacing=(2.6, 2.6, 4.0), patch=(8, 8, 8))


FULL = ["device holding", "is full (no space left on device, ENOSPC)", "free when the write stopped",
        "Nothing was published"]

TRUST_CORPUS: List = [
    # A write that fails for lack of space says so, and how much was free.
    _entry("disk-full-says-enospc-nii-gz", "predict onto a full disk: ITK's .nii.gz writer stops without a word",
           _noise_ct, _predict_to("--out", "{root}/out/p.nii.gz"), [*FULL, "p.nii.gz"], full_disk()),
    _entry("disk-full-says-enospc-json", "predict onto a disk with room for the map but not its sidecar",
           _noise_ct, _predict_to("--out", "{root}/out/p.nrrd"), [*FULL, "p.nrrd"], full_disk("12k")),
    # Every file the reader accepts holds what its header promises.
    BadInput("analyze-pair-img-truncated", "a .hdr/.img pair whose .img is cut short (ITK zero-fills it)",
             _ct_as("ct.hdr", cut=1000, data_name="ct.img"), _predict_on("ct.hdr"),
             ["ct.img", "truncated or corrupted", "its header ct.hdr describes"]),
    BadInput("analyze-pair-named-by-img", "the same pair named by its .img", _ct_as("ct.hdr", cut=2, data_name="ct.img"),
             _predict_on("ct.img"), ["ct.img", "truncated or corrupted"]),
    BadInput("analyze-pair-img-missing", "a .hdr whose .img was not copied along",
             _ct_as("ct.hdr", edit=lambda root: (root / "ct.img").unlink()), _predict_on("ct.hdr"),
             ["ct.hdr", "ct.img is missing next to it", "Copy both files together"]),
    BadInput("nifti-vox-offset-nan", "a .nii whose header says its voxels start at NaN",
             _ct_as("ct.nii", edit=_nan_vox_offset), _predict_on("ct.nii"), ["ct.nii", "vox_offset", "nan"]),
    BadInput("nhdr-data-truncated", "a detached NRRD header whose raw data file is cut short",
             _ct_as("ct.nhdr", cut=500, data_name="ct.raw"), _predict_on("ct.nhdr"),
             ["ct.raw", "truncated or corrupted", "bytes of voxels"]),
    BadInput("nhdr-data-missing", "a detached NRRD header without its data file",
             _ct_as("ct.nhdr", edit=lambda root: (root / "ct.raw").unlink()), _predict_on("ct.nhdr"),
             ["ct.nhdr", "ct.raw", "could not be read"]),
    BadInput("mhd-data-truncated", "a MetaImage .mhd whose .raw is cut short",
             _ct_as("ct.mhd", cut=64, data_name="ct.raw"), _predict_on("ct.mhd"), ["ct.raw", "truncated or corrupted"]),
    BadInput("mha-compressed-truncated", "a compressed .mha cut short", _ct_as("ct.mha", cut=300, compress=True),
             _predict_on("ct.mha"), ["ct.mha", "truncated or corrupted", "compressed data"]),
    BadInput("mhd-file-list", "a MetaImage whose voxels are spread over a LIST of files",
             _ct_as("ct.mhd", edit=_replace_line("ct.mhd", "ElementDataFile = ct.raw", "ElementDataFile = LIST")),
             _predict_on("ct.mhd"), ["ct.mhd", "several files"]),
    BadInput("nrrd-ascii-encoding", "a NRRD in ascii encoding (not checked, so refused)", _ascii_nrrd,
             _predict_on("ct.nrrd"), ["ct.nrrd", "'ascii' encoding", "Convert it to .nii.gz"]),
    BadInput("vtk-image", "a legacy VTK image (ITK reads it; its completeness is not checked)",
             _ct_as("ct.vtk"), _predict_on("ct.vtk"), ["ct.vtk", "VTK image file", "Convert it to .nii.gz"]),
    # Records checked against what they describe.
    BadInput("provenance-of-another-map", "export-dicom with a sidecar that describes another map", _foreign_provenance,
             EXPORT, ["prob.provenance.json does not describe", "prob.nii.gz", "another run's bundle"]),
    BadInput("provenance-names-it-raw", "export-dicom of a run's raw map with that run's sidecar", _raw_map_provenance,
             EXPORT, ["does not describe", "the record's raw map (prob.nii.gz), not its calibrated map"]),
    BadInput("provenance-without-checksums", "export-dicom with a sidecar that records no sha256", _old_provenance,
             EXPORT, ["records no sha256", "leave out --provenance"]),
    BadInput("calibrator-of-another-panel", "predict with a 5-rater calibrator and a bundle declaring 3",
             _calibrator_of_five, [p for p in PREDICT if p != "--no-calibration"] + ["--calibrator", "{root}/cal.json"],
             ["cal.json", "panel of 5 raters", "declares 3", "--allow-rater-mismatch"]),
    BadInput("calibrator-of-another-panel-cohort", "predict --cohort with a 5-rater calibrator and a 3-rater bundle",
             lambda root: (_cohort_with_bundle(root), _calibrator(lambda data: None)(root)),
             [p for p in COHORT_PREDICT if p != "--no-calibration"] + ["--calibrator", "{root}/cal.json"],
             ["panel of 5 raters", "declares 3"]),
    BadInput("manifest-member-twice", "a manifest listing one member twice", _manifest(_same_member_twice), PREDICT,
             ["manifest.json", "members[1] repeats"]),
    BadInput("manifest-model-twice", "two members (named differently) on one ONNX file",
             _manifest(_same_model_other_name), PREDICT, ["manifest.json", "members[1]", "member_1.onnx",
                                                          "count one model twice"]),
    BadInput("manifest-stage-name-twice", "two members both named 'unet'", _manifest(_two_stages_one_name, members=2),
             PREDICT, ["manifest.json", "'unet'", "its own name"]),
    BadInput("export-dicom-nan-map", "export-dicom of a map with a NaN voxel", _nan_map,
             [p.replace("prob.nii.gz", "prob.nrrd") for p in EXPORT], ["prob.nrrd", "NaN or infinite", "(2, 3, 4)"]),
    # DICOM out never writes what DICOM forbids.
    BadInput("uid-study-too-long", "a CT whose StudyInstanceUID has 70 characters",
             _ct_with_uid("StudyInstanceUID", "1.2." + "3" * 66), EXPORT,
             ["StudyInstanceUID (0020,000D)", "70 characters", "--replace-invalid-uids"]),
    BadInput("uid-series-letters", "a CT whose SeriesInstanceUID holds letters",
             _ct_with_uid("SeriesInstanceUID", "1.2.840.abc.7"), EXPORT,
             ["SeriesInstanceUID (0020,000E)", "'1.2.840.abc.7'", "only digits and dots"]),
    BadInput("uid-frame-leading-zero", "a CT whose FrameOfReferenceUID has a zero-led component",
             _ct_with_uid("FrameOfReferenceUID", "1.2.03.4"), EXPORT, ["FrameOfReferenceUID (0020,0052)", "'03'"]),
    BadInput("uid-sop-instance-empty-component", "one slice whose SOPInstanceUID has two dots in a row",
             _ct_with_uid("SOPInstanceUID", "1.2..5", every_slice=False), EXPORT,
             ["SOPInstanceUID (0008,0018)", "CT0004.dcm", "empty component"]),
    BadInput("uid-predict-dicom-out", "predict --dicom-out on a CT with a 65-character SeriesInstanceUID",
             lambda root: (_ct_with_uid("SeriesInstanceUID", "1." + "2" * 63)(root),
                           identity_bundle(root / "bundle", spacing=(2.6, 2.6, 4.0), patch=(8, 8, 8))),
             ["predict", "--image", "{root}/ct", "--dicom-out", "{root}/out", "--no-calibration",
              "--bundle", "{root}/bundle"], ["SeriesInstanceUID (0020,000E)", "65 characters"]),
    # Every failure a sentence that names the file at fault.
    BadInput("dicom-rgb-slice", "one slice of the CT is an RGB (3-sample) image", _rgb_slice, EXPORT,
             ["CT0006.dcm", "3 samples per pixel", "grey-scale"]),
    BadInput("dicom-dicomdir-only", "a disc's top folder: only a DICOMDIR, the series below it", _dicomdir_only,
             [p.replace("{root}/ct", "{root}/disc") for p in EXPORT], ["DICOMDIR", "disc/DICOM/ST000001"]),
    BadInput("dicom-pixel-data-cut", "one slice whose pixel data is cut short", _short_pixel_data,
             ["predict", "--image", "{root}/ct", "--out", "{root}/out/p.nii.gz", "--no-calibration",
              "--bundle", "{root}/bundle"], ["CT0008.dcm is a DICOM file whose header cannot be read", "cut short"]),
    BadInput("workers-more-than-cpus", "--workers far above the machine's CPUs", _cohort_with_bundle,
             COHORT_PREDICT + ["--workers", "100000"], ["--workers 100000", "CPU"]),
]


def _gzip_pair(root: Path) -> None:
    data = root / "ct.img"
    data.with_name("ct.img.gz").write_bytes(gzip.compress(data.read_bytes())[:-20])
    data.unlink()


TRUST_CORPUS.append(BadInput("analyze-pair-img-gz-truncated", "a .hdr with its .img gzip-compressed and cut short",
                             _ct_as("ct.hdr", edit=_gzip_pair), _predict_on("ct.hdr"),
                             ["ct.img.gz", "truncated or corrupted"]))
