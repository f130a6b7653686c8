"""Long work in a child process: inference, calibrator fitting and DICOM export off the caller's interpreter.

Inside 3D Slicer a Python thread only advances while Slicer's main thread runs Python
(PythonQt keeps the GIL while the Qt loop idles), which made a threaded inference 5-13x slower
than on the main thread. So, as MONAIAuto3DSeg does, the module runs the work in a child
Python (Slicer's ``PythonSlicer``; ``sys.executable`` elsewhere) that runs the core's own entry
point, :mod:`TwinTrackLogic.worker.child`, i.e. the same job bodies the in-process
:class:`~TwinTrackLogic.worker.jobs.BackgroundJob` runs.

- The CT goes to the child as a file in a private temporary folder (0700), with a JSON request.
- The child writes progress as JSON lines on its stdout; stdout and stderr go to files in that
  folder, so the parent needs no reader thread (nothing here depends on the GIL) and a chatty
  child can never block on a full pipe. ``poll`` reads what is new.
- Inside Slicer the child is two processes: ``PythonSlicer`` is CTKAppLauncher, which starts
  ``python-real`` as *its* child and waits for it (see ``Testing/slicer_app_stand_in.py`` for
  the AppLauncher source lines). So nothing here or in the child relies on ``getppid()``.
  ``cancel`` ends the whole tree (POSIX: the process group the launcher leads and python-real
  inherits; Windows: a Job Object both belong to) and removes the folder.
- The child watches its owner (this process), not its parent: it holds the read end of a pipe
  whose only write end stays here (the launcher forwards stdin to python-real); end-of-file, or
  this pid no longer alive, means the owner is gone (Slicer crashed or was killed), and the child
  removes the private folder (the CT copy) and exits. No orphan keeps computing.
- Errors arrive as the CLI's people-facing messages; a crash, a kill or garbage becomes one.
- The result is read only after the child exited 0, reported its outputs and they verified
  (sha256, grid, value range); then the folder is removed.

:class:`WorkerProcess` has :class:`~TwinTrackLogic.worker.jobs.BackgroundJob`'s interface
(``poll``, ``cancel``, ``wait``, ``running``, ``token``), so callers treat both alike.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import InputError, TwinTrackError
from ..progress import CancelToken
from .jobs import CANCELLED, DONE, FAILED, Outcome

PROTOCOL_KEY = "twintrack_worker"  # every line of the protocol is a JSON object with this key
PROTOCOL_VERSION = 1
CHILD_MODULE = "TwinTrackLogic.worker.child"
FOLDER_PREFIX = "twintrack-worker-"  # the private folders, in the temporary directory
EXPORT_FOLDER = "dicom"  # the DICOM export's subfolder of the private folder: only the two objects
VESSELS_GIVEN = "vessels_given.nrrd"  # the caller's vessel label map; the one the read-out used comes back as vessels.nrrd
CORE_ROOT = Path(__file__).resolve().parents[1]  # the folder holding the TwinTrackLogic package
MAX_LINE_BYTES = 1 << 20  # a longer "line" is garbage, not protocol
READ_BYTES = 4 << 20  # read per poll
KILL_WAIT_S = 1.0
# What CTKAppLauncher prints, with exit code 1, when the program it launched crashed or was
# killed (AppLauncher Base/ctkAppLauncher.cpp:747-751): the signal itself does not reach us.
LAUNCHER_CRASH_TEXT = "exit abnormally"

_running: "weakref.WeakSet[WorkerProcess]" = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:  # the application quits during a run: no orphan keeps computing
    for job in list(_running):
        job.cancel()


def python_executable() -> str:
    """The interpreter for the child: Slicer's ``PythonSlicer`` when running inside Slicer.

    ``PythonSlicer`` sits next to Slicer's ``sys.executable`` (where ``slicer.util`` itself finds
    it for ``pip``) and runs with Slicer's environment, so the child sees the same packages.
    """
    app = getattr(sys.modules.get("slicer"), "app", None)
    if app is None:
        return sys.executable
    name = "PythonSlicer.exe" if os.name == "nt" else "PythonSlicer"
    candidates = [Path(sys.executable).parent / name]
    home = getattr(app, "slicerHome", None)
    if home:
        candidates.append(Path(home) / "bin" / name)
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    return shutil.which("PythonSlicer") or str(candidates[0])


def child_environment(env: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """``env`` (default: this process's) with the core importable and no stray buffering."""
    env = dict(os.environ if env is None else env)
    paths = [str(CORE_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PYTHONSTARTUP", None)
    return env


# --- Windows: the worker's process tree as a Job Object (ctypes; has not run here) -------------
# Win32 documentation: CreateJobObjectW, AssignProcessToJobObject (a process created suspended
# joins before it can start children), TerminateJobObject, QueryInformationJobObject with
# JobObjectBasicAccountingInformation (ActiveProcesses). NtResumeProcess (ntdll) resumes every
# thread of a process created with CREATE_SUSPENDED; subprocess closes the main thread's handle,
# so ResumeThread is not available.

_CREATE_SUSPENDED = 0x00000004
_JOB_OBJECT_BASIC_ACCOUNTING_INFORMATION = 1


def _kernel32():
    import ctypes

    return ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined,unused-ignore]


def _windows_job_with(process_handle: int) -> Optional[int]:
    """A new job holding ``process_handle``, or None when it cannot join one (then taskkill /T)."""
    import ctypes
    from ctypes import wintypes

    kernel32 = _kernel32()
    kernel32.CreateJobObjectW.restype = wintypes.HANDLE
    kernel32.CreateJobObjectW.argtypes = (ctypes.c_void_p, wintypes.LPCWSTR)
    kernel32.AssignProcessToJobObject.argtypes = (wintypes.HANDLE, wintypes.HANDLE)
    job = kernel32.CreateJobObjectW(None, None)
    if not job:
        return None
    if not kernel32.AssignProcessToJobObject(job, wintypes.HANDLE(process_handle)):
        _windows_close(job)
        return None
    return int(job)


def _windows_resume(process_handle: int) -> bool:
    import ctypes
    from ctypes import wintypes

    ntdll = ctypes.WinDLL("ntdll")  # type: ignore[attr-defined,unused-ignore]
    ntdll.NtResumeProcess.argtypes = (wintypes.HANDLE,)
    ntdll.NtResumeProcess.restype = ctypes.c_long
    return ntdll.NtResumeProcess(wintypes.HANDLE(process_handle)) >= 0  # NTSTATUS: >= 0 is success


def _windows_kill_job(job: int, wait_s: float) -> None:
    import ctypes
    from ctypes import wintypes

    class Accounting(ctypes.Structure):  # JOBOBJECT_BASIC_ACCOUNTING_INFORMATION
        _fields_ = [("TotalUserTime", ctypes.c_int64), ("TotalKernelTime", ctypes.c_int64),
                    ("ThisPeriodTotalUserTime", ctypes.c_int64), ("ThisPeriodTotalKernelTime", ctypes.c_int64),
                    ("TotalPageFaultCount", wintypes.DWORD), ("TotalProcesses", wintypes.DWORD),
                    ("ActiveProcesses", wintypes.DWORD), ("TotalTerminatedProcesses", wintypes.DWORD)]

    kernel32 = _kernel32()
    kernel32.TerminateJobObject.argtypes = (wintypes.HANDLE, wintypes.UINT)
    kernel32.QueryInformationJobObject.argtypes = (wintypes.HANDLE, ctypes.c_int, ctypes.c_void_p,
                                                   wintypes.DWORD, ctypes.c_void_p)
    kernel32.TerminateJobObject(wintypes.HANDLE(job), 1)
    info = Accounting()
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:  # termination is asynchronous; open files go with the process
        if not kernel32.QueryInformationJobObject(wintypes.HANDLE(job), _JOB_OBJECT_BASIC_ACCOUNTING_INFORMATION,
                                                  ctypes.byref(info), ctypes.sizeof(info), None):
            return
        if info.ActiveProcesses == 0:
            return
        time.sleep(0.01)


def _windows_close(handle: int) -> None:
    from ctypes import wintypes

    kernel32 = _kernel32()
    kernel32.CloseHandle.argtypes = (wintypes.HANDLE,)
    kernel32.CloseHandle(wintypes.HANDLE(handle))


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


class ProcessTree:
    """The child and everything it started (inside Slicer: the launcher and python-real), ended as one.

    POSIX: the child leads a new session, so its process group holds python-real too (QProcess
    does not make a new group); one ``killpg`` ends both. Windows: the child starts suspended, joins
    a Job Object and only then runs, so python-real is born inside the job; ``TerminateJobObject``
    ends both, and the kill waits until the job is empty, because Windows cannot delete a file
    that a dying process still holds open. Without a job (assigning failed: an old Windows in a
    job that forbids nesting) it falls back to ``taskkill /T``. The job has no kill-on-close
    limit on purpose: after a Slicer crash the child must live long enough to remove the CT copy
    (it notices through its owner watch). The Windows path is written against the Win32
    documentation and has not run here (the tests run on Linux).
    """

    def __init__(self) -> None:
        self._process: Optional[subprocess.Popen] = None
        self._job: Optional[int] = None

    @staticmethod
    def popen_options() -> Dict[str, Any]:
        if sys.platform == "win32":  # spelled so that type checkers know the flags
            return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW
                    | _CREATE_SUSPENDED}
        return {"start_new_session": True}

    def adopt(self, process: subprocess.Popen) -> None:
        """Take ``process`` (started with :meth:`popen_options`) in; on Windows let it run."""
        self._process = process
        if sys.platform == "win32":
            handle = int(process._handle)  # Popen keeps the Win32 process handle there
            self._job = _windows_job_with(handle)
            if not _windows_resume(handle):
                self.kill()
                raise OSError("the worker process could not be resumed after joining its job object")

    def kill(self, wait: bool = True) -> None:
        process = self._process
        if process is None:
            return
        if sys.platform == "win32":
            if self._job is not None:
                _windows_kill_job(self._job, KILL_WAIT_S if wait else 0.0)
            elif process.poll() is None:
                try:
                    subprocess.run(["taskkill", "/F", "/T", "/PID", str(process.pid)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, timeout=KILL_WAIT_S, check=False)
                except (OSError, subprocess.SubprocessError):
                    process.kill()  # the launcher at least; python-real then sees its owner pipe close
        else:
            try:
                os.killpg(process.pid, signal.SIGKILL)  # the group outlives its leader while members live
            except (ProcessLookupError, PermissionError):
                pass

    def close(self) -> None:
        if sys.platform == "win32" and self._job is not None:
            _windows_close(self._job)
        self._job = None


class WorkerProcess:
    """One child process running ``argv`` in the private folder ``workdir``.

    ``finish(done_event, workdir)`` turns the child's final report into the job's value; it
    runs in the caller's thread after the child exited 0, and raises :class:`TwinTrackError`
    when the outputs do not verify. The folder is removed when the job ends, however it ends.
    """

    def __init__(self, argv: Sequence[str], workdir: Path, finish: Callable[[dict, Path], Any],
                 env: Optional[Dict[str, str]] = None, name: str = "TwinTrack worker"):
        self.token = CancelToken()
        self.name = name
        self.argv = [str(a) for a in argv]
        self.workdir = Path(workdir)
        self._finish = finish
        self._env = env
        self._process: Optional[subprocess.Popen] = None
        self._tree = ProcessTree()
        self._stdout: Optional[BinaryIO] = None
        self._pending = b""
        self._done: Optional[dict] = None
        self._failed: Optional[dict] = None
        self._noise: List[str] = []
        self._progress: Tuple[float, str] = (0.0, "Starting the worker process")
        self._outcome: Optional[Outcome] = None
        self._finishing = False
        self.started_at: Optional[float] = None

    @property
    def pid(self) -> Optional[int]:
        return None if self._process is None else self._process.pid

    def start(self) -> "WorkerProcess":
        out = open(self.workdir / "stdout.jsonl", "wb")
        err = open(self.workdir / "stderr.log", "wb")
        try:
            # stdin: the owner pipe. Its write end stays in this process only (not inheritable), so
            # the child reads end-of-file exactly when this process is gone.
            self._process = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=out, stderr=err,
                                             cwd=str(self.workdir), env=self._env, **ProcessTree.popen_options())
            self._tree.adopt(self._process)
        except OSError as error:
            self._end(Outcome(FAILED, message=f"Could not start the TwinTrack worker process "
                                              f"({self.argv[0]}): {error.strerror or error}. "
                                              "Check the Python executable exists and runs."))
            return self
        finally:
            out.close()
            err.close()
        self.started_at = time.monotonic()
        self._stdout = open(self.workdir / "stdout.jsonl", "rb")
        _running.add(self)
        return self

    # --- reading the child's report --------------------------------------------------

    def _read_lines(self) -> bool:
        """Handle what the child wrote since the last call, at most READ_BYTES; True if it read any."""
        if self._stdout is None:
            return False
        chunk = self._stdout.read(READ_BYTES)  # a child flooding stdout cannot flood our memory
        if not chunk:
            return False
        data = self._pending + chunk
        *lines, self._pending = data.split(b"\n")
        if len(self._pending) > MAX_LINE_BYTES:
            self._remember_noise(self._pending[:200] + b"...")
            self._pending = b""
        for line in lines:
            self._handle(line)
        return True

    def _remember_noise(self, line: bytes) -> None:
        if len(self._noise) < 20:
            self._noise.append(line[:500].decode("utf-8", "replace"))

    def _handle(self, line: bytes) -> None:
        if not line.strip():
            return
        def not_json(name: str):  # NaN and Infinity: a child that sends them is not speaking the protocol
            raise ValueError(f"{name} is not JSON")

        try:
            event = json.loads(line, parse_constant=not_json)
        except ValueError:
            event = None
        if not isinstance(event, dict) or event.get(PROTOCOL_KEY) != PROTOCOL_VERSION:
            self._remember_noise(line)  # a library printing to stdout: not ours, not fatal
            return
        kind = event.get("event")
        if kind == "progress":
            try:
                fraction = float(event.get("fraction", 0.0))
            except (TypeError, ValueError, OverflowError):
                fraction = float("nan")
            # Not a finite number (1e999 parses to infinity; NaN - NaN is NaN): the last fraction stays.
            fraction = min(max(fraction, 0.0), 1.0) if fraction - fraction == 0.0 else self._progress[0]
            self._progress = (fraction, str(event.get("message", "")))
        elif kind == "done":
            self._done = event
        elif kind in (FAILED, CANCELLED):
            self._failed = event
        else:
            self._remember_noise(line)

    # --- the BackgroundJob interface --------------------------------------------------

    @property
    def running(self) -> bool:
        return self.poll()[2] is None

    @property
    def finishing(self) -> bool:
        """The child is done and ``finish`` runs (an export being added to the DICOM database): too
        late to cancel. ``finish`` may spin a nested event loop (the DICOM indexer does), so the
        panel can call ``poll`` and ``cancel`` from inside it; both wait for it instead."""
        return self._finishing

    def poll(self) -> Tuple[float, str, Optional[Outcome]]:
        """(fraction, message, outcome or None while running); cheap, never blocks."""
        if self._outcome is None and self._process is not None and not self._finishing:
            self._read_lines()
            code = self._process.poll()
            if code is not None:
                if code != 0:  # a launcher that died alone (killed, crashed) must not leave python-real running
                    self._tree.kill(wait=False)
                while self._read_lines():
                    pass
                if self._pending:
                    self._handle(self._pending)
                    self._pending = b""
                self._end(self._judge(code))
        return self._progress[0], self._progress[1], self._outcome

    def wait(self, timeout: Optional[float] = None) -> Optional[Outcome]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll()[2] is None:
            if deadline is not None and time.monotonic() >= deadline:
                return None
            if self._process is None:
                raise RuntimeError(f"{self.name}: wait() before start()")
            try:
                self._process.wait(0.02)
            except subprocess.TimeoutExpired:
                pass
        return self._outcome

    def cancel(self) -> None:
        """Kill the child's process tree now and discard everything it made (not once ``finishing``)."""
        if self._outcome is not None or self._finishing:
            return
        self.token.cancel()
        self._kill()
        self._end(Outcome(CANCELLED, message="Cancelled by the user; nothing was kept."))

    def __del__(self) -> None:
        # A job nobody follows any more (its caller went away) must not leave a process or a CT copy.
        try:
            if self._outcome is None and self._process is not None:
                self.cancel()
        except Exception:  # never raise from a finaliser (e.g. at interpreter shutdown)
            pass

    # --- ending ------------------------------------------------------------------------

    def _kill(self) -> None:
        """End the whole tree: the launcher alone would leave python-real computing."""
        process = self._process
        if process is None:
            return
        try:
            self._tree.kill()
        except (OSError, subprocess.SubprocessError):
            pass
        try:
            process.wait(KILL_WAIT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(KILL_WAIT_S)

    def _stderr_tail(self, limit: int = 4000) -> str:
        try:
            text = (self.workdir / "stderr.log").read_bytes()[-limit:].decode("utf-8", "replace")
        except OSError:
            text = ""
        noise = "\n".join(self._noise)
        return "\n".join(part for part in (text.strip(), f"Unexpected stdout lines:\n{noise}" if noise else "")
                         if part)

    def _judge(self, code: int) -> Outcome:
        if self._failed is not None:
            status = CANCELLED if self._failed.get("event") == CANCELLED else FAILED
            return Outcome(status, message=str(self._failed.get("message", "")),
                           details=str(self._failed.get("details", "")))
        if code != 0 or self._done is None:
            if code == 1 and LAUNCHER_CRASH_TEXT in self._stderr_tail():
                how = "crashed or was killed (the system may have run out of memory)"
            elif code < 0:
                how = f"was killed by {_signal_name(code)}"
                if code == -getattr(signal, "SIGKILL", 9):
                    how += " (the system may have run out of memory)"
            elif code != 0:
                how = f"stopped with exit code {code}"
            else:
                how = "ended without reporting a result"
            return Outcome(FAILED, message=f"The TwinTrack worker process {how}; nothing was kept. "
                                           "The details are in the Python console / log; please report them "
                                           "if this happens again.", details=self._stderr_tail())
        self._finishing = True
        try:
            value = self._finish(self._done, self.workdir)
        except TwinTrackError as error:
            return Outcome(FAILED, message=str(error), details=self._stderr_tail())
        except Exception as error:  # a report that does not hold what it should: never a half result
            return Outcome(FAILED, message=f"The worker's outputs could not be read ({type(error).__name__}: "
                                           f"{error}); nothing was kept. Please report this.",
                           details="".join(traceback.format_exception(type(error), error, error.__traceback__)))
        finally:
            self._finishing = False
        if self.token.cancelled:
            return Outcome(CANCELLED, message="Cancelled by the user; the result was discarded.")
        return Outcome(DONE, value=value)

    def _end(self, outcome: Outcome) -> None:
        self._outcome = outcome
        if outcome.status != DONE and outcome.details:
            # The log keeps what a failed child said; the folder is going.
            print(f"{self.name}: {outcome.message}\n{outcome.details}", file=sys.stderr)
        if self._stdout is not None:
            self._stdout.close()
            self._stdout = None
        if self._process is not None:
            if self._process.stdin is not None:
                self._process.stdin.close()  # the owner pipe: a child still running sees end-of-file
        self._tree.close()
        _running.discard(self)
        shutil.rmtree(self.workdir, ignore_errors=True)


# --- verifying what the child wrote ---------------------------------------------------


def _verified_file(done: dict, key: str, workdir: Path, inside: str = "") -> Path:
    from ..pipeline import file_sha256

    entry = (done.get("files") or {}).get(key)
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise InputError(f"The worker process did not report its {key} output; nothing was kept. Please report this.")
    path = workdir / inside / Path(entry["name"]).name  # only inside the private folder
    if not path.is_file() or file_sha256(path) != entry.get("sha256"):
        raise InputError(f"The worker's {key} output is missing or does not match what it reported; "
                         "nothing was kept. Please report this.")
    return path


def _verified_map(path: Path, key: str, geometry) -> np.ndarray:
    from ..io import check_geometry, read_image

    volume = read_image(path)
    check_geometry(geometry, volume.geometry, path)
    array = volume.array
    if key == "region":
        return array.astype(bool)
    array = array.astype(np.float32, copy=False)
    if not np.isfinite(array).all() or array.size and (array.min() < 0.0 or array.max() > 1.0):
        raise InputError(f"The worker's {key} map leaves [0, 1]; nothing was kept. Please report this.")
    return array


def _load_case_result(geometry, done: dict, workdir: Path):
    """The child's outputs as a :class:`~TwinTrackLogic.pipeline.CaseResult` on ``geometry``."""
    from ..pipeline import CaseResult
    from ..review.agreement import AgreementCurve

    meta = json.loads(_verified_file(done, "result", workdir).read_text(encoding="utf-8"))
    level, raters, is_calibrated = float(meta["level"]), int(meta["raters"]), bool(meta["is_calibrated"])
    maps = {key: _verified_map(_verified_file(done, key, workdir), key, geometry)
            for key in ("raw", "calibrated", "region")}
    organ = None
    if (done.get("files") or {}).get("organ"):
        organ = _verified_map(_verified_file(done, "organ", workdir), "region", geometry)
    voxel_ml = geometry.voxel_volume_ml
    raw_curve = AgreementCurve(maps["raw"], voxel_ml)
    calibrated_curve = AgreementCurve(maps["calibrated"], voxel_ml) if is_calibrated else raw_curve
    vessels = involvement = None
    if (done.get("files") or {}).get("vessels"):
        vessels, involvement = _verified_vessels(_verified_file(done, "vessels", workdir), geometry,
                                                 maps["calibrated"], raters, is_calibrated)
    return CaseResult(geometry=geometry, raw=maps["raw"], calibrated=maps["calibrated"], region=maps["region"],
                      organ=organ, level=level, raters=raters,
                      calibrated_curve=calibrated_curve, raw_curve=raw_curve, is_calibrated=is_calibrated,
                      provenance=dict(meta.get("provenance") or {}), vessels=vessels, involvement=involvement)


def _verified_vessels(path: Path, geometry, calibrated: np.ndarray, raters: int, is_calibrated: bool):
    """The vessel label map the child's read-out used, and that read-out computed again here: it keeps
    per-rim-voxel values (for the agreement slider) that the child's JSON does not carry."""
    from ..involvement import read_involvement
    from ..io import check_geometry, read_image
    from ..vessels import check_vessel_labels

    volume = read_image(path)
    check_geometry(geometry, volume.geometry, path)
    vessels = check_vessel_labels(volume.array, "The worker's vessel label map",
                                  "Nothing was kept. Please report this.")
    return vessels, read_involvement(calibrated, vessels, raters, is_calibrated=is_calibrated)


@dataclass
class CalibrationSummary:
    """What a fit reported; the calibrator itself is saved at ``path``."""

    path: Path
    used: List[str] = field(default_factory=list)
    failures: List[Tuple[str, str]] = field(default_factory=list)
    ece_before: float = float("nan")
    ece_after: float = float("nan")
    warnings: List[Tuple[str, str]] = field(default_factory=list)  # (case, domain warning) of used cases


def _finish_calibration(output_path: Path):
    def finish(done: dict, workdir: Path) -> CalibrationSummary:
        from ..calibration import load_calibrator
        from ..io import write_bytes_atomic

        staged = _verified_file(done, "calibrator", workdir)
        load_calibrator(staged)  # it must load before it replaces anything of the user's
        write_bytes_atomic(output_path, staged.read_bytes())
        summary = done.get("summary") or {}
        return CalibrationSummary(path=output_path, used=[str(n) for n in summary.get("used", [])],
                                  failures=[(str(n), str(m)) for n, m in summary.get("failures", [])],
                                  ece_before=float(summary.get("ece_before", "nan")),
                                  ece_after=float(summary.get("ece_after", "nan")),
                                  warnings=[(str(n), str(m)) for n, m in summary.get("warnings", [])])

    return finish


@dataclass
class DicomExportSummary:
    """What a DICOM export wrote (frames per object) and what ``deliver`` returned."""

    frames: Dict[str, int] = field(default_factory=dict)
    delivered: Any = None
    report: bool = False  # the involvement Structured Report was written too


def _finish_dicom_export(deliver: Callable[[Path, List[str]], Any]):
    def finish(done: dict, workdir: Path) -> DicomExportSummary:
        # The map and the SEG, and the involvement report when the result had a read-out.
        keys = ("parametric_map", "segmentation") + (("report",) if "report" in (done.get("files") or {}) else ())
        paths = {_verified_file(done, key, workdir, inside=EXPORT_FOLDER) for key in keys}
        if set((workdir / EXPORT_FOLDER).iterdir()) != paths:  # deliver() gets the folder: only these
            raise InputError(f"The worker's DICOM folder holds other files than the {len(keys)} it reported; "
                             "nothing was kept. Please report this.")
        uids = done.get("instance_uids")
        if not isinstance(uids, list) or len(uids) != len(keys) or not all(isinstance(u, str) and u for u in uids):
            raise InputError("The worker did not report the SOP Instance UIDs of what it wrote; nothing was kept. "
                             "Please report this.")
        frames = {str(key): int(value) for key, value in (done.get("frames") or {}).items()}
        return DicomExportSummary(frames=frames, delivered=deliver(workdir / EXPORT_FOLDER, list(uids)),
                                  report="report" in keys)

    return finish


# --- starting the three kinds of work -------------------------------------------------


def remove_orphaned_folders(root: Optional[Path] = None) -> List[Path]:
    """Remove private folders whose owner is gone: Slicer and its worker ended at once (killed
    together, a power cut), so neither removed the folder, which may hold a CT copy. A folder
    whose owner lives, or whose request is not written yet, stays. Returns what was removed."""
    from .child import _owner_alive

    removed = []
    for folder in Path(root or tempfile.gettempdir()).glob(FOLDER_PREFIX + "*"):
        try:
            request = json.loads((folder / "request.json").read_text(encoding="utf-8"))
            owner = int(request.get("owner_pid") or request["parent_pid"])  # parent_pid: before issue 23
        except (OSError, ValueError, TypeError, KeyError):  # not ours to judge (another user's: 0700)
            continue
        if owner != os.getpid() and not _owner_alive(owner)():
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _private_folder() -> Path:
    remove_orphaned_folders()
    folder = Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX))  # 0700: only this user reads the CT
    os.chmod(folder, 0o700)
    return folder


