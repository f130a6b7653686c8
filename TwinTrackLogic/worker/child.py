"""The worker process's entry point: ``python -m TwinTrackLogic.worker.child REQUEST.json``.

Runs the same job bodies the in-process worker runs (:func:`~TwinTrackLogic.worker.jobs.ensemble_job`,
:func:`~TwinTrackLogic.worker.jobs.calibration_job`), inside the request's private folder, and speaks
JSON lines on stdout (see :mod:`TwinTrackLogic.worker.process`):

- ``{"event": "progress", "fraction": f, "message": m}``, at most about ten a second;
- then ``{"event": "done", "files": {key: {"name", "sha256"}}, ...}``, or
  ``{"event": "failed" | "cancelled", "message": m, "details": d}`` with the people-facing
  message :func:`~TwinTrackLogic.worker.jobs.failure_outcome` gives (the CLI's wording for our errors).

Anything else that writes to file descriptor 1 (a library's print, C code) is moved to stderr,
so the protocol stream holds only protocol lines.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable, Dict, Optional, Tuple

from .jobs import CANCELLED, failure_outcome
from .process import PROTOCOL_KEY, PROTOCOL_VERSION

EXIT_OK, EXIT_FAILED, EXIT_CANCELLED = 0, 2, 130
OWNER_CHECK_S = 1.0
_SYNCHRONIZE, _WAIT_OBJECT_0, _ERROR_INVALID_PARAMETER = 0x00100000, 0, 87


class Protocol:
    """JSON lines on the original stdout; stray writes to stdout go to stderr instead."""

    def __init__(self) -> None:
        sys.stdout.flush()
        self._stream = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
        os.dup2(2, 1)  # C-level writes to fd 1 now land in stderr
        sys.stdout = sys.stderr
        self._last: Tuple[float, float, Optional[str]] = (0.0, -1.0, None)

    def send(self, event: str, **fields: Any) -> None:
        line = json.dumps({PROTOCOL_KEY: PROTOCOL_VERSION, "event": event, **fields}, allow_nan=False)
        self._stream.write(line + "\n")
        self._stream.flush()

    def progress(self, fraction: float, message: str) -> None:
        now = time.monotonic()
        last_time, last_fraction, last_message = self._last
        if message == last_message and fraction - last_fraction < 0.01 and now - last_time < 0.1:
            return
        self._last = (now, fraction, message)
        self.send("progress", fraction=round(float(fraction), 4), message=str(message))


def _owner_alive(pid: int) -> Callable[[], bool]:
    """A check that process ``pid`` still runs (POSIX: signal 0; Windows: a handle opened now, so a
    later process reusing the pid is not mistaken for the owner)."""
    if sys.platform == "win32":
        import ctypes
        from ctypes import wintypes

        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined,unused-ignore]
        kernel32.OpenProcess.restype = wintypes.HANDLE
        kernel32.OpenProcess.argtypes = (wintypes.DWORD, wintypes.BOOL, wintypes.DWORD)
        kernel32.WaitForSingleObject.argtypes = (wintypes.HANDLE, wintypes.DWORD)
        handle = kernel32.OpenProcess(_SYNCHRONIZE, False, pid)
        if not handle:
            return (lambda: False) if ctypes.get_last_error() == _ERROR_INVALID_PARAMETER else (lambda: True)
        return lambda: kernel32.WaitForSingleObject(handle, 0) != _WAIT_OBJECT_0

    def alive() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # someone else's process: not ours, but alive
            return True
        return True

    return alive


def _watch_owner(folder: Optional[Path], owner_pid: Optional[int], owner_pipe: BinaryIO) -> None:
    """When the owner (the Slicer process that started the job) goes away, remove the private folder
    (it holds the CT) and exit, so no orphan keeps computing or leaves a copy of the CT behind.

    Two signs, either enough: end-of-file on ``owner_pipe`` (stdin: its only write end is in the
    owner, and CTKAppLauncher forwards stdin to python-real), and ``owner_pid`` no longer alive.
    Never ``getppid()``: inside Slicer the parent is the launcher (PythonSlicer), which outlives
    a crashed Slicer, and on Windows the parent pid never changes.
    """

    def leave() -> None:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        os._exit(EXIT_CANCELLED)

    def watch_pipe() -> None:
        while True:
            try:
                data = os.read(owner_pipe.fileno(), 4096)  # the owner never writes: this blocks until EOF
            except OSError:
                data = b""
            if not data:
                leave()

    threading.Thread(target=watch_pipe, name="owner pipe watch", daemon=True).start()
    if owner_pid is None:
        return
    alive = _owner_alive(int(owner_pid))

    def watch_pid() -> None:
        while alive():
            time.sleep(OWNER_CHECK_S)
        leave()

    threading.Thread(target=watch_pid, name="owner pid watch", daemon=True).start()


def _file(path: Path) -> Dict[str, str]:
    from ..pipeline import file_sha256

    return {"name": path.name, "sha256": file_sha256(path)}


def _inference(request: dict, folder: Path, progress) -> Dict[str, Any]:
    import numpy as np

    from ..io import StagedOutputs, read_image
    from ..progress import CancelToken
    from .jobs import ensemble_job, phantom_stand_in_job

    image = read_image(folder / request["image"], dtype=np.float32)
    vessels = None
    if request.get("vessels"):  # a name inside the private folder, as the CT's
        vessels = read_image(folder / Path(request["vessels"]).name).array
    stand_in = request.get("stand_in")
    if stand_in:  # the module's self-test without ONNX Runtime
        work = phantom_stand_in_job(image, case=int(stand_in["case"]), raters=int(stand_in["raters"]),
                                    seed=int(stand_in["seed"]), bundle_dir=request.get("bundle"),
                                    calibrator_path=request.get("calibrator"), level=float(request.get("level", 0.5)),
                                    vessels=vessels, vessels_source=request.get("vessels_source"))
    else:
        work = ensemble_job(image, bundle_dir=request.get("bundle"), calibrator_path=request.get("calibrator"),
                            device=request.get("device", "auto"), threads=request.get("threads"),
                            level=float(request.get("level", 0.5)), vessels=vessels,
                            vessels_source=request.get("vessels_source"))
    result = work(progress, CancelToken())
    maps = {"raw": result.raw, "calibrated": result.calibrated, "region": result.region}
    if result.organ is not None:
        maps["organ"] = result.organ
    if result.vessels is not None:  # given or from the bundle's vessel stage: the parent shows the read-out
        maps["vessels"] = result.vessels
    meta = {"level": result.level, "raters": result.raters, "is_calibrated": result.is_calibrated,
            "provenance": result.provenance}
    paths = {key: folder / f"{key}.nrrd" for key in maps}
    paths["result"] = folder / "result.json"
    with StagedOutputs() as outputs:  # uncompressed: the parent reads them straight back
        for key, array in maps.items():
            outputs.image(paths[key], array, image.geometry, compress=False)
        outputs.json(paths["result"], meta)
    return {"files": {key: _file(path) for key, path in paths.items()}}


def _calibration(request: dict, folder: Path, progress) -> Dict[str, Any]:
    from ..progress import CancelToken
    from .jobs import calibration_job

    staged = folder / "calibrator.json"
    fit = calibration_job(Path(request["cohort"]), staged, bundle_dir=request.get("bundle"),
                          device=request.get("device", "auto"),
                          method=request.get("method", "isotonic"))(progress, CancelToken())
    summary = {"used": list(fit.used), "failures": [list(item) for item in fit.failures],
               "ece_before": float(fit.ece_before), "ece_after": float(fit.ece_after),
               "warnings": [list(item) for item in fit.warnings]}
    return {"files": {"calibrator": _file(staged)}, "summary": summary}


def _dicom_export(request: dict, folder: Path, progress) -> Dict[str, Any]:
    import numpy as np

    from ..dicom.export import DEFAULT_LEVELS, export_for_files
    from ..io import read_image
    from .process import EXPORT_FOLDER

    progress(0.1, "Writing the DICOM Parametric Map and Segmentation"
             + (" and the involvement report" if request.get("involvement") else ""))
    volume = read_image(folder / request["map"], dtype=np.float32)
    exported = export_for_files([Path(path) for path in request["files"]], volume.array, volume.geometry,
                                folder / EXPORT_FOLDER, provenance=request.get("provenance"),
                                levels=request.get("levels") or DEFAULT_LEVELS, involvement=request.get("involvement"))
    files = {"parametric_map": _file(exported.parametric_map), "segmentation": _file(exported.segmentation)}
    if exported.report is not None:
        files["report"] = _file(exported.report)
    return {"files": files, "frames": exported.frames,
            "instance_uids": [str(ds.SOPInstanceUID) for ds in exported.datasets]}


KINDS = {"inference": _inference, "calibration": _calibration, "dicom_export": _dicom_export}


def main(argv: Optional[list] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    protocol = Protocol()
    try:
        if len(argv) != 1:
            raise SystemExit("usage: python -m TwinTrackLogic.worker.child REQUEST.json")
        request_path = Path(argv[0]).resolve()
        request = json.loads(request_path.read_text(encoding="utf-8"))
        _watch_owner(request_path.parent, request.get("owner_pid"), sys.stdin.buffer)
        if request.get("packages_dir"):  # packages installed for the worker only: before Slicer's own
            sys.path.insert(0, str(request["packages_dir"]))
        kind = KINDS.get(request.get("kind"))
        if kind is None:
            raise ValueError(f"unknown request kind {request.get('kind')!r}")
        protocol.progress(0.0, "Worker process started")
        done = kind(request, request_path.parent, protocol.progress)
    except BaseException as error:  # every failure becomes a message for people
        outcome = failure_outcome(error)
        protocol.send(outcome.status, message=outcome.message, details=outcome.details)
        return EXIT_CANCELLED if outcome.status == CANCELLED else EXIT_FAILED
    protocol.send("done", **done)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
