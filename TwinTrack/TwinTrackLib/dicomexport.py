"""The module's "Export DICOM", without Qt or the Slicer application: when it is live, which files
make the CT, the status texts and the call to the core's writer.

The Slicer-specific calls come in a :class:`DicomHost` (TwinTrack.py builds it from
``slicer.dicomDatabase``, ``slicer.util.pip_install`` and ``DICOMUtils.importDicom``); tests pass
stand-ins. The objects are the same as ``twintrack predict --dicom-out`` writes
(:mod:`TwinTrackLogic.dicom.export`): the calibrated map as a Parametric Map, the agreement masks
as a SEG. The main thread installs the packages and finds the CT's files (:func:`prepare_export`);
the worker process writes the objects into its private folder
(:func:`TwinTrackLogic.worker.process.start_dicom_export`), off Slicer's main thread; once they verified,
the main thread adds them to the database (:func:`into_database`) and the folder is removed.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from TwinTrackLogic import InputError, TwinTrackError

# Slicer's DICOM plugins set it on every volume they load from the database: the SOP Instance
# UIDs of its slices, space-separated.
INSTANCE_UIDS_ATTRIBUTE = "DICOM.instanceUIDs"
# DICOM objects that load as a scalar volume but are no CT: Slicer's DICOMParametricMapPlugin
# loads a Parametric Map (ours, re-imported, included) as a scalar volume and sets only
# DICOM.instanceUIDs on it (Slicer main DICOMParametricMapPlugin.py:37, :113).
NOT_CT_SOP_CLASSES = {"1.2.840.10008.5.1.4.1.1.30": "a DICOM Parametric Map",
                      "1.2.840.10008.5.1.4.1.1.66.4": "a DICOM Segmentation"}


@dataclass
class DicomHost:
    """What the host application does for the export.

    - ``file_for_instance(uid) -> str``: the file of that instance in the DICOM database ("" if none);
    - ``install(requirements) -> bool``: ask the user and pip-install them; False when declined
      (or in testing mode, where nothing may ask);
    - ``import_folder(folder) -> bool``: add the files in ``folder`` to the database (copying them:
      the folder is removed afterwards); False when it failed;
    - ``sop_class_for_instance(uid) -> str``: the instance's SOP Class UID ("" if unknown);
    - ``packages_dir``: where ``install`` puts the writers' packages, a folder only the worker puts
      on its path (first), so Slicer's own DICOM stack is never replaced and no restart is needed
      (finding N4). "" : they go into the host's own Python.
    """

    file_for_instance: Callable[[str], str]
    install: Callable[[List[str]], bool]
    import_folder: Callable[[str], bool]
    sop_class_for_instance: Callable[[str], str] = lambda uid: ""
    packages_dir: str = ""


# What highdicom needs beyond numpy and Pillow (which every Slicer ships and which the worker must
# keep taking from Slicer); installed next to highdicom and pydicom when the host lacks them.
WRITER_DEPENDENCIES = ("pyjpegls", "typing-extensions", "packaging")


def _installed_version(name: str, paths: Sequence[str]) -> Optional[str]:
    """The version a Python with ``paths`` first would import (the first distribution found)."""
    from importlib import metadata

    found = next(iter(metadata.distributions(name=name, path=list(paths))), None)
    return None if found is None else found.version


def missing_for_worker(host: DicomHost) -> List[str]:
    """The requirements to install before the worker can write DICOM, as it would see them: the
    private folder first, then this Python's path (empty when ready)."""
    from TwinTrackLogic import dicom

    if not host.packages_dir:
        return dicom.missing_packages()
    import importlib

    importlib.invalidate_caches()  # an install a moment ago must count
    paths = [host.packages_dir, *sys.path]
    needed = []
    for name, version in dicom.REQUIRED.items():
        installed = _installed_version(name, paths)
        if installed is None or _version(installed) < _version(version):
            needed.append(f"{name}=={version}")
    if needed:
        needed += [name for name in WRITER_DEPENDENCIES if _installed_version(name, paths) is None]
    return needed


def not_a_ct(node, host: Optional[DicomHost]) -> Optional[str]:
    """What ``node`` is when the DICOM database says it is no CT ("a DICOM Parametric Map"), else None."""
    uids = instance_uids(node)
    if host is None or not uids:
        return None
    return NOT_CT_SOP_CLASSES.get(host.sop_class_for_instance(uids[0]) or "")