def _launch(request: dict, folder: Path, finish, python: Optional[str], env: Optional[Dict[str, str]],
            name: str) -> WorkerProcess:
    request = {**request, "owner_pid": os.getpid()}  # whom the child watches (not its parent: the launcher)
    (folder / "request.json").write_text(json.dumps(request, allow_nan=False), encoding="utf-8")
    argv = [python or python_executable(), "-m", CHILD_MODULE, str(folder / "request.json")]
    return WorkerProcess(argv, folder, finish, env=child_environment(env), name=name).start()


def _path_or_none(path) -> Optional[str]:
    return None if path is None else str(Path(path).resolve())


def start_inference(volume, *, bundle_dir=None, calibrator_path=None, device: str = "auto",
                    threads: Optional[int] = None, level: float = 0.5, python: Optional[str] = None,
                    env: Optional[Dict[str, str]] = None, stand_in: Optional[Dict[str, int]] = None,
                    vessels: Optional[np.ndarray] = None, vessels_source: Optional[str] = None) -> WorkerProcess:
    """Run :func:`~TwinTrackLogic.worker.jobs.ensemble_job` on ``volume`` (a core Volume) in a child process.

    ``stand_in`` ({"case", "raters", "seed"} of the demo phantom): the self-test's stand-in
    ensemble instead (:func:`~TwinTrackLogic.worker.jobs.phantom_stand_in_job`), where ONNX Runtime is absent.
    ``vessels``: a CURVAS vessel label map on ``volume``'s grid for the involvement read-out, and
    ``vessels_source`` the provenance's words for it (see ``pipeline.run_case``); it goes to the child
    as a file next to the CT. The outcome's value is a :class:`~TwinTrackLogic.pipeline.CaseResult` on
    ``volume``'s grid, with the vessels the read-out used (given, or the bundle's vessel stage) and the read-out.
    """
    from ..io import write_image

    folder = _private_folder()
    try:
        write_image(folder / "ct.nrrd", volume.array, volume.geometry, compress=False)
        if vessels is not None:
            write_image(folder / VESSELS_GIVEN, np.asarray(vessels, dtype=np.uint8), volume.geometry, compress=False)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    request = {"kind": "inference", "image": "ct.nrrd", "bundle": _path_or_none(bundle_dir),
               "calibrator": _path_or_none(calibrator_path), "device": device, "threads": threads,
               "level": float(level), "stand_in": stand_in, "vessels": None if vessels is None else VESSELS_GIVEN,
               "vessels_source": vessels_source}
    geometry = volume.geometry
    return _launch(request, folder, lambda done, workdir: _load_case_result(geometry, done, workdir),
                   python, env, "TwinTrack inference")


