"""Vascular involvement read from the calibrated map (TwinTrackLogic/involvement.py), through run_case
and the command line.

Known answers come from geometry, not from the code: a tumour band wrapping a round vessel over a
sector of 90, 180 or 270 degrees, checked against the sector within a stated rim-discretisation
tolerance, and a brute-force count (a plain loop over every rim voxel and its eight neighbours) that
the vectorised read-out must equal exactly on random label maps.
"""

from __future__ import annotations

import json
import shutil
import types
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from TwinTrackCLI import main
from TwinTrackLogic.errors import InputError
from TwinTrackLogic.involvement import agreement_levels, read_involvement
from TwinTrackLogic.io import Geometry, Volume, read_image, write_image
from TwinTrackLogic.phantom import write_cohort
from TwinTrackLogic.pipeline import run_case
from TwinTrackLogic.vessels import VESSEL_LABELS, VESSEL_NAMES, check_vessel_labels

SMA = VESSEL_LABELS["SMA"]
SMV = VESSEL_LABELS["SMV"]
REPOSITORY = Path(__file__).resolve().parents[1]
DEMO_CALIBRATOR = REPOSITORY / "Resources" / "DemoBundle" / "calibrator.json"


class IdentityCalibrator:
    """A calibrator that leaves p as it is and speaks for ``raters`` annotators."""

    method = "identity"

    def __init__(self, raters: int) -> None:
        self.raters = raters

    @staticmethod
    def transform(p):
        return np.asarray(p, dtype=np.float32)


def wrapped_vessel(sector_deg: float, radius: float = 12.0, rotation_deg: float = 0.0, offset=(0.0, 0.0),
                   size: int = 40, slices: int = 1, band: float = 3.0, start_deg: float = 0.0, p: float = 0.9):
    """A round SMA of ``radius`` voxels in every slice and a tumour band ``band`` voxels thick right
    outside it over ``sector_deg``, drawn in a frame rotated by ``rotation_deg`` (an oblique grid) and
    shifted by ``offset`` voxels. Returns (calibrated p, vessel labels), (z, y, x)."""
    y, x = np.mgrid[0:size, 0:size].astype(float)
    centre = (size - 1) / 2.0
    turn = np.deg2rad(rotation_deg)
    dx, dy = x - centre - offset[1], y - centre - offset[0]
    u, v = dx * np.cos(turn) - dy * np.sin(turn), dx * np.sin(turn) + dy * np.cos(turn)
    distance = np.hypot(u, v)
    angle = (np.rad2deg(np.arctan2(v, u)) - start_deg) % 360.0
    vessel = distance <= radius
    tumour = (distance > radius) & (distance <= radius + band) & (angle < sector_deg)
    labels = np.zeros((slices, size, size), np.uint8)
    calibrated = np.zeros((slices, size, size), np.float32)
    labels[:, vessel] = SMA
    calibrated[:, tumour] = p
    return calibrated, labels


def brute_force(calibrated, labels, label, level):
    """(largest angle, its first slice, contact voxels, rim voxels) by a plain loop: the definition, nothing shared."""
    best = (0.0, None, 0, 0)
    depth, height, width = labels.shape
    for z in range(depth):
        rim = contact = 0
        for yy in range(height):
            for xx in range(width):
                if labels[z, yy, xx] != label:
                    continue
                outside = touching = False
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        if dy == dx == 0:
                            continue
                        ny, nx = yy + dy, xx + dx
                        if not (0 <= ny < height and 0 <= nx < width):
                            outside = True
                            continue
                        outside |= labels[z, ny, nx] != label
                        touching |= labels[z, ny, nx] == 0 and calibrated[z, ny, nx] >= np.float32(level)
                rim += outside
                contact += outside and touching
        if rim and contact and 360.0 * contact / rim > best[0]:
            best = (360.0 * contact / rim, z, contact, rim)
    return best


