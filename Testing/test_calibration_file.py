"""The calibrator file refuses bad or tampered content with a message naming the file."""

import copy
import json

import numpy as np
import pytest

from TwinTrackLogic.calibration import CalibrationStatistics, fit_calibrator, load_calibrator
from TwinTrackLogic.errors import InputError


@pytest.fixture(scope="module")
def documents():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 20_000).astype(np.float32)
    mhr = (rng.binomial(5, p) / 5).astype(np.float32)
    statistics = CalibrationStatistics(1024).add(p, mhr, raters=5)
    return {method: fit_calibrator(statistics, method).to_dict()
            for method in ("isotonic", "histogram", "temperature", "beta")}


def delete(*keys):
    def change(document):
        target = document
        for key in keys[:-1]:
            target = target[key]
        del target[keys[-1]]
    return change


def set_value(value, *keys):
    def change(document):
        target = document
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
    return change


def swap_first_knots(document):
    x = document["parameters"]["x"]
    x[0], x[1] = x[1], x[0]


def lower_last_value(document):
    y = document["parameters"]["y"]
    y[-1] = y[-2] - 0.1


TAMPERED = {
    "missing format": ("isotonic", delete("format"), "format"),
    "missing parameters": ("isotonic", delete("parameters"), "parameters"),
    "missing knots": ("isotonic", delete("parameters", "y"), "parameters.*y"),
    "missing raters": ("isotonic", delete("fitting", "raters"), "raters"),
    "unknown version": ("isotonic", set_value(2, "version"), "version 2"),
    "unknown method": ("isotonic", set_value("magic", "method"), "magic"),
    "non-monotone knots": ("isotonic", swap_first_knots, "strictly increasing"),
    "decreasing values": ("isotonic", lower_last_value, "monotone"),
    "value above one": ("isotonic", set_value([0.0, 1.5], "parameters", "y"), "outside"),
    "knot below zero": ("isotonic", set_value([-0.1, 0.5], "parameters", "x"), "outside"),
    "mismatched lengths": ("isotonic", set_value([0.1, 0.2, 0.3], "parameters", "x"), "knots"),
    "text in knots": ("isotonic", set_value(["0.1", 0.2], "parameters", "x"), "finite number"),
    "too many knots": ("isotonic", set_value([0.5] * 1_000_001, "parameters", "x"), "1000000"),
    "negative temperature": ("temperature", set_value(-1.0, "parameters", "temperature"), "outside"),
    "negative beta slope": ("beta", set_value(-0.5, "parameters", "a"), "outside"),
    "histogram edges": ("histogram", set_value([0.0, 0.6, 0.5, 1.0], "parameters", "edges"), "edges"),
    "negative voxels": ("isotonic", set_value(-3, "fitting", "voxels"), "voxels"),
}


@pytest.mark.parametrize("name", list(TAMPERED))
def test_tampered_file_is_refused_naming_the_file(name, documents, tmp_path):
    method, change, message = TAMPERED[name]
    document = copy.deepcopy(documents[method])
    change(document)
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(document))
    with pytest.raises(InputError, match=message) as raised:
        load_calibrator(path)
    assert "tampered.json" in str(raised.value)


def test_nan_and_broken_json_are_refused(documents, tmp_path):
    path = tmp_path / "nan.json"
    text = json.dumps(documents["isotonic"])
    path.write_text(text.replace('"y": [', '"y": [NaN, ', 1))
    with pytest.raises(InputError, match="NaN"):
        load_calibrator(path)
    path.write_text(text[: len(text) // 2])
    with pytest.raises(InputError, match="nan.json.*not valid JSON"):
        load_calibrator(path)
    with pytest.raises(InputError, match="does not exist"):
        load_calibrator(tmp_path / "missing.json")


def test_untouched_documents_load(documents, tmp_path):
    for method, document in documents.items():
        path = tmp_path / f"{method}.json"
        path.write_text(json.dumps(document))
        assert load_calibrator(path).method == method
