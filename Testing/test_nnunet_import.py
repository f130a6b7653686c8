"""`twintrack bundle from-nnunet`, `bundle info` and `bundle check` on the tiny nnU-Net results folder.

Needs the [nnunet] extra (skipped without it); the folder is built once (conftest.fixture_folder).
"""

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("nnunetv2")

from nnunet_fixture import results_folder  # noqa: E402
from TwinTrackLogic.inference.bundle import load_bundle  # noqa: E402
from TwinTrackCLI import main  # noqa: E402
from TwinTrackNNUNet.results import parse_spec  # noqa: E402


@pytest.fixture
def model_copy(fixture_folder, tmp_path):
    """An editable copy of the 3d_fullres model folder (fold 0 only)."""
    source = results_folder(fixture_folder, "3d_fullres")
    copy = tmp_path / source.name
    copy.mkdir()
    for name in ("plans.json", "dataset.json"):
        shutil.copy(source / name, copy / name)
    shutil.copytree(source / "fold_0", copy / "fold_0")
    return copy


def edit_json(path, change):
    value = json.loads(path.read_text())
    change(value)
    path.write_text(json.dumps(value))


def test_import_writes_a_version_2_bundle_with_provenance(fixture_folder, tmp_path, capsys):
    folder = results_folder(fixture_folder, "3d_aniso")
    out = tmp_path / "bundle"
    assert main(["bundle", "from-nnunet", f"{folder}:0,1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("onnxruntime vs torch max |Δ logit|") == 2 and "tolerance" in printed
    bundle = load_bundle(out)
    member = bundle.members[0]
    assert bundle.manifest["version"] == 2 and member.mode == "nnunet"
    assert member.spacing_mm == (2.0, 2.0, 6.5)  # plans spacing (z, y, x) reversed
    assert member.patch_size == (32, 64, 64) and member.window.mirror_axes == (0, 1, 2)
    plans = json.loads((folder / "plans.json").read_text())
    statistics = plans["foreground_intensity_properties_per_channel"]["0"]
    assert member.normalisation == {"scheme": "ct", "clip": [statistics["percentile_00_5"],
                                                             statistics["percentile_99_5"]],
                                    "mean": statistics["mean"], "std": statistics["std"]}
    provenance = bundle.manifest["members"][0]["provenance"]
    assert provenance["configuration"] == "3d_aniso" and provenance["trainer"] == "nnUNetTrainer"
    assert provenance["plans"] == "nnUNetPlansTT" and provenance["nnunetv2_version"] == "2.8.1"
    assert [f["fold"] for f in provenance["folds"]] == ["fold_0", "fold_1"]
    assert all(f["onnxruntime_check"]["max_abs_logit_difference"] <= f["onnxruntime_check"]["tolerance"]
               for f in provenance["folds"])


def test_info_and_check_report_a_good_bundle_and_catch_a_replaced_model(fixture_folder, tmp_path, capsys):
    out = tmp_path / "bundle"
    assert main(["bundle", "from-nnunet", str(results_folder(fixture_folder, "3d_fullres")) + ":1",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["bundle", "info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "mode nnunet" in info and "folds (logits blended): fold_1" in info and "trainer nnUNetTrainer" in info
    assert main(["bundle", "check", str(out)]) == 0
    assert "all checks passed" in capsys.readouterr().out
    model = out / "member_1" / "fold_1.onnx"
    model.write_bytes(model.read_bytes()[:-1] + b"\0")
    assert main(["bundle", "check", str(out)]) == 2
    assert "does not match the sha256" in capsys.readouterr().err


def test_existing_output_is_not_overwritten(fixture_folder, tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    assert main(["bundle", "from-nnunet", str(results_folder(fixture_folder, "3d_fullres")),
                 "--out", str(tmp_path / "taken")]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("change, reason", [
    (lambda p: p["configurations"]["3d_fullres"].update(previous_stage="3d_lowres"), "cascade stage"),
    (lambda p: p["configurations"]["3d_fullres"].update(patch_size=[64, 64]), "is 2D"),
    (lambda p: p.update(transpose_forward=[2, 1, 0]), "transpose"),
    (lambda p: p.update(image_reader_writer="NibabelIOWithReorient"), "NibabelIOWithReorient"),
    (lambda p: p["configurations"]["3d_fullres"].update(normalization_schemes=["RescaleTo01Normalization"]),
     "normalisation"),
    (lambda p: p["configurations"]["3d_fullres"].update(use_mask_for_norm=[True]), "use_mask_for_norm"),
    (lambda p: p["configurations"]["3d_fullres"].update(resampling_fn_data="resample_torch_fornnunet"),
     "resampling_fn_data"),
])
def test_what_a_bundle_cannot_express_is_refused_with_the_reason(model_copy, tmp_path, capsys, change, reason):
    edit_json(model_copy / "plans.json", change)
    assert main(["bundle", "from-nnunet", str(model_copy), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert reason in error and "cannot express" in error
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_several_input_channels_are_refused(model_copy, tmp_path, capsys):
    edit_json(model_copy / "dataset.json", lambda d: d.update(channel_names={"0": "CT", "1": "PET"}))
    assert main(["bundle", "from-nnunet", str(model_copy), "--out", str(tmp_path / "out")]) == 2
    assert "2 input channels" in capsys.readouterr().err


def resave(checkpoint_path, change):
    checkpoint = torch.load(checkpoint_path, weights_only=False)  # test data we wrote ourselves
    change(checkpoint)
    torch.save(checkpoint, checkpoint_path)


def test_trainer_that_overrides_the_network_is_refused(model_copy, tmp_path, capsys):
    resave(model_copy / "fold_0" / "checkpoint_final.pth", lambda c: c.update(trainer_name="nnUNetTrainerBN"))
    assert main(["bundle", "from-nnunet", str(model_copy), "--out", str(tmp_path / "out")]) == 2
    assert "nnUNetTrainerBN" in capsys.readouterr().err


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))  # would create the marker file when unpickled


def test_checkpoint_with_arbitrary_objects_is_refused_without_running_them(model_copy, tmp_path, capsys):
    marker = tmp_path / "code-ran"
    resave(model_copy / "fold_0" / "checkpoint_final.pth", lambda c: c.update(extra=_RunsCode(marker)))
    assert main(["bundle", "from-nnunet", str(model_copy), "--out", str(tmp_path / "out")]) == 2
    assert "allow-list" in capsys.readouterr().err
    assert not marker.exists()


def test_ambiguous_label_needs_tumour_label(model_copy, tmp_path, capsys):
    edit_json(model_copy / "dataset.json", lambda d: d.update(labels={"background": 0, "pancreas": 1, "lesion": 2}))
    assert main(["bundle", "from-nnunet", str(model_copy), "--out", str(tmp_path / "a")]) == 2
    assert "--tumour-label" in capsys.readouterr().err


def test_fold_spec_parsing():
    assert parse_spec("/r/Trainer__Plans__3d_fullres:0,2") == (parse_spec("/r/Trainer__Plans__3d_fullres")[0],
                                                               ["fold_0", "fold_2"])
    assert parse_spec("/r/m:all")[1] == ["fold_all"]
    assert parse_spec("/r/m")[1] is None


def test_region_based_model_becomes_a_sigmoid_member_that_runs(model_copy, tmp_path):
    from TwinTrackLogic.inference import Ensemble
    from TwinTrackLogic.io import Geometry, Volume

    # Two foreground regions = the fixture network's two heads; the channel is the region's position.
    edit_json(model_copy / "dataset.json", lambda d: d.update(labels={"background": 0, "whole": [1, 2], "core": 2},
                                                              regions_class_order=[1, 2]))
    assert main(["bundle", "from-nnunet", str(model_copy), "--tumour-label", "core", "--out",
                 str(tmp_path / "b")]) == 0
    member = load_bundle(tmp_path / "b").members[0]
    assert (member.activation, member.channels, member.channel) == ("sigmoid", 2, 1)
    ct = np.random.default_rng(0).uniform(-100, 200, (40, 70, 70)).astype(np.float32)
    probability = Ensemble(tmp_path / "b", device="cpu", threads=2).predict(
        Volume(ct, Geometry((70, 70, 40), (2.0, 2.0, 3.0), (0.0, 0.0, 0.0)))).probability
    assert probability.shape == ct.shape and 0.0 < probability.min() and probability.max() < 1.0


def test_localiser_from_nnunet_crops_the_members_and_no_region_is_nnunet_exact(fixture_folder, tmp_path, capsys):
    from TwinTrackLogic.inference import Ensemble
    from TwinTrackLogic.io import read_image

    from nnunet_fixture import DATASET, TEST_CASES

    # The fixture's only label stands in for an organ: its dilated mask is the members' region.
    member, localiser = (f"{results_folder(fixture_folder, c)}:0" for c in ("3d_aniso", "3d_fullres"))
    assert main(["bundle", "from-nnunet", member, "--localiser", localiser, "--dilation-mm", "15",
                 "--out", str(tmp_path / "two-stage")]) == 0
    assert main(["bundle", "from-nnunet", member, "--out", str(tmp_path / "members-only")]) == 0
    capsys.readouterr()
    bundle = load_bundle(tmp_path / "two-stage")
    assert bundle.localiser.mode == "nnunet" and bundle.dilation_mm == 15.0
    image = read_image(fixture_folder / "nnUNet_raw" / DATASET / "imagesTs" / f"{TEST_CASES[0]}_0000.nii.gz",
                       dtype=np.float32)
    two_stage = Ensemble(bundle, device="cpu", threads=2)
    cropped = two_stage.predict(image)
    whole = two_stage.predict(image, use_region=False)
    reference = Ensemble(tmp_path / "members-only", device="cpu", threads=2).predict(image).probability
    assert np.array_equal(whole.probability, reference)  # --no-region is the whole-image nnU-Net run
    assert 0 < cropped.region.sum() < cropped.region.size and np.all(cropped.probability[~cropped.region] == 0)
    shift = np.abs(cropped.probability - reference)[cropped.region]
    print(f"region crop against the whole-image run, inside the region: max |Δp| {shift.max():.2e}, "
          f"mean {shift.mean():.1e}")
    assert shift.max() > 0  # the crop does move nnU-Net's grids, as documented


def test_the_domain_is_the_training_spacing_range_and_predict_warns_outside_it(fixture_folder, model_copy,
                                                                               tmp_path, capsys):
    from nnunet_fixture import DATASET, TEST_CASES
    from TwinTrackLogic.io import Geometry, read_image, write_image

    folder = results_folder(fixture_folder, "3d_fullres")
    out = tmp_path / "bundle"
    assert main(["bundle", "from-nnunet", f"{folder}:0", "--out", str(out)]) == 0
    assert "domain: CT, spacing" in capsys.readouterr().out
    spacings = np.array(json.loads((folder / "dataset_fingerprint.json").read_text())["spacings"])[:, ::-1]
    domain = load_bundle(out).manifest["domain"]
    assert domain["modality"] == "CT" and "body_hu" not in domain and "organ" not in domain
    np.testing.assert_allclose(domain["spacing_mm"]["min"], spacings.min(axis=0) * 0.95, atol=1e-4)
    np.testing.assert_allclose(domain["spacing_mm"]["max"], spacings.max(axis=0) * 1.05, atol=1e-4)
    image = fixture_folder / "nnUNet_raw" / DATASET / "imagesTs" / f"{TEST_CASES[0]}_0000.nii.gz"
    common = ["predict", "--bundle", str(out), "--no-calibration", "--strict"]
    assert main(common + ["--image", str(image), "--out", str(tmp_path / "p.nii.gz")]) == 0  # a training spacing
    volume = read_image(image)
    fine = tmp_path / "fine.nii.gz"  # the same voxels declared at 1 mm: a resolution it never saw
    write_image(fine, volume.array, Geometry(volume.geometry.size, (1.0, 1.0, 1.0), volume.geometry.origin,
                                             volume.geometry.direction))
    capsys.readouterr()
    assert main(common + ["--image", str(fine), "--out", str(tmp_path / "q.nii.gz")]) == 2
    assert "voxel spacing 1 x 1 x 1 mm is outside the range the models were trained for" in capsys.readouterr().err
    assert main(["bundle", "from-nnunet", f"{model_copy}:0", "--out", str(tmp_path / "plain")]) == 0
    assert "domain: none declared" in capsys.readouterr().out  # no fingerprint in that folder
    assert "domain" not in load_bundle(tmp_path / "plain").manifest
