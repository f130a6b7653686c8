"""The calibrator and manifest schemas: valid JSON Schema, and our validator agrees with jsonschema."""

import copy
import json
from pathlib import Path

import jsonschema
import pytest

from TwinTrackLogic.inference.bundle import load_bundle
from TwinTrackLogic.calibration import METHODS, CalibrationStatistics, fit_calibrator
from TwinTrackLogic.errors import InputError
from TwinTrackLogic.schemas import SCHEMA_FILES, SchemaError, load_schema, validate

from bundle_helpers import identity_bundle

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "Resources" / "DemoBundle"


def _calibrators():
    import numpy as np

    statistics = CalibrationStatistics(1 << 10)
    p = np.random.default_rng(0).random(5_000).astype(np.float32)
    statistics.add(p, p ** 2, raters=3)
    return {method: fit_calibrator(statistics, method).to_dict() for method in METHODS}


@pytest.mark.parametrize("name", sorted(SCHEMA_FILES))
def test_schema_files_are_valid_draft_2020_12(name):
    jsonschema.Draft202012Validator.check_schema(load_schema(name))


def test_every_built_in_calibrator_method_has_its_parameters_declared():
    rules = {rule["if"]["properties"]["method"]["const"] for rule in load_schema("calibrator")["allOf"]}
    assert rules == set(METHODS)  # a test-registered method is removed again by its test


def test_unknown_method_names_the_closest_one(tmp_path):
    from TwinTrackLogic.calibration import load_calibrator

    document = _calibrators()["isotonic"]
    document["method"] = "isotonc"
    (tmp_path / "cal.json").write_text(json.dumps(document))
    with pytest.raises(InputError, match=r"unknown method 'isotonc' \(did you mean 'isotonic'\?\)"):
        load_calibrator(tmp_path / "cal.json")


def _tampered_calibrators():
    documents = []
    for method, document in _calibrators().items():
        documents.append((f"{method}-valid", document))
        for key in list(document["parameters"]):
            broken = copy.deepcopy(document)
            value = broken["parameters"][key]
            broken["parameters"][key] = [1.5] + value[1:] if isinstance(value, list) else 2e4
            documents.append((f"{method}-{key}-range", broken))
            broken = copy.deepcopy(document)
            broken["parameters"][key + "x"] = broken["parameters"].pop(key)  # e.g. "xx": unknown and "x" missing
            documents.append((f"{method}-{key}-renamed", broken))
        broken = copy.deepcopy(document)
        broken["fitting"]["cases"] = -1
        documents.append((f"{method}-cases", broken))
        broken = copy.deepcopy(document)
        broken["provenance"] = {"anything": [1, {"goes": None}]}
        documents.append((f"{method}-provenance", broken))
    broken = copy.deepcopy(documents[0][1])
    broken["method"] = "platt"  # isotonic parameters under another method's name
    documents.append(("method-mismatch", broken))
    return documents


@pytest.mark.parametrize("label, document", _tampered_calibrators(), ids=lambda v: v if isinstance(v, str) else "")
def test_validator_agrees_with_jsonschema_on_calibrators(label, document):
    reference = jsonschema.Draft202012Validator(load_schema("calibrator")).is_valid(document)
    try:
        validate(document, "calibrator", "cal.json")
        ours = True
    except SchemaError:
        ours = False
    assert ours == reference
    assert ours == (label.endswith("valid") or label.endswith("provenance"))


def _nnunet_member(version, models=True):
    def edit(manifest):
        member = manifest["members"][0]
        manifest["version"] = version
        member.update(mode="nnunet", nnunet={"image_resampling": {"order": 3, "order_z": 0, "force_separate_z": None}})
        folds = [{"name": "fold_0", "model": member.pop("model"), "sha256": member.pop("sha256")}]
        if models:
            member["models"] = folds
    return edit


def _manifest_variants():
    manifest = json.loads((DEMO / "manifest.json").read_text())
    variants = [("demo", manifest)]
    edits = {
        "overlap": lambda m: m["sliding_window"].update(overlap=1.0),
        "typo": lambda m: m["members"][1].update(outputt=m["members"][1].pop("output")),
        "mirror-repeat": lambda m: m["sliding_window"].update(mirror_axes=[1, 1]),
        "sha": lambda m: m["localiser"].update(sha256="xyz"),
        "scheme-ct-without-std": lambda m: m["members"][0]["normalisation"].pop("std"),
        "domain-modality": lambda m: m["domain"].update(modality="MR"),
        "domain-spacing": lambda m: m["domain"]["spacing_mm"].update(min=[1, 1]),
        "threshold": lambda m: m["localiser"].update(threshold=1.0),
        "no-localiser": lambda m: m.update(localiser=None),
        "bool-batch": lambda m: m["sliding_window"].update(batch_size=True),
        "nnunet-v2": _nnunet_member(2),
        "nnunet-v1": _nnunet_member(1),
        "nnunet-v2-no-models": _nnunet_member(2, models=False),
    }
    for label, edit in edits.items():
        changed = copy.deepcopy(manifest)
        edit(changed)
        variants.append((label, changed))
    return variants


@pytest.mark.parametrize("label, document", _manifest_variants(), ids=lambda v: v if isinstance(v, str) else "")
def test_validator_agrees_with_jsonschema_on_manifests(label, document):
    reference = jsonschema.Draft202012Validator(load_schema("bundle")).is_valid(document)
    try:
        validate(document, "bundle", "manifest.json")
        ours = True
    except SchemaError:
        ours = False
    assert ours == reference
    assert ours == (label in ("demo", "no-localiser", "nnunet-v2"))


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["members"][0]["sliding_window"].update(overlapp=0.5),
     'members[0].sliding_window.overlapp is not a known key; did you mean "overlap"?'),
    (lambda m: m.update(localizer=m.pop("localiser")), 'localizer is not a known key; did you mean "localiser"?'),
    (lambda m: m["members"][0].update(normalization=m["members"][0].pop("normalisation")),
     'members[0].normalization is not a known key; did you mean "normalisation"?'),
    (lambda m: m["members"][0]["output"].update(activation="Softmax"),
     'members[0].output.activation is "Softmax"; it must be one of "softmax", "sigmoid"; did you mean "softmax"?'),
    (lambda m: m.update(training={"seed": 1}), 'training is not a known key'),
])
def test_unknown_keys_are_refused_with_the_closest_known_one(tmp_path, edit, message):
    folder = identity_bundle(tmp_path / "b")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["members"][0]["sliding_window"] = {}
    edit(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError) as raised:
        load_bundle(folder)
    assert f"manifest.json is not a valid TwinTrack model bundle manifest: {message}" in str(raised.value)


def test_calibrator_typo_names_the_closest_key(tmp_path):
    from TwinTrackLogic.calibration import load_calibrator

    document = _calibrators()["isotonic"]
    document["fitting"]["ratters"] = document["fitting"].pop("raters")
    (tmp_path / "cal.json").write_text(json.dumps(document))
    with pytest.raises(InputError, match=r'cal\.json is not a valid TwinTrack calibrator: fitting\.ratters is not '
                                         r'a known key; did you mean "raters"\?'):
        load_calibrator(tmp_path / "cal.json")
