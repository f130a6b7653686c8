"""Bad-input corpus, hostile part: headers and JSON built to hurt, options, environment, domain.

Extends :data:`corpus.CORPUS` (``corpus.py`` imports :data:`HOSTILE_CORPUS`). Each entry
must exit 2 with a message naming the file, the JSON path or the option, print no
traceback and leave no output:

- image headers that claim 4000^3 voxels (NIfTI, NRRD, MHA: refused from the header, no
  voxel inflated), a .nii.gz that inflates past its header (a gzip bomb), skewed, scaled
  or degenerate directions, zero or negative spacing;
- calibrators and manifests nested thousands of levels deep, with 5,000-digit integers,
  duplicate keys, NaN, Infinity or 1e999, misspelt keys, text that is not UTF-8, oversized;
- numeric options (NaN, infinities, negative sizes, zero threads or resamples, words) and
  environment variables (TWINTRACK_MEMORY_BUDGET_MB=8GB, a TWINTRACK_BUNDLE that is not one);
- ``predict --strict`` on CTs outside the bundle's declared domain, and a localiser that
  finds nothing.
"""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path
from typing import Callable, List, Tuple

import numpy as np

from bundle_helpers import identity_bundle
from corpus import APPLY, CALIBRATE, EVALUATE, GRID, PREDICT, BadInput, _calibrator, _ct

from TwinTrackLogic.io import Geometry, write_image

HUGE = (4000, 4000, 4000)


# --- image headers ---------------------------------------------------------

def _nifti_header_claiming(size) -> bytes:
    """A NIfTI-1 header (and 8 voxels) whose dimensions say ``size``."""
    header = bytearray(348)
    struct.pack_into("<i", header, 0, 348)
    struct.pack_into("<8h", header, 40, 3, *size, 1, 1, 1, 1)
    struct.pack_into("<hh", header, 70, 4, 16)  # datatype int16, 16 bits per voxel
    struct.pack_into("<8f", header, 76, 1.0, 1.0, 1.0, 1.0, 0, 0, 0, 0)  # pixdim
    struct.pack_into("<f", header, 108, 352.0)  # vox_offset
    struct.pack_into("<h", header, 254, 1)  # sform_code: scanner
    for row, offset in enumerate((280, 296, 312)):
        struct.pack_into("<4f", header, offset, *[1.0 if column == row else 0.0 for column in range(4)])
    header[344:348] = b"n+1\0"
    return bytes(header) + bytes(4)


def _huge_nifti(root: Path) -> None:
    _ct(root)
    # The stream is small and valid; its header alone says 128 GB of voxels.
    (root / "ct.nii.gz").write_bytes(gzip.compress(_nifti_header_claiming(HUGE) + bytes(1 << 16)))


def _gzip_bomb(root: Path) -> None:
    _ct(root)
    # A valid 24 x 20 x 12 header followed by 256 MB of zeros (a 250 kB download).
    whole = gzip.decompress((root / "ct.nii.gz").read_bytes())
    (root / "ct.nii.gz").write_bytes(gzip.compress(whole + bytes(256 << 20), 6))


def _text_header(name: str, lines: List[str], data: bytes = b"") -> Callable[[Path], None]:
    def build(root: Path) -> None:
        _ct(root)
        (root / "ct.nii.gz").unlink()
        (root / name).write_bytes(("\n".join(lines) + "\n").encode() + data)
    return build


def _mha(*extra: str, size=(2, 2, 2), data: bytes = bytes(8)) -> Tuple[List[str], bytes]:
    return ["ObjectType = Image", "NDims = 3", *extra, f"DimSize = {' '.join(map(str, size))}",
            "ElementType = MET_UCHAR", "ElementDataFile = LOCAL"], data


def _mha_entry(name, description, extra, must_say, size=(2, 2, 2), data=bytes(8)):
    lines, payload = _mha(*extra, size=size, data=data)
    return BadInput(name, description, _text_header("ct.mha", lines, payload), _predict_on("ct.mha"),
                    ["ct.mha", *must_say])


def _predict_on(name: str) -> List[str]:
    return [part.replace("ct.nii.gz", name) for part in PREDICT]


NRRD_HUGE = ["NRRD0004", "type: short", "dimension: 3", "sizes: 4000 4000 4000", "spacings: 1 1 1",
             "endian: little", "encoding: gzip", ""]