def rim_voxels(labels, label):
    """The rim count of slice 0, from eight shifted copies (independent of the module's erosion)."""
    vessel = np.pad(labels[0] == label, 1)
    outside = np.zeros_like(vessel)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            outside |= ~np.roll(np.roll(vessel, dy, 0), dx, 1)
    return int((vessel & outside).sum())


# --- known geometry --------------------------------------------------------------------------------

# A 90-degree multiple of a round vessel's rim holds exactly that share of its rim voxels (the rim of a
# digital disc has |cos| + |sin| voxels per unit length, whose integral over any quarter turn is the
# same), so the only error is at the sector's two edges: through the in-plane 8-neighbourhood each edge
# can reach up to two rim voxels of the untouched side, and the digitised edge line can leave out one rim
# voxel of the touched side. Tolerance: from 2 rim voxels below to 4 above, in degrees 360/rim each.
@pytest.mark.parametrize("sector_deg", [90.0, 180.0, 270.0])
@pytest.mark.parametrize("rotation_deg, offset", [(0.0, (0.0, 0.0)), (17.0, (0.3, 0.1)), (45.0, (0.5, 0.5)),
                                                  (71.0, (0.2, 0.4))])
def test_involvement_of_a_tumour_wrapping_90_180_270_degrees(sector_deg, rotation_deg, offset):
    calibrated, labels = wrapped_vessel(sector_deg, rotation_deg=rotation_deg, offset=offset)
    readout = read_involvement(calibrated, labels, raters=5).vessels["SMA"]
    rim = rim_voxels(labels, SMA)
    step = 360.0 / rim
    at_lowest = readout.levels[0]
    assert sector_deg - 2 * step <= at_lowest.contact_deg <= sector_deg + 4 * step, (at_lowest.contact_deg, step)
    assert at_lowest.max_slice == 0
    if sector_deg != 180.0:  # 180 itself may land on either side of the NCCN line within the tolerance
        assert at_lowest.category == ("abutment" if sector_deg < 180 else "encasement")
    # p = 0.9: contact at 1..4 of 5 experts, none at 5 of 5.
    assert [entry.contact_deg > 0 for entry in readout.levels] == [True, True, True, True, False]
    assert readout.contact_share == pytest.approx(0.8)


def test_involvement_of_an_untouched_vessel_is_no_contact():
    # The tumour begins beyond radius + 1.5 voxels, farther than any in-plane neighbour of a vessel voxel
    # (at most radius + sqrt(2)): a gap, however thin, is no contact (no dilation, unlike the challenge).
    _, labels = wrapped_vessel(360.0)
    gap_calibrated, _ = wrapped_vessel(360.0, radius=13.5, band=3.0)
    gap_calibrated[labels > 0] = 0.0
    readout = read_involvement(gap_calibrated, labels, raters=5).vessels["SMA"]
    assert [entry.contact_deg for entry in readout.levels] == [0.0] * 5
    assert [entry.category for entry in readout.levels] == ["no contact"] * 5
    assert [entry.max_slice for entry in readout.levels] == [None] * 5
    assert readout.contact_share == readout.encasement_share == 0.0
    # The same tumour one ring closer touches all round.
    touching, _ = wrapped_vessel(360.0)
    assert read_involvement(touching, labels, raters=5).vessels["SMA"].levels[0].contact_deg == 360.0


def test_involvement_never_counts_another_vessel_as_tumour():
    calibrated, labels = wrapped_vessel(0.0, radius=6.0)
    labels[:, 19:22, 26:34] = SMV  # an SMV right next to the SMA ...
    calibrated[labels == SMV] = 1.0  # ... where the map (wrongly) says tumour
    involvement = read_involvement(calibrated, labels, raters=5)
    assert set(involvement.vessels) == {"SMV", "SMA"}
    assert involvement.vessels["SMA"].contact_share == 0.0
    assert involvement.absent == ["portal vein", "aorta", "celiac trunk"]


