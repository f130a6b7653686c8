"""The worker process for real, started as Slicer starts it: through a PythonSlicer that is a
launcher running python-real as its child (Testing/slicer_app_stand_in.py, CTKAppLauncher's
behaviour with its source lines). Progress, the result, cancel mid-inference ending the whole
tree, a Slicer that crashes, a child that crashes, is killed, prints garbage or errs."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from TwinTrackLogic.worker import jobs
from TwinTrackLogic.worker import process as worker
from TwinTrackLogic.io import Volume
from TwinTrackLogic.phantom import generate_case

pytest.importorskip("onnxruntime", reason="the worker runs the ONNX Runtime ensemble")

posix_only = pytest.mark.skipif(os.name == "nt", reason="process groups and signals as on POSIX")


@pytest.fixture(scope="module")
def python_slicer(tmp_path_factory) -> str:
    from slicer_app_stand_in import write_python_launcher

    return str(write_python_launcher(tmp_path_factory.mktemp("slicer-home") / "bin"))


@pytest.fixture(scope="module")
def phantom_volume():
    case = generate_case(1, raters=5, seed=0, size="small")
    return Volume(case.image, case.geometry)


def _gone(pid: int) -> bool:
    """No such process, or a zombie (dead, waiting for a container's init to reap it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _children(pid: int) -> list:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _python_real(launcher_pid: int, timeout: float = 10.0) -> int:
    """The interpreter the launcher started (Linux: /proc)."""
    deadline = time.monotonic() + timeout
    while not _children(launcher_pid):
        assert time.monotonic() < deadline, "the launcher started no interpreter"
        time.sleep(0.01)
    return _children(launcher_pid)[0]


def _wait_gone(*pids: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(_gone(pid) for pid in pids):
        assert time.monotonic() < deadline, f"still running: {[pid for pid in pids if not _gone(pid)]}"
        time.sleep(0.02)


def fake_child(tmp_path: Path, script: str, finish=lambda done, workdir: done,
               python: str = sys.executable) -> worker.WorkerProcess:
    """A WorkerProcess running ``script`` (with the protocol helper ``send``) in a private folder."""
    folder = tmp_path / "work"
    folder.mkdir()
    prelude = textwrap.dedent(f"""
        import json, os, sys, time
        def send(event, **fields):
            print(json.dumps({{{worker.PROTOCOL_KEY!r}: {worker.PROTOCOL_VERSION}, "event": event, **fields}}),
                  flush=True)
    """)
    argv = [python, "-c", prelude + textwrap.dedent(script)]
    return worker.WorkerProcess(argv, folder, finish).start()


# --- the real child ----------------------------------------------------------------------


def test_inference_through_the_launcher_reports_progress_and_returns_the_in_process_result(
        phantom_volume, python_slicer):
    """As in Slicer: the worker's parent is the launcher, not the owner, and it runs to the end."""
    job = worker.start_inference(phantom_volume, device="cpu", python=python_slicer)
    folder = job.workdir
    if sys.platform.startswith("linux"):
        assert _python_real(job.pid) != job.pid, "the stand-in must start python-real as a child, not exec"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700, "the CT must sit in a private folder"
    assert (folder / "ct.nrrd").is_file()
    seen = []
    while job.wait(0.02) is None:
        seen.append(job.poll()[:2])
    outcome = job.poll()[2]
    assert outcome.status == jobs.DONE, f"{outcome.message}\n{outcome.details}"
    fractions = [fraction for fraction, _ in seen]
    assert fractions == sorted(fractions), "progress went backwards"
    assert any(0.05 < f < 0.9 for f in fractions), "no progress from inside the ensemble reached the parent"
    assert any("Worker process started" in message for _, message in seen)
    assert not folder.exists(), "the private folder must go once the result is in"
    assert _gone(job.pid)

    expected = jobs.BackgroundJob(jobs.ensemble_job(phantom_volume, device="cpu")).start().wait(300).value
    result = outcome.value
    assert not result.geometry.differences(phantom_volume.geometry)
    np.testing.assert_allclose(result.calibrated, expected.calibrated, atol=1e-6)
    np.testing.assert_allclose(result.raw, expected.raw, atol=1e-6)
    assert np.array_equal(result.region, expected.region)
    assert result.raters == expected.raters == 5 and result.is_calibrated
    assert result.calibrated_curve.volume_ml(0.5) == expected.calibrated_curve.volume_ml(0.5)
    assert result.provenance["bundle"] == expected.provenance["bundle"]
    assert isinstance(result.provenance["warnings"], list)


@posix_only
def test_cancel_mid_inference_ends_launcher_and_python_real_within_a_second_and_leaves_nothing(
        phantom_volume, python_slicer):
    job = worker.start_inference(phantom_volume, device="cpu", python=python_slicer)
    folder = job.workdir
    deadline = time.monotonic() + 120
    while job.poll()[0] < 0.1:  # inside the ensemble, not while starting
        assert job.poll()[2] is None, job.poll()[2].message
        assert time.monotonic() < deadline
        time.sleep(0.01)
    python_real = _python_real(job.pid) if sys.platform.startswith("linux") else None
    started = time.monotonic()
    job.cancel()
    outcome = job.poll()[2]
    latency = time.monotonic() - started
    assert outcome is not None and outcome.status == jobs.CANCELLED and outcome.value is None
    assert latency < 1.0, f"cancel took {latency:.2f} s"
    assert _gone(job.pid)
    if python_real is not None:
        _wait_gone(python_real, timeout=1.0)  # the orphan is reaped by init; it is dead already
    assert not folder.exists()


def test_a_child_error_is_the_message_the_cli_prints(phantom_volume, tmp_path, python_slicer):
    bad = tmp_path / "calibrator.json"
    bad.write_text("{not json", encoding="utf-8")
    outcome = worker.start_inference(phantom_volume, calibrator_path=bad, python=python_slicer).wait(120)
    assert outcome.status == jobs.FAILED
    image = tmp_path / "ct.nrrd"
    from TwinTrackLogic.io import write_image

    write_image(image, phantom_volume.array, phantom_volume.geometry)
    cli = subprocess.run([sys.executable, "-m", "TwinTrackCLI", "predict", "--image", str(image),
                          "--calibrator", str(bad), "--out", str(tmp_path / "p.nii.gz")],
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 2
    assert cli.stderr.strip() == f"twintrack predict: error: {outcome.message}"
    assert "Traceback" not in outcome.message and str(bad) in outcome.message


def test_calibrator_fitting_in_the_child_writes_the_verified_calibrator(tmp_path, python_slicer):
    from TwinTrackLogic.calibration import load_calibrator
    from TwinTrackLogic.io import write_image
    from TwinTrackLogic.phantom import write_case

    for index in range(2):
        case = generate_case(index, raters=3, seed=1, size="small")
        folder = write_case(case, tmp_path / "cohort")
        latent = np.clip(case.latent, 0.0, 1.0)
        write_image(folder / "probability.nii.gz", np.sqrt(latent).astype(np.float32), case.geometry)
    output = tmp_path / "out" / "calibrator.json"
    outcome = worker.start_calibration(tmp_path / "cohort", output, python=python_slicer).wait(300)
    assert outcome.status == jobs.DONE, f"{outcome.message}\n{outcome.details}"
    summary = outcome.value
    assert summary.path == output.resolve() and load_calibrator(output).raters == 3
    assert sorted(summary.used) == ["case_000", "case_001"] and summary.failures == []
    assert summary.ece_after < summary.ece_before


def test_a_fit_in_the_child_brings_back_each_cases_domain_warnings(tmp_path):
    from bundle_helpers import DOMAIN, domain_cohort, identity_bundle

    bundle = identity_bundle(tmp_path / "bundle", with_localiser=True, domain=DOMAIN)
    cohort = domain_cohort(tmp_path / "cohort", annotated=True)
    outcome = worker.start_calibration(cohort, tmp_path / "cal.json", bundle_dir=bundle).wait(300)
    assert outcome.status == jobs.DONE, f"{outcome.message}\n{outcome.details}"
    assert sorted(outcome.value.used) == ["case_a", "case_b"]
    assert outcome.value.warnings and {name for name, _ in outcome.value.warnings} == {"case_b"}
    assert "spacing" in outcome.value.warnings[0][1]


def test_a_failed_fit_leaves_the_users_file_untouched(tmp_path):
    output = tmp_path / "calibrator.json"
    output.write_text("previous", encoding="utf-8")
    outcome = worker.start_calibration(tmp_path / "empty", output).wait(120)
    assert outcome.status == jobs.FAILED and "empty" in outcome.message
    assert output.read_text(encoding="utf-8") == "previous"


# --- children that misbehave ---------------------------------------------------------------


@posix_only
def test_a_child_that_crashes_is_a_failure_with_its_stderr_in_the_details(tmp_path, python_slicer):
    job = fake_child(tmp_path, """
        send("progress", fraction=0.3, message="working")
        print("about to crash", file=sys.stderr, flush=True)
        os.abort()
    """, python=python_slicer)
    outcome = job.wait(30)
    assert outcome.status == jobs.FAILED
    # Through the launcher the signal is lost: it says "exit abnormally" and exits 1.
    assert "crashed or was killed" in outcome.message and "nothing was kept" in outcome.message
    assert "about to crash" in outcome.details and "exit abnormally" in outcome.details
    assert job.poll()[:2] == (0.3, "working")
    assert not job.workdir.exists()


def test_a_child_that_exits_non_zero_without_a_word_is_a_failure(tmp_path, python_slicer):
    outcome = fake_child(tmp_path, "sys.exit(3)", python=python_slicer).wait(30)
    assert outcome.status == jobs.FAILED and "exit code 3" in outcome.message


@posix_only
def test_python_real_killed_from_outside_is_reported_as_possibly_out_of_memory(tmp_path, python_slicer):
    job = fake_child(tmp_path, """
        send("progress", fraction=0.1, message=str(os.getpid()))
        time.sleep(60)
    """, python=python_slicer)
    while job.poll()[0] < 0.1:
        time.sleep(0.01)
    os.kill(int(job.poll()[1]), signal.SIGKILL)  # what the kernel's OOM killer does: the big process
    outcome = job.wait(10)
    assert outcome.status == jobs.FAILED
    assert "crashed or was killed" in outcome.message and "out of memory" in outcome.message


@posix_only
def test_a_child_killed_directly_names_the_signal(tmp_path):
    job = fake_child(tmp_path, """
        send("progress", fraction=0.1, message="started")
        time.sleep(60)
    """)
    while job.poll()[0] < 0.1:
        time.sleep(0.01)
    os.kill(job.pid, signal.SIGKILL)
    outcome = job.wait(10)
    assert outcome.status == jobs.FAILED
    assert "SIGKILL" in outcome.message and "out of memory" in outcome.message


@posix_only
def test_a_launcher_killed_alone_does_not_leave_python_real_running(tmp_path, python_slicer):
    job = fake_child(tmp_path, """
        send("progress", fraction=0.1, message=str(os.getpid()))
        time.sleep(60)
    """, python=python_slicer)
    while job.poll()[0] < 0.1:
        time.sleep(0.01)
    python_real = int(job.poll()[1])
    assert python_real != job.pid
    os.kill(job.pid, signal.SIGTERM)  # ends a CTKAppLauncher alone: Qt forwards nothing
    outcome = job.wait(10)
    assert outcome.status == jobs.FAILED and "SIGTERM" in outcome.message
    _wait_gone(python_real, timeout=2.0)
    assert not job.workdir.exists()


def test_garbage_on_stdout_is_ignored_and_the_protocol_still_read(tmp_path):
    job = fake_child(tmp_path, f"""
        print("a library says hello")
        print("[1, 2, 3]")
        print(json.dumps({{"event": "done", "files": {{}}}}))  # no protocol key: not ours
        sys.stdout.buffer.write(bytes(range(256)) + b"\\n")
        print("x" * {worker.MAX_LINE_BYTES + 10}, end="")
        print("")
        send("progress", fraction="not a number", message="odd fraction")
        send("progress", fraction=0.5, message="half")
        send("weird event")
        send("done", answer=42)
    """)
    outcome = job.wait(30)
    assert outcome.status == jobs.DONE, outcome.message
    assert outcome.value["answer"] == 42
    assert job.poll()[:2] == (0.5, "half")


def test_a_flood_on_stdout_is_read_in_bounded_pieces_and_the_final_report_still_counts(tmp_path):
    job = fake_child(tmp_path, f"""
        line = "y" * 999 + "\\n"
        sys.stdout.write(line * ({3 * worker.READ_BYTES} // 1000))
        send("done", answer="after the flood")
    """)
    outcome = job.wait(60)
    assert outcome.status == jobs.DONE and outcome.value["answer"] == "after the flood"
    assert len(job._noise) == 20, "only the first garbage lines are kept for the details"


def test_garbage_and_no_result_is_a_failure_that_shows_the_garbage(tmp_path):
    outcome = fake_child(tmp_path, 'print("Segmentation fault (core dumped)?")').wait(30)
    assert outcome.status == jobs.FAILED and "without reporting a result" in outcome.message
    assert "Segmentation fault (core dumped)?" in outcome.details


def test_outputs_that_do_not_verify_are_refused(tmp_path, phantom_volume):
    """A 'done' whose files are not what it reported never reaches the caller."""
    def finish(done, workdir):
        return worker._load_case_result(phantom_volume.geometry, done, workdir)

    job = fake_child(tmp_path, """
        open("result.json", "w").write("{}")
        send("done", files={"result": {"name": "result.json", "sha256": "0" * 64}})
    """, finish=finish)
    outcome = job.wait(30)
    assert outcome.status == jobs.FAILED and "does not match what it reported" in outcome.message


def test_a_report_that_verifies_but_does_not_hold_a_result_is_a_failure(tmp_path, phantom_volume):
    def finish(done, workdir):
        return worker._load_case_result(phantom_volume.geometry, done, workdir)

    job = fake_child(tmp_path, """
        import hashlib
        open("result.json", "w").write("{}")
        digest = hashlib.sha256(open("result.json", "rb").read()).hexdigest()
        send("done", files={"result": {"name": "result.json", "sha256": digest}})
    """, finish=finish)
    outcome = job.wait(30)
    assert outcome.status == jobs.FAILED and "could not be read" in outcome.message
    assert job.poll()[2] is outcome, "the outcome is settled once, not re-judged on every poll"


@posix_only
def test_cancel_kills_the_grandchildren_too(tmp_path):
    job = fake_child(tmp_path, """
        import subprocess
        helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        send("progress", fraction=0.2, message=str(helper.pid))
        time.sleep(60)
    """)
    while job.poll()[0] < 0.2:
        assert job.poll()[2] is None
        time.sleep(0.01)
    grandchild = int(job.poll()[1])
    job.cancel()
    deadline = time.monotonic() + 2
    while not _gone(grandchild):
        # The orphaned grandchild is reaped by init, which may take a moment.
        assert time.monotonic() < deadline, "the grandchild survived the cancel"
        time.sleep(0.02)


@posix_only
def test_a_job_nobody_holds_any_more_is_killed_and_cleaned_up(tmp_path):
    import gc

    job = fake_child(tmp_path, """
        send("progress", fraction=0.1, message="started")
        time.sleep(60)
    """)
    while job.poll()[0] < 0.1:
        time.sleep(0.01)
    pid, folder = job.pid, job.workdir
    del job
    gc.collect()
    assert _gone(pid) and not folder.exists()


def test_a_missing_python_is_a_clear_failure(tmp_path):
    folder = tmp_path / "work"
    folder.mkdir()
    job = worker.WorkerProcess([str(tmp_path / "no-such-python"), "-c", "pass"], folder, lambda d, w: d).start()
    outcome = job.poll()[2]
    assert outcome.status == jobs.FAILED and "Could not start the TwinTrack worker process" in outcome.message
    assert not folder.exists()


def test_the_child_environment_finds_the_core_from_anywhere():
    env = worker.child_environment({"PYTHONPATH": "/elsewhere"})
    assert env["PYTHONPATH"].split(os.pathsep)[:2] == [str(worker.CORE_ROOT), "/elsewhere"]
    assert worker.python_executable() == sys.executable  # outside Slicer


SLICER_THAT_CRASHES = """
import sys, time
sys.path[:0] = {paths!r}
from TwinTrackLogic.worker import process as worker
from TwinTrackLogic.phantom import generate_case
from TwinTrackLogic.io import Volume
case = generate_case(1, raters=5, seed=0, size="small")
job = worker.start_inference(Volume(case.image, case.geometry), device="cpu", python={python!r})
while job.poll()[0] < 0.1:  # the ensemble is under way
    assert job.poll()[2] is None, job.poll()[2].message
    time.sleep(0.01)
print(job.pid, job.workdir, flush=True)
time.sleep(120)
"""


@posix_only
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds python-real through /proc")
def test_a_slicer_crash_mid_run_leaves_no_worker_and_no_ct_copy(tmp_path, python_slicer):
    """Slicer (here a Python process like it) dies by SIGKILL while the worker computes: python-real
    sees the end of its owner pipe, removes the private folder and exits; then the launcher exits."""
    repository = Path(__file__).resolve().parents[1]
    script = SLICER_THAT_CRASHES.format(paths=[str(repository)], python=python_slicer)
    slicer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        launcher, folder = slicer.stdout.readline().split()
        launcher = int(launcher)
        python_real = _python_real(launcher)
        assert Path(folder, "ct.nrrd").is_file() and not _gone(python_real)
        slicer.kill()  # no clean-up code of Slicer's runs
        slicer.wait(5)
        _wait_gone(python_real, launcher, timeout=5.0)
        assert not Path(folder).exists(), "the CT copy outlived Slicer"
    finally:
        slicer.kill()


@posix_only
def test_the_owner_watch_ends_the_child_when_the_pipe_closes_even_if_the_pid_lives(tmp_path):
    """End-of-file alone is enough (a Slicer that is a zombie still has a pid)."""
    folder = tmp_path / "private"
    folder.mkdir()
    (folder / "ct.nrrd").write_bytes(b"patient data")
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import os, sys, time
        from pathlib import Path
        from TwinTrackLogic.worker import child as worker_child
        worker_child._watch_owner(Path({str(folder)!r}), os.getppid(), sys.stdin.buffer)
        print("watching", flush=True)
        time.sleep(60)
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=worker.child_environment())
    assert child.stdout.readline().strip() == b"watching"
    time.sleep(0.3)
    assert child.poll() is None and folder.exists(), "an open pipe and a live owner: keep working"
    child.stdin.close()
    assert child.wait(5) == 130
    assert not folder.exists()


def test_the_owner_pid_check_tells_a_live_process_from_a_gone_one():
    from TwinTrackLogic.worker.child import _owner_alive

    assert _owner_alive(os.getpid())() is True
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert _owner_alive(gone.pid)() is False


def test_poll_and_cancel_from_inside_finish_wait_for_it(tmp_path):
    """N3: ``finish`` may spin a nested event loop (the DICOM import), in which the panel polls and
    cancels: neither may judge the job a second time nor remove the folder under ``finish``."""
    calls, job = [], []

    def finish(done, workdir):
        calls.append(done)
        assert job[0].finishing
        assert job[0].poll()[2] is None, "a nested poll judged the job again"
        job[0].cancel()
        assert workdir.is_dir() and job[0].poll()[2] is None, "a nested cancel ended the job under finish"
        return "delivered"

    job.append(fake_child(tmp_path, 'send("done", answer=1)', finish=finish))
    outcome = job[0].wait(30)
    assert outcome.status == jobs.DONE and outcome.value == "delivered" and len(calls) == 1
    assert not job[0].finishing and not job[0].workdir.exists()


def test_a_folder_left_by_a_dead_owner_is_removed_before_the_next_job(tmp_path):
    """Slicer and its worker killed together: nobody removed the CT copy. The next job does."""
    import json

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    folders = {}
    for name, request in (("dead", {"owner_pid": dead.pid}), ("older-format", {"parent_pid": dead.pid}),
                          ("alive", {"owner_pid": os.getppid()}), ("mine", {"owner_pid": os.getpid()}),
                          ("starting", None)):
        folder = tmp_path / f"{worker.FOLDER_PREFIX}{name}"
        folder.mkdir()
        (folder / "ct.nrrd").write_bytes(b"patient data")
        if request is not None:
            (folder / "request.json").write_text(json.dumps(request), encoding="utf-8")
        folders[name] = folder
    (tmp_path / "unrelated-dead").mkdir()
    removed = worker.remove_orphaned_folders(tmp_path)
    assert sorted(removed) == sorted([folders["dead"], folders["older-format"]])
    assert all(folders[name].exists() for name in ("alive", "mine", "starting"))
    assert (tmp_path / "unrelated-dead").exists()
