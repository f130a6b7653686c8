"""The bad-input corpus: files people really have on disk, and what TwinTrack must say.

Each entry builds its bad input into a folder, names the `twintrack` command a
user would run on it, and lists what the error message must contain: what is
wrong, which file, and what to do. ``Testing/test_bad_inputs.py`` runs every
entry; ``python Testing/bad_inputs/corpus.py OUT`` writes the whole corpus to
OUT (one folder per entry, with the command in ``command.txt``) to try by hand.

The inputs are built rather than stored so that each stays minimal and its
defect is visible in the code below.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Sequence

import numpy as np
import SimpleITK as sitk

HERE = Path(__file__).resolve().parent

from bundle_helpers import identity_bundle, identity_model  # noqa: E402
from TwinTrackLogic.calibration import CalibrationStatistics, fit_calibrator  # noqa: E402
from TwinTrackLogic.io import Geometry, mhr_from_masks, write_image  # noqa: E402
from TwinTrackLogic.phantom import generate_case, write_case  # noqa: E402


@dataclass
class BadInput:
    """One bad input: how to build it, the command, and what the message must say."""

    name: str
    description: str
    build: Callable[[Path], None]
    command: Sequence[str]  # {root} is the entry's folder
    must_say: Sequence[str]  # fragments (case-sensitive) the message must contain
    exit_code: int = 2
    environment: Dict[str, str] = field(default_factory=dict)

    def argv(self, root: Path) -> List[str]:
        return [part.replace("{root}", str(root)) for part in self.command]


# --- building blocks ------------------------------------------------------

GRID = Geometry((24, 20, 12), (1.5, 1.5, 3.0), (-20.0, 14.0, -300.0))


def _cohort(root: Path, raters: int = 3, cases: int = 1, first: int = 0) -> List[Path]:
    """A small valid phantom cohort with an over-confident probability.nii.gz per case."""
    folders = []
    for index in range(first, first + cases):
        case = generate_case(index, raters=raters, seed=21)
        folder = write_case(case, root / "cohort")
        mhr = mhr_from_masks(case.annotations)
        write_image(folder / "probability.nii.gz", np.clip(mhr * 1.4 - 0.1, 0, 1).astype(np.float32),
                    case.geometry)
        folders.append(folder)
    return folders


def _reshape_file(path: Path, geometry: Geometry, dtype=np.uint8, fill=0) -> None:
    write_image(path, np.full(geometry.shape, fill, dtype), geometry)


def _geometry_entry(name, file_name, field_name, value_of, command):
    def build(root: Path) -> None:
        folder = _cohort(root)[0]
        geometry = Geometry.from_sitk(sitk.ReadImage(str(folder / "image.nii.gz")))
        changed = Geometry(**{**geometry.__dict__, field_name: value_of(geometry)})
        dtype = np.float32 if file_name.startswith("probability") else np.uint8
        _reshape_file(folder / file_name, changed, dtype)
    return BadInput(name, f"{file_name} on another grid ({field_name} differs)", build, command,
                    [file_name, field_name, "same voxel grid", "Resample"])


def _identity_bundle(root: Path) -> Path:
    return identity_bundle(root / "bundle", spacing=GRID.spacing, patch=(8, 8, 8))


def _image(root: Path, name: str, array: np.ndarray) -> None:
    _identity_bundle(root)
    sitk.WriteImage(sitk.GetImageFromArray(array, isVector=False), str(root / name))


def _probability_with(value: float, suffix: str):
    def build(root: Path) -> None:
        folder = _cohort(root)[0]
        geometry = Geometry.from_sitk(sitk.ReadImage(str(folder / "image.nii.gz")))
        probability = np.full(geometry.shape, 0.2, np.float32)
        probability[3, 4, 5] = value
        (folder / "probability.nii.gz").unlink()
        write_image(folder / f"probability{suffix}", probability, geometry)
    return build


def _relabel_annotation(root: Path) -> None:
    folder = _cohort(root)[0]
    image = sitk.ReadImage(str(folder / "annotation_1.nii.gz"))
    array = sitk.GetArrayFromImage(image)
    array[array > 0] = 2  # a label map: tumour = 2
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    sitk.WriteImage(out, str(folder / "annotation_1.nii.gz"))


def _empty_annotations(root: Path) -> None:
    folder = _cohort(root)[0]
    geometry = Geometry.from_sitk(sitk.ReadImage(str(folder / "image.nii.gz")))
    for path in folder.glob("annotation_*.nii.gz"):
        _reshape_file(path, geometry)
    _reshape_file(folder / "probability.nii.gz", geometry, np.float32)
    (folder / "pancreas.nii.gz").unlink()


def _mixed_rater_counts(root: Path) -> None:
    _cohort(root, raters=3, cases=1, first=0)
    _cohort(root, raters=2, cases=1, first=1)


def _truncated(root: Path) -> None:
    _identity_bundle(root)
    whole = write_image(root / "whole.nii.gz", np.random.default_rng(0).normal(size=GRID.shape)
                        .astype(np.float32), GRID).read_bytes()
    (root / "cut.nii.gz").write_bytes(whole[: len(whole) // 2])


def _ct(root: Path) -> None:
    _identity_bundle(root)
    write_image(root / "ct.nii.gz", np.zeros(GRID.shape, np.int16), GRID)


def _bundle(mutate: Callable[[Path, dict], None]) -> Callable[[Path], None]:
    def build(root: Path) -> None:
        _ct(root)
        folder = root / "bundle"
        manifest = json.loads((folder / "manifest.json").read_text())
        mutate(folder, manifest)
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return build


def _rehash(folder: Path, member: dict) -> None:
    member["sha256"] = hashlib.sha256((folder / member["model"]).read_bytes()).hexdigest()


def _corrupt_onnx(folder: Path, manifest: dict) -> None:
    member = manifest["members"][0]
    (folder / member["model"]).write_bytes(b"\x08\x07garbage that is not a protobuf" * 10)
    _rehash(folder, member)  # the hash matches: the file itself is broken


def _onnx_variant(**kwargs) -> Callable[[Path, dict], None]:
    def mutate(folder: Path, manifest: dict) -> None:
        member = manifest["members"][0]
        identity_model(folder / member["model"], **kwargs)
        _rehash(folder, member)
    return mutate


def _traversal(folder: Path, manifest: dict) -> None:
    manifest["members"][0]["model"] = "../outside.onnx"


def _absolute(folder: Path, manifest: dict) -> None:
    manifest["members"][0]["model"] = str((folder / manifest["members"][0]["model"]).resolve())


def _hash_mismatch(folder: Path, manifest: dict) -> None:
    manifest["members"][0]["sha256"] = "0" * 64


def _manifest_version(folder: Path, manifest: dict) -> None:
    manifest["version"] = 99


def _calibrator(mutate: Callable[[dict], None]) -> Callable[[Path], None]:
    def build(root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        p = rng.random(50_000).astype(np.float32)
        statistics = CalibrationStatistics()
        statistics.add(p, (p ** 2).astype(np.float32), raters=5)
        data = fit_calibrator(statistics, "isotonic", region="test", probability_source="test").to_dict()
        mutate(data)
        text = json.dumps(data, allow_nan=True)
        (root / "cal.json").write_text(text)
        write_image(root / "p.nii.gz", np.full(GRID.shape, 0.3, np.float32), GRID)
    return build


def _knot_lists(data: dict) -> List[list]:
    return [value for value in data["parameters"].values() if isinstance(value, list) and len(value) > 2]


def _non_monotone(data: dict) -> None:
    values = _knot_lists(data)[-1]
    values[1], values[-2] = values[-2], values[1]


def _nan_knot(data: dict) -> None:
    _knot_lists(data)[-1][3] = float("nan")


def _huge(data: dict) -> None:
    for values in _knot_lists(data):
        values.extend([values[-1]] * 2_000_000)


def _version(data: dict) -> None:
    data["version"] = 7


def _missing(data: dict) -> None:
    del data["fitting"]


def _not_json(root: Path) -> None:
    _calibrator(lambda data: None)(root)
    (root / "cal.json").write_bytes(b"\x80\x03cposix\nsystem\nq\x00X\x02\x00\x00\x00idq\x01\x85q\x02Rq\x03.")


PREDICT = ["predict", "--image", "{root}/ct.nii.gz", "--out", "{root}/out/p.nii.gz", "--no-calibration",
           "--bundle", "{root}/bundle"]
CALIBRATE = ["calibrate", "--cohort", "{root}/cohort", "--out", "{root}/out/cal.json"]
EVALUATE = ["evaluate", "--cohort", "{root}/cohort", "--out", "{root}/out/report.json"]
APPLY = ["apply", "--calibrator", "{root}/cal.json", "--probability", "{root}/p.nii.gz",
         "--out", "{root}/out/c.nii.gz"]

CORPUS: List[BadInput] = [
    BadInput("image-2d", "a 2D image given as the CT", lambda r: _image(r, "ct.nii.gz", np.zeros((30, 40), np.int16)),
             PREDICT, ["ct.nii.gz", "2D image", "3D scalar volume"]),
    BadInput("image-4d", "a 4D (time series) image given as the CT",
             lambda r: _image(r, "ct.nii.gz", np.zeros((2, 5, 6, 7), np.int16)),
             PREDICT, ["ct.nii.gz", "4D image", "one time point"]),
    _geometry_entry("annotation-size", "annotation_2.nii.gz", "size",
                    lambda g: (g.size[0] - 1, g.size[1], g.size[2]), EVALUATE),
    _geometry_entry("annotation-spacing", "annotation_1.nii.gz", "spacing",
                    lambda g: (g.spacing[0], g.spacing[1], g.spacing[2] * 2), CALIBRATE),
    _geometry_entry("annotation-origin", "annotation_3.nii.gz", "origin",
                    lambda g: (g.origin[0] + 5.0, g.origin[1], g.origin[2]), EVALUATE),
    _geometry_entry("annotation-direction", "annotation_1.nii.gz", "direction",
                    lambda g: tuple(-v for v in g.direction[:3]) + g.direction[3:], CALIBRATE),
    _geometry_entry("probability-size", "probability.nii.gz", "size",
                    lambda g: (g.size[0], g.size[1], g.size[2] + 2), CALIBRATE),
    _geometry_entry("probability-origin", "probability.nii.gz", "origin",
                    lambda g: (g.origin[0], g.origin[1], g.origin[2] - 10.0), EVALUATE),
    BadInput("probability-above-one", "a probability map with values above 1 (logits or percent)",
             _probability_with(3.5, ".nii.gz"), CALIBRATE, ["probability.nii.gz", "outside [0, 1]", "logits"]),
    BadInput("probability-nan", "a probability map with NaN (NRRD keeps NaN; NIfTI cannot)",
             _probability_with(float("nan"), ".nrrd"), CALIBRATE + ["--probability", "probability.nrrd"],
             ["probability.nrrd", "NaN or infinite"]),
    BadInput("probability-inf", "a probability map with +Inf",
             _probability_with(float("inf"), ".mha"), EVALUATE + ["--probability", "probability.mha"],
             ["probability.mha", "NaN or infinite"]),
    BadInput("apply-out-of-range", "apply on a map with negative values",
             lambda r: (_calibrator(lambda d: None)(r), write_image(r / "p.nii.gz", np.full(GRID.shape, -0.5, np.float32), GRID)),
             APPLY, ["p.nii.gz", "outside [0, 1]"]),
    BadInput("annotation-label-map", "an annotation that is a label map (tumour = 2), not a 0/1 mask",
             _relabel_annotation, CALIBRATE, ["annotation_1.nii.gz", "binary mask", "label map"]),
    BadInput("annotations-empty", "raters marked nothing and there is no organ mask to fit in",
             _empty_annotations, CALIBRATE, ["no rater marked any voxel", "pancreas.nii.gz"]),
    BadInput("single-rater", "one rater: an MHR of 0 or 1 says nothing about agreement",
             lambda r: _cohort(r, raters=1), CALIBRATE, ["1 rater", "at least 2"]),
    BadInput("rater-counts-differ", "cases with 3 and 2 raters in one cohort",
             _mixed_rater_counts, CALIBRATE, ["different numbers of raters", "case_000: 3", "case_001: 2"]),
    BadInput("not-an-image", "a text file named like a NIfTI",
             lambda r: (_identity_bundle(r), (r / "ct.nii.gz").write_text("patient notes\n")),
             PREDICT, ["ct.nii.gz", "could not be read as an image"]),
    BadInput("truncated-nifti", "a .nii.gz cut off half way (ITK would read zeros)", _truncated,
             [part.replace("ct.nii.gz", "cut.nii.gz") for part in PREDICT],
             ["cut.nii.gz", "truncated or corrupted", "copy or export it again"]),
    BadInput("onnx-corrupted", "a member ONNX file that is not a model (hash updated to match)",
             _bundle(_corrupt_onnx), PREDICT, ["member_1.onnx", "ONNX"]),
    BadInput("onnx-input-rank", "a member whose input has rank 4 instead of 5",
             _bundle(_onnx_variant(input_rank=4)), PREDICT, ["member_1.onnx", "input"]),
    BadInput("onnx-input-channels", "a member that expects 3 input channels",
             _bundle(_onnx_variant(input_channels=3)), PREDICT, ["member_1.onnx", "channel"]),
    BadInput("onnx-output-channels", "a member with 2 output channels where the manifest says 1",
             _bundle(_onnx_variant(channels=2)), PREDICT, ["member_1.onnx", "channel"]),
    BadInput("manifest-traversal", "a manifest that points outside its bundle with ..",
             _bundle(_traversal), PREDICT, ["manifest.json", "../outside.onnx"]),
    BadInput("manifest-absolute-path", "a manifest with an absolute model path",
             _bundle(_absolute), PREDICT, ["manifest.json", "absolute"]),
    BadInput("manifest-hash-mismatch", "a model whose sha256 differs from the manifest",
             _bundle(_hash_mismatch), PREDICT, ["member_1.onnx", "sha256", "Restore the bundle"]),
    BadInput("manifest-version", "a manifest of an unknown format version",
             _bundle(_manifest_version), PREDICT, ["manifest.json", "version"]),
    BadInput("calibrator-non-monotone", "a tampered isotonic calibrator whose values go down",
             _calibrator(_non_monotone), APPLY, ["cal.json", "not a valid TwinTrack calibrator"]),
    BadInput("calibrator-nan", "a calibrator with NaN in its knots", _calibrator(_nan_knot), APPLY,
             ["cal.json", "not a valid TwinTrack calibrator", "NaN"]),
    BadInput("calibrator-huge", "a calibrator with millions of knots", _calibrator(_huge), APPLY,
             ["cal.json", "not a valid TwinTrack calibrator"]),
    BadInput("calibrator-version", "a calibrator of an unknown version", _calibrator(_version), APPLY,
             ["cal.json", "version"]),
    BadInput("calibrator-missing-keys", "a calibrator without its fitting record", _calibrator(_missing),
             APPLY, ["cal.json", "fitting is missing"]),
    BadInput("calibrator-pickle", "a pickle renamed to .json (must be refused, never unpickled)", _not_json,
             APPLY, ["cal.json", "not valid JSON"]),
    BadInput("volume-over-budget", "a CT larger than the memory budget", _ct, PREDICT,
             ["ct.nii.gz", "too large to process here", "TWINTRACK_MEMORY_BUDGET_MB"],
             environment={"TWINTRACK_MEMORY_BUDGET_MB": "0.05"}),
    BadInput("cohort-missing", "a cohort folder that does not exist", lambda r: r.mkdir(parents=True), EVALUATE,
             ["cohort", "is not a folder"]),
]

# Part two (write failures, signals, non-finite data, output paths, case layout): corpus_writes.py.
from corpus_writes import WRITE_CORPUS  # noqa: E402

CORPUS.extend(WRITE_CORPUS)


def write_corpus(out: Path) -> None:
    """Materialise every entry under ``out/<name>/`` with its command and expected message."""
    listing = []
    for entry in CORPUS:
        root = out / entry.name
        shutil.rmtree(root, ignore_errors=True)
        entry.build(root)
        root.mkdir(parents=True, exist_ok=True)
        command = " ".join(["twintrack", *entry.argv(root)])
        (root / "command.txt").write_text(command + "\n")
        listing.append({"name": entry.name, "description": entry.description, "command": command,
                        "exit_code": entry.exit_code, "must_say": list(entry.must_say),
                        "environment": entry.environment})
    (out / "corpus.json").write_text(json.dumps(listing, indent=2) + "\n")


# Part three (hostile headers and JSON, options, environment, domain): corpus_hostile.py, which
# builds on this module's blocks (run as a script, this module is __main__, not corpus).
sys.modules.setdefault("corpus", sys.modules[__name__])
from corpus_hostile import HOSTILE_CORPUS  # noqa: E402

CORPUS.extend(HOSTILE_CORPUS)

# Part four (nothing trusted that was not checked, DICOM UIDs, failures as sentences): corpus_trust.py.
from corpus_trust import TRUST_CORPUS  # noqa: E402

CORPUS.extend(TRUST_CORPUS)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python Testing/bad_inputs/corpus.py OUT_FOLDER")
    write_corpus(Path(sys.argv[1]))
    print(f"Wrote {len(CORPUS)} bad inputs to {sys.argv[1]}")
