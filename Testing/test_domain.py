"""The model knows its domain: warnings on what its bundle was not trained for, --strict refuses."""

import json
from pathlib import Path

import numpy as np
import pytest

from TwinTrackLogic.inference.bundle import load_bundle
from TwinTrackCLI import main
from TwinTrackLogic.inference import Ensemble
from TwinTrackLogic.inference.domain import Domain, domain_warnings
from TwinTrackLogic.io import Geometry, Volume, read_image
from TwinTrackLogic.phantom import generate_case
from TwinTrackLogic.pipeline import run_case

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "Resources" / "DemoBundle"
# A real scanner series (TotalSegmentator's example CT; shared/data/real_ct_dicom/README says more).
REAL_CT = next((folder for folder in (ROOT / "shared", ROOT.parent.parent / "shared", Path("/work/shared"))
                if (folder / "data" / "real_ct_dicom").is_dir()), Path("/work/shared")) / "data" / "real_ct_dicom"


@pytest.fixture(scope="module")
def demo():
    bundle = load_bundle(DEMO)
    return bundle, Ensemble(bundle, device="cpu", threads=1)


def test_demo_bundle_declares_a_synthetic_ct_domain(demo):
    domain = Domain.from_manifest(demo[0].manifest)
    assert domain.synthetic and domain.modality == "CT"
    assert domain.organ_volume_ml[0] < domain.organ_volume_ml[1]


@pytest.mark.parametrize("seed, index, size", [(2025, 0, "small"), (0, 0, "small")])
def test_in_domain_phantoms_do_not_warn(demo, seed, index, size):
    """Phantoms of seeds the bundle never saw (the demo review seed 2025, the Slicer sample seed 0) pass."""
    bundle, ensemble = demo
    case = generate_case(index, raters=1, seed=seed, size=size)
    result = run_case(Volume(case.image.astype(np.float32), case.geometry), predict=ensemble.predict, bundle=bundle)
    assert result.warnings == []
    measured = result.provenance["domain"]["measured"]
    assert result.provenance["domain"]["synthetic"] is True
    assert measured["organ_ml"] > 0 and "p99_9" in measured["body_hu"]


@pytest.mark.skipif(not REAL_CT.is_dir(), reason="needs the real scanner CT series in /work/shared/data")
@pytest.mark.slow  # over ~4 s: left out of the fast loop
def test_a_real_ct_warns_with_the_demo_bundle(demo):
    bundle, ensemble = demo
    image = read_image(REAL_CT, dtype=np.float32)
    result = run_case(image, predict=ensemble.predict, bundle=bundle)
    warnings = result.provenance["warnings"]
    assert warnings[0].startswith("this model bundle was trained on synthetic phantoms only")
    text = " ".join(warnings)
    # It has dense bone (the 99.9th percentile is far above any phantom's) and the localiser's
    # "pancreas" is unlike the training pancreas.
    assert "99.9th percentile of HU in the body" in text
    assert "pancreas" in text
    assert len(warnings) >= 3


def _grid_volume(array, spacing=(2.6, 2.6, 4.0)):
    return Volume(array.astype(np.float32), Geometry(array.shape[::-1], spacing, (0.0, 0.0, 0.0)))


DOMAIN = Domain(modality="CT", synthetic=False, spacing_min=(0.5, 0.5, 1.0), spacing_max=(3.0, 3.0, 5.0),
                body_hu={"p99_9": (300.0, 600.0)}, organ_name="pancreas", organ_volume_ml=(20.0, 80.0),
                organ_hu_mean=(30.0, 110.0), organ_hu_std=(0.0, 90.0), max_region_fraction_of_body=0.1)


def _body(shape=(20, 40, 40)):
    ct = np.full(shape, -1000.0)
    ct[:, 5:35, 5:35] = 40.0
    ct[:, 6, 6:30] = 500.0  # a band of bone-like voxels, so the body has a 99.9th percentile of 500
    return ct


