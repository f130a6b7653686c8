"""Cohort commands on a 2-worker Dask LocalCluster: same results as in-process, and the faults.

Worker processes are real (spawned by Dask's nanny); the hooks that kill them live in
distributed_helpers.py, passed through fit_cohort's public probability_for parameter.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

dask = pytest.importorskip("dask")
pytest.importorskip("distributed")

from bundle_helpers import identity_bundle  # noqa: E402
from distributed_helpers import KillWorkerAlways, KillWorkerOnce  # noqa: E402

from TwinTrackLogic.calibration import fit_cohort  # noqa: E402
from TwinTrackCLI import EXIT_CANCELLED, EXIT_ERROR, EXIT_OK, EXIT_PARTIAL, main  # noqa: E402
from TwinTrackLogic.cohort.predict import _fingerprint, is_up_to_date  # noqa: E402
from TwinTrackLogic.inference.bundle import default_bundle_dir, load_bundle  # noqa: E402
from TwinTrackLogic.cohort import distributed as dask_map  # noqa: E402
from TwinTrackLogic.io import Case, find_cases, read_image, write_image  # noqa: E402
from TwinTrackLogic.phantom import generate_case, write_case  # noqa: E402

REPOSITORY = Path(__file__).resolve().parent.parent
RATERS = 3
CASES = 4


def overconfident(case):
    latent = np.clip(case.latent, 1e-4, 1 - 1e-4)
    return (1 / (1 + (latent / (1 - latent)) ** -4)).astype(np.float32)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Four small phantoms with a probability file each, and a stash of those files."""
    folder = tmp_path_factory.mktemp("cohort")
    stash = tmp_path_factory.mktemp("stash")
    for index in range(CASES):
        case = generate_case(index, RATERS, seed=7, size="small")
        write_case(case, folder)
        write_image(folder / case.name / "probability.nii.gz", overconfident(case), case.geometry)
        shutil.copy(folder / case.name / "probability.nii.gz", stash / f"{case.name}.nii.gz")
    return folder, stash


@pytest.fixture(scope="module")
def cluster():
    """One 2-worker LocalCluster for the fault tests; a case may kill 2 workers before it fails."""
    with dask.config.set({dask_map.ALLOWED_FAILURES: 1}):
        with dask_map.dask_client("local", 2) as client:
            yield dask_map.DaskCaseMap(client)


def _without(cohort, tmp_path, name):
    """A copy of the cohort where case ``name`` has no probability file (the hook makes it)."""
    target = tmp_path / "cohort"
    shutil.copytree(cohort, target)
    (target / name / "probability.nii.gz").unlink()
    return find_cases(target)


def _fitted(fit, tmp_path, name) -> dict:
    fit.calibrator.save(tmp_path / name)
    return _calibrator_file(tmp_path / name)


def _calibrator_file(path) -> dict:
    record = json.loads(Path(path).read_text())
    record.pop("created")
    return record


def test_calibrate_and_evaluate_on_two_workers_match_in_process(cohort, tmp_path):
    folder, _ = cohort
    here, there = tmp_path / "here.json", tmp_path / "there.json"
    assert main(["calibrate", "--cohort", str(folder), "--out", str(here)]) == EXIT_OK
    assert main(["calibrate", "--cohort", str(folder), "--out", str(there),
                 "--scheduler", "local", "--workers", "2"]) == EXIT_OK
    assert _calibrator_file(here) == _calibrator_file(there)  # floats compared exactly

    reports = []
    for out, options in ((tmp_path / "r1.json", []), (tmp_path / "r2.json", ["--workers", "2"])):
        assert main(["evaluate", "--cohort", str(folder), "--calibrator", str(here), "--out", str(out),
                     "--bootstrap", "200", *options]) == EXIT_OK
        reports.append(json.loads(out.read_text()))
    assert reports[0]["cases"].keys() == {f"case_{i:03d}" for i in range(CASES)}
    assert reports[0] == reports[1]


def test_a_worker_killed_mid_run_loses_no_case(cohort, cluster, tmp_path):
    folder, stash = cohort
    cases = _without(folder, tmp_path, "case_001")
    marker = tmp_path / "killed"
    hook = KillWorkerOnce(str(stash), "case_001", str(marker))
    fit = fit_cohort(cases, probability_for=hook, case_map=cluster)
    assert marker.exists()  # a worker really died running case_001
    assert fit.failures == [] and fit.used == [f"case_{i:03d}" for i in range(CASES)]
    assert _fitted(fit, tmp_path, "a.json") == _fitted(fit_cohort(find_cases(folder)), tmp_path, "b.json")