def test_involvement_shares_say_how_many_experts_draw_contact_and_encasement():
    # 90 degrees drawn by 4 of 5 experts (p = 0.9), 180 more by 2 of 5 (p = 0.5): 270 degrees at 1-2 of 5.
    core, labels = wrapped_vessel(90.0, p=0.9)
    margin, _ = wrapped_vessel(180.0, start_deg=90.0, p=0.5)
    calibrated = np.maximum(core, margin)
    involvement = read_involvement(calibrated, labels, raters=5)
    readout = involvement.vessels["SMA"]
    assert [entry.category for entry in readout.levels] == ["encasement", "encasement", "abutment", "abutment",
                                                             "no contact"]
    assert readout.contact_share == pytest.approx(0.8) and readout.encasement_share == pytest.approx(0.4)
    assert involvement.share_text(readout.contact_share) == "4 of 5 experts"
    assert involvement.share_text(readout.encasement_share) == "2 of 5 experts"
    entry = involvement.to_json()["vascular_involvement"]["SMA"]
    assert entry["contact_share"] == 0.8 and entry["encasement_share"] == 0.4
    assert entry["levels"] == [0.2, 0.4, 0.6, 0.8, 1.0] and entry["max_slice"] == [0, 0, 0, 0, None]
    # Panel size unknown: tenths, and the shares as percentages.
    unknown = read_involvement(calibrated, labels, raters=0)
    assert unknown.levels == agreement_levels(0) == tuple(k / 10 for k in range(1, 11))
    readout = unknown.vessels["SMA"]
    assert readout.contact_share == pytest.approx(0.9) and readout.encasement_share == pytest.approx(0.5)
    assert unknown.share_text(readout.contact_share) == "90 %"


def test_involvement_max_slice_is_the_widest_contact():
    ninety, labels = wrapped_vessel(90.0, slices=9)
    wide, _ = wrapped_vessel(270.0, slices=9)
    calibrated = np.zeros_like(ninety)
    calibrated[3], calibrated[6] = ninety[3], wide[6]
    entry = read_involvement(calibrated, labels, raters=5).vessels["SMA"].levels[0]
    assert entry.max_slice == 6 and entry.category == "encasement"


# --- the definition, exactly: random label maps against the brute-force loop ---------------------------

label_maps = st.integers(0, 2 ** 32 - 1).map(lambda seed: _random_case(np.random.default_rng(seed)))


def _random_case(rng):
    shape = (int(rng.integers(1, 4)), int(rng.integers(3, 9)), int(rng.integers(3, 9)))
    labels = np.where(rng.random(shape) < 0.45, rng.choice([SMV, SMA], shape), 0).astype(np.uint8)
    calibrated = rng.choice(np.array([0.0, 0.2, 0.35, 0.6, 0.8, 1.0], np.float32), shape)
    return calibrated, labels


@settings(max_examples=60, deadline=None)
@given(label_maps)
def test_involvement_equals_a_brute_force_count_of_the_definition(case):
    calibrated, labels = case
    involvement = read_involvement(calibrated, labels, raters=5)
    for name, readout in involvement.vessels.items():
        for entry in readout.levels:
            angle, slice_index, contact, rim = brute_force(calibrated, labels, VESSEL_LABELS[name], entry.level)
            assert entry.contact_deg == pytest.approx(angle, abs=1e-9)
            assert entry.max_slice == slice_index
            expected = "no contact" if not contact else ("encasement" if 2 * contact > rim else "abutment")
            assert entry.category == expected
            assert entry.rim_voxels == (rim if contact else 0)
    present = {VESSEL_NAMES[label] for label in np.unique(labels) if label}
    assert set(involvement.vessels) == present


