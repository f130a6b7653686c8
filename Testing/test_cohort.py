"""Case loading, the region policies and the agreement-volume curve."""

import numpy as np
import pytest

from TwinTrackLogic.review.agreement import AgreementCurve
from TwinTrackLogic.cohort.cases import check_probability, check_rater_counts, load_case
from TwinTrackLogic.errors import InputError
from TwinTrackLogic.io import Case, Geometry, write_image

GEOMETRY = Geometry((20, 16, 12), (2.0, 2.0, 4.0), (10.0, -5.0, 30.0))


def _case(tmp_path, pancreas=True, marked=True, probability=None):
    folder = tmp_path / "case"
    write_image(folder / "image.nii.gz", np.zeros(GEOMETRY.shape, np.int16), GEOMETRY)
    for number in (1, 2):
        mask = np.zeros(GEOMETRY.shape, np.uint8)
        if marked:
            mask[5:7, 6:8, 8:10 + number] = 1
        write_image(folder / f"annotation_{number}.nii.gz", mask, GEOMETRY)
    if pancreas:
        organ = np.zeros(GEOMETRY.shape, np.uint8)
        organ[6, 7, 9] = 1
        write_image(folder / "pancreas.nii.gz", organ, GEOMETRY)
    if probability is not None:
        write_image(folder / "probability.nii.gz", probability, GEOMETRY)
    return Case.from_folder(folder)


def test_organ_region_is_dilated_in_millimetres(tmp_path):
    case = _case(tmp_path)
    data = load_case(case, probability=np.zeros(GEOMETRY.shape, np.float32), dilation_mm=4.0)
    z, y, x = np.nonzero(data.region)
    # 4 mm reaches two voxels in x and y (2 mm spacing) and one in z (4 mm spacing).
    assert (x.min(), x.max()) == (7, 11) and (y.min(), y.max()) == (5, 9) and (z.min(), z.max()) == (5, 7)
    undilated = load_case(case, probability=np.zeros(GEOMETRY.shape, np.float32), dilation_mm=0)
    assert undilated.region.sum() == 1
    assert np.allclose(data.mhr[5, 6, 8:12], [1, 1, 1, 0.5])


def test_bbox_region_is_used_without_organ_and_is_padded(tmp_path):
    case = _case(tmp_path, pancreas=False)
    data = load_case(case, probability=np.zeros(GEOMETRY.shape, np.float32), padding_mm=4.0)
    z, y, x = np.nonzero(data.region)
    assert (x.min(), x.max()) == (6, 13) and (y.min(), y.max()) == (4, 9) and (z.min(), z.max()) == (4, 7)
    assert "bounding box" in data.region_description


def test_empty_everything_gets_a_clear_message(tmp_path):
    case = _case(tmp_path, pancreas=False, marked=False)
    with pytest.raises(InputError, match="no rater marked any voxel"):
        load_case(case, probability=np.zeros(GEOMETRY.shape, np.float32))
    with pytest.raises(InputError, match="no pancreas.nii.gz or roi.nii.gz"):
        load_case(case, probability=np.zeros(GEOMETRY.shape, np.float32), region_policy="organ")


def test_probability_file_is_read_checked_and_named(tmp_path):
    bad = np.full(GEOMETRY.shape, 0.5, np.float32)
    bad[0, 0, 0] = 1.5
    case = _case(tmp_path, probability=bad)
    with pytest.raises(InputError, match=r"probability\.nii\.gz has values from 0\.5 to 1\.5"):
        load_case(case)
    with pytest.raises(InputError, match="has no other.nii.gz"):
        load_case(case, probability_name="other.nii.gz")


def test_check_probability_refuses_nan():
    values = np.zeros(4, np.float32)
    values[2] = np.nan
    with pytest.raises(InputError, match=r"1 NaN or infinite voxel\(s\), the first at index \(2,\)"):
        check_probability(values, "p.nii.gz")


def test_rater_counts_must_match():
    assert check_rater_counts([("a", 5), ("b", 5)]) == 5
    with pytest.raises(InputError, match="a: 5, b: 3"):
        check_rater_counts([("a", 5), ("b", 3)])


def test_agreement_curve_matches_direct_counts():
    rng = np.random.default_rng(0)
    probability = rng.random((10, 20, 30)).astype(np.float32)
    probability[0, 0, :4] = [0.0, 0.6, 1.0, 0.999]
    curve = AgreementCurve(probability, voxel_volume_ml=0.25)
    for level in (0.0, 0.01, 0.1, 0.5, 0.6, 0.999, 1.0):
        assert curve.volume_ml(level) == pytest.approx((probability >= level).sum() * 0.25)
    assert curve.band_volume_ml(0.1, 0.9) == pytest.approx(((probability >= 0.1) & (probability < 0.9)).sum() * 0.25)
    assert curve.expected_volume_ml == pytest.approx(probability.sum(dtype=np.float64) * 0.25, rel=1e-9)
    levels, volumes = curve.curve()
    assert len(levels) == 101 and np.all(np.diff(volumes) <= 0)


def test_every_cohort_command_shares_one_case_loop_with_progress_failures_and_cancel():
    from types import SimpleNamespace

    from TwinTrackLogic.cohort.casemap import CaseFailed, each_case
    from TwinTrackLogic.errors import Cancelled, InputError
    from TwinTrackLogic.progress import CancelToken

    cases = [SimpleNamespace(name=name) for name in ("a", "b", "c")]

    def work(case):
        if case.name == "b":
            raise InputError("b has no CT.\nSecond line.")
        return case.name.upper()

    messages = []
    outcomes = list(each_case(work, cases, progress=lambda f, m: messages.append((f, m))))
    assert [(case.name, outcome) for case, outcome in outcomes[::2]] == [("a", "A"), ("c", "C")]
    assert outcomes[1][1] == CaseFailed("b has no CT.\nSecond line.")
    assert messages == [(1 / 3, "a: done (1 of 3)"), (2 / 3, "b: failed: b has no CT. (2 of 3)"), (1.0, "c: done (3 of 3)")]

    token = CancelToken()
    loop = each_case(work, cases, token=token)
    next(loop)
    token.cancel()
    with pytest.raises(Cancelled):
        next(loop)
