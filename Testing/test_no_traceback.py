"""No CLI command prints a Python traceback on a corpus entry (issue 24).

Every entry of the bad-input corpus's fourth part is built once, and then not only its own command
but every command that reads what it built is run on it: predict on each image file or DICOM
folder, apply on each map, export-dicom on each map with the DICOM CT, bundle info and check on
each bundle, and the corpus command. Each must end with an exit code (0, 1 or 2) and a message,
never an exception escaping ``main`` (which Python prints as a traceback) or "Traceback" in
its output.
"""

import contextlib
import io
from pathlib import Path
from typing import List

import corpus  # noqa: E402,F401 (imports its parts in order: corpus_trust builds on it)
import pytest
from corpus_trust import TRUST_CORPUS  # noqa: E402

from bundle_helpers import identity_bundle  # noqa: E402
from TwinTrackCLI import main  # noqa: E402

READ_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".hdr", ".img", ".vtk", ".img.gz")
# Entries whose runner mounts a disk: their own test covers them; here every other entry.
ENTRIES = [entry for entry in TRUST_CORPUS if getattr(entry, "run", None) is None]


def _commands(root: Path, out: Path, probe_bundle: Path) -> List[List[str]]:
    files = sorted(p for p in root.iterdir() if p.is_file() and p.name.lower().endswith(READ_SUFFIXES))
    bundle = root / "bundle"
    folders = [p for p in (root / "ct", root / "disc") if p.is_dir()]
    # An identity bundle where the entry has none: the demo ensemble would take a minute per image.
    with_bundle = ["--bundle", str(bundle if bundle.is_dir() else probe_bundle)]
    commands = []
    for number, source in enumerate(files + folders):
        commands.append(["predict", "--image", str(source), "--no-calibration", *with_bundle,
                         "--out", str(out / f"predict{number}.nii.gz")])
        if (root / "cal.json").is_file() and source.is_file():
            commands.append(["apply", "--calibrator", str(root / "cal.json"), "--probability", str(source),
                             "--out", str(out / f"apply{number}.nii.gz")])
        if folders and source.is_file():
            commands.append(["export-dicom", "--image", str(folders[0]), "--probability", str(source),
                             "--out", str(out / f"dicom{number}")])
    if bundle.is_dir():
        commands += [["bundle", "info", str(bundle)], ["bundle", "check", str(bundle)]]
    return commands


def _run(argv: List[str]):
    err, printed = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(printed):
        try:
            code = main(argv)
        except Exception as error:  # noqa: BLE001 (anything escaping main is a traceback for the user)
            pytest.fail(f"twintrack {' '.join(argv)} raised {type(error).__name__}: {error} (a traceback for the user)")
    return code, err.getvalue() + printed.getvalue()


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda entry: entry.name)
def test_no_command_prints_a_traceback_on_the_entry(entry, tmp_path):
    root = tmp_path / entry.name
    entry.build(root)
    out = tmp_path / "outputs"
    probe_bundle = identity_bundle(tmp_path / "probe-bundle", spacing=(2.6, 2.6, 4.0), patch=(8, 8, 8))
    for argv in [entry.argv(root), *_commands(root, out, probe_bundle)]:
        code, said = _run(argv)
        assert code in (0, 1, 2), f"twintrack {' '.join(argv)} exited {code}:\n{said}"
        assert "Traceback" not in said, f"twintrack {' '.join(argv)} printed a traceback:\n{said}"
        if code == 2:
            assert "error" in said, f"twintrack {' '.join(argv)} refused without a message:\n{said}"