@settings(max_examples=60, deadline=None)
@given(label_maps, st.lists(st.floats(0.01, 1.0), min_size=2, max_size=8, unique=True))
def test_involvement_is_monotone_in_the_agreement_level(case, levels):
    calibrated, labels = case
    involvement = read_involvement(calibrated, labels, levels=levels)
    order = {"no contact": 0, "abutment": 1, "encasement": 2}
    for readout in involvement.vessels.values():
        angles = [entry.contact_deg for entry in readout.levels]
        assert angles == sorted(angles, reverse=True)  # a higher level's tumour lies inside a lower one's
        calls = [order[entry.category] for entry in readout.levels]
        assert calls == sorted(calls, reverse=True)
        assert readout.encasement_share <= readout.contact_share
        assert all(entry.contact_deg <= 360.0 for entry in readout.levels)


# --- grids: flipped and oblique give the same answer -------------------------------------------------

def _physical_scene(geometry: Geometry, sector_deg: float):
    """A vessel along the patient's z axis (radius 9.6 mm) and a tumour band (2.4 mm) over ``sector_deg``
    in the plane z = 10 mm only, sampled at the voxel centres of ``geometry``: (calibrated, labels)."""
    nx, ny, nz = geometry.size
    k, j, i = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    index = np.stack([i.ravel(), j.ravel(), k.ravel(), np.ones(i.size)])
    x, y, z, _ = geometry.index_to_physical_matrix() @ index
    distance, angle = np.hypot(x, y), np.rad2deg(np.arctan2(y, x)) % 360.0
    labels = np.where(distance <= 9.6, SMA, 0).astype(np.uint8).reshape(nz, ny, nx)
    tumour = (distance > 9.6) & (distance <= 12.0) & (angle < sector_deg) & (np.abs(z - 10.0) < 1.0)
    calibrated = np.where(tumour, np.float32(0.7), np.float32(0.0)).reshape(nz, ny, nx)
    return calibrated, labels


def _run(geometry, calibrated, labels):
    result = run_case(Volume(None, geometry), raw=calibrated, region=np.ones(labels.shape, bool),
                      calibrator=IdentityCalibrator(5), vessels=labels, vessels_source="test scene")
    assert result.provenance["vessels_source"] == "test scene"
    return result.involvement.vessels["SMA"]


