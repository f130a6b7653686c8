"""The module's "Export DICOM" headless (TwinTrackLib.dicomexport through the presenter), on real
MRML with a phantom CT written as a DICOM series, the real writers in the real worker process;
the Slicer calls (DICOM database, pip, DICOMUtils.importDicom) are stand-ins."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from scene_fixtures import mrml, phantom_calibrator  # noqa: F401  (fixtures)

from test_presenter import HeadlessDriver, stand_in, wait_for
from TwinTrackLogic.io import read_image
from TwinTrackLogic.io.dicom_series import check_series
from TwinTrackLib import dicomexport
from TwinTrackLib.dicomexport import INSTANCE_UIDS_ATTRIBUTE, DicomHost
from TwinTrackLib.volumes import add_volume

pydicom = pytest.importorskip("pydicom")
hd = pytest.importorskip("highdicom")
from dicom_helpers import phantom_ct  # noqa: E402


PM_CLASS, SEG_CLASS = "1.2.840.10008.5.1.4.1.1.30", "1.2.840.10008.5.1.4.1.1.66.4"


class Host:
    """Slicer's side: a DICOM database of files by instance UID, pip, DICOMUtils.importDicom."""

    def __init__(self, database, install_ok=True, import_ok=True):
        self.database, self.install_ok, self.import_ok = database, install_ok, import_ok
        self.installed, self.imported, self.folders = [], [], []
        self.skips = False  # the indexer skips the files without an error (N12)
        self.packages_dir = ""  # where install() puts the writers for the worker only (N4)
        self.during_import = None  # called inside import_folder: what the nested event loop may run (N3)

    def file_for_instance(self, uid):
        return self.database.get(uid, "")

    def install(self, requirements):
        self.installed.append(list(requirements))
        return self.install_ok

    def import_folder(self, folder):
        self.folders.append(folder)
        copies = Path(self.database_dir) / f"import{len(self.folders)}"
        if self.during_import is not None:
            self.during_import()
        shutil.copytree(folder, copies)  # copyFiles=True: the database keeps its own copies
        self.imported.extend(sorted(copies.iterdir()))
        if self.import_ok and not self.skips:
            for path in copies.iterdir():
                self.database[str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)] = str(path)
        return self.import_ok

    def as_host(self):
        return DicomHost(self.file_for_instance, self.install, self.import_folder, packages_dir=self.packages_dir)


def run_on(mrml, calibrator, tmp_path, dicom_origin=True):
    case, _ = phantom_ct(0, tmp_path / "ct")
    series = check_series(tmp_path / "ct")
    host = Host(dict(zip(series.sop_instance_uids, map(str, series.files))))
    host.database_dir = tmp_path / "database"
    host.database_dir.mkdir()
    driver = HeadlessDriver(mrml, start_inference=stand_in(calibrator, case.latent), dicom_host=host.as_host())
    node = add_volume(mrml.scene, "CT from DICOM", read_image(tmp_path / "ct"))
    if dicom_origin:
        node.SetAttribute(INSTANCE_UIDS_ATTRIBUTE, " ".join(series.sop_instance_uids))
    driver.set("inputVolume", node)
    driver.set("contourLevels", "30, 60")
    assert not driver.shown()["export_dicom_enabled"], "no result yet"
    driver.press_apply()
    assert not driver.shown()["export_dicom_enabled"], "not while the run runs"
    wait_for(driver)
    assert driver.presenter.agreement is not None, driver.shown()["status"]
    return driver, host, series


def test_a_dicom_ct_enables_export_which_adds_a_parametric_map_and_a_seg(mrml, phantom_calibrator, tmp_path,
                                                                         monkeypatch):
    driver, host, series = run_on(mrml, phantom_calibrator, tmp_path)
    assert driver.shown()["export_dicom_enabled"]
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    state = driver.presenter.export_dicom(driver.params)
    assert state.export_dicom_text == "Cancel" and state.export_dicom_enabled and state.job_running
    assert not state.apply_enabled and not state.fit_enabled, "one job at a time"
    assert host.folders == [], "written in the worker; the database gets them only when they verified"
    wait_for(driver)
    state = driver.shown()
    assert driver.presenter.take_error() is None
    assert state["status"].startswith("Exported to the DICOM database") and "Parametric Map" in state["status"]
    assert state["export_dicom_text"] == "Export DICOM" and state["export_dicom_enabled"]
    assert host.installed == [], "the packages are there: nothing to install"
    assert list(temp.iterdir()) == [], "the worker's private folder was not removed"
    datasets = [pydicom.dcmread(p) for p in host.imported]
    by_class = {ds.SOPClassUID: ds for ds in datasets}
    assert sorted(by_class) == [PM_CLASS, SEG_CLASS] and len(datasets) == 2
    for ds in datasets:
        assert ds.StudyInstanceUID == series.study_uid
    pm = hd.pm.ParametricMap.from_dataset(by_class[PM_CLASS])
    calibrated = driver.presenter.agreement.result.calibrated
    # One frame per CT slice, lowest first (the default extent, which OHIF needs too).
    np.testing.assert_array_equal(pm.pixel_array, calibrated)
    seg = by_class[SEG_CLASS]
    labels = [s.SegmentLabel for s in seg.SegmentSequence]
    assert labels == [f"≥ {v} % expected annotator agreement" for v in (30, 60)], "the panel's contour levels"


SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR


def test_export_dicom_adds_the_involvement_report_when_the_result_has_a_read_out(mrml, phantom_calibrator, tmp_path,
                                                                                    monkeypatch):
    """As `predict --dicom-out` does: with a read-out, the study gets the involvement SR too, written in
    the worker and checked into the database with the map and the SEG."""
    from test_dicom_sr import readout_angles, sr_angles
    from TwinTrackLogic.involvement import read_involvement
    from TwinTrackLogic.prediction_outputs import involvement_record

    driver, host, series = run_on(mrml, phantom_calibrator, tmp_path)
    case, _ = phantom_ct(0, tmp_path / "ct_again")  # the same phantom: its vessels
    result = driver.presenter.agreement.result
    result.involvement = read_involvement(result.calibrated, case.vessels, raters=5)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    driver.presenter.export_dicom(driver.params)
    wait_for(driver)
    state = driver.shown()
    assert driver.presenter.take_error() is None, state["status"]
    assert "Structured Report of the vascular involvement" in state["status"]
    by_class = {pydicom.dcmread(p).SOPClassUID: p for p in host.imported}
    assert sorted(by_class) == sorted([PM_CLASS, SEG_CLASS, SR_CLASS])
    assert pydicom.dcmread(by_class[SR_CLASS]).StudyInstanceUID == series.study_uid
    # Every vessel's angle at every level in the report is the read-out's.
    assert sr_angles(by_class[SR_CLASS]) == readout_angles(involvement_record(result))


def test_a_ct_without_dicom_origin_keeps_export_disabled(mrml, phantom_calibrator, tmp_path):
    driver, host, _ = run_on(mrml, phantom_calibrator, tmp_path, dicom_origin=False)
    assert driver.shown()["review_enabled"] and not driver.shown()["export_dicom_enabled"]
    driver.presenter.export_dicom(driver.params)  # a stray click does nothing
    assert host.folders == [] and driver.presenter.take_error() is None


def test_without_a_dicom_host_export_stays_disabled(mrml, phantom_calibrator):
    from TwinTrackLib import sampledata

    driver = HeadlessDriver(mrml, start_inference=stand_in(phantom_calibrator, sampledata.phantom_case().latent))
    node = driver.load_phantom()
    node.SetAttribute(INSTANCE_UIDS_ATTRIBUTE, "1.2.3")
    driver.set("inputVolume", node)
    driver.press_apply()
    wait_for(driver)
    assert driver.presenter.agreement is not None and not driver.shown()["export_dicom_enabled"]


def test_missing_packages_declined_or_files_gone_say_so(mrml, phantom_calibrator, tmp_path, monkeypatch):
    import TwinTrackLogic.dicom as dicom

    driver, host, series = run_on(mrml, phantom_calibrator, tmp_path)
    monkeypatch.setattr(dicom, "missing_packages", lambda: ["highdicom==0.28.2"])
    host.install_ok = False  # declined, or testing mode
    state = driver.presenter.export_dicom(driver.params)
    assert host.installed == [["highdicom==0.28.2"]] and host.folders == []
    assert state.status.startswith("Not exported: writing DICOM needs highdicom==0.28.2")
    host.install_ok = True  # installed, but pip did not make it appear
    state = driver.presenter.export_dicom(driver.params)
    assert state.status == "DICOM export failed: see the message."
    assert "still missing" in driver.presenter.take_error()[0]
    monkeypatch.undo()
    del host.database[series.sop_instance_uids[3]]
    state = driver.presenter.export_dicom(driver.params)
    message, details = driver.presenter.take_error()
    assert "1 of the" in message and "no longer in Slicer's DICOM database" in message and details == ""
    assert host.folders == [] and not state.job_running
    host.database[series.sop_instance_uids[3]] = str(series.files[3])
    host.import_ok = False
    driver.presenter.export_dicom(driver.params)
    wait_for(driver)
    assert "could not add them to its DICOM database" in driver.presenter.take_error()[0]
    assert driver.shown()["status"] == "Failed: see the message."
    assert len(host.folders) == 1 and all(not Path(folder).exists() for folder in host.folders)


def test_export_can_be_cancelled_and_leaves_nothing(mrml, phantom_calibrator, tmp_path, monkeypatch):
    driver, host, _ = run_on(mrml, phantom_calibrator, tmp_path)
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    state = driver.presenter.export_dicom(driver.params)
    assert state.export_dicom_text == "Cancel"
    driver.presenter.export_dicom(driver.params)  # pressed again: Cancel
    wait_for(driver)
    assert driver.shown()["status"].startswith("Cancelled") and host.folders == []
    assert list(temp.iterdir()) == []
    assert driver.shown()["export_dicom_enabled"], "a new export can start"


