"""The bundle's vessel stage (manifest, engine, demo model) and the phantom's disputed vessel contact."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from scipy import ndimage

from bundle_helpers import IR_VERSION, OPSET, identity_bundle, sha256
from TwinTrackLogic import phantom
from TwinTrackLogic.inference.bundle import load_bundle
from TwinTrackLogic.errors import InputError
from TwinTrackLogic.inference import Ensemble
from TwinTrackLogic.io import Geometry, Volume
from TwinTrackLogic.vessels import VESSEL_LABELS

DEMO = Path(__file__).resolve().parent.parent / "Resources" / "DemoBundle"
CHANNELS = 6
# Output channel -> vessel, deliberately not the CURVAS order, so the engine must map channels to labels.
LABELS = {"1": "SMA", "2": "portal vein", "3": "celiac trunk", "4": "SMV", "5": "aorta"}


def nearest_channel_model(path: Path, channels: int = CHANNELS, lift: float = 0.0) -> Path:
    """Logit of channel k = lift - (input - k)^2: the most probable channel is the input value rounded
    (and with lift 0.5 a sigmoid is above 0.5 only within 0.7 of k)."""
    centres = numpy_helper.from_array(np.arange(channels, dtype=np.float32).reshape(1, channels, 1, 1, 1), "centres")
    lifted = numpy_helper.from_array(np.array(lift, dtype=np.float32), "lift")
    nodes = [helper.make_node("Sub", ["image", "centres"], ["offset"]),
             helper.make_node("Mul", ["offset", "offset"], ["square"]),
             helper.make_node("Sub", ["lift", "square"], ["logits"])]
    graph = helper.make_graph(
        nodes, "nearest_channel",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, "z", "y", "x"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", channels, "z", "y", "x"])],
        [centres, lifted])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.save(model, str(path))
    return path


def vessel_bundle(folder: Path, **entry_changes) -> Path:
    """An identity-member bundle (version 3) with a nearest-channel vessel stage at 2 mm."""
    folder = identity_bundle(folder)
    nearest_channel_model(folder / "vessels.onnx")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["version"] = 3
    manifest["vessels"] = {"name": "vessels", "model": "vessels.onnx", "sha256": sha256(folder / "vessels.onnx"),
                           "spacing_mm": [2.0, 2.0, 2.0], "patch_size": [8, 8, 8],
                           "normalisation": {"scheme": "none"},
                           "output": {"channels": CHANNELS, "activation": "softmax"}, "labels": dict(LABELS)}
    manifest["vessels"].update(entry_changes)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_vessel_stage_is_read_with_its_labels(tmp_path):
    bundle = load_bundle(vessel_bundle(tmp_path / "b"))
    assert bundle.vessels is not None
    assert bundle.vessels.labels == {1: "SMA", 2: "portal vein", 3: "celiac trunk", 4: "SMV", 5: "aorta"}
    assert bundle.vessels.stage.channels == CHANNELS and bundle.vessels.stage.spacing_mm == (2.0, 2.0, 2.0)
    assert load_bundle(identity_bundle(tmp_path / "plain")).vessels is None


def test_schema_names_exactly_the_known_vessels():
    from TwinTrackLogic.schemas import load_schema

    assert load_schema("bundle")["$defs"]["vessel_labels"]["additionalProperties"]["enum"] == list(VESSEL_LABELS)


def _raw_edit(folder: Path, text_change) -> None:
    path = folder / "manifest.json"
    path.write_text(text_change(path.read_text()))


@pytest.mark.parametrize("change, message", [
    ({"labels": {**LABELS, "5": "hepatic artery"}},
     r'vessels\.labels\["5"\] is "hepatic artery"; it must be one of "portal vein", "SMV", "aorta", "celiac trunk", "SMA"'),
    ({"labels": {**LABELS, "5": "SMA"}}, r"vessels\.labels\.5 names 'SMA' again \(channel 1 is already 'SMA'\)"),
    ({"labels": {"0": "SMA"}}, "channel 0 of a softmax is the background"),
    ({"labels": {"7": "SMA"}}, "the network has channels 0 to 5"),
    ({"labels": {}}, "names no vessel"),
    ({"labels": {"one": "SMA"}}, r"vessels\.labels"),
    ({"sha256": "abc"}, "64 hexadecimal"),
    ({"mode": "nnunet"}, "mode"),
])
def test_bad_vessel_stages_are_refused_with_a_sentence(tmp_path, change, message):
    folder = vessel_bundle(tmp_path / "b", **change)
    with pytest.raises(InputError, match=message):
        load_bundle(folder)


def test_duplicate_vessel_channel_is_refused(tmp_path):
    folder = vessel_bundle(tmp_path / "b")
    _raw_edit(folder, lambda text: text.replace('"labels": {"1": "SMA",', '"labels": {"1": "SMA", "1": "SMV",'))
    with pytest.raises(InputError, match="duplicate"):
        load_bundle(folder)


def test_vessel_stage_needs_version_3(tmp_path):
    folder = vessel_bundle(tmp_path / "b")
    _raw_edit(folder, lambda text: text.replace('"version": 3', '"version": 2'))
    with pytest.raises(InputError, match="vessels needs format version 3"):
        load_bundle(folder)


def test_missing_or_altered_vessel_model_is_refused(tmp_path):
    folder = vessel_bundle(tmp_path / "b")
    (folder / "vessels.onnx").write_bytes((folder / "vessels.onnx").read_bytes() + b"\0")
    with pytest.raises(InputError, match="vessels.onnx does not match the sha256"):
        Ensemble(folder, device="cpu", threads=1)
    (folder / "vessels.onnx").unlink()
    with pytest.raises(InputError, match="vessels.onnx is missing"):
        load_bundle(folder)


def test_ensemble_prediction_carries_the_vessel_map_on_the_ct_grid(tmp_path):
    """A CT whose value is a channel number comes back as that channel's vessel label, on the CT's own
    (oblique, 1 x 1 x 1.5 mm) grid, although the stage works at 2 mm."""
    rotation = np.array([[0.96, -0.28, 0.0], [0.28, 0.96, 0.0], [0.0, 0.0, 1.0]])
    geometry = Geometry((24, 20, 16), (1.0, 1.0, 1.5), (10.0, -20.0, 5.0), tuple(rotation.ravel()))
    ct = np.zeros(geometry.shape, dtype=np.float32)
    blocks = {1: np.s_[2:8, 2:10, 2:10], 2: np.s_[2:8, 10:18, 12:22], 3: np.s_[8:14, 2:10, 2:10],
              4: np.s_[8:14, 10:18, 2:10], 5: np.s_[8:14, 10:18, 12:22]}
    for channel, block in blocks.items():
        ct[block] = channel
    prediction = Ensemble(vessel_bundle(tmp_path / "b"), device="cpu", threads=1).predict(Volume(ct, geometry))
    vessels = prediction.vessels
    assert vessels is not None and vessels.dtype == np.uint8 and vessels.shape == geometry.shape
    for channel, block in blocks.items():
        inner = np.zeros(geometry.shape, dtype=bool)
        inner[block] = True
        inner = ndimage.binary_erosion(inner, iterations=2)  # away from the resampled edges
        assert (vessels[inner] == VESSEL_LABELS[LABELS[str(channel)]]).all(), channel
    assert (vessels[ndimage.binary_erosion(ct == 0, iterations=2)] == 0).all()
    assert Ensemble(identity_bundle(tmp_path / "plain"), device="cpu", threads=1).predict(
        Volume(ct, geometry)).vessels is None


def test_sliding_window_blends_every_channel_of_a_vessel_stage_like_single_channels():
    """Several channels at once (mirrored on two axes, padded, overlapping) equal each channel run alone."""
    from TwinTrackLogic.inference.sliding_window import sliding_window

    volume = np.random.default_rng(0).random((9, 21, 17), dtype=np.float32)
    ramp = np.arange(10, dtype=np.float32)[None, :, None, None, None]

    def several(batch):  # channel c: (c + 1) x the patch, shifted by the voxel's x index inside the patch
        return (batch * (ramp[:, :3] + 1) + np.arange(batch.shape[-1], dtype=np.float32)).astype(np.float32)

    together = sliding_window(volume, several, (10, 8, 8), overlap=0.5, batch_size=3, mirror_axes=(0, 2))
    assert together.shape == (3,) + volume.shape
    for channel in range(3):
        alone = sliding_window(volume, lambda batch, c=channel: several(batch)[:, c], (10, 8, 8), overlap=0.5,
                               batch_size=3, mirror_axes=(0, 2))
        np.testing.assert_allclose(together[channel], alone, rtol=1e-6)


def test_sigmoid_vessel_stage_labels_only_its_named_channels_above_one_half(tmp_path):
    folder = vessel_bundle(tmp_path / "b", output={"channels": CHANNELS, "activation": "sigmoid"},
                           labels={"0": "SMV", "3": "SMA"}, spacing_mm=[1.0, 1.0, 1.0])
    nearest_channel_model(folder / "vessels.onnx", lift=0.5)
    _raw_edit(folder, lambda text: text.replace(json.loads(text)["vessels"]["sha256"], sha256(folder / "vessels.onnx")))
    geometry = Geometry((6, 4, 4), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    ct = np.broadcast_to(np.arange(6, dtype=np.float32)[None, None, :], geometry.shape).copy()
    ct[:, :2, 2] = 2.6  # 0.4 from channel 3, 0.6 from 2: channel 3 (SMA) wins, above one half
    vessels = Ensemble(folder, device="cpu", threads=1).predict_vessels(Volume(ct, geometry))
    expected = np.array([2, 0, 0, 5, 0, 0], dtype=np.uint8)  # channel 0 -> SMV (2), channel 3 -> SMA (5)
    assert (vessels[:, 2:, :] == expected).all() and (vessels[:, :2, 2] == 5).all()


def test_progress_reports_the_vessel_step(tmp_path):
    messages = []
    ct = np.zeros((8, 8, 8), dtype=np.float32)
    Ensemble(vessel_bundle(tmp_path / "b"), device="cpu", threads=1).predict(
        Volume(ct, Geometry((8, 8, 8), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))),
        progress=lambda fraction, message: messages.append(message))
    assert any(message.startswith("vessels: patch") for message in messages)


# --- the phantom: disputed abutment, undisputed encasement, no contact -----------------------------

CONTACT_SEED, CONTACT_CASES = 5151, range(12)
NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def _shifted(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``mask`` moved by (dy, dx) within each axial slice, False where it moved in from outside."""
    out = np.zeros_like(mask)
    ys, yd = (slice(0, mask.shape[1] - dy), slice(dy, None)) if dy >= 0 else (slice(-dy, None), slice(0, dy))
    xs, xd = (slice(0, mask.shape[2] - dx), slice(dx, None)) if dx >= 0 else (slice(-dx, None), slice(0, dx))
    out[:, yd, xd] = mask[:, ys, xs]
    return out


