"""Nothing executes from data, nothing reaches the network, and runs are repeatable."""

import ast
import socket
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from TwinTrackCLI import main
from TwinTrackLogic.io import mhr_from_masks, read_image, write_image
from TwinTrackLogic.phantom import generate_case, write_case

REPOSITORY = Path(__file__).resolve().parent.parent
RUNTIME_PACKAGES = [REPOSITORY / "TwinTrackLogic", REPOSITORY / "TwinTrackCLI", REPOSITORY / "TwinTrack", REPOSITORY / "TwinTrackWeb"]

# Calls that turn data into code or objects: never on the runtime path.
FORBIDDEN_CALLS = {
    "eval", "exec", "compile", "__import__",
    "pickle.load", "pickle.loads", "pickle.Unpickler", "cPickle.load", "cPickle.loads",
    "torch.load", "joblib.load", "marshal.load", "marshal.loads", "shelve.open", "yaml.load",
    "dill.load", "dill.loads", "cloudpickle.load", "cloudpickle.loads",
}
FORBIDDEN_IMPORTS = {"pickle", "cPickle", "marshal", "shelve", "dill", "cloudpickle", "joblib", "torch"}


def _dotted(node) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


# The nnU-Net importer (`twintrack bundle from-nnunet`, the optional [nnunet] extra) is the one place
# that reads torch checkpoints; it is not on the runtime path and is checked on its own below.
IMPORTER = REPOSITORY / "TwinTrackNNUNet"


def _runtime_sources():
    for package in RUNTIME_PACKAGES:
        yield from sorted(p for p in package.rglob("*.py") if not p.is_relative_to(IMPORTER))


def test_the_nnunet_importer_loads_checkpoints_only_weights_only_and_nothing_runtime_imports_it():
    loads = []
    for path in sorted(IMPORTER.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and _dotted(node.func) in FORBIDDEN_CALLS:
                weights_only = [k for k in node.keywords if k.arg == "weights_only"]
                assert _dotted(node.func) == "torch.load" and len(weights_only) == 1, path
                assert isinstance(weights_only[0].value, ast.Constant) and weights_only[0].value.value is True
                loads.append(path.name)
    assert loads == ["results.py"]
    importers = []
    for path in _runtime_sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("TwinTrackNNUNet"):
                importers.append(path.relative_to(REPOSITORY).as_posix())
    assert importers == ["TwinTrackCLI/bundle.py"]  # only `bundle from-nnunet`, lazily


def test_runtime_code_never_executes_or_unpickles_data():
    problems = []
    for path in _runtime_sources():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            where = f"{path.relative_to(REPOSITORY)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Call):
                name = _dotted(node.func)
                if name in FORBIDDEN_CALLS or name.split(".")[-1] in {"eval", "exec"} and "." not in name:
                    problems.append(f"{where} calls {name}")
                if name.endswith("load") and name.split(".")[0] in {"np", "numpy"}:
                    for keyword in node.keywords:
                        if keyword.arg == "allow_pickle":
                            problems.append(f"{where} calls {name} with allow_pickle")
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                for name in names:
                    if name.split(".")[0] in FORBIDDEN_IMPORTS:
                        problems.append(f"{where} imports {name}")
    assert problems == []
    assert sum(1 for _ in _runtime_sources()) > 20  # the scan really looked at the code


@pytest.fixture()
def no_network(monkeypatch):
    """Fail any attempt to open a network connection or resolve a host name."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access attempted during a TwinTrack run")

    for name in ("connect", "connect_ex", "sendto"):
        monkeypatch.setattr(socket.socket, name, refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    for index in range(2):
        case = generate_case(index, raters=3, seed=8)
        folder = write_case(case, root)
        p = np.clip(mhr_from_masks(case.annotations) * 1.3, 0, 1).astype(np.float32)
        write_image(folder / "probability.nii.gz", p, case.geometry)
    return root


def test_predict_calibrate_evaluate_apply_open_no_socket(cohort, tmp_path, no_network):
    image = cohort / "case_000" / "image.nii.gz"
    assert main(["predict", "--image", str(image), "--out", str(tmp_path / "p.nii.gz")]) == 0
    assert main(["calibrate", "--cohort", str(cohort), "--out", str(tmp_path / "cal.json")]) == 0
    assert main(["evaluate", "--cohort", str(cohort), "--calibrator", str(tmp_path / "cal.json"),
                 "--out", str(tmp_path / "report.json"), "--bootstrap", "50"]) == 0
    assert main(["apply", "--calibrator", str(tmp_path / "cal.json"),
                 "--probability", str(cohort / "case_000" / "probability.nii.gz"),
                 "--out", str(tmp_path / "c.nii.gz")]) == 0
    assert no_network == []
    # The guard is live: a real attempt would have been caught.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", 9))


def test_models_are_loaded_only_from_verified_bytes(cohort, tmp_path, monkeypatch):
    """onnxruntime never gets a path: only bytes that passed the manifest's sha256 check."""
    received = []
    real_session = onnxruntime.InferenceSession

    def recording_session(model, *args, **kwargs):
        received.append(type(model))
        return real_session(model, *args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", recording_session)
    image = cohort / "case_000" / "image.nii.gz"
    assert main(["predict", "--image", str(image), "--no-calibration", "--out", str(tmp_path / "p.nii.gz")]) == 0
    assert received and set(received) == {bytes}


@pytest.mark.slow  # over ~4 s: left out of the fast loop
def test_repeated_predict_is_bit_identical(cohort, tmp_path):
    image = cohort / "case_001" / "image.nii.gz"
    outputs = []
    for run in range(2):
        out = tmp_path / f"run{run}"
        assert main(["predict", "--image", str(image), "--out", str(out / "p.nii.gz"),
                     "--raw-out", str(out / "raw.nii.gz"), "--mask-out", str(out / "mask.nii.gz")]) == 0
        outputs.append(out)
    for name in ("p.nii.gz", "raw.nii.gz", "mask.nii.gz"):
        first = read_image(outputs[0] / name).array
        second = read_image(outputs[1] / name).array
        assert first.tobytes() == second.tobytes(), name
    assert read_image(outputs[0] / "raw.nii.gz").array.max() > 0.5  # the ensemble found the tumour


@pytest.mark.slow  # over ~4 s: left out of the fast loop
def test_predict_outputs_appear_together_or_not_at_all(cohort, tmp_path, monkeypatch, capsys):
    """A failure while writing the last output leaves none of the new ones, and old ones intact."""
    import TwinTrackLogic.io.outputs as io_module

    image = cohort / "case_000" / "image.nii.gz"
    out = tmp_path / "out"
    argv = ["predict", "--image", str(image), "--out", str(out / "p.nii.gz"),
            "--raw-out", str(out / "raw.nii.gz"), "--mask-out", str(out / "mask.nii.gz")]
    assert main(argv) == 0
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    real_writer = io_module._write_image_to

    def failing_on_mask(path, array, geometry, compress):
        if ".mask.nii.gz" in path.name:
            raise OSError(28, "No space left on device")
        return real_writer(path, array, geometry, compress)

    monkeypatch.setattr(io_module, "_write_image_to", failing_on_mask)
    capsys.readouterr()
    assert main(argv) == 2
    message = capsys.readouterr().err
    assert "No space left on device" in message and "Traceback" not in message
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before