NRRD_SKEWED = ["NRRD0004", "type: unsigned char", "dimension: 3", "space: left-posterior-superior",
               "sizes: 2 2 2", "space directions: (1,0,0) (0.5,1,0) (0,0,1)", "space origin: (0,0,0)",
               "encoding: raw", ""]


# --- JSON ------------------------------------------------------------------

def _calibrator_text(edit: Callable[[str], str]) -> Callable[[Path], None]:
    """A valid calibrator written by TwinTrack, then edited as text (what json.dumps cannot write)."""
    def build(root: Path) -> None:
        _calibrator(lambda data: None)(root)
        path = root / "cal.json"
        path.write_bytes(edit(path.read_text()).encode("utf-8", "surrogateescape"))
    return build


def _deep(text: str) -> str:
    return text.replace('"fitting": {', '"provenance": ' + "[" * 5000 + "]" * 5000 + ', "fitting": {', 1)


def _manifest_text(edit: Callable[[str], str]) -> Callable[[Path], None]:
    def build(root: Path) -> None:
        _ct(root)
        path = root / "bundle" / "manifest.json"
        path.write_bytes(edit(json.dumps(json.loads(path.read_text()))).encode("utf-8"))
    return build


def _manifest(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    def build(root: Path) -> None:
        _ct(root)
        path = root / "bundle" / "manifest.json"
        manifest = json.loads(path.read_text())
        edit(manifest)
        path.write_text(json.dumps(manifest))
    return build


# --- options and environment ------------------------------------------------

def _option(name, command, option, value, must_say, build=None) -> BadInput:
    # Refused while the command line is parsed, so the inputs need not exist.
    return BadInput(name, f"{option} {value}", build or (lambda root: root.mkdir(parents=True)),
                    [*command, option, value], [f"argument {option}", *must_say])


# --- domain -------------------------------------------------------------------

DOMAIN = {"modality": "CT", "synthetic": False,
          "spacing_mm": {"min": [1.0, 1.0, 2.0], "max": [2.0, 2.0, 4.0]},
          "body_hu": {"p99_9": [0.0, 600.0]}}


def _domain_case(ct: np.ndarray, spacing=GRID.spacing, domain=None, localiser=False) -> Callable[[Path], None]:
    def build(root: Path) -> None:
        identity_bundle(root / "bundle", spacing=GRID.spacing, patch=(8, 8, 8), with_localiser=localiser,
                        domain=domain or DOMAIN)
        write_image(root / "ct.nii.gz", ct, Geometry(GRID.size, spacing, GRID.origin))
    return build


def _body_ct(hu: float = 40.0, air: float = -1000.0) -> np.ndarray:
    ct = np.full(GRID.shape, air, np.float32)
    ct[:, 3:17, 3:21] = hu
    return ct


STRICT = PREDICT + ["--strict"]


HOSTILE_CORPUS: List[BadInput] = [
    # Image headers: refused from the header, nothing inflated.
    BadInput("nifti-header-4000-cubed", "a small .nii.gz whose header claims 4000^3 voxels", _huge_nifti,
             PREDICT, ["ct.nii.gz", "(4000, 4000, 4000) voxels", "too large to process here"]),
    BadInput("nifti-gzip-bomb", "a .nii.gz that inflates to 256 MB more than its header describes", _gzip_bomb,
             PREDICT, ["ct.nii.gz", "decompresses to more than"]),
    BadInput("nrrd-header-4000-cubed", "a gzip NRRD whose header claims 4000^3 voxels, with 64 kB of data",
             _text_header("ct.nrrd", NRRD_HUGE, gzip.compress(bytes(1 << 16))), _predict_on("ct.nrrd"),
             ["ct.nrrd", "(4000, 4000, 4000) voxels", "too large"]),
    _mha_entry("mha-header-4000-cubed", "an MHA header claiming 4000^3 voxels with 8 bytes of data", [],
               ["(4000, 4000, 4000) voxels", "too large"], size=HUGE),
    _mha_entry("mha-skewed-direction", "an MHA with a skewed (non-orthogonal) direction",
               ["TransformMatrix = 1 0.3 0 0 1 0 0 0 1"], ["not orthonormal", "Resample"]),
    _mha_entry("mha-scaled-direction", "an MHA whose direction scales an axis by 2",
               ["TransformMatrix = 2 0 0 0 1 0 0 0 1"], ["not orthonormal"]),
    _mha_entry("mha-degenerate-direction", "an MHA whose direction maps two axes onto one",
               ["TransformMatrix = 1 0 0 1 0 0 0 0 1"], ["not orthonormal"]),
    _mha_entry("mha-zero-spacing", "an MHA with a voxel spacing of 0 mm", ["ElementSpacing = 0 1 1"],
               ["voxel spacing (0, 1, 1) mm", "positive"]),
    _mha_entry("mha-negative-spacing", "an MHA with a negative voxel spacing", ["ElementSpacing = 1 -1 1"],
               ["voxel spacing (1, -1, 1) mm"]),
    BadInput("nrrd-skewed-direction", "a NRRD whose space directions are not orthogonal",
             _text_header("ct.nrrd", NRRD_SKEWED, bytes(8)), _predict_on("ct.nrrd"),
             ["ct.nrrd", "not orthonormal"]),
    # JSON that would crash or fool a plain json.loads.
    BadInput("calibrator-nested-5000-deep", "a calibrator with 5,000 nested lists (Python's parser recurses)",
             _calibrator_text(_deep), APPLY, ["cal.json", "nested more than 64 levels"]),
    BadInput("calibrator-5000-digit-integer", "a calibrator whose voxel count has 5,000 digits",
             _calibrator_text(lambda t: t.replace('"voxels": 50000', '"voxels": ' + "9" * 5000)), APPLY,
             ["cal.json", "fitting.voxels is an integer of 5000 digits"]),
    BadInput("calibrator-duplicate-key", "a calibrator with two 'method' keys (the last would win)",
             _calibrator_text(lambda t: t.replace('"method": "isotonic"', '"method": "platt", "method": "isotonic"')),
             APPLY, ["cal.json", "method appears twice"]),
    BadInput("calibrator-infinity", "a calibrator with Infinity in its knots",
             _calibrator_text(lambda t: t.replace('"y": [', '"y": [Infinity, ', 1)), APPLY,
             ["cal.json", "parameters.y[0] is Infinity"]),
    BadInput("calibrator-overflowing-number", "a calibrator with 1e999 (parses to infinity)",
             _calibrator_text(lambda t: t.replace('"x": [', '"x": [1e999, ', 1)), APPLY,
             ["cal.json", "parameters.x[0]", "overflows to infinity"]),
    BadInput("calibrator-misspelt-key", "a calibrator whose 'fitting' is spelt 'fiting'",
             _calibrator_text(lambda t: t.replace('"fitting"', '"fiting"')), APPLY,
             ["cal.json", 'fiting is not a known key; did you mean "fitting"?']),
    BadInput("calibrator-not-utf8", "a calibrator saved as Latin-1",
             _calibrator_text(lambda t: t.replace('"region": "test"', '"region": "Stra\udcdfe"')), APPLY,
             ["cal.json", "not UTF-8"]),
    BadInput("manifest-nested-5000-deep", "a manifest with 5,000 nested objects",
             _manifest_text(lambda t: t.replace('"members":', '"provenance": ' + '{"a": ' * 5000 + "1" + "}" * 5000
                                                + ', "members":', 1)),
             PREDICT, ["manifest.json", "provenance" + ".a" * 63, "nested more than 64 levels"]),
    BadInput("manifest-5000-digit-integer", "a manifest whose patch size has 5,000 digits",
             _manifest_text(lambda t: t.replace('"patch_size": [8', '"patch_size": [' + "8" * 5000, 1)), PREDICT,
             ["manifest.json", "members[0].patch_size[0] is an integer of 5000 digits"]),
    BadInput("manifest-duplicate-key", "a manifest with two 'members' lists",
             _manifest_text(lambda t: t.replace('"members":', '"members": [], "members":', 1)), PREDICT,
             ["manifest.json", "members appears twice"]),
    BadInput("manifest-nan", "a manifest with NaN as its sliding-window overlap",
             _manifest(lambda m: m.update(sliding_window={"overlap": float("nan")})), PREDICT,
             ["manifest.json", "sliding_window.overlap is NaN"]),
    BadInput("manifest-misspelt-key", "a manifest with 'overlapp' for 'overlap'",
             _manifest(lambda m: m.update(sliding_window={"overlapp": 0.5})), PREDICT,
             ["manifest.json", 'sliding_window.overlapp is not a known key; did you mean "overlap"?']),
    BadInput("manifest-oversized", "a 2 MB manifest (a description pasted with a model in it)",
             _manifest(lambda m: m.update(description="x" * (2 << 20))), PREDICT,
             ["manifest.json", "more than any TwinTrack model bundle manifest needs"]),
    BadInput("manifest-domain-modality", "a manifest declaring an MR training domain",
             _manifest(lambda m: m.update(domain={"modality": "MR", "synthetic": False})), PREDICT,
             ["manifest.json", 'domain.modality is "MR"']),
    # Numeric options, refused where they are parsed.
    _option("option-level-nan", PREDICT, "--level", "nan", ["percentage", "nan"]),
    _option("option-threads-zero", PREDICT, "--threads", "0", ["whole number in [1, 1024]"]),
    _option("option-dilation-nan", CALIBRATE, "--region-dilation-mm", "nan", ["mm", "'nan'"]),
    _option("option-padding-negative", CALIBRATE, "--region-padding-mm", "-5", ["number in [0, 1000] mm"]),
    _option("option-bootstrap-zero", EVALUATE, "--bootstrap", "0", ["whole number"]),
    _option("option-evaluate-binary-threshold-inf", EVALUATE, "--binary-threshold", "inf", ["'inf'"]),
    _option("option-seed-negative", EVALUATE, "--seed", "-1", ["whole number"]),
    _option("option-apply-level-above-one-hundred", APPLY, "--level", "150", ["at most 100"]),
    _option("option-apply-level-as-a-fraction", APPLY, "--level", "0.5", ["looks like a fraction", "write 50"]),
    _option("option-phantom-cases-zero", ["phantom", "--out", "{root}/out"], "--cases", "0", ["whole number"],
            build=lambda root: root.mkdir(parents=True)),
    _option("option-phantom-raters-word", ["phantom", "--out", "{root}/out"], "--raters", "five",
            ["whole number", "'five'"]),
    # Environment variables.
    BadInput("env-memory-budget-with-unit", "TWINTRACK_MEMORY_BUDGET_MB=8GB", _ct, PREDICT,
             ["TWINTRACK_MEMORY_BUDGET_MB", "'8GB'", "megabytes"], environment={"TWINTRACK_MEMORY_BUDGET_MB": "8GB"}),
    BadInput("env-memory-budget-negative", "TWINTRACK_MEMORY_BUDGET_MB=-1", _ct, PREDICT,
             ["TWINTRACK_MEMORY_BUDGET_MB", "'-1'"], environment={"TWINTRACK_MEMORY_BUDGET_MB": "-1"}),
    BadInput("env-bundle-missing", "TWINTRACK_BUNDLE naming a folder that does not exist", _ct,
             [part for part in PREDICT if part not in ("--bundle", "{root}/bundle")],
             ["TWINTRACK_BUNDLE", "no-such-bundle"], environment={"TWINTRACK_BUNDLE": "/nonexistent/no-such-bundle"}),
    # The model's domain: --strict refuses what the bundle was not trained for.
    BadInput("domain-strict-spacing", "predict --strict on a CT finer than the declared training spacing",
             _domain_case(_body_ct(), spacing=(0.5, 0.5, 1.0)), STRICT,
             ["--strict", "ct.nii.gz was refused", "voxel spacing 0.5 x 0.5 x 1 mm is outside"]),
    BadInput("domain-strict-not-hu", "predict --strict on an image normalised to [0, 1], not HU",
             _domain_case(_body_ct(hu=0.6, air=0.0)), STRICT, ["--strict", "lowest value in the image is 0"]),
    BadInput("domain-strict-dense-bone", "predict --strict on a CT with bone denser than any training scan",
             _domain_case(_body_ct(hu=1500.0)), STRICT, ["--strict", "99.9th percentile of HU in the body is 1500"]),
    BadInput("domain-strict-no-organ", "predict --strict when the localiser finds no organ",
             _domain_case(_body_ct(hu=-100.0), localiser=True), STRICT, ["--strict", "the localiser found no organ"]),
    BadInput("domain-strict-synthetic", "predict --strict with a phantom-only bundle on a CT unlike the phantoms",
             _domain_case(_body_ct(hu=1500.0), domain={**DOMAIN, "synthetic": True}), STRICT,
             ["--strict", "trained on synthetic phantoms only"]),
]