def instance_uids(node) -> List[str]:
    """The SOP Instance UIDs of the node's DICOM slices; empty when it did not come from the database."""
    if node is None:
        return []
    return (node.GetAttribute(INSTANCE_UIDS_ATTRIBUTE) or "").split()


def can_export(agreement) -> bool:
    """The button is live: there is a result and its CT came from the DICOM database."""
    return agreement is not None and bool(instance_uids(agreement.ct_node))


def ct_files(node, file_for_instance: Callable[[str], str]) -> List[Path]:
    """The CT's files in the database, one per instance UID; refused when any is missing."""
    uids = instance_uids(node)
    if not uids:
        raise InputError(f"'{node.GetName()}' was not loaded from Slicer's DICOM database, so there is no "
                         "study to add DICOM results to. Load the CT from the DICOM module and run again.")
    files, missing = [], []
    for uid in uids:
        path = file_for_instance(uid) or ""
        if path and Path(path).is_file():
            files.append(Path(path))
        else:
            missing.append(uid)
    if missing:
        raise InputError(f"{len(missing)} of the {len(uids)} slices of '{node.GetName()}' are no longer in "
                         f"Slicer's DICOM database (first missing instance {missing[0]}). Import the CT "
                         "series into the database again, load it from there and rerun.")
    return files


def _version(text: str):
    return tuple(int(part) for part in str(text).split(".")[:3] if part.isdigit())


def stale_modules(requirements: Sequence[str]) -> List[str]:
    """Packages already imported in this process at an older version than required: a pip
    install a moment ago does not replace them until the application restarts."""
    stale = []
    for requirement in requirements:
        name, _, version = requirement.partition("==")
        module = sys.modules.get(name)
        if module is not None and version and _version(getattr(module, "__version__", "0")) < _version(version):
            stale.append(f"{name} {getattr(module, '__version__', '?')}")
    return stale


def ensure_packages(host: DicomHost, missing_packages: Callable[[], List[str]]) -> Optional[str]:
    """None when the DICOM writers are ready; else the status text saying why not."""
    needed = missing_packages()
    if not needed:
        return None
    if not host.install(list(needed)):
        return (f"Not exported: writing DICOM needs {', '.join(needed)} in Slicer's Python, which were "
                "not installed.")
    still = missing_packages()
    if still:
        raise TwinTrackError(f"After installing, {', '.join(still)} are still missing in Slicer's Python; "
                             "see the Python console for pip's output.")
    if host.packages_dir:  # only the worker imports them: nothing in this process is stale
        return None
    stale = stale_modules(needed)
    if stale:
        return (f"Installed {', '.join(needed)}; Slicer had already loaded {', '.join(stale)}, so restart "
                "Slicer and press Export DICOM again.")
    return None


def prepare_export(agreement, host: DicomHost) -> Tuple[Optional[str], List[Path]]:
    """What the main thread does before the export starts: the packages (pip, on the user's
    consent) and the CT's files. ``(status, [])`` when it cannot start, else ``(None, files)``."""
    not_ready = ensure_packages(host, lambda: missing_for_worker(host))
    if not_ready:
        return not_ready, []
    return None, ct_files(agreement.ct_node, host.file_for_instance)


def into_database(host: DicomHost) -> Callable[[Path, List[str]], None]:
    """The worker's ``deliver``: add the written folder's objects (the map, the SEG and, with a read-out,
    the involvement report) to the DICOM database, then check that the database holds every one: the
    indexer skips a file it cannot take without raising."""
    def deliver(folder: Path, instance_uids: List[str]) -> None:
        if not host.import_folder(str(folder)):
            raise TwinTrackError("The DICOM objects were written, but Slicer could not add them to its DICOM "
                                 "database; see the Python console.")
        missing = [uid for uid in instance_uids if not host.file_for_instance(uid)]
        if missing:
            raise TwinTrackError(f"The DICOM objects were written, but the DICOM database did not take in "
                                 f"{len(missing)} of the {len(instance_uids)} (first missing instance {missing[0]}). "
                                 "Check the DICOM module's database folder is writable, and see the Python "
                                 "console.")

    return deliver


def exported_status(frames: Dict[str, int], report: bool = False) -> str:
    report_text = ", and a Structured Report of the vascular involvement" if report else ""
    return (f"Exported to the DICOM database, in the CT's study: a Parametric Map of the calibrated "
            f"probability ({frames.get('parametric_map', '?')} frames) and a Segmentation of the agreement "
            f"levels ({frames.get('segmentation', '?')} frames){report_text}. Find them in the DICOM module.")
