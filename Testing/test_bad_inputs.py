"""Every entry of the bad-input corpus gets a clear message, exit code 2 and no output files."""

import hashlib
from pathlib import Path

import pytest
from corpus import CORPUS  # noqa: E402
from corpus_writes import WRITE_CORPUS  # noqa: E402

from TwinTrackCLI import main  # noqa: E402


def test_corpus_names_are_unique_and_cover_the_issue():
    names = [entry.name for entry in CORPUS]
    assert len(names) == len(set(names))
    # Exact counts, so an entry that silently drops out of a list (a bad merge, a typo in a
    # comprehension) fails here. Part one: 34 reading errors; part two: write failures, signals,
    # non-finite data, output paths, two-file formats, layout; part three: hostile headers and
    # options; part four: records trusted only once checked, DICOM UIDs, failures as sentences.
    from corpus_hostile import HOSTILE_CORPUS
    from corpus_trust import TRUST_CORPUS

    assert (len(WRITE_CORPUS), len(HOSTILE_CORPUS), len(TRUST_CORPUS)) == (46, 43, 32)
    assert len(CORPUS) == 34 + 46 + 43 + 32


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("entry", CORPUS, ids=lambda entry: entry.name)
def test_bad_input_is_refused_clearly(entry, tmp_path, monkeypatch, capsys):
    root = tmp_path / entry.name
    entry.build(root)
    capsys.readouterr()
    for key, value in entry.environment.items():
        monkeypatch.setenv(key, value)
    # Inputs that must come through untouched (an output aliasing them is refused).
    before = {name: _digest(root / name) for name in getattr(entry, "unchanged", ())}
    run = getattr(entry, "run", None)  # a full disk, a file-size limit or a signal needs its own runner
    try:
        if run is None:
            code = main(entry.argv(root))
            captured = capsys.readouterr()
            message, stdout = captured.err, captured.out
        else:
            code, message, stdout = run(root)
        assert code == entry.exit_code, f"exit {code}; stderr:\n{message}\nstdout:\n{stdout}"
        assert "Traceback" not in message
        for fragment in entry.must_say:
            assert fragment in message, f"{fragment!r} missing from:\n{message}"
        assert "Wrote" not in stdout, f"a failed run claims to have written:\n{stdout}"
        out = root / "out"
        assert not out.exists() or not any(out.iterdir()), f"left behind: {list(out.iterdir())}"
        partial = [path for path in root.rglob("*") if ".partial" in path.name]
        assert not partial, f"temporary files left behind: {partial}"
        for name, digest in before.items():
            assert _digest(root / name) == digest, f"the input {name} was changed"
    finally:
        cleanup = getattr(entry, "cleanup", None)
        if cleanup is not None:
            cleanup(root)
