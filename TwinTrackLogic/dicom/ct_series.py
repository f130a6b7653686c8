"""A CT Image Storage series written from a volume: one file per slice, the headers a
validator (dciodvfy) asks for. For phantoms, tests and the PACS demo; real CTs come from scanners.
"""

from __future__ import annotations

import datetime
import uuid
from pathlib import Path
from typing import List, Optional

import numpy as np

from ..errors import InputError
from ..io import Volume
from . import require

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def _ds(value: float) -> str:
    """A decimal string of at most 16 characters (DICOM's DS limit)."""
    text = f"{value:.10f}".rstrip("0").rstrip(".")
    if len(text) > 16:
        text = f"{value:.9g}"
    return "0" if text in ("-0", "") else text


def write_ct_series(volume: Volume, folder, *, study_uid: Optional[str] = None,
                    series_uid: Optional[str] = None, description: str = "TwinTrack phantom CT",
                    patient_id: str = "PHANTOM", uid_seed: Optional[str] = None) -> List[Path]:
    """Write ``volume`` (int HU, z, y, x) as a CT series in ``folder``; returns the files, slice order.

    ``uid_seed``: derive every UID from this text (the same phantom always gets the same UIDs,
    so writing it again does not make a new study); without it the UIDs are random.

    The slice normal must be the third direction column (a right-handed grid): a left-handed
    grid has no DICOM equivalent without reversing the slices, so it is refused.
    """
    require()
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

    geometry = volume.geometry
    direction = geometry.direction_matrix
    if np.linalg.det(direction) < 0:
        raise InputError("The volume's grid is left-handed (its slices run against row x column); "
                         "flip its z axis first, DICOM slices always run along row x column.")
    def new_uid(kind: str) -> str:
        if uid_seed is None:
            return generate_uid(prefix=None)
        return f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, f'twintrack:{uid_seed}:{kind}').int}"  # a UUID-derived UID

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or new_uid("study")
    series_uid = series_uid or new_uid("series")
    frame_uid = new_uid("frame of reference")
    now = datetime.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    hu = np.clip(np.rint(volume.array), -32768, 32767).astype(np.int16)
    spacing = [round(s, 6) for s in geometry.spacing]
    orientation = [_ds(v) for v in (*direction[:, 0], *direction[:, 1])]
    files = []
    for k in range(hu.shape[0]):
        position = np.asarray(geometry.origin) + k * geometry.spacing[2] * direction[:, 2]
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = UID(CT_IMAGE_STORAGE)
        meta.MediaStorageSOPInstanceUID = UID(new_uid(f"instance {k}"))
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.SOPClassUID, ds.SOPInstanceUID = CT_IMAGE_STORAGE, meta.MediaStorageSOPInstanceUID
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Phantom^TwinTrack", patient_id, "", "O"
        ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime, ds.StudyID = study_uid, date, time, "1"
        ds.ReferringPhysicianName, ds.AccessionNumber, ds.StudyDescription = "", "", "TwinTrack phantom"
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = series_uid, 1, description
        ds.Modality, ds.PatientPosition, ds.BodyPartExamined = "CT", "HFS", "ABDOMEN"
        ds.SeriesDate, ds.SeriesTime, ds.ContentDate, ds.ContentTime = date, time, date, time
        ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = frame_uid, ""
        ds.Manufacturer, ds.ManufacturerModelName = "TwinTrack", "phantom"
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        ds.InstanceNumber, ds.AcquisitionNumber, ds.KVP = k + 1, 1, "120"
        ds.ContrastBolusAgent = "IV contrast (simulated)"
        ds.ImagePositionPatient = [_ds(v) for v in position]
        ds.ImageOrientationPatient = orientation
        ds.PixelSpacing = [_ds(spacing[1]), _ds(spacing[0])]
        ds.SliceThickness = _ds(spacing[2])
        ds.SliceLocation = _ds(float(position @ direction[:, 2]))
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = hu.shape[1], hu.shape[2]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", "1", "HU"
        ds.WindowCenter, ds.WindowWidth = "40", "400"
        ds.PixelData = hu[k].tobytes()
        path = folder / f"CT{k + 1:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files