def test_a_poison_case_fails_after_bounded_retries_and_the_rest_finish(cohort, cluster, tmp_path):
    folder, stash = cohort
    cases = _without(folder, tmp_path, "case_002")
    fit = fit_cohort(cases, probability_for=KillWorkerAlways(str(stash), "case_002"), case_map=cluster)
    assert [name for name, _ in fit.failures] == ["case_002"]
    assert "died 2 time(s)" in fit.failures[0][1]
    assert fit.used == ["case_000", "case_001", "case_003"]
    others = [case for case in find_cases(folder) if case.name != "case_002"]
    assert _fitted(fit, tmp_path, "a.json") == _fitted(fit_cohort(others), tmp_path, "b.json")


def test_scheduler_options_are_checked(cohort, tmp_path, monkeypatch, capsys):
    folder, _ = cohort
    out = str(tmp_path / "cal.json")
    assert main(["calibrate", "--cohort", str(folder), "--out", out, "--workers", "0"]) == EXIT_ERROR
    assert "--workers must be at least 1" in capsys.readouterr().err
    monkeypatch.setattr(dask_map, "CONNECT_TIMEOUT_S", 1)
    assert main(["calibrate", "--cohort", str(folder), "--out", out, "--scheduler", "tcp://127.0.0.1:1"]) == EXIT_ERROR
    assert "Could not reach a Dask scheduler at --scheduler tcp://127.0.0.1:1" in capsys.readouterr().err
    assert main(["predict", "--image", str(folder / "case_000" / "image.nii.gz"), "--out",
                 str(tmp_path / "p.nii.gz"), "--workers", "2"]) == EXIT_ERROR
    assert main(["predict", "--cohort", str(folder), "--out", str(folder)]) == EXIT_ERROR
    assert "is the cohort folder itself" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if the extra were not installed
    assert main(["evaluate", "--cohort", str(folder), "--out", out, "--workers", "2"]) == EXIT_ERROR
    assert 'pip install "twintrack[distributed]"' in capsys.readouterr().err
    assert not Path(out).exists()


# --- twintrack predict --cohort ---------------------------------------------------------------

