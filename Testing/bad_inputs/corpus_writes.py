"""Bad-input corpus, part two: where outputs go and what can happen to them.

Write failures (a full disk as a small tmpfs, a file-size limit), termination signals during
a real run, non-finite data, outputs that alias inputs or each other, output paths that cannot
be written, two-file image formats, and case folders laid out wrongly. ``corpus.py`` appends
these entries to ``CORPUS``; ``Testing/test_bad_inputs.py`` runs them like the others.

An entry may carry, beyond the fields of ``corpus.BadInput``:

- ``run(root) -> (exit code, stderr, stdout)``: how to run it when a plain in-process call of
  ``main`` cannot make the failure (a mounted tmpfs, a child process with a file-size limit,
  a signal sent to a child process);
- ``cleanup(root)``: undo what ``run`` set up (unmount), after the checks;
- ``unchanged``: files under the entry's folder whose bytes must be the same afterwards.

This module imports nothing from ``corpus.py`` at import time (``corpus.py`` imports it), only
inside the build functions.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import onnx
from onnx import TensorProto, helper

HERE = Path(__file__).resolve().parent

from bundle_helpers import IR_VERSION, OPSET, identity_bundle, sha256  # noqa: E402
from TwinTrackLogic.io import Geometry, write_image  # noqa: E402

REPOSITORY = HERE.parent.parent
Result = Tuple[int, str, str]


@dataclass
class WriteBadInput:
    """One bad input of this part (same fields as ``corpus.BadInput``, plus run/cleanup/unchanged)."""

    name: str
    description: str
    build: Callable[[Path], None]
    command: Sequence[str]  # {root} is the entry's folder
    must_say: Sequence[str]
    exit_code: int = 2
    environment: Dict[str, str] = field(default_factory=dict)
    run: Optional[Callable[[Path], Result]] = None
    cleanup: Optional[Callable[[Path], None]] = None
    unchanged: Sequence[str] = ()

    def argv(self, root: Path) -> List[str]:
        return [part.replace("{root}", str(root)) for part in self.command]


def _base():
    import corpus  # the building blocks of part one; imported late (corpus.py imports this module)

    return corpus


# --- building blocks ------------------------------------------------------

GRID = Geometry((24, 20, 12), (1.5, 1.5, 3.0), (-20.0, 14.0, -300.0))
# Large enough that writing predict's four noisy float maps takes a while: a signal arrives mid-write.
BIG_GRID = Geometry((160, 160, 80), (1.5, 1.5, 3.0), (-20.0, 14.0, -300.0))


def _noise_ct(root: Path, grid: Geometry = GRID, name: str = "ct.nii.gz", patch=(8, 8, 8)) -> None:
    """A noise CT (its probability map does not compress, so it fills a small disk) and an identity bundle."""
    identity_bundle(root / "bundle", spacing=grid.spacing, patch=patch)
    ct = np.random.default_rng(3).normal(0.0, 2.0, grid.shape).astype(np.float32)
    write_image(root / name, ct, grid)


def _noise_probability(root: Path) -> None:
    """cal.json (a valid calibrator) and p.nii.gz, a raw map of noise in (0, 1)."""
    _base()._calibrator(lambda data: None)(root)
    p = np.random.default_rng(4).uniform(0.01, 1.0, GRID.shape).astype(np.float32)
    write_image(root / "p.nii.gz", p, GRID)


def _array_file(path: Path, array: np.ndarray) -> None:
    """Write ``array`` on GRID with SimpleITK directly (NRRD and MHA keep NaN and Inf)."""
    import SimpleITK as sitk

    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(GRID.apply_to(sitk.GetImageFromArray(array)), str(path))


def _with_bad_voxel(value: float, index=(3, 4, 5), fill: float = 0.0) -> np.ndarray:
    array = np.full(GRID.shape, fill, np.float32)
    array[index] = value
    return array


def _nan_model(path: Path) -> None:
    """An ONNX model whose output is NaN everywhere (input x NaN), shaped like an identity member."""
    spatial = ["z", "y", "x"]
    nan = helper.make_tensor("nan", TensorProto.FLOAT, [1], [float("nan")])
    graph = helper.make_graph(
        [helper.make_node("Mul", ["image", "nan"], ["logits"])], "nan",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1] + spatial)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1] + spatial)],
        initializer=[nan])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.save(model, str(path))


def _nan_stage(stage_name: str, localiser: bool = False) -> Callable[[Path], None]:
    def build(root: Path) -> None:
        folder = identity_bundle(root / "bundle", spacing=GRID.spacing, patch=(8, 8, 8), with_localiser=localiser)
        manifest = json.loads((folder / "manifest.json").read_text())
        stage = manifest["localiser"] if localiser else manifest["members"][0]
        _nan_model(folder / stage["model"])
        stage["sha256"] = sha256(folder / stage["model"])
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
        write_image(root / "ct.nii.gz", np.full(GRID.shape, 40.0, np.float32), GRID)
    return build


def _case(root: Path, raters: int = 3) -> Path:
    return _base()._cohort(root, raters=raters)[0]


def _rename(folder: Path, old: str, new: str) -> None:
    (folder / old).rename(folder / new)


def _copy_as(folder: Path, old: str, new: str) -> None:
    """The same image in another format (a second copy of one role)."""
    import SimpleITK as sitk

    sitk.WriteImage(sitk.ReadImage(str(folder / old)), str(folder / new))


# --- runners --------------------------------------------------------------

def _in_process(argv: Sequence[str]) -> Result:
    from TwinTrackCLI import main

    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(list(argv))
    return code, err.getvalue(), out.getvalue()


def _mount_full_disk(folder: Path, size: str) -> None:
    """A tmpfs of ``size`` at ``folder``: the disk that fills up. Skips the test where mounting is
    impossible (not root, or no CAP_SYS_ADMIN in a container)."""
    import pytest

    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a full disk is simulated with a small tmpfs, which needs root (mount -t tmpfs)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (mount says: {done.stderr.strip()}); the file-size-limit "
                    "entries cover write failures without it")


def _unmount(root: Path) -> None:
    out = root / "out"
    if os.path.ismount(out):
        subprocess.run(["umount", str(out)], check=True)


def full_disk(size: str = "8k"):
    """run: the command in-process with out/ on a full tmpfs of ``size``."""
    def run(entry_argv):
        def runner(root: Path) -> Result:
            _mount_full_disk(root / "out", size)
            return _in_process(entry_argv(root))
        return runner
    return run


def _child(argv: Sequence[str], **popen) -> subprocess.Popen:
    environment = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "TwinTrackCLI", *argv], cwd=REPOSITORY, env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def file_size_limit(limit_bytes: int):
    """run: the command in a child process that may write no file larger than ``limit_bytes``
    (RLIMIT_FSIZE; SIGXFSZ ignored, so a write past it fails with EFBIG as on a full disk)."""
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    def run(entry_argv):
        def runner(root: Path) -> Result:
            child = _child(entry_argv(root), preexec_fn=limit)
            stdout, stderr = child.communicate(timeout=300)
            return child.returncode, stderr, stdout
        return runner
    return run


def _partial_files(folder: Path) -> List[Path]:
    return [path for path in folder.rglob("*") if ".partial" in path.name] if folder.exists() else []


def signal_during_write(signum: int):
    """run: `predict` in a child process; ``signum`` is sent as soon as its first output's
    temporary (.partial) file appears, that is, while it writes."""
    def run(entry_argv):
        def runner(root: Path) -> Result:
            child = _child(entry_argv(root))
            deadline = time.monotonic() + 300
            while not _partial_files(root / "out"):
                if child.poll() is not None or time.monotonic() > deadline:
                    stdout, stderr = child.communicate()
                    raise AssertionError(f"predict ended (exit {child.returncode}) before it wrote anything:"
                                         f"\n{stderr}\n{stdout}")
                time.sleep(0.002)
            child.send_signal(signum)
            stdout, stderr = child.communicate(timeout=300)
            return child.returncode, stderr, stdout
        return runner
    return run


def signal_during_cohort(signum: int):
    """run: a cohort command in a child process; ``signum`` is sent when it reports its first case."""
    def run(entry_argv):
        def runner(root: Path) -> Result:
            child = _child(entry_argv(root))
            seen = []
            for line in child.stderr:  # progress lines
                seen.append(line)
                if "(1 of " in line:  # the first case is done: the next one is under way
                    break
            else:
                raise AssertionError(f"the run ended before its first case:\n{''.join(seen)}")
            child.send_signal(signum)
            stdout, stderr = child.communicate(timeout=300)
            return child.returncode, "".join(seen) + stderr, stdout
        return runner
    return run


def _entry(name, description, build, command, must_say, runner=None, **fields) -> WriteBadInput:
    entry = WriteBadInput(name, description, build, command, must_say, cleanup=_unmount, **fields)
    if runner is not None:
        entry.run = runner(entry.argv)
    return entry


# --- commands ---------------------------------------------------------------

PREDICT = ["predict", "--image", "{root}/ct.nii.gz", "--out", "{root}/out/p.nii.gz", "--no-calibration",
           "--bundle", "{root}/bundle"]
APPLY = ["apply", "--calibrator", "{root}/cal.json", "--probability", "{root}/p.nii.gz",
         "--out", "{root}/out/c.nii.gz"]
CALIBRATE = ["calibrate", "--cohort", "{root}/cohort", "--out", "{root}/out/cal.json"]
EVALUATE = ["evaluate", "--cohort", "{root}/cohort", "--out", "{root}/out/report.json"]
BIG_PREDICT = ["predict", "--image", "{root}/ct.nii.gz", "--no-calibration", "--bundle", "{root}/bundle",
               "--out", "{root}/out/p.nii.gz", "--raw-out", "{root}/out/raw.nii.gz",
               "--region-out", "{root}/out/region.nii.gz", "--mask-out", "{root}/out/mask.nii.gz"]


def _predict_to(*outputs: str) -> List[str]:
    return ["predict", "--image", "{root}/ct.nii.gz", "--no-calibration", "--bundle", "{root}/bundle", *outputs]


def _apply_to(*outputs: str) -> List[str]:
    return ["apply", "--calibrator", "{root}/cal.json", "--probability", "{root}/p.nii.gz", *outputs]


WRITE_FAILED = ["Could not write", "Free space in", "Nothing was published"]


def _signal_entry(name: str, signum: int, exit_code: int, said: str) -> WriteBadInput:
    return _entry(name, f"{signal.Signals(signum).name} sent to a running predict while it writes",
                  lambda r: _noise_ct(r, BIG_GRID, patch=(48, 48, 32)), BIG_PREDICT,
                  ["twintrack predict", said, "no partial output was kept"], signal_during_write(signum),
                  exit_code=exit_code)


def _aliasing_ct(root: Path) -> None:
    _noise_ct(root)


def _symlink_to_ct(root: Path) -> None:
    _noise_ct(root)
    (root / "link.nii.gz").symlink_to(root / "ct.nii.gz")


def _hardlink_to_ct(root: Path) -> None:
    _noise_ct(root)
    os.link(root / "ct.nii.gz", root / "linked.nii.gz")


def _bundle_with_calibrator(root: Path) -> None:
    _base()._cohort(root)
    identity_bundle(root / "bundle", spacing=(2.6, 2.6, 4.0), patch=(8, 8, 8))
    _base()._calibrator(lambda data: None)(root / "spare")
    shutil.copy(root / "spare" / "cal.json", root / "bundle" / "calibrator.json")


def _gap(folder: Path) -> None:
    _rename(folder, "annotation_2.nii.gz", "annotation_4.nii.gz")


def _case_without_ct(root: Path) -> None:
    folder = _case(root)
    (folder / "image.nii.gz").rename(folder / "image.png")


def _uppercase_truncated(root: Path) -> None:
    folder = _case(root)
    whole = (folder / "annotation_1.nii.gz").read_bytes()
    (folder / "annotation_1.nii.gz").unlink()
    (folder / "ANNOTATION_1.NII.GZ").write_bytes(whole[: len(whole) // 2])


def _layout(mutate: Callable[[Path], None]) -> Callable[[Path], None]:
    def build(root: Path) -> None:
        mutate(_case(root))
    return build


def _nan_case_files(kind: str) -> Callable[[Path], None]:
    """A phantom case whose annotation or organ mask is replaced by one on its own grid with a bad voxel."""
    def build(root: Path) -> None:
        import SimpleITK as sitk

        folder = _case(root)
        reference = sitk.ReadImage(str(folder / "image.nii.gz"))
        shape = sitk.GetArrayViewFromImage(reference).shape
        array = np.zeros(shape, np.float32)
        array[shape[0] // 2, shape[1] // 2, shape[2] // 2 - 3: shape[2] // 2 + 3] = 1.0
        if kind == "annotation":
            (folder / "annotation_2.nii.gz").unlink()
            array[2, 3, 4] = np.nan
            target = folder / "annotation_2.nrrd"
        else:
            (folder / "pancreas.nii.gz").unlink()
            array[2, 3, 4] = np.inf
            target = folder / "pancreas.mha"
        image = sitk.GetImageFromArray(array)
        image.CopyInformation(reference)
        sitk.WriteImage(image, str(target))
    return build


def _apply_with_region(value: float) -> Callable[[Path], None]:
    def build(root: Path) -> None:
        _noise_probability(root)
        region = np.zeros(GRID.shape, np.float32)
        region[2:10, 2:18, 2:22] = 1.0
        region[6, 7, 8] = value
        _array_file(root / "region.nrrd", region)
    return build


def _apply_nan_probability(root: Path) -> None:
    _base()._calibrator(lambda data: None)(root)
    _array_file(root / "p.nrrd", _with_bad_voxel(np.nan, fill=0.3))


def _all_nan_ct(root: Path) -> None:
    identity_bundle(root / "bundle", spacing=GRID.spacing, patch=(8, 8, 8))
    _array_file(root / "ct.nrrd", np.full(GRID.shape, np.nan, np.float32))


def _demo_bundle_copy(root: Path) -> None:
    shutil.copytree(REPOSITORY / "Resources" / "DemoBundle", root / "bundle")


def _file_named(path: str) -> Callable[[Path], None]:
    def build(root: Path) -> None:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text("not a folder\n")
    return build


def _and(*builds: Callable[[Path], None]) -> Callable[[Path], None]:
    def build(root: Path) -> None:
        for step in builds:
            step(root)
    return build


def _calibrated_cohort(root: Path) -> None:
    _base()._cohort(root)
    _base()._calibrator(lambda data: None)(root)


WRITE_CORPUS: List[WriteBadInput] = [
    # Write failures: a short write is an error naming the folder, never a published file.
    _entry("disk-full-predict-nii-gz", "predict onto a full disk (.nii.gz: ITK prints an error, does not raise)",
           _noise_ct, PREDICT, [*WRITE_FAILED, "p.nii.gz", "out"], full_disk()),
    _entry("disk-full-predict-nii", "predict onto a full disk, uncompressed .nii",
           _noise_ct, _predict_to("--out", "{root}/out/p.nii"), [*WRITE_FAILED, "p.nii"], full_disk()),
    _entry("disk-full-predict-nrrd", "predict onto a full disk, .nrrd",
           _noise_ct, _predict_to("--out", "{root}/out/p.nrrd"), [*WRITE_FAILED, "p.nrrd"], full_disk()),
    _entry("disk-full-predict-mha", "predict onto a full disk, .mha",
           _noise_ct, _predict_to("--out", "{root}/out/p.mha"), [*WRITE_FAILED, "p.mha"], full_disk()),
    _entry("disk-full-apply", "apply onto a full disk", _noise_probability, APPLY,
           [*WRITE_FAILED, "c.nii.gz"], full_disk()),
    _entry("file-size-limit-calibrate", "calibrate under a 512-byte file-size limit (the calibrator JSON)",
           lambda r: _base()._cohort(r), CALIBRATE, [*WRITE_FAILED, "cal.json", "File too large"],
           file_size_limit(512)),
    _entry("disk-full-evaluate", "evaluate onto a full disk (the report JSON)", lambda r: _base()._cohort(r),
           EVALUATE + ["--bootstrap", "20"], [*WRITE_FAILED, "report.json"], full_disk("4k")),
    _entry("file-size-limit-predict", "predict under a 16 kB file-size limit (ulimit -f)", _noise_ct, PREDICT,
           [*WRITE_FAILED, "p.nii.gz"], file_size_limit(16 * 1024)),
    _entry("file-size-limit-apply", "apply under an 8 kB file-size limit, .nrrd output", _noise_probability,
           _apply_to("--out", "{root}/out/c.nrrd"), [*WRITE_FAILED, "c.nrrd"], file_size_limit(8 * 1024)),
    # Signals: unwound like Ctrl-C, temporaries removed, exit 128 + signal.
    _signal_entry("signal-sigterm-predict", signal.SIGTERM, 143, "terminated by SIGTERM"),
    _signal_entry("signal-sighup-predict", signal.SIGHUP, 129, "terminated by SIGHUP"),
    _signal_entry("signal-sigint-predict", signal.SIGINT, 130, "interrupted"),
    _entry("signal-sigterm-calibrate", "SIGTERM sent to a cohort calibration (ensemble per case) mid-run",
           lambda r: (_base()._cohort(r, cases=3),
                      identity_bundle(r / "bundle", spacing=(2.6, 2.6, 4.0), patch=(8, 8, 8)),
                      [p.unlink() for p in (r / "cohort").rglob("probability.nii.gz")]),
           CALIBRATE + ["--bundle", "{root}/bundle"], ["twintrack calibrate", "terminated by SIGTERM"],
           signal_during_cohort(signal.SIGTERM), exit_code=143),
    # Non-finite values: refused with the count and the first voxel, or stopped.
    _entry("nan-annotation", "an annotation (NRRD keeps NaN) with a NaN voxel", _nan_case_files("annotation"),
           CALIBRATE, ["annotation_2.nrrd", "1 NaN or infinite voxel(s)", "(z, y, x) = (2, 3, 4)"]),
    _entry("inf-organ-mask", "an organ mask (MHA) with an infinite voxel", _nan_case_files("organ"),
           EVALUATE + ["--region", "organ"], ["pancreas.mha", "NaN or infinite", "(z, y, x) = (2, 3, 4)"]),
    _entry("nan-apply-region", "apply --region with a NaN voxel", _apply_with_region(np.nan),
           _apply_to("--out", "{root}/out/c.nii.gz", "--region", "{root}/region.nrrd"),
           ["region.nrrd", "NaN or infinite", "(z, y, x) = (6, 7, 8)"]),
    _entry("nan-apply-probability", "apply on a raw map with a NaN voxel", _apply_nan_probability,
           ["apply", "--calibrator", "{root}/cal.json", "--probability", "{root}/p.nrrd",
            "--out", "{root}/out/c.nii.gz"], ["p.nrrd", "1 NaN or infinite", "(z, y, x) = (3, 4, 5)"]),
    _entry("nan-member-output", "a member network that outputs NaN (must stop, never become 0)",
           _nan_stage("member"), PREDICT, ["member_1.onnx", "NaN or infinite", "stopped"]),
    _entry("nan-localiser-output", "a localiser that outputs NaN (would read as 'no organ': p = 0 everywhere)",
           _nan_stage("localiser", localiser=True), PREDICT, ["localiser.onnx", "NaN or infinite", "stopped"]),
    _entry("nan-ct-everywhere", "a CT whose voxels are all NaN", _all_nan_ct,
           ["predict", "--image", "{root}/ct.nrrd", "--no-calibration", "--bundle", "{root}/bundle",
            "--out", "{root}/out/p.nii.gz"], ["ct.nrrd", "no finite voxel"]),
    # Outputs that would overwrite an input or each other: refused before any work.
    _entry("alias-out-is-image", "predict --out naming the input CT", _aliasing_ct,
           _predict_to("--out", "{root}/ct.nii.gz"), ["--out", "ct.nii.gz", "is the input --image",
                                                      "destroy the input"], unchanged=["ct.nii.gz"]),
    _entry("alias-out-symlink-to-image", "predict --out is a symbolic link to the input CT", _symlink_to_ct,
           _predict_to("--out", "{root}/link.nii.gz"), ["--out", "link.nii.gz", "is the input --image"],
           unchanged=["ct.nii.gz"]),
    _entry("alias-raw-out-hardlink-to-image", "predict --raw-out is a hard link to the input CT", _hardlink_to_ct,
           _predict_to("--out", "{root}/out/p.nii.gz", "--raw-out", "{root}/linked.nii.gz"),
           ["--raw-out", "linked.nii.gz", "is the input --image"], unchanged=["ct.nii.gz"]),
    _entry("alias-out-differs-in-case", "predict --out CT.NII.GZ next to ct.nii.gz (one file on macOS/Windows)",
           _aliasing_ct, _predict_to("--out", "{root}/CT.NII.GZ"), ["--out", "CT.NII.GZ", "case-insensitive"],
           unchanged=["ct.nii.gz"]),
    _entry("alias-two-outputs-one-path", "predict --out and --mask-out the same file", _aliasing_ct,
           _predict_to("--out", "{root}/out/p.nii.gz", "--mask-out", "{root}/out/../out/p.nii.gz"),
           ["--out", "--mask-out", "the same path"]),
    _entry("alias-two-outputs-differ-in-case", "predict --out p.nii.gz and --raw-out P.nii.gz", _aliasing_ct,
           _predict_to("--out", "{root}/out/p.nii.gz", "--raw-out", "{root}/out/P.nii.gz"),
           ["--out", "--raw-out", "case-insensitive"]),
    _entry("alias-apply-out-is-probability", "apply --out naming its own input map", _noise_probability,
           _apply_to("--out", "{root}/p.nii.gz"), ["--out", "p.nii.gz", "is the input --probability"],
           unchanged=["p.nii.gz"]),
    _entry("alias-evaluate-out-is-calibrator", "evaluate --out naming the calibrator it reads", _calibrated_cohort,
           EVALUATE[:-1] + ["{root}/cal.json", "--calibrator", "{root}/cal.json"],
           ["--out", "cal.json", "is the input --calibrator"], unchanged=["cal.json"]),
    _entry("alias-calibrate-out-is-bundle-file", "calibrate --out onto the calibrator inside --bundle",
           _bundle_with_calibrator, CALIBRATE[:-1] + ["{root}/bundle/calibrator.json", "--bundle", "{root}/bundle"],
           ["--out", "calibrator.json", "a file of the input --bundle"], unchanged=["bundle/calibrator.json"]),
    _entry("alias-demo-out-is-bundle", "demo --out naming the model bundle folder (its calibrator.json)",
           _demo_bundle_copy, ["demo", "--bundle", "{root}/bundle", "--out", "{root}/bundle"],
           ["--out", "lies inside the input folder --bundle", "a model bundle"],
           unchanged=["bundle/calibrator.json", "bundle/manifest.json"]),
    _entry("alias-calibrate-out-is-annotation", "calibrate --out onto a case's file (named .json)",
           lambda r: (_base()._cohort(r), shutil.copy(r / "cohort/case_000/annotation_1.nii.gz",
                                                      r / "cohort/case_000/notes.json")),
           CALIBRATE[:-1] + ["{root}/cohort/case_000/notes.json"], ["--out", "notes.json", "input --cohort"],
           unchanged=["cohort/case_000/notes.json"]),
    # Output paths that cannot be written as asked: refused naming the option.
    _entry("out-existing-folder", "predict --out naming an existing folder",
           _and(_aliasing_ct, lambda r: (r / "maps").mkdir(parents=True)),
           _predict_to("--out", "{root}/maps"), ["--out", "is an existing folder"]),
    _entry("out-no-image-suffix", "predict --out without an image suffix", _aliasing_ct,
           _predict_to("--out", "{root}/out/probability"), ["--out", "no image suffix", ".nii.gz"]),
    _entry("out-apply-mask-png", "apply --mask-out with a .png name", _noise_probability,
           _apply_to("--out", "{root}/out/c.nii.gz", "--mask-out", "{root}/out/mask.png"),
           ["--mask-out", "mask.png", "no image suffix"]),
    _entry("out-calibrate-existing-folder", "calibrate --out naming an existing folder",
           _and(lambda r: _base()._cohort(r), lambda r: (r / "cal").mkdir(parents=True)),
           CALIBRATE[:-1] + ["{root}/cal"], ["--out", "is an existing folder"]),
    _entry("out-evaluate-not-json", "evaluate --out without .json", lambda r: _base()._cohort(r),
           EVALUATE[:-1] + ["{root}/out/report.txt"], ["--out", "report.txt", ".json"]),
    _entry("out-evaluate-plots-is-file", "evaluate --plots naming an existing file",
           _and(lambda r: _base()._cohort(r), _file_named("plots")),
           EVALUATE + ["--plots", "{root}/plots"], ["--plots", "is an existing file, not a folder"],
           unchanged=["plots"]),
    _entry("out-phantom-is-file", "phantom --out naming an existing file", _file_named("cohort.txt"),
           ["phantom", "--out", "{root}/cohort.txt", "--cases", "1"], ["--out", "cohort.txt", "not a folder"],
           unchanged=["cohort.txt"]),
    # Two-file formats: refused, saying which single-file format to use.
    _entry("two-file-predict-mhd", "predict --out .mhd (header + .zraw pair)", _aliasing_ct,
           _predict_to("--out", "{root}/out/p.mhd"), ["--out", "p.mhd", "Use .mha", "p.mha"]),
    _entry("two-file-apply-nhdr", "apply --out .nhdr (header + data pair)", _noise_probability,
           _apply_to("--out", "{root}/out/c.nhdr"), ["--out", "c.nhdr", "Use .nrrd", "c.nrrd"]),
    # Case folder layout: one naming rule, reported rather than dropped or double-counted.
    _entry("layout-annotation-two-formats", "annotation_1 as .nii.gz and as .nrrd (one rater counted twice)",
           _layout(lambda f: _copy_as(f, "annotation_1.nii.gz", "annotation_1.nrrd")), CALIBRATE,
           ["case_000", "rater 1's annotation in 2 files", "annotation_1.nii.gz, annotation_1.nrrd", "Keep one"]),
    _entry("layout-annotation-leading-zero", "annotation_01 next to annotation_1",
           _layout(lambda f: _copy_as(f, "annotation_1.nii.gz", "annotation_01.nii.gz")), EVALUATE,
           ["case_000", "rater 1's annotation in 2 files", "annotation_01.nii.gz"]),
    _entry("layout-rater-gap", "annotations 1, 3 and 4 but no 2", _layout(_gap), CALIBRATE,
           ["case_000", "raters 1, 3, 4", "no annotation_2", "a rater's file is missing"]),
    _entry("layout-case-without-ct", "a case folder with annotations but no readable CT (image.png)",
           _case_without_ct, EVALUATE, ["case_000", "has no image file", "image.nii.gz"]),
    _entry("layout-image-two-formats", "the CT as image.nii.gz and as image.nrrd",
           _layout(lambda f: _copy_as(f, "image.nii.gz", "image.nrrd")), CALIBRATE,
           ["case_000", "holds image in 2 files", "image.nii.gz, image.nrrd"]),
    _entry("layout-uppercase-truncated-nifti", "ANNOTATION_1.NII.GZ cut off half way (upper case is still "
           "a rater's NIfTI, and gets the NIfTI checks)", _uppercase_truncated, EVALUATE,
           ["ANNOTATION_1.NII.GZ", "truncated or corrupted"]),
]