def contact_deg(tumour: np.ndarray, vessel: np.ndarray) -> float:
    """Issue 22's axial angle, written out: per slice 360 x (rim voxels next to tumour) / rim voxels, maximum."""
    outside_next = np.zeros_like(vessel)
    tumour_next = np.zeros_like(vessel)
    for dy, dx in NEIGHBOURS:
        outside_next |= _shifted(~vessel, dy, dx)
        tumour_next |= _shifted(tumour, dy, dx)
    rim = vessel & outside_next
    best = 0.0
    for z in range(vessel.shape[0]):
        if rim[z].any():
            best = max(best, 360.0 * (rim[z] & tumour_next[z]).sum() / rim[z].sum())
    return best


@pytest.fixture(scope="module")
def contact_cases():
    cases = [phantom.generate_case(index, raters=5, seed=CONTACT_SEED) for index in CONTACT_CASES]
    angles = [{name: [contact_deg(mask > 0, case.vessels == VESSEL_LABELS[name]) for mask in case.annotations]
               for name in ("SMV", "SMA", "portal vein")} for case in cases]
    return cases, angles


def test_phantom_raters_dispute_vessel_contact_in_half_the_cases(contact_cases):
    """Seed 5151, cases 0-11: raters disagree about touching the SMV, SMA or portal vein in 7 of 12 cases
    (the phantom before vessel placement: 4); at least 6 must, and some cases show no contact at all."""
    _, angles = contact_cases
    disputed = [any(0 < sum(angle > 0 for angle in per_rater) < 5 for per_rater in case.values()) for case in angles]
    untouched = [all(max(per_rater) == 0 for per_rater in case.values()) for case in angles]
    assert sum(disputed) >= 6, disputed
    assert sum(untouched) >= 1, untouched