@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Four small CTs and one case whose image is not an image."""
    folder = tmp_path_factory.mktemp("images")
    for index in range(CASES):
        case = generate_case(index, RATERS, seed=11, size="small")
        write_image(folder / case.name / "image.nii.gz", case.image, case.geometry)
    (folder / "case_bad").mkdir()
    (folder / "case_bad" / "image.nii.gz").write_bytes(b"not a NIfTI file")
    return folder


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """Two identity members (cheap to run) and the demo calibrator: the machinery, not the model."""
    folder = identity_bundle(tmp_path_factory.mktemp("bundle"), spacing=(4.0, 4.0, 4.0), patch=(16, 32, 32),
                             members=2)
    # The identity bundle declares 3 raters, the demo calibrator 5: used together on purpose.
    return ["--bundle", str(folder), "--calibrator", str(load_bundle(default_bundle_dir()).default_calibrator_path),
            "--allow-rater-mismatch"]


@pytest.fixture(scope="module")
def reference(images, bundle, tmp_path_factory):
    """The in-process cohort prediction every other run must reproduce."""
    out = tmp_path_factory.mktemp("reference")
    assert main(["predict", "--cohort", str(images), "--out", str(out), *bundle]) == EXIT_PARTIAL
    return out


def _arrays(folder: Path) -> dict:
    return {path.name: read_image(path).array for path in sorted(folder.glob("*.nii.gz"))}


def _same_outputs(a: Path, b: Path, case: str) -> None:
    first, second = _arrays(a / case), _arrays(b / case)
    assert first.keys() == {"probability.nii.gz", "raw.nii.gz", "mask.nii.gz", "region.nii.gz"}
    assert first.keys() == second.keys()
    for name in first:
        assert np.array_equal(first[name], second[name]), (case, name)
    records = [json.loads((folder / case / "probability.provenance.json").read_text()) for folder in (a, b)]
    for record in records:
        record.pop("timings_s"), record.pop("outputs"), record["inputs"]["image"].pop("path")
    assert records[0] == records[1]


def test_cohort_predict_reports_a_failed_case_and_writes_one_folder_per_case(reference, capsys):
    names = sorted(path.name for path in reference.iterdir())
    assert names == [f"case_{i:03d}" for i in range(CASES)]
    record = json.loads((reference / "case_000" / "probability.provenance.json").read_text())
    assert record["inputs"]["image"]["sha256"] and record["bundle"]["models"] and record["calibrator"]["sha256"]


def test_interrupted_cohort_predict_leaves_no_partial_output_and_resumes(images, bundle, reference, tmp_path,
                                                                        capsys):
    cohort, out = tmp_path / "cohort", tmp_path / "out"
    shutil.copytree(images, cohort)
    # case_002's CT is a named pipe until the run is interrupted: its worker blocks opening it, so
    # the interrupt always lands while a case is running, whatever the machine's speed.
    blocked = cohort / "case_002" / "image.nii.gz"
    blocked.unlink()
    os.mkfifo(blocked)
    command = [sys.executable, "-c", "import sys; from TwinTrackCLI import main; sys.exit(main())",
               "predict", "--cohort", str(cohort), "--out", str(out), "--workers", "2", *bundle]
    # Its own session, like a terminal's foreground job: Ctrl-C reaches the workers too.
    run = subprocess.Popen(command, cwd=REPOSITORY, start_new_session=True, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(list(out.glob("*/probability.provenance.json"))) < 2 and time.monotonic() < deadline:
        assert run.poll() is None, run.communicate()
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGINT)
    _, err = run.communicate(timeout=60)
    assert run.returncode == EXIT_CANCELLED, err
    assert "interrupted; no partial output was kept" in err
    deadline = time.monotonic() + 30
    while _group_alive(run.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _group_alive(run.pid), "worker processes outlived the interrupted run"
    assert list(out.glob("*/.*")) == []  # no temporaries
    done = sorted(path.parent.name for path in out.glob("*/probability.provenance.json"))
    assert 2 <= len(done) < CASES and "case_002" not in done

    blocked.unlink()
    shutil.copy(images / "case_002" / "image.nii.gz", blocked)
    capsys.readouterr()
    assert main(["predict", "--cohort", str(cohort), "--out", str(out), "--workers", "2", *bundle]) == EXIT_PARTIAL
    summary = capsys.readouterr().out
    assert f"Predicted {CASES - len(done)} case(s), {len(done)} already up to date, 1 failed" in summary
    assert "case_bad:" in summary
    for index in range(CASES):
        _same_outputs(reference, out, f"case_{index:03d}")  # the cluster's outputs are the in-process ones

    assert main(["predict", "--cohort", str(cohort), "--out", str(out), *bundle]) == EXIT_PARTIAL
    assert f"Predicted 0 case(s), {CASES} already up to date" in capsys.readouterr().out


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def test_resume_recomputes_a_case_whose_inputs_or_settings_changed(images, bundle, reference, tmp_path):
    calibrator = bundle[3]
    bundle = load_bundle(bundle[1])
    case = Case.from_folder(images / "case_000")
    same = _fingerprint(bundle, calibrator, 0.5)
    assert is_up_to_date(case, reference / "case_000", same, calibrated=True)
    assert not is_up_to_date(case, reference / "case_000", _fingerprint(bundle, calibrator, 0.6), True)
    other = tmp_path / "other.json"
    other.write_text(Path(calibrator).read_text() + " ")
    assert not is_up_to_date(case, reference / "case_000", _fingerprint(bundle, str(other), 0.5), True)
    assert not is_up_to_date(case, reference / "case_000", _fingerprint(bundle, None, 0.5), True)

    copy = tmp_path / "copy"
    shutil.copytree(reference / "case_000", copy)
    (copy / "mask.nii.gz").unlink()
    assert not is_up_to_date(case, copy, same, True)  # an output is missing
    moved = tmp_path / "case_000"
    shutil.copytree(images / "case_000", moved)
    image = read_image(moved / "image.nii.gz")
    array = image.array.copy()
    array[0, 0, 0] += 1
    write_image(moved / "image.nii.gz", array, image.geometry)
    assert not is_up_to_date(Case.from_folder(moved), reference / "case_000", same, True)  # another CT


def test_the_ensemble_hook_travels_without_its_sessions(bundle, images):
    import pickle

    from TwinTrackLogic import pipeline

    local, _ = pipeline.ensemble_probability_hook(bundle[1])
    case = Case.from_folder(images / "case_000")
    expected = local(case)
    assert local._ensemble is not None  # kept by the object made here, freed with it
    wire = pickle.dumps(local)  # what Dask sends: the path and settings, no onnxruntime session
    assert len(wire) < 1000
    pipeline._PROCESS_ENSEMBLE.clear()
    travelled = pickle.loads(wire)
    arrived = travelled(case)  # the map and the case's domain warnings
    assert np.array_equal(arrived.probability, expected.probability) and arrived.warnings == expected.warnings
    assert travelled._ensemble is None and len(pipeline._PROCESS_ENSEMBLE) == 1  # one per worker process
