"""Every entry of the bad-input corpus gets a clear message, exit code 2 and no output files."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "bad_inputs"))

from corpus import CORPUS  # noqa: E402

from TwinTrackLogic.cli import main  # noqa: E402


def test_corpus_names_are_unique_and_cover_the_issue():
    names = [entry.name for entry in CORPUS]
    assert len(names) == len(set(names))
    assert len(CORPUS) >= 30


@pytest.mark.parametrize("entry", CORPUS, ids=lambda entry: entry.name)
def test_bad_input_is_refused_clearly(entry, tmp_path, monkeypatch, capsys):
    root = tmp_path / entry.name
    entry.build(root)
    capsys.readouterr()
    for key, value in entry.environment.items():
        monkeypatch.setenv(key, value)
    code = main(entry.argv(root))
    captured = capsys.readouterr()
    message = captured.err
    assert code == entry.exit_code, f"exit {code}; stderr:\n{message}\nstdout:\n{captured.out}"
    assert "Traceback" not in message
    for fragment in entry.must_say:
        assert fragment in message, f"{fragment!r} missing from:\n{message}"
    out = root / "out"
    assert not out.exists() or not any(out.iterdir()), f"left behind: {list(out.iterdir())}"
