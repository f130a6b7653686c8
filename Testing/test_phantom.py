"""The synthetic multi-rater cohort: determinism, geometry, anatomy and rater behaviour."""

import json

import numpy as np
import pytest

from TwinTrackLogic import phantom
from TwinTrackCLI import main
from TwinTrackLogic.io import Case, find_cases, mhr_from_masks, read_image


@pytest.fixture(scope="module")
def cases():
    return [phantom.generate_case(index, raters=5, seed=3) for index in range(3)]


def test_same_seed_gives_identical_cases():
    first = phantom.generate_case(1, raters=4, seed=9)
    second = phantom.generate_case(1, raters=4, seed=9)
    assert first.geometry == second.geometry
    assert np.array_equal(first.image, second.image)
    for a, b in zip(first.annotations, second.annotations):
        assert np.array_equal(a, b)


def test_other_seed_or_index_gives_other_cases():
    base = phantom.generate_case(0, seed=1)
    assert not np.array_equal(base.image, phantom.generate_case(0, seed=2).image)
    assert not np.array_equal(base.image, phantom.generate_case(1, seed=1).image)


def test_case_does_not_depend_on_cohort_size(tmp_path):
    main(["phantom", "--out", str(tmp_path / "a"), "--cases", "1", "--seed", "4"])
    main(["phantom", "--out", str(tmp_path / "b"), "--cases", "2", "--seed", "4"])
    a = read_image(tmp_path / "a" / "case_000" / "image.nii.gz")
    b = read_image(tmp_path / "b" / "case_000" / "image.nii.gz")
    assert np.array_equal(a.array, b.array) and a.geometry == b.geometry


def test_grid_is_anisotropic_with_scanner_origin_and_varied_direction(cases):
    for case in cases:
        assert case.geometry.size == (96, 96, 48)
        assert case.geometry.spacing[2] > case.geometry.spacing[0]
        assert np.linalg.norm(case.geometry.origin) > 50.0
        direction = case.geometry.direction_matrix
        assert np.allclose(direction @ direction.T, np.eye(3), atol=1e-9)
    directions = [case.geometry.direction_matrix for case in cases]
    assert np.allclose(directions[0], np.eye(3))
    assert np.allclose(directions[1], np.diag([-1.0, -1.0, 1.0]))
    assert not np.allclose(np.abs(directions[2]), np.eye(3), atol=0.01)  # oblique


def test_anatomy_has_ct_intensities(cases):
    for case in cases:
        image = case.image
        assert image.dtype == np.int16
        assert image.min() <= -990  # air outside the body
        assert (image > 300).sum() > 100  # bone
        core = case.latent > 0.9
        healthy = (case.pancreas > 0) & (case.latent < 0.01)
        # Hypodense tumour, low contrast against pancreas: 25-60 HU darker.
        contrast = image[healthy].mean() - image[core].mean()
        assert 15.0 < contrast < 70.0
        fat = image[(image < -50) & (image > -200)]
        assert fat.size > 1000
        assert set(np.unique(case.vessels)) == {0, 1, 2, 3, 4, 5}


def test_tumour_lies_in_or_at_the_pancreas(cases):
    for case in cases:
        core = case.latent > 0.9
        assert core.sum() > 20
        assert (case.pancreas[core] > 0).all()


def test_raters_agree_in_the_core_and_disagree_at_the_margin(cases):
    for case in cases:
        mhr = mhr_from_masks(case.annotations)
        core = case.latent > 0.9
        outside = case.latent < 0.1
        margin = (case.latent > 0.3) & (case.latent < 0.7)
        assert (mhr[core] == 1.0).all()
        assert (mhr[outside] == 0.0).all()
        disagreement = ((mhr[margin] > 0) & (mhr[margin] < 1)).mean()
        assert disagreement > 0.5, f"{case.name}: only {disagreement:.0%} of margin voxels disputed"


def test_disagreement_is_systematic_not_voxel_noise(cases):
    """Generous raters mark more than conservative ones in every case, and masks are smooth."""
    levels = phantom.rater_profiles(5, seed=3)
    generous, conservative = int(np.argmin(levels)), int(np.argmax(levels))
    for case in cases:
        volumes = [mask.sum() for mask in case.annotations]
        assert volumes[generous] > volumes[conservative]
        for mask in case.annotations:
            # Independent voxel noise would leave many isolated voxels; smooth boundaries leave few.
            from scipy import ndimage
            labels, count = ndimage.label(mask)
            assert count <= 3


def test_mhr_takes_only_multiples_of_one_over_k(cases):
    for case in cases:
        mhr = mhr_from_masks(case.annotations)
        k = len(case.annotations)
        assert np.allclose(mhr * k, np.rint(mhr * k), atol=1e-6)
        assert set(np.unique(np.rint(mhr * k)).astype(int)) <= set(range(k + 1))
        assert len(np.unique(mhr)) > 2


def test_cli_writes_curvas_layout_that_reads_back_aligned(tmp_path):
    assert main(["phantom", "--out", str(tmp_path), "--cases", "2", "--raters", "3", "--seed", "5"]) == 0
    cases = find_cases(tmp_path)
    assert [case.name for case in cases] == ["case_000", "case_001"]
    settings = json.loads((tmp_path / "phantom.json").read_text())
    assert settings["raters"] == 3 and settings["seed"] == 5
    generated = phantom.generate_case(1, raters=3, seed=5)
    case = Case.from_folder(tmp_path / "case_001")
    image = read_image(case.image)
    assert np.array_equal(image.array, generated.image)
    assert image.geometry.differences(generated.geometry) == []
    masks = case.read_annotations(image.geometry)  # geometry-checked against the CT
    assert len(masks) == 3 and case.pancreas and case.vessels
    for mask, expected in zip(masks, generated.annotations):
        assert np.array_equal(mask, expected.astype(bool))


def test_full_size_grid():
    geometry, _ = phantom.case_geometry(0, "full", np.random.default_rng(0))
    assert geometry.size == (512, 512, 100)
    assert geometry.spacing == (0.8, 0.8, 2.5)


def test_refuses_nonsense_settings():
    from TwinTrackLogic.errors import InputError
    with pytest.raises(InputError, match="size"):
        phantom.generate_case(0, size="huge")
    with pytest.raises(InputError, match="rater"):
        phantom.generate_case(0, raters=0)