def test_a_bad_ct_file_fails_in_the_worker_with_the_writers_message(mrml, phantom_calibrator, tmp_path):
    driver, host, series = run_on(mrml, phantom_calibrator, tmp_path)
    Path(series.files[2]).write_bytes(b"not DICOM any more")
    driver.presenter.export_dicom(driver.params)
    wait_for(driver)
    message, _ = driver.presenter.take_error()
    assert str(series.files[2].name) in message and "Traceback" not in message
    assert host.folders == [] and driver.shown()["status"] == "Failed: see the message."


def test_a_package_loaded_at_an_older_version_asks_for_a_restart(monkeypatch):
    import sys
    import types

    monkeypatch.setitem(sys.modules, "highdicom", types.SimpleNamespace(__version__="0.27.0"))
    assert dicomexport.stale_modules(["highdicom==0.28.2", "pydicom==0.1"]) == ["highdicom 0.27.0"]
    calls = iter([["highdicom==0.28.2"], []])
    host = DicomHost(lambda uid: "", lambda requirements: True, lambda folder: True)
    text = dicomexport.ensure_packages(host, lambda: next(calls))
    assert "restart Slicer" in text


def test_a_database_that_skips_the_files_is_not_called_exported(mrml, phantom_calibrator, tmp_path):
    """N12: DICOMUtils.importDicom returns True when the indexer skipped the files."""
    driver, host, _ = run_on(mrml, phantom_calibrator, tmp_path)
    host.skips = True
    driver.presenter.export_dicom(driver.params)
    wait_for(driver)
    message, _ = driver.presenter.take_error()
    assert "did not take in 2 of the 2" in message
    assert not driver.shown()["status"].startswith("Exported")


def test_the_panel_during_the_database_import_cannot_import_twice_or_cancel(mrml, phantom_calibrator, tmp_path):
    """N3: the import spins a nested event loop (ctkDICOMIndexer::waitForImportFinished), in which
    the panel is live: a slider moves (poll), the timer fires (poll), Export/Cancel is pressed."""
    driver, host, _ = run_on(mrml, phantom_calibrator, tmp_path)
    seen = []

    def nested_event_loop():
        folder = Path(host.folders[-1])
        driver.set("agreementLevel", 60.0)  # a slider: parameters_changed -> state -> job.poll
        driver.pump()  # the QTimer: presenter.poll
        seen.append(driver.shown())
        driver.presenter.export_dicom(driver.params)  # the Export/Cancel button
        driver.pump()
        seen.append(folder.is_dir() and len(list(folder.iterdir())) == 2)

    host.during_import = nested_event_loop
    driver.presenter.export_dicom(driver.params)
    wait_for(driver)
    assert driver.presenter.take_error() is None
    assert len(host.folders) == 1, "imported twice"
    assert seen[0]["status"].startswith("Adding the Parametric Map") and not seen[0]["export_dicom_enabled"]
    assert seen[1] is True, "the folder went while the database was copying it"
    assert driver.shown()["status"].startswith("Exported to the DICOM database")


def _distribution(folder, name, version):
    info = folder / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def test_the_writers_are_judged_as_the_worker_will_import_them(tmp_path, monkeypatch):
    """N4: a private folder the worker puts first; what is there wins over Slicer's own packages."""
    import sys
    import types

    private = tmp_path / "packages"
    _distribution(private, "highdicom", "0.27.0")  # what Slicer 5.12 bundles, shadowing a newer one
    host = DicomHost(lambda uid: "", lambda requirements: True, lambda folder: True, packages_dir=str(private))
    assert dicomexport.missing_for_worker(host) == ["highdicom==0.28.2"]
    _distribution(tmp_path / "fresh", "highdicom", "0.28.2")
    _distribution(tmp_path / "fresh", "pydicom", "3.0.2")
    host.packages_dir = str(tmp_path / "fresh")
    assert dicomexport.missing_for_worker(host) == []
    # Slicer's own pydicom 2.4.4 was imported long ago: with a private folder, no restart.
    monkeypatch.setitem(sys.modules, "pydicom", types.SimpleNamespace(__version__="2.4.4"))
    calls = iter([["pydicom==3.0.2"], []])
    assert dicomexport.ensure_packages(host, lambda: next(calls)) is None


def test_the_worker_imports_the_writers_from_the_private_folder_first(mrml, phantom_calibrator, tmp_path):
    driver, host, _ = run_on(mrml, phantom_calibrator, tmp_path)
    shadow = tmp_path / "packages" / "pydicom"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("private", name="the-private-pydicom")\n')
    host.packages_dir = str(tmp_path / "packages")
    driver.presenter._dicom_host = host.as_host()
    driver.presenter.export_dicom(driver.params)
    wait_for(driver)
    message, _ = driver.presenter.take_error()
    assert "(the-private-pydicom is missing)" in message, "the worker did not import the private folder first"
