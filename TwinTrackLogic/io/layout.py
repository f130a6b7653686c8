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
from typing import Dict, List, Optional

import numpy as np

from ..errors import InputError
from .geometry import Geometry, PathLike
from .images import IMAGE_SUFFIXES, image_stem, read_mask

# One naming rule for every image of a case: a role's stem plus any suffix of IMAGE_SUFFIXES,
# both case-insensitive ("IMAGE.NII.GZ" is the CT, in NIfTI). Each role holds one file.
ANNOTATION_STEM = re.compile(r"^annotation_(\d+)$")
SINGLE_ROLES = ("image", "pancreas", "roi", "vessels")


def image_files(folder: Path) -> Dict[str, List[Path]]:
    """The image files of a folder by lower-case stem (``"annotation_1"`` -> its files), sorted."""
    files: Dict[str, List[Path]] = {}
    for entry in sorted(folder.iterdir()):
        stem = image_stem(entry.name)
        if stem is not None and entry.is_file():
            files.setdefault(stem, []).append(entry)
    return files


def _one_of(folder: Path, role: str, files: List[Path]) -> str:
    names = ", ".join(path.name for path in files)
    return (f"{folder} holds {role} in {len(files)} files ({names}); TwinTrack cannot tell which is meant "
            "(an annotation would be counted twice). Keep one of them and move the others out of the folder.")


def _annotations(folder: Path, files: Dict[str, List[Path]]):
    """(the annotation files sorted by rater number, the layout problem or None)."""
    numbered: Dict[int, List[Path]] = {}
    for stem, paths in files.items():
        match = ANNOTATION_STEM.match(stem)
        if match:
            numbered.setdefault(int(match.group(1)), []).extend(paths)
    for number in sorted(numbered):
        if len(numbered[number]) > 1:
            return [], _one_of(folder, f"rater {number}'s annotation", numbered[number])
    numbers = sorted(numbered)
    annotations = [numbered[number][0] for number in numbers]
    if numbers and numbers != list(range(1, len(numbers) + 1)):
        missing = sorted(set(range(1, max(numbers) + 1)) - set(numbers))
        found = ", ".join(str(number) for number in numbers)
        gap = (f"no annotation_{', annotation_'.join(str(n) for n in missing)}" if missing
               else "numbering that does not start at 1")
        return annotations, (
            f"{folder} has annotations of raters {found} but {gap}: a rater's file is missing (the MHR would "
            f"count {len(numbers)} raters where there were {max(numbers)}). Restore the missing file, or "
            f"renumber the annotations annotation_1 ... annotation_{len(numbers)}."
        )
    return annotations, None


def _dicom_image_folder(folder: Path) -> Optional[Path]:
    """A case's CT given as a DICOM series: the sub-folder ``image/`` (any case: ``IMAGE/``)."""
    return next((entry for entry in sorted(folder.iterdir()) if entry.is_dir() and entry.name.lower() == "image"),
                None)


@dataclass
class Case:
    """The files of one case folder (CURVAS-PDACVI layout).

    problem: what is wrong with the folder's layout (no CT, one role in two files, a gap in the
    rater numbers), or None. A cohort run reports such a case and skips it (:meth:`check`)."""

    folder: Path
    image: Path
    annotations: List[Path] = field(default_factory=list)
    pancreas: Optional[Path] = None
    roi: Optional[Path] = None
    vessels: Optional[Path] = None
    problem: Optional[str] = None

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def raters(self) -> int:
        return len(self.annotations)

    def check(self) -> None:
        """InputError with the layout problem, if the folder has one."""
        if self.problem:
            raise InputError(self.problem)

    def file(self, stem_or_name: str) -> Optional[Path]:
        """A file of this case by name (``probability.nii.gz``) or by the naming rule: the stem
        (``probability``, or the name's stem) with any image suffix, in any case."""
        direct = self.folder / stem_or_name
        if direct.is_file():
            return direct
        stem = image_stem(stem_or_name) or stem_or_name.lower()
        candidates = image_files(self.folder).get(stem, [])
        if len(candidates) > 1:
            raise InputError(_one_of(self.folder, stem, candidates))
        return candidates[0] if candidates else None

    @classmethod
    def scan(cls, folder: PathLike) -> "Case":
        """The case in ``folder``, with any layout problem recorded rather than raised."""
        folder = Path(folder)
        if not folder.is_dir():
            raise InputError(f"{folder} is not a folder. A case is a folder holding image.nii.gz and annotations.")
        files = image_files(folder)
        problems = [_one_of(folder, role, files[role]) for role in SINGLE_ROLES if len(files.get(role, [])) > 1]
        annotations, annotation_problem = _annotations(folder, files)
        if annotation_problem:
            problems.append(annotation_problem)
        image = files.get("image", [None])[0]
        dicom_folder = _dicom_image_folder(folder)
        if image is not None and dicom_folder is not None:
            problems.insert(0, f"{folder} holds its CT twice ({image.name} and the DICOM folder {dicom_folder.name}/); "
                               "TwinTrack cannot tell which is meant. Keep one of them.")
        image = image or dicom_folder
        if image is None:
            problems.insert(0, f"{folder} has no image file (image{', image'.join(IMAGE_SUFFIXES)}, in any case) "
                               "and no image/ DICOM folder readable as its CT. Each case folder needs its CT "
                               "as image.nii.gz (or a DICOM series in image/).")
            image = folder / "image.nii.gz"
        single = {role: files.get(role, [None])[0] for role in ("pancreas", "roi", "vessels")}
        return cls(folder=folder, image=image, annotations=annotations, problem=" ".join(problems) or None,
                   **single)

    @classmethod
    def from_folder(cls, folder: PathLike) -> "Case":
        """The case in ``folder``; InputError if its layout has a problem."""
        case = cls.scan(folder)
        case.check()
        return case

    def read_annotations(self, reference: Geometry) -> List[np.ndarray]:
        """All rater masks as bool arrays, each checked against the image grid."""
        self.check()
        return [read_mask(path, reference, self.image) for path in self.annotations]


def _looks_like_case(folder: Path) -> bool:
    files = image_files(folder)
    return ("image" in files or _dicom_image_folder(folder) is not None
            or any(ANNOTATION_STEM.match(stem) for stem in files))


def find_cases(cohort: PathLike) -> List[Case]:
    """Every case folder of a cohort, sorted by name: each sub-folder with a CT or annotations.

    A folder with annotations but no CT, one role in two files or a gap in its rater numbers is
    a case with a ``problem``: reported and skipped by the run that loads it, never dropped."""
    cohort = Path(cohort)
    if not cohort.is_dir():
        raise InputError(f"{cohort} is not a folder. A cohort is a folder of case folders.")
    cases = [Case.scan(entry) for entry in sorted(cohort.iterdir()) if entry.is_dir() and _looks_like_case(entry)]
    if not cases:
        raise InputError(
            f"{cohort} holds no case folders. Each case is a sub-folder with image.nii.gz and "
            "annotation_1.nii.gz ... annotation_K.nii.gz (run `twintrack phantom --out DIR` for an example)."
        )
    return cases