def test_each_check_speaks_only_when_its_measure_is_outside():
    ct = _body()
    organ = np.zeros(ct.shape, bool)
    organ[8:12, 15:20, 15:20] = True  # 100 voxels at 2.6 x 2.6 x 4.0 mm: 2.7 mL
    region = organ.copy()
    warnings, measured = domain_warnings(DOMAIN, _grid_volume(ct), organ, region)
    assert measured["organ_ml"] == pytest.approx(100 * 2.6 * 2.6 * 4.0 / 1000, abs=0.01)
    assert warnings == [f"the pancreas volume found by the localiser is {measured['organ_ml']:g} mL, outside the "
                        "training range [20, 80] mL"]
    organ[6:14, 12:24, 12:24] = True  # 1152 voxels = 31 mL: in range
    warnings, _ = domain_warnings(DOMAIN, _grid_volume(ct), organ, organ)
    assert warnings == []
    warnings, _ = domain_warnings(DOMAIN, _grid_volume(ct, (0.3, 0.3, 1.0)), organ, organ)
    assert len(warnings) == 2 and "voxel spacing 0.3 x 0.3 x 1 mm" in warnings[0]  # and the organ is now tiny
    hot = ct.copy()
    hot[:, 5:35, 5:8] = 1200.0  # dense bone
    warnings, _ = domain_warnings(DOMAIN, _grid_volume(hot), organ, organ)
    assert len(warnings) == 1 and "99.9th percentile of HU in the body is 1200" in warnings[0]
    warnings, _ = domain_warnings(DOMAIN, _grid_volume(ct), organ, np.ones(ct.shape, bool))
    assert warnings == ["the region covers 100% of the body (at most 10% on training data): the localiser has "
                        "probably not found the organ"]


def test_no_organ_warns_even_without_a_declared_domain():
    ct = _body()
    empty = np.zeros(ct.shape, bool)
    warnings, _ = domain_warnings(None, _grid_volume(ct), empty, empty)
    assert len(warnings) == 1 and "the localiser found no organ" in warnings[0]
    assert domain_warnings(None, _grid_volume(ct), None, np.ones(ct.shape, bool))[0] == []


def test_a_normalised_image_is_not_a_ct_in_hu():
    ct = _body() / 1000.0  # values from -1 to 0.5
    organ = np.zeros(ct.shape, bool)
    organ[6:14, 12:24, 12:24] = True
    warnings, _ = domain_warnings(DOMAIN, _grid_volume(ct), organ, organ)
    assert warnings[0].startswith("the lowest value in the image is -1, but a CT in HU has air near -1000")


def test_synthetic_bundles_say_so_first():
    synthetic = Domain(**{**DOMAIN.__dict__, "synthetic": True})
    ct = _body()
    warnings, _ = domain_warnings(synthetic, _grid_volume(ct), np.zeros(ct.shape, bool), np.zeros(ct.shape, bool))
    assert warnings[0].startswith("this model bundle was trained on synthetic phantoms only")
    assert "found no pancreas" in warnings[1]


def test_predict_prints_warnings_writes_them_to_the_sidecar_and_strict_refuses(tmp_path, capsys):
    from bundle_helpers import identity_bundle
    from TwinTrackLogic.io import write_image

    geometry = Geometry((16, 16, 8), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    ct = np.full(geometry.shape, -1000, np.int16)
    ct[:, 2:14, 2:14] = 40
    write_image(tmp_path / "ct.nii.gz", ct, geometry)
    domain = {"modality": "CT", "synthetic": True, "spacing_mm": {"min": [2, 2, 2], "max": [3, 3, 3]}}
    folder = identity_bundle(tmp_path / "bundle", spacing=(1.0, 1.0, 1.0), patch=(8, 8, 8), domain=domain)
    argv = ["predict", "--image", str(tmp_path / "ct.nii.gz"), "--no-calibration", "--bundle", str(folder),
            "--out", str(tmp_path / "out" / "p.nii.gz")]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "twintrack predict: warning: this model bundle was trained on synthetic phantoms only" in err
    assert "twintrack predict: warning: the voxel spacing 1 x 1 x 1 mm is outside" in err
    sidecar = json.loads((tmp_path / "out" / "p.provenance.json").read_text())
    assert len(sidecar["warnings"]) == 2 and "voxel spacing" in sidecar["warnings"][1]
    (tmp_path / "out" / "p.nii.gz").unlink()
    (tmp_path / "out" / "p.provenance.json").unlink()
    assert main(argv + ["--strict"]) == 2
    err = capsys.readouterr().err
    assert "--strict" in err and "ct.nii.gz was refused and nothing was written" in err and "voxel spacing" in err
    assert list((tmp_path / "out").iterdir()) == []