@pytest.mark.parametrize("sector_deg", [90.0, 270.0])
def test_involvement_same_on_flipped_and_oblique_grids(sector_deg):
    spacing, size = (0.8, 0.8, 2.5), (40, 40, 6)
    half = 0.8 * 19.5
    plain = Geometry(size, spacing, (-half, -half, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    # The same voxel centres, indexed from the other corner in x and z.
    flipped = Geometry(size, spacing, (half, -half, 12.5), (-1, 0, 0, 0, 1, 0, 0, 0, -1))
    turn = np.deg2rad(30.0)
    c, s = np.cos(turn), np.sin(turn)
    oblique_origin = -(np.array([[c, -s], [s, c]]) @ np.array([half, half]))
    oblique = Geometry(size, spacing, (*oblique_origin, 0.0), (c, -s, 0, s, c, 0, 0, 0, 1))

    reference = _run(plain, *_physical_scene(plain, sector_deg))
    step = 360.0 / rim_voxels(_physical_scene(plain, sector_deg)[1], SMA)
    assert reference.levels[0].contact_deg == pytest.approx(sector_deg, abs=4 * step)
    assert [e.max_slice for e in reference.levels] == [4, 4, 4, None, None]  # z = 10 mm; p = 0.7: 3 of 5
    assert reference.contact_share == pytest.approx(0.6)

    flipped_scene = _physical_scene(flipped, sector_deg)
    assert np.array_equal(flipped_scene[1], _physical_scene(plain, sector_deg)[1][::-1, :, ::-1])
    on_flipped = _run(flipped, *flipped_scene)
    assert [e.contact_deg for e in on_flipped.levels] == [e.contact_deg for e in reference.levels]
    assert [e.max_slice for e in on_flipped.levels] == [1, 1, 1, None, None]  # the same plane, z = 10 mm

    oblique_scene = _physical_scene(oblique, sector_deg)
    oblique_step = 360.0 / rim_voxels(oblique_scene[1], SMA)
    on_oblique = _run(oblique, *oblique_scene)
    for on_plain, rotated in zip(reference.levels, on_oblique.levels):
        # Each grid within -2..+4 rim voxels of the sector (see the 90/180/270 test).
        assert sector_deg - 2 * oblique_step <= rotated.contact_deg <= sector_deg + 4 * oblique_step or \
            rotated.contact_deg == on_plain.contact_deg == 0.0
        assert rotated.category == on_plain.category and rotated.max_slice == on_plain.max_slice


def test_involvement_vessel_labels_are_checked_as_the_curvas_set():
    assert check_vessel_labels(np.array([0.0, 1.0, 5.0]), "v.nii.gz").dtype == np.uint8  # float files, whole values
    for bad, shown in ((np.array([0, 6]), "the value(s) 6"), (np.array([0.0, 2.5]), "the value(s) 2.5"),
                       (np.array([1.0, np.nan]), "NaN or infinity"), (np.array([-1, 2]), "the value(s) -1"),
                       (np.array([True, False]), "values of type bool")):
        with pytest.raises(InputError, match=f"v.nii.gz should hold .*{shown.replace('(', '.').replace(')', '.')}"):
            check_vessel_labels(bad, "v.nii.gz")


# --- run_case: where the vessels come from -----------------------------------------------------------

def _fake_ensemble(calibrated, vessels):
    """``predict`` of an ensemble whose bundle has a vessel stage (``vessels``; None: no vessel stage)."""
    def predict(image, progress=None, token=None):
        return types.SimpleNamespace(probability=calibrated.copy(), region=np.ones(calibrated.shape, bool),
                                     organ=None, vessels=vessels, geometry=image.geometry)
    return predict


def _ct(shape):
    nz, ny, nx = shape
    return Volume(np.full(shape, 40.0, np.float32), Geometry((nx, ny, nz), (0.8, 0.8, 2.5), (0.0, 0.0, 0.0),
                                                             (1, 0, 0, 0, 1, 0, 0, 0, 1)))


def test_run_case_involvement_from_given_vessels_before_the_bundle_vessel_stage():
    calibrated, labels = wrapped_vessel(270.0, slices=2)
    ct = _ct(labels.shape)
    staged = run_case(ct, predict=_fake_ensemble(calibrated, labels), calibrator=IdentityCalibrator(5))
    assert staged.provenance["vessels_source"] == "bundle vessel stage"
    assert staged.involvement.vessels["SMA"].levels[0].category == "encasement"
    assert np.array_equal(staged.vessels, labels) and "involvement_s" in staged.provenance["timings_s"]
    # A map the user gives wins over the vessel stage: here one without the SMA, so no read-out for it.
    given = np.where(labels == SMA, SMV, 0).astype(np.uint8)
    result = run_case(ct, predict=_fake_ensemble(calibrated, labels), calibrator=IdentityCalibrator(5),
                      vessels=given, vessels_source="given file vessels_edited.nii.gz")
    assert result.provenance["vessels_source"] == "given file vessels_edited.nii.gz"
    assert set(result.involvement.vessels) == {"SMV"} and np.array_equal(result.vessels, given)
    # Neither: no read-out, said once in the provenance, and not a warning (--strict would refuse the case).
    none = run_case(ct, predict=_fake_ensemble(calibrated, None), calibrator=IdentityCalibrator(5))
    assert none.involvement is None and none.vessels is None
    assert none.provenance["vessels_source"] == "none" and len(none.provenance["notes"]) == 1
    assert "vessel" not in " ".join(none.warnings)


def test_run_case_involvement_refuses_vessels_it_cannot_read_with_a_sentence():
    calibrated, labels = wrapped_vessel(90.0, slices=2)
    ct = _ct(labels.shape)
    wrong = labels.copy()
    wrong[0, 0, 0] = 7
    with pytest.raises(InputError, match=r"given file mine.nii.gz\) should hold the CURVAS-PDACVI vessel labels .*"
                                         r"the value\(s\) 7\. Relabel it"):
        run_case(ct, raw=calibrated, vessels=wrong, vessels_source="given file mine.nii.gz")
    with pytest.raises(InputError, match=r"shape \(1, 40, 40\), not the CT's \(2, 40, 40\)"):
        run_case(ct, raw=calibrated, vessels=labels[:1])
    with pytest.raises(InputError, match="vessel stage.* fix or replace the bundle"):
        run_case(ct, predict=_fake_ensemble(calibrated, labels.astype(np.float32) + 0.5))


# --- the command line ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def phantom_case(tmp_path_factory):
    folder = tmp_path_factory.mktemp("involvement")
    write_cohort(folder / "cohort", 2, raters=5, seed=13, first_index=41)
    return folder


def _table_rows(text):
    """The printed table's row of each vessel, by name."""
    return {name: line for line in text.splitlines() for name in VESSEL_LABELS if line.startswith(f"  {name} ")}


def test_predict_prints_the_involvement_table_and_writes_its_json_and_vessels_out(phantom_case, capsys):
    case = phantom_case / "cohort" / "case_041"
    out = phantom_case / "predict" / "p.nii.gz"
    assert main(["predict", "--image", str(case / "image.nii.gz"), "--out", str(out), "--threads", "2",
                 "--vessels", str(case / "vessels.nii.gz"), "--vessels-out", str(out.parent / "used.nii.gz")]) == 0
    printed = capsys.readouterr().out
    readout = json.loads((out.parent / "p.involvement.json").read_text())
    record = json.loads((out.parent / "p.provenance.json").read_text())
    # The read-out recomputed from the written map and the given vessels: the CLI wired the right arrays.
    vessels = read_image(case / "vessels.nii.gz").array
    expected = read_involvement(read_image(out).array, vessels, raters=5).to_json()
    assert readout["vascular_involvement"] == expected["vascular_involvement"]
    assert readout["vessels_source"] == record["vessels_source"] == "given file vessels.nii.gz"
    assert readout["raters"] == 5 and readout["levels"] == [0.2, 0.4, 0.6, 0.8, 1.0]
    assert np.array_equal(read_image(out.parent / "used.nii.gz").array, vessels)
    assert record["outputs"]["involvement"] == str(out.parent / "p.involvement.json")
    assert record["outputs"]["vessels"] == str(out.parent / "used.nii.gz")
    assert record["inputs"]["vessels"]["sha256"] and "notes" not in record
    rows = _table_rows(printed)
    assert set(rows) == set(VESSEL_LABELS)
    for name, entry in readout["vascular_involvement"].items():
        cells = rows[name].split("deg")
        angles = [float(cell.split()[-1]) for cell in cells[:3]]
        assert angles == pytest.approx(entry["table"]["contact_deg"], abs=0.5)
        share = round(entry["contact_share"] * 5)
        assert f"{share} of 5 experts" in cells[3]
    assert any(entry["contact_share"] > 0 for entry in readout["vascular_involvement"].values())


@pytest.fixture(scope="module")
def bundle_without_vessel_stage(tmp_path_factory):
    from bundle_helpers import demo_bundle_without_vessel_stage

    return demo_bundle_without_vessel_stage(tmp_path_factory.mktemp("bundle"))


def test_predict_without_given_vessels_reads_out_the_bundle_vessel_stage(phantom_case, capsys):
    case = phantom_case / "cohort" / "case_042"
    out = phantom_case / "staged" / "p.nii.gz"
    out.parent.mkdir()
    assert main(["predict", "--image", str(case / "image.nii.gz"), "--out", str(out), "--threads", "2",
                 "--vessels-out", str(out.parent / "v.nii.gz")]) == 0
    record = json.loads((out.parent / "p.provenance.json").read_text())
    assert record["vessels_source"] == "bundle vessel stage"
    readout = json.loads((out.parent / "p.involvement.json").read_text())
    assert readout["vessels_source"] == "bundle vessel stage" and readout["vascular_involvement"]
    assert set(np.unique(read_image(out.parent / "v.nii.gz").array)) <= {0, 1, 2, 3, 4, 5}


def test_predict_without_vessels_says_once_there_is_no_involvement_and_refuses_vessels_out(
        phantom_case, bundle_without_vessel_stage, capsys):
    case = phantom_case / "cohort" / "case_042"
    out = phantom_case / "bare" / "p.nii.gz"
    out.parent.mkdir()
    stale = out.parent / "p.involvement.json"
    stale.write_text("{}")  # an earlier run's read-out must not stay beside new outputs
    bundle = ["--bundle", str(bundle_without_vessel_stage)]
    assert main(["predict", "--image", str(case / "image.nii.gz"), "--out", str(out), "--threads", "2", *bundle]) == 0
    printed = capsys.readouterr().out
    assert printed.count("No vascular-involvement read-out") == 1 and "deg" not in printed
    assert not stale.exists()
    record = json.loads((out.parent / "p.provenance.json").read_text())
    assert record["vessels_source"] == "none" and record["outputs"]["involvement"] is None
    again = out.parent / "q.nii.gz"
    assert main(["predict", "--image", str(case / "image.nii.gz"), "--out", str(again), "--threads", "2",
                 "--vessels-out", str(out.parent / "v.nii.gz"), *bundle]) == 2
    assert "--vessels-out" in capsys.readouterr().err
    assert not again.exists() and not (out.parent / "v.nii.gz").exists()


def test_predict_involvement_refuses_a_vessel_file_on_another_grid_or_with_other_labels(phantom_case, capsys):
    case = phantom_case / "cohort" / "case_041"
    vessels = read_image(case / "vessels.nii.gz")
    g = vessels.geometry
    shifted = phantom_case / "shifted_vessels.nii.gz"
    write_image(shifted, vessels.array, Geometry(g.size, g.spacing, (g.origin[0] + 5.0, *g.origin[1:]), g.direction))
    relabelled = phantom_case / "relabelled_vessels.nii.gz"
    write_image(relabelled, (vessels.array * 2).astype(np.uint8), g)
    out = phantom_case / "refused" / "p.nii.gz"
    for path, sentence in ((shifted, "does not lie on the same voxel grid as the image"),
                           (relabelled, "should hold the CURVAS-PDACVI vessel labels")):
        assert main(["predict", "--image", str(case / "image.nii.gz"), "--out", str(out),
                     "--vessels", str(path)]) == 2
        error = capsys.readouterr().err
        assert str(path) in error and sentence in error and "Traceback" not in error
    assert not out.parent.exists()


def test_apply_with_vessels_writes_the_involvement_read_out(phantom_case, capsys):
    case = phantom_case / "cohort" / "case_041"
    image = read_image(case / "image.nii.gz")
    raw = phantom_case / "raters_mean.nii.gz"  # the raters' mean as a stand-in for an ensemble's raw map
    annotations = [read_image(case / f"annotation_{k}.nii.gz").array for k in range(1, 6)]
    write_image(raw, np.mean(annotations, axis=0, dtype=np.float32), image.geometry)
    out = phantom_case / "applied.nii.gz"
    assert main(["apply", "--calibrator", str(DEMO_CALIBRATOR), "--probability", str(raw), "--out", str(out),
                 "--vessels", str(case / "vessels.nii.gz")]) == 0
    printed = capsys.readouterr().out
    readout = json.loads((phantom_case / "applied.involvement.json").read_text())
    labels = read_image(case / "vessels.nii.gz").array
    expected = read_involvement(read_image(out).array, labels, raters=5).to_json()
    assert readout["vascular_involvement"] == expected["vascular_involvement"]
    assert readout["vessels_source"] == "given file vessels.nii.gz"
    assert "Vascular involvement (calibrated to 5 raters)" in printed and set(_table_rows(printed)) == set(VESSEL_LABELS)


@pytest.mark.slow
def test_cohort_predict_involvement_from_each_cases_vessels_and_resume(phantom_case, bundle_without_vessel_stage, capsys):
    cohort = phantom_case / "cohort"
    out = phantom_case / "cohort_out"
    bare = phantom_case / "cohort_bare"
    # case_042 without its vessels (and a bundle without a vessel stage): predicted, said once, no read-out.
    bundle = ["--bundle", str(bundle_without_vessel_stage)]
    shutil.copytree(cohort, bare)
    (bare / "case_042" / "vessels.nii.gz").unlink()
    assert main(["predict", "--cohort", str(bare), "--out", str(out), "--threads", "2", *bundle]) == 0
    printed = capsys.readouterr().out
    assert "no vascular-involvement read-out for 1 case(s)" in printed and "case_042" in printed
    with_readout = json.loads((out / "case_041" / "probability.involvement.json").read_text())
    assert with_readout["vessels_source"] == "case vessels.nii.gz"
    assert not (out / "case_042" / "probability.involvement.json").exists()
    # Up to date: nothing recomputed. A case that gains its vessels file is recomputed.
    assert main(["predict", "--cohort", str(bare), "--out", str(out), "--threads", "2", *bundle]) == 0
    assert "Predicted 0 case(s), 2 already up to date" in capsys.readouterr().out
    shutil.copy(cohort / "case_042" / "vessels.nii.gz", bare / "case_042" / "vessels.nii.gz")
    assert main(["predict", "--cohort", str(bare), "--out", str(out), "--threads", "2", *bundle]) == 0
    assert "Predicted 1 case(s), 1 already up to date" in capsys.readouterr().out
    assert (out / "case_042" / "probability.involvement.json").exists()


# --- the panel's words (TwinTrack/TwinTrackLib/involvement_text.py, Qt-free) -----------------------------

def test_involvement_text_follows_the_agreement_slider():
    from TwinTrackLib.involvement_text import table_rows, vessel_sentence

    core, labels = wrapped_vessel(90.0, p=0.9)  # 90 degrees drawn by 4 of 5, 180 more by 2 of 5
    margin, _ = wrapped_vessel(180.0, start_deg=90.0, p=0.5)
    involvement = read_involvement(np.maximum(core, margin), labels, raters=5)
    exact = {level: involvement.contacts["SMA"].at(level).contact_deg for level in (0.4, 0.6)}
    assert vessel_sentence(involvement, "SMA", 0.4) == f"SMA at ≥ 40 %: {exact[0.4]:.0f}° encasement"
    assert vessel_sentence(involvement, "SMA", 0.6) == f"SMA at ≥ 60 %: {exact[0.6]:.0f}° abutment"
    assert 255 <= exact[0.4] <= 290 and 80 <= exact[0.6] <= 105  # the 270 and 90 degree wraps
    assert vessel_sentence(involvement, "SMA", 0.95) == "SMA at ≥ 95 %: no contact"
    assert vessel_sentence(involvement, "SMV", 0.4) == "SMV: not in the vessel label map"
    assert "no involvement read-out" in vessel_sentence(None, "SMA", 0.4)
    rows = {row.vessel: row for row in table_rows(involvement, 0.6)}
    assert list(rows) == list(VESSEL_LABELS)
    assert rows["SMA"].category == "abutment" and rows["SMA"].max_slice == 0
    assert rows["SMA"].contact == "4 of 5 experts" and rows["SMA"].encasement == "2 of 5 experts"
    assert rows["aorta"].category == "not in the label map" and rows["aorta"].max_slice is None
    assert table_rows(None, 0.5) == []
    raw = read_involvement(np.maximum(core, margin), labels, is_calibrated=False)
    assert vessel_sentence(raw, "SMA", 0.6).startswith("SMA at p ≥ 0.60: ")
