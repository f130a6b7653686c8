"""DICOM UIDs checked before an object is written: what DICOM forbids is never written.

A UID (PS3.5 section 9.1) is at most 64 characters of digits and dots, in components that are
neither empty nor start with 0 unless they are the single digit 0. Scanners and anonymisers
sometimes break the rule (70 characters, letters, a leading zero); copied into our objects, such
a UID makes a validator and many archives refuse them. So every UID of an object we write, the
ones copied from the CT and the ones we make, is checked here first, and a bad UID of the CT
is refused with its tag and value, or, only when the user asks (``--replace-invalid-uids``),
replaced by a new UID, which the objects then record (:func:`replacement_note`).
"""

from __future__ import annotations

import re
import uuid
from typing import Dict, Iterable, List, Optional, Tuple

from ..errors import InputError

MAX_LENGTH = 64
_COMPONENT = re.compile(r"0|[1-9][0-9]*")

# The CT's UIDs the objects copy: (attribute, tag), as messages name them.
SERIES_UIDS = (("StudyInstanceUID", "(0020,000D)"), ("SeriesInstanceUID", "(0020,000E)"),
               ("FrameOfReferenceUID", "(0020,0052)"))
SOP_INSTANCE = ("SOPInstanceUID", "(0008,0018)")


def uid_problem(value: str) -> Optional[str]:
    """What is wrong with ``value`` as a DICOM UID, or None when it is valid."""
    if not value:
        return "it is empty"
    if len(value) > MAX_LENGTH:
        return f"it is {len(value)} characters long; at most {MAX_LENGTH} are allowed"
    odd = sorted({character for character in value if not (character.isdigit() and character.isascii())
                  and character != "."})
    if odd:
        return f"it holds {', '.join(repr(c) for c in odd[:5])}; a UID holds only digits and dots"
    for component in value.split("."):
        if not component:
            return "it has an empty component (two dots in a row, or a dot at an end)"
        if not _COMPONENT.fullmatch(component):
            return f"its component {component!r} starts with 0"
    return None


def new_uid() -> str:
    """A new UID under the UUID root 2.25 (PS3.5 B.2): at most 44 characters, checked."""
    made = f"2.25.{uuid.uuid4().int}"
    problem = uid_problem(made)
    if problem:  # cannot happen for a UUID; a broken generator must not write a bad object
        raise RuntimeError(f"made an invalid UID {made!r}: {problem}")
    return made


def _refusal(where: str, attribute: str, tag: str, value: str, problem: str) -> InputError:
    return InputError(
        f"{where}: the CT's {attribute} {tag} is {value!r}, which is not a valid DICOM UID ({problem}). "
        "DICOM objects that copy it would be refused by validators and archives, so nothing was written. "
        "Export the CT again from the archive with valid UIDs, or pass --replace-invalid-uids to give the "
        "results new UIDs in its place (recorded in the objects).")


def check_series_uids(series, replace: bool = False) -> Dict[str, Tuple[str, str]]:
    """Check the UIDs of a :class:`~TwinTrackLogic.io.dicom_series.DicomSeries` the objects copy.

    Refused (InputError naming the file, tag and value) unless ``replace``; then returns
    ``{attribute: (old, new)}`` for each replaced UID (SOP instance UIDs as
    ``SOPInstanceUID <file name>``), and the caller puts the new values in the source headers."""
    replaced: Dict[str, Tuple[str, str]] = {}
    for attribute, tag in SERIES_UIDS:
        value = getattr(series, {"StudyInstanceUID": "study_uid", "SeriesInstanceUID": "series_uid",
                                 "FrameOfReferenceUID": "frame_of_reference_uid"}[attribute])
        if not value:
            continue  # a missing UID is check_references' refusal, with its own advice
        problem = uid_problem(value)
        if problem:
            if not replace:
                raise _refusal(str(series.files[0]), attribute, tag, value, problem)
            replaced[attribute] = (value, new_uid())
    for path, value in zip(series.files, series.sop_instance_uids):
        problem = uid_problem(value) if value else None
        if problem:
            if not replace:
                raise _refusal(str(path), *SOP_INSTANCE, value, problem)
            replaced[f"SOPInstanceUID {path.name}"] = (value, new_uid())
    return replaced


def apply_replacements(datasets: Iterable, files: List, replaced: Dict[str, Tuple[str, str]]) -> None:
    """Put the new UIDs into the CT's headers (in memory only: the CT's files stay as they are)."""
    for dataset, path in zip(datasets, files):
        for attribute, (old, new) in replaced.items():
            name = attribute.split(" ")[0]
            if (" " not in attribute or attribute.endswith(f" {path.name}")) and str(dataset.get(name, "")) == old:
                setattr(dataset, name, new)


def replacement_note(replaced: Dict[str, Tuple[str, str]]) -> str:
    """The sentence the objects carry about replaced UIDs ('' when none were)."""
    if not replaced:
        return ""
    shown = "; ".join(f"{attribute} {old!r} -> {new}" for attribute, (old, new) in list(replaced.items())[:4])
    more = f"; and {len(replaced) - 4} more" if len(replaced) > 4 else ""
    return f" Invalid UIDs of the source CT were replaced at the user's request (--replace-invalid-uids): {shown}{more}."


def _walk_uids(dataset, where: str = ""):
    for element in dataset:
        if element.VR == "SQ":
            for index, item in enumerate(element.value):
                yield from _walk_uids(item, f"{where}{element.keyword}[{index}].")
        elif element.VR == "UI" and element.value not in (None, ""):
            values = element.value if element.VM > 1 else [element.value]
            for value in values:
                yield f"{where}{element.keyword or element.tag}", element.tag, str(value)


def check_dataset_uids(dataset, name: str) -> None:
    """Refuse to write ``dataset`` (``name``: what it is) if any UID in it, at any depth, is invalid."""
    meta = getattr(dataset, "file_meta", None)
    for keyword, tag, value in [*_walk_uids(dataset), *(_walk_uids(meta) if meta is not None else [])]:
        problem = uid_problem(value)
        if problem:
            raise InputError(f"The {name} would carry {keyword} ({tag.group:04X},{tag.element:04X}) = {value!r}, "
                             f"which is not a valid DICOM UID ({problem}); nothing was written. Export the CT "
                             "again with valid UIDs, or pass --replace-invalid-uids.")
