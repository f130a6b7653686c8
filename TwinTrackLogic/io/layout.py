"""The case/cohort folder layout (CURVAS-PDACVI).

::

    <cohort>/<case>/image.nii.gz | image/             (a CT file, or a folder holding one DICOM series)
                    annotation_1.nii.gz ... annotation_K.nii.gz
                    pancreas.nii.gz | roi.nii.gz     (optional region)
                    probability.nii.gz               (optional ensemble output)
                    vessels.nii.gz                   (optional labels 1..5)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import numpy as np

from ..errors import InputError
from .geometry import Geometry, PathLike
from .images import IMAGE_SUFFIXES, read_mask


ANNOTATION_PATTERN = re.compile(r"^annotation_(\d+)\.(nii\.gz|nii|nrrd|mha)$")


def _find_file(folder: Path, stem: str) -> Optional[Path]:
    for suffix in IMAGE_SUFFIXES:
        candidate = folder / f"{stem}{suffix}"
        if candidate.exists():
            return candidate
    return None


def _find_image(folder: Path) -> Optional[Path]:
    """The case's CT: an image file, or an ``image/`` folder holding a DICOM series."""
    found = _find_file(folder, "image")
    if found is None and (folder / "image").is_dir():
        found = folder / "image"
    return found


@dataclass
class Case:
    """The files of one case folder (CURVAS-PDACVI layout)."""

    folder: Path
    image: Path
    annotations: List[Path] = field(default_factory=list)
    pancreas: Optional[Path] = None
    roi: Optional[Path] = None
    vessels: Optional[Path] = None

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def raters(self) -> int:
        return len(self.annotations)

    def file(self, stem_or_name: str) -> Optional[Path]:
        """A file of this case by name (``probability.nii.gz``) or stem (``probability``)."""
        direct = self.folder / stem_or_name
        if direct.is_file():
            return direct
        return _find_file(self.folder, stem_or_name)

    @classmethod
    def from_folder(cls, folder: PathLike) -> "Case":
        folder = Path(folder)
        if not folder.is_dir():
            raise InputError(f"{folder} is not a folder. A case is a folder holding image.nii.gz and annotations.")
        image = _find_image(folder)
        if image is None:
            raise InputError(
                f"{folder} has no image file (image.nii.gz, .nii, .nrrd or .mha) and no image/ DICOM folder. "
                "Each case folder needs its CT as image.nii.gz."
            )
        numbered = []
        for entry in folder.iterdir():
            match = ANNOTATION_PATTERN.match(entry.name)
            if match:
                numbered.append((int(match.group(1)), entry))
        numbered.sort()
        return cls(
            folder=folder,
            image=image,
            annotations=[p for _, p in numbered],
            pancreas=_find_file(folder, "pancreas"),
            roi=_find_file(folder, "roi"),
            vessels=_find_file(folder, "vessels"),
        )

    def read_annotations(self, reference: Geometry) -> List[np.ndarray]:
        """All rater masks as bool arrays, each checked against the image grid."""
        return [read_mask(path, reference, self.image) for path in self.annotations]


def find_cases(cohort: PathLike) -> List[Case]:
    """Every case folder (a sub-folder with an image file) of a cohort, sorted by name."""
    cohort = Path(cohort)
    if not cohort.is_dir():
        raise InputError(f"{cohort} is not a folder. A cohort is a folder of case folders.")
    cases = [Case.from_folder(entry) for entry in sorted(cohort.iterdir())
             if entry.is_dir() and _find_image(entry) is not None]
    if not cases:
        raise InputError(
            f"{cohort} holds no case folders. Each case is a sub-folder with image.nii.gz and "
            "annotation_1.nii.gz ... annotation_K.nii.gz (run `twintrack phantom --out DIR` for an example)."
        )
    return cases