def start_calibration(cohort_folder, output_path, *, bundle_dir=None, device: str = "auto",
                      method: str = "isotonic", python: Optional[str] = None,
                      env: Optional[Dict[str, str]] = None) -> WorkerProcess:
    """Run :func:`~TwinTrackLogic.worker.jobs.calibration_job` in a child; the calibrator reaches
    ``output_path`` only once it verified. The outcome's value is a :class:`CalibrationSummary`."""
    folder = _private_folder()
    output_path = Path(output_path).resolve()
    request = {"kind": "calibration", "cohort": str(Path(cohort_folder).resolve()),
               "bundle": _path_or_none(bundle_dir), "device": device, "method": method}
    return _launch(request, folder, _finish_calibration(output_path), python, env, "TwinTrack calibration")


def start_dicom_export(files: Sequence, probability: np.ndarray, geometry, deliver: Callable[[Path, List[str]], Any], *,
                       provenance: Optional[dict] = None, levels: Optional[Sequence[float]] = None,
                       python: Optional[str] = None, env: Optional[Dict[str, str]] = None,
                       packages_dir: Optional[str] = None, involvement: Optional[dict] = None) -> WorkerProcess:
    """Write the DICOM Parametric Map and SEG of ``probability`` (on ``geometry``) for the CT series
    ``files`` (:func:`~TwinTrackLogic.dicom.export.export_for_files`) in a child.

    Once the child's two files verified, ``deliver(folder, instance_uids)`` gets the folder that
    holds just them and their SOP Instance UIDs, on the thread that polls (inside Slicer: the main
    thread, which adds them to the DICOM database and checks they arrived); the private folder
    is removed afterwards. ``packages_dir``: a folder the child puts first on its path before it
    imports the writers (highdicom, pydicom installed there for the worker only; a launcher's own
    PYTHONPATH entries would otherwise come before it). The outcome's value is a
    :class:`DicomExportSummary`; an exception from ``deliver`` fails the job with its message.
    ``involvement``: the result's read-out (``prediction_outputs.involvement_record``); with it the
    child also writes the vascular-involvement Structured Report, delivered with the other two.
    """
    from ..io import write_image

    folder = _private_folder()
    try:
        write_image(folder / "map.nrrd", np.asarray(probability, dtype=np.float32), geometry, compress=False)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    request = {"kind": "dicom_export", "map": "map.nrrd", "files": [str(Path(f).resolve()) for f in files],
               "provenance": provenance, "levels": None if levels is None else [float(v) for v in levels],
               "packages_dir": _path_or_none(packages_dir), "involvement": involvement}
    return _launch(request, folder, _finish_dicom_export(deliver), python, env, "TwinTrack DICOM export")