def test_phantom_has_encasement_every_rater_agrees_on(contact_cases):
    """Cases 0-11: every rater wraps the SMA of case 7 and the portal vein of case 9 by more than 180 degrees."""
    _, angles = contact_cases
    encased = [name for case in angles for name, per_rater in case.items() if min(per_rater) > 180]
    assert len(encased) >= 2, encased


def test_phantom_rater_masks_never_enter_a_vessel_lumen(contact_cases):
    cases, _ = contact_cases
    for case in cases:
        for mask in case.annotations:
            assert not (mask.astype(bool) & (case.vessels > 0)).any(), case.name


# --- bundle info / check -----------------------------------------------------------------------------

def test_bundle_info_and_check_list_the_vessel_stage(tmp_path, capsys):
    from TwinTrackCLI import main

    folder = vessel_bundle(tmp_path / "b")
    assert main(["bundle", "info", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "vessel stage vessels: mode twintrack, spacing [2.0, 2.0, 2.0] mm" in out
    assert "6 output channels (softmax)" in out
    assert ("vessels: run on the whole CT, labelled by output channel: channel 1 SMA, channel 2 portal vein, "
            "channel 3 celiac trunk, channel 4 SMV, channel 5 aorta") in out
    assert main(["bundle", "check", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "vessel stage: vessels.onnx sha256 ok" in out and "all checks passed" in out
    assert main(["bundle", "info", str(identity_bundle(tmp_path / "plain"))]) == 0
    assert "vessels: no vessel stage" in capsys.readouterr().out


# --- the demo bundle's vessel stage --------------------------------------------------------------------

# This case measured portal vein 0.87, SMV 0.95, aorta 0.87, SMA 0.82; the lowest of the six held-out cases
# the training script measured (seed 13, cases 0-5; docs/bundle.md) were 0.84, 0.88, 0.75, 0.76. The floors
# sit about 0.1 below those lowest values: a fresh case may be a little harder, while a broken stage (labels
# mapped to the wrong vessels, a mirrored axis swapping the SMV and SMA sides, a wrong grid) scores near 0.
# The celiac trunk (about 50 voxels) is not found by the demo stage at all (Dice 0 on every held-out case,
# as docs/bundle.md says), so it has no floor.
DEMO_DICE_FLOOR = {"portal vein": 0.75, "SMV": 0.8, "aorta": 0.65, "SMA": 0.65}


def test_demo_vessel_stage_finds_each_vessel_on_a_held_out_phantom():
    """Seed 13 case 20: neither trained on (seed 11) nor among the cases the training script measured."""
    case = phantom.generate_case(20, raters=1, seed=13)
    prediction = Ensemble(DEMO, device="cpu", threads=2).predict(Volume(case.image.astype(np.float32), case.geometry))
    assert prediction.vessels is not None and prediction.vessels.shape == case.geometry.shape
    for name, floor in DEMO_DICE_FLOOR.items():
        found, truth = prediction.vessels == VESSEL_LABELS[name], case.vessels == VESSEL_LABELS[name]
        dice = 2 * (found & truth).sum() / (found.sum() + truth.sum())
        assert dice >= floor, (name, dice)


@pytest.mark.parametrize("labels, valid", [
    (LABELS, True), ({"1": "hepatic artery"}, False), ({"01": "SMA"}, False), ({"1": 5}, False),
])
def test_vessel_schema_agrees_with_jsonschema(tmp_path, labels, valid):
    import jsonschema

    from TwinTrackLogic.schemas import SchemaError, load_schema, validate

    manifest = json.loads((vessel_bundle(tmp_path / "b", labels=labels) / "manifest.json").read_text())
    assert jsonschema.Draft202012Validator(load_schema("bundle")).is_valid(manifest) is valid
    if valid:
        validate(manifest, "bundle", "manifest.json")
    else:
        with pytest.raises(SchemaError):
            validate(manifest, "bundle", "manifest.json")
