"""The one strict JSON reader: limits, duplicates, numbers, and the JSON path in every message."""

import json
import time
from types import SimpleNamespace

import pytest

from TwinTrackLogic.inference.bundle import load_bundle
from TwinTrackLogic.calibration import load_calibrator
from TwinTrackLogic.errors import InputError
from TwinTrackLogic.io.strictjson import MAX_DEPTH, json_path, parse_json, read_json

from bundle_helpers import identity_bundle


@pytest.mark.parametrize("text, where, problem", [
    ('{"a": [1, 2, {"b": NaN}]}', "a[2].b", "NaN"),
    ('{"a": 1, "b": {"c": Infinity}}', "b.c", "Infinity"),
    ('{"a": -Infinity}', "a", "-Infinity"),
    ('{"members": [{}, {"window": {"overlap": 1e999}}]}', "members[1].window.overlap", "overflows to infinity"),
    ('{"a": 1, "a": 2}', "a", "appears twice"),
    ('{"x": {"y": 1, "z": 2, "y": 3}}', "x.y", "appears twice"),
    ('{"n": [0, %s]}' % ("7" * 5000), "n[1]", "integer of 5000 digits"),
    ('{"n": -%s}' % ("7" * 19), "n", "integer of 19 digits"),
    ('{"odd key": NaN}', '["odd key"]', "NaN"),
])
def test_refused_values_are_named_by_their_json_path(text, where, problem):
    with pytest.raises(InputError) as raised:
        parse_json(text, "f.json")
    message = str(raised.value)
    assert message.startswith("f.json is not a valid JSON file: " + where + " "), message
    assert problem in message


def test_first_problem_in_document_order_is_reported():
    with pytest.raises(InputError, match=r"a\.b\[1\] is NaN"):
        parse_json('{"a": {"b": [0, NaN]}, "c": Infinity}', "f.json")


def test_depth_is_limited_with_the_path_even_where_python_would_recurse_to_failure():
    shallow = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert parse_json(shallow, "f.json") is not None
    with pytest.raises(InputError, match=f"nested more than {MAX_DEPTH} levels"):
        parse_json("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "f.json")
    started = time.perf_counter()
    with pytest.raises(InputError) as raised:  # Python's own parser gives up with RecursionError here
        parse_json('{"k": ' + "[" * 200_000 + "]" * 200_000 + "}", "f.json")
    assert time.perf_counter() - started < 5
    assert f"k{'[0]' * (MAX_DEPTH - 1)} is nested more than {MAX_DEPTH}" in str(raised.value)


def test_largest_allowed_integer_and_ordinary_json_are_read_unchanged():
    document = {"a": [1, 2.5, -3e-7, None, True, "x"], "b": {"c": 10 ** 18 - 1}, "": []}
    assert parse_json(json.dumps(document), "f.json") == document
    assert json_path(["members", 1, "window", "overlap"]) == "members[1].window.overlap"


def test_file_limits_are_checked_before_parsing(tmp_path):
    path = tmp_path / "big.json"
    path.write_text("[" + "0," * 600_000 + "0]")
    with pytest.raises(InputError, match="big.json is not a valid thing: it is 1.2 MB, more than any thing needs"):
        read_json(path, "thing", max_bytes=1_000_000)
    (tmp_path / "latin.json").write_bytes(b'{"name": "Stra\xdfe"}')
    with pytest.raises(InputError, match="latin.json is not valid JSON .a valid JSON file is UTF-8 text.: it is not UTF-8"):
        read_json(tmp_path / "latin.json")
    (tmp_path / "bom.json").write_bytes(b'\xef\xbb\xbf{"a": 1}')
    assert read_json(tmp_path / "bom.json") == {"a": 1}
    with pytest.raises(InputError, match="missing.json does not exist"):
        read_json(tmp_path / "missing.json")


def test_calibrators_and_manifests_go_through_the_strict_reader(tmp_path):
    calibrator = tmp_path / "cal.json"
    calibrator.write_text('{"format": "twintrack-calibrator", "version": 1, "version": 1}')
    with pytest.raises(InputError, match=r"cal\.json is not a valid TwinTrack calibrator: version appears twice"):
        load_calibrator(calibrator)
    folder = identity_bundle(tmp_path / "bundle")
    manifest = (folder / "manifest.json").read_text()
    (folder / "manifest.json").write_text(manifest.replace('"id": ', '"big": ' + "9" * 5000 + ', "id": ', 1))
    with pytest.raises(InputError, match=r"manifest\.json is not a valid TwinTrack model bundle manifest: big "
                                         r"is an integer of 5000 digits"):
        load_bundle(folder)


def test_provenance_and_credentials_files_go_through_the_strict_reader(tmp_path):
    from TwinTrackCLI.export_dicom import _provenance
    from TwinTrackLogic.dicom.web import _session

    sidecar = tmp_path / "p.provenance.json"
    sidecar.write_text('{"bundle": null, "level": 0.5, "level": 0.6}')
    arguments = SimpleNamespace(provenance=sidecar, probability=tmp_path / "p.nii.gz")
    with pytest.raises(InputError, match=r"p\.provenance\.json is not a valid provenance JSON file: level appears "
                                         r"twice"):
        _provenance(arguments)
    sidecar.write_text("[1, 2]")
    with pytest.raises(InputError, match="not a provenance record: it holds a JSON list"):
        _provenance(arguments)
    sidecar.write_text('{"level": 0.5}')  # valid JSON, but no record of the map it describes
    with pytest.raises(InputError, match="records no sha256 of the map it describes"):
        _provenance(arguments)
    pytest.importorskip("requests")
    credentials = tmp_path / "pacs.json"
    credentials.write_text('{"token": "a", "token": "b"}')
    credentials.chmod(0o600)  # private, as credentials must be
    with pytest.raises(InputError, match=r"pacs\.json is not a valid credentials JSON file: token appears twice"):
        _session(credentials)
    credentials.write_text('{"token": "' + "x" * 70000 + '"}')
    with pytest.raises(InputError, match="pacs.json"):
        _session(credentials)
    credentials.write_text('{"token": "secret"}')
    assert _session(credentials).headers["Authorization"] == "Bearer secret"
