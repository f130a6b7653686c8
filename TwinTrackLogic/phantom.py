"""Synthetic multi-rater abdominal CT cohorts.

Each case is a contrast CT (portal-venous phase, Hounsfield units) with body
outline, subcutaneous and retroperitoneal fat, liver, kidneys, spine, pancreas,
the main peripancreatic vessels and a hypodense pancreatic tumour, plus K rater
masks of that tumour.

How the raters disagree (the point of the phantom): the tumour is a *latent*
field ``L`` in [0, 1], 1 in the solid core and falling smoothly through an
infiltrative margin whose position wobbles with a low-frequency random field.
Rater k marks ``L + delta_k > tau_k``: ``tau_k`` is the rater's personal
boundary level (some raters are systematically generous or conservative, and
keep that style across cases), ``delta_k`` a smooth low-frequency perturbation
of their boundary (clipped to +-0.15). Levels lie in [0.27, 0.70], so every
rater marks the core (L > 0.9) and none marks beyond the margin (L < 0.1);
they disagree only in between. The CT shows the same latent field as
low-contrast hypodensity, blurred by partial volume and covered by CT noise.

Anatomy is defined in millimetres in patient (LPS) space and then sampled on
the case's grid, so the ``small`` and ``full`` sizes show the same anatomy;
grids have anisotropic spacing, a scanner-like origin and, on two of every
three cases, a non-identity direction (flipped or oblique).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from . import __version__
from .errors import InputError
from .io import Geometry, Volume, write_image, write_json
from .progress import CancelToken, ProgressCallback, no_progress
from .vessels import VESSEL_LABELS

# Grid per size: voxels (x, y, z) and spacing (x, y, z) in mm.
SIZES: Dict[str, Tuple[Tuple[int, int, int], Tuple[float, float, float]]] = {
    "small": ((96, 96, 48), (2.6, 2.6, 4.0)),
    "full": ((512, 512, 100), (0.8, 0.8, 2.5)),
}


# Hounsfield units, portal-venous phase.
HU = {
    "air": -1000.0, "fat": -100.0, "retroperitoneal fat": -85.0, "soft tissue": 40.0,
    "liver": 110.0, "kidney": 175.0, "stomach": 15.0, "bone": 450.0, "canal": 25.0,
    "pancreas": 100.0, "artery": 170.0, "vein": 160.0,
}
NOISE_HU = 12.0
PARTIAL_VOLUME_SIGMA_MM = 0.9

# Latent-field and rater settings (see module docstring).
RATER_LEVEL_RANGE = (0.27, 0.70)
RATER_PERTURBATION = 0.08
RATER_PERTURBATION_CLIP = 0.15


@dataclass
class PhantomCase:
    """One generated case; arrays in (z, y, x) order on ``geometry``."""

    name: str
    geometry: Geometry
    image: np.ndarray  # int16 HU
    annotations: List[np.ndarray]  # K uint8 masks
    pancreas: np.ndarray  # uint8 organ mask (tumour included)
    vessels: np.ndarray  # uint8 labels, see VESSEL_LABELS
    latent: np.ndarray  # float32 tumour field in [0, 1]


# --- geometry of shapes (all in mm, patient LPS offsets from the anatomy centre) ---

def _ellipsoid(points, centre, radii) -> np.ndarray:
    """Normalised ellipsoid radius: < 1 inside, 1 on the surface."""
    x, y, z = points
    return np.sqrt(((x - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2
                   + ((z - centre[2]) / radii[2]) ** 2)


def _segment_distance(points, start, end) -> np.ndarray:
    """Distance in mm from each point to the segment start-end."""
    x, y, z = points
    start = np.asarray(start, dtype=np.float32)
    axis = np.asarray(end, dtype=np.float32) - start
    length2 = float(axis @ axis)
    t = ((x - start[0]) * axis[0] + (y - start[1]) * axis[1] + (z - start[2]) * axis[2]) / length2
    t = np.clip(t, 0.0, 1.0)
    return np.sqrt((x - start[0] - t * axis[0]) ** 2 + (y - start[1] - t * axis[1]) ** 2
                   + (z - start[2] - t * axis[2]) ** 2)


def _smooth_field(rng: np.random.Generator, points, wavelength_mm: Tuple[float, float],
                  waves: int = 12) -> np.ndarray:
    """Zero-mean, unit-variance random field made of low-frequency plane waves."""
    x, y, z = points
    field = np.zeros(np.broadcast_shapes(x.shape, y.shape, z.shape), dtype=np.float32)
    for _ in range(waves):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        k = direction * (2 * np.pi / rng.uniform(*wavelength_mm))
        phase = rng.uniform(0, 2 * np.pi)
        field += np.cos(k[0] * x + k[1] * y + k[2] * z + phase, dtype=np.float32)
    return field * np.float32(np.sqrt(2.0 / waves))


def _rotation(rx_deg: float, rz_deg: float) -> np.ndarray:
    ax, az = np.deg2rad(rx_deg), np.deg2rad(rz_deg)
    rot_x = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    rot_z = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rot_z @ rot_x


def case_geometry(index: int, size: str, rng: np.random.Generator) -> Tuple[Geometry, np.ndarray]:
    """The grid of case ``index`` and the LPS position of its anatomy centre.

    Case 0, 3, 6 ... have identity direction; 1, 4, 7 ... are flipped in x and y
    (as RAS-stored data read in LPS); 2, 5, 8 ... are oblique.
    """
    voxels, spacing = SIZES[size]
    kind = index % 3
    if kind == 0:
        direction = np.eye(3)
    elif kind == 1:
        direction = np.diag([-1.0, -1.0, 1.0])
    else:
        direction = _rotation(rng.uniform(4, 9), rng.uniform(5, 12))
    # Scanner-like table position of the anatomy centre (non-zero origin).
    centre = np.array([rng.uniform(-15, 15), rng.uniform(-40, -10), rng.uniform(-420, -120)])
    half_extent = np.asarray(spacing) * (np.asarray(voxels) - 1) / 2.0
    # The field of view is centred a little anterior-right of the pancreas.
    fov_centre = centre + np.array([-5.0, 10.0, 10.0])
    origin = fov_centre - direction @ half_extent
    return Geometry(voxels, spacing, origin, tuple(direction.ravel())), centre


def _physical_points(geometry: Geometry, centre: np.ndarray, scale: float):
    """Per-voxel LPS offsets from the anatomy centre, divided by the body scale.

    Returns three float32 arrays broadcastable to the (z, y, x) shape.
    """
    matrix = geometry.index_to_physical_matrix()
    nx, ny, nz = geometry.size
    i = np.arange(nx, dtype=np.float32)[None, None, :]
    j = np.arange(ny, dtype=np.float32)[None, :, None]
    k = np.arange(nz, dtype=np.float32)[:, None, None]
    offset = matrix[:3, 3] - centre
    return tuple(
        ((matrix[axis, 0] * i + matrix[axis, 1] * j + matrix[axis, 2] * k + offset[axis]) / scale)
        .astype(np.float32)
        for axis in range(3)
    )


PANCREAS_PARTS = {  # centre (mm), radii (mm)
    "head": ((-28.0, 6.0, -14.0), (17.0, 14.0, 20.0)),
    "neck": ((-6.0, -9.0, -2.0), (12.0, 8.0, 10.0)),
    "body": ((24.0, -4.0, 6.0), (24.0, 9.0, 10.0)),
    "tail": ((58.0, 12.0, 14.0), (21.0, 8.0, 9.0)),
}

VESSELS = [  # label, start (mm), end (mm), radius (mm), kind
    (VESSEL_LABELS["aorta"], (16.0, 42.0, -120.0), (16.0, 42.0, 120.0), 11.0, "artery"),
    (VESSEL_LABELS["celiac trunk"], (16.0, 32.0, 38.0), (14.0, 2.0, 46.0), 3.5, "artery"),
    (VESSEL_LABELS["SMA"], (16.0, 32.0, 18.0), (13.0, 6.0, 6.0), 3.5, "artery"),
    (VESSEL_LABELS["SMA"], (13.0, 6.0, 6.0), (11.0, 2.0, -90.0), 3.5, "artery"),
    (VESSEL_LABELS["SMV"], (-4.0, 2.0, -90.0), (-4.0, 6.0, -4.0), 5.5, "vein"),
    (VESSEL_LABELS["portal vein"], (-4.0, 6.0, -4.0), (-48.0, 16.0, 34.0), 7.0, "vein"),
]


# Where tumours are placed against a vessel (the situations a vascular-involvement read-out is for).
CONTACT_STREAM = 4242
CONTACT_VESSELS = {  # name: (index in VESSELS, the stretch along the pancreas as fractions of the segment)
    "SMV": (4, (0.6, 1.0)),
    "SMA": (3, (0.1, 0.45)),
    "portal vein": (5, (0.05, 0.55)),
}
CONTACT_SITUATIONS = {"as drawn": 0.2, "apart": 0.2, "abutment": 0.5, "encasement": 0.1}
# Distance from the tumour centre to the nearest wall of the vessel, in units of the tumour's extent
# that way: about 1 puts the wall in the ambiguous margin, between generous and conservative raters;
# "apart" leaves a fat plane that no rater crosses.
WALL_DISTANCE = {"abutment": (1.0, 1.25), "apart": (1.5, 1.8)}
# Encasement: the vessel axis lies this close to the tumour centre (same units), inside the solid core...
ENCASEMENT_OFFSET = (0.0, 0.3)
# ...of a tumour at least this many vessel radii across in every direction.
ENCASEMENT_MIN_RADIUS = 2.4


def _extent(direction: np.ndarray, radii: np.ndarray) -> float:
    """Distance (mm) from an ellipsoid's centre to its surface along a unit direction."""
    return float(1.0 / np.sqrt(np.sum((direction / radii) ** 2)))


def _in_pancreas(point: np.ndarray, depth: float = 1.5) -> bool:
    """Whether ``point`` (mm) lies inside one of the pancreas parts grown to ``depth`` times its radii.

    1.5: the tumour, 11 to 22 mm in radius, then still overlaps the gland; a larger reach would let
    it drift to where no pancreatic tumour grows (and where the demo ensemble never saw one)."""
    return any(_ellipsoid(point, centre, radii) < depth for centre, radii in PANCREAS_PARTS.values())


def place_against_vessel(rng: np.random.Generator, centre: np.ndarray,
                         radii: np.ndarray, attempts: int = 8) -> Tuple[np.ndarray, np.ndarray]:
    """Move the tumour (centre, radii in mm) against, or away from, the SMV, SMA or portal vein.

    Abutment puts the vessel wall in the tumour's margin, on the side of the drawn centre, where
    generous raters reach the wall and conservative ones stop short; encasement runs the vessel
    through the solid core, so every rater wraps it; apart moves the tumour away from the vessel,
    towards the drawn centre. "As drawn" keeps the drawn tumour, and so does a placement that
    finds no centre near enough to the pancreas (``_in_pancreas``) in ``attempts`` tries.
    """
    situation = rng.choice(list(CONTACT_SITUATIONS), p=list(CONTACT_SITUATIONS.values()))
    if situation == "as drawn":
        return centre, radii
    for _ in range(attempts):
        name = rng.choice(list(CONTACT_VESSELS))
        segment, stretch = CONTACT_VESSELS[name]
        _, first, last, vessel_radius, _ = VESSELS[segment]
        start, end = np.asarray(first), np.asarray(last)
        axis = (end - start) / np.linalg.norm(end - start)
        on_axis = start + rng.uniform(*stretch) * (end - start)
        towards = centre - on_axis
        towards -= (towards @ axis) * axis
        if np.linalg.norm(towards) < 1e-6:  # drawn on the axis itself: come from in front (-y in LPS)
            towards = np.array([0.0, -1.0, 0.0]) - axis[1] * axis
        direction = towards / np.linalg.norm(towards)
        placed_radii = radii
        if situation in WALL_DISTANCE:
            offset = vessel_radius + rng.uniform(*WALL_DISTANCE[situation]) * _extent(direction, radii)
        else:
            placed_radii = radii * max(1.0, ENCASEMENT_MIN_RADIUS * vessel_radius / float(radii.min()))
            offset = rng.uniform(*ENCASEMENT_OFFSET) * _extent(direction, placed_radii)
        placed = on_axis + offset * direction
        if _in_pancreas(placed):
            return placed, placed_radii
    return centre, radii


def _anatomy(points, rng: np.random.Generator):
    """Paint the background CT (float32 HU) and the organ and vessel label maps."""
    x, y, z = points
    shape = np.broadcast_shapes(x.shape, y.shape, z.shape)
    hu = np.full(shape, HU["air"], dtype=np.float32)

    body = ((x / 132.0) ** 2 + ((y - 8.0) / 104.0) ** 2) < 1.0
    hu[body] = HU["fat"]
    inner = ((x / 116.0) ** 2 + ((y - 8.0) / 90.0) ** 2) < 1.0
    # Fat strands: a smooth field mixes fat into the inner soft tissue.
    strands = _smooth_field(rng, points, (25.0, 60.0), waves=8)
    hu[inner] = np.where(strands[inner] > 1.1, HU["fat"] + 30.0, HU["soft tissue"])
    hu[_ellipsoid(points, (10.0, 12.0, 0.0), (100.0, 42.0, 55.0)) < 1.0] = HU["retroperitoneal fat"]

    for centre, radii, name in [
        ((-92.0, 8.0, 62.0), (72.0, 78.0, 82.0), "liver"),
        ((78.0, 66.0, -8.0), (24.0, 20.0, 50.0), "kidney"),
        ((-76.0, 70.0, -20.0), (24.0, 20.0, 50.0), "kidney"),
        ((48.0, -42.0, 52.0), (38.0, 30.0, 36.0), "stomach"),
    ]:
        hu[(_ellipsoid(points, centre, radii) < 1.0) & inner] = HU[name]
    spine = ((x / 21.0) ** 2 + ((y - 74.0) / 19.0) ** 2) < 1.0
    hu[np.broadcast_to(spine, shape)] = HU["bone"]
    canal = ((x / 8.0) ** 2 + ((y - 100.0) / 8.0) ** 2) < 1.0
    hu[np.broadcast_to(canal, shape)] = HU["canal"]

    pancreas = np.zeros(shape, dtype=bool)
    for centre, radii in PANCREAS_PARTS.values():
        pancreas |= _ellipsoid(points, centre, radii) < 1.0
    hu[pancreas] = HU["pancreas"]

    vessels = np.zeros(shape, dtype=np.uint8)
    vessel_hu = np.zeros(shape, dtype=np.float32)
    for label, start, end, radius, kind in VESSELS:
        inside = _segment_distance(points, start, end) < radius
        vessels[inside & (vessels == 0)] = label
        vessel_hu[inside] = HU[kind]
    return hu, pancreas & (vessels == 0), vessels, vessel_hu


def _tumour_bounding_slices(geometry: Geometry, centre_lps: np.ndarray, reach_mm: float):
    """Index-space (z, y, x) slices covering a sphere of ``reach_mm`` around a point."""
    matrix = np.linalg.inv(geometry.index_to_physical_matrix())
    corners = np.array([[sx, sy, sz, 1.0] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
    corners[:, :3] = centre_lps + corners[:, :3] * reach_mm
    indices = (matrix @ corners.T)[:3]
    low = np.clip(np.floor(indices.min(axis=1)).astype(int), 0, np.asarray(geometry.size))
    high = np.clip(np.ceil(indices.max(axis=1)).astype(int) + 1, 0, np.asarray(geometry.size))
    return tuple(slice(int(low[axis]), int(high[axis])) for axis in (2, 1, 0))


def rater_profiles(raters: int, seed: int) -> np.ndarray:
    """Each rater's personal boundary level, fixed for the whole cohort.

    With three or more raters, one is generous (low level, over-segments) and one
    conservative (high level, under-segments); the rest sit near the middle.
    """
    rng = np.random.default_rng([seed, 7919])
    low, high = RATER_LEVEL_RANGE
    if raters == 1:
        return np.array([0.5])
    if raters == 2:
        levels = np.array([rng.uniform(0.35, 0.45), rng.uniform(0.55, 0.65)])
    else:
        middle = rng.uniform(0.42, 0.58, size=raters - 2)
        levels = np.concatenate([[rng.uniform(low, 0.33)], [rng.uniform(0.63, high)], middle])
    return rng.permutation(levels)


def generate_case(index: int, raters: int = 5, seed: int = 0, size: str = "small") -> PhantomCase:
    """Generate case ``index`` of the cohort defined by ``seed`` (deterministic)."""
    if size not in SIZES:
        raise InputError(f"Unknown phantom size {size!r}; choose one of {', '.join(SIZES)}.")
    if raters < 1:
        raise InputError(f"A phantom needs at least one rater, not {raters}.")
    rng = np.random.default_rng([seed, index])
    geometry, centre = case_geometry(index, size, rng)
    scale = rng.uniform(0.93, 1.06)
    points = _physical_points(geometry, centre, scale)
    hu, pancreas, vessels, vessel_hu = _anatomy(points, rng)

    # Tumour: centre inside the head, neck or body; infiltrative, ambiguous margin.
    part = rng.choice(["head", "neck", "body"], p=[0.5, 0.2, 0.3])
    part_centre, part_radii = PANCREAS_PARTS[part]
    tumour_centre = np.asarray(part_centre) + rng.uniform(-0.35, 0.35, 3) * np.asarray(part_radii)
    tumour_radii = rng.uniform(11.0, 18.0) * rng.uniform(0.8, 1.2, 3)
    margin_width = rng.uniform(0.11, 0.16)  # in units of the tumour radius
    # Its own stream, so that every other draw (anatomy, noise, raters) is the same whatever it picks.
    tumour_centre, tumour_radii = place_against_vessel(np.random.default_rng([seed, index, CONTACT_STREAM]),
                                                       tumour_centre, tumour_radii)
    reach = 1.8 * float(tumour_radii.max()) * scale
    box = _tumour_bounding_slices(geometry, centre + tumour_centre * scale, reach)
    local = tuple(np.broadcast_to(p, hu.shape)[box] for p in points)

    irregularity = _smooth_field(rng, local, (14.0, 35.0))
    radius = _ellipsoid(local, tumour_centre, tumour_radii) * (1.0 + 0.12 * irregularity)
    latent = np.zeros(hu.shape, dtype=np.float32)
    latent[box] = 1.0 / (1.0 + np.exp((radius - 1.0) / margin_width))
    latent[box][latent[box] < 1e-3] = 0.0
    latent[vessels > 0] = 0.0  # raters never call a vessel lumen tumour

    # CT: hypodense, low-contrast tumour tissue blended in by the latent field.
    tumour_hu = HU["pancreas"] - rng.uniform(30.0, 50.0)
    hu = (1.0 - latent) * hu + latent * np.float32(tumour_hu)
    hu = np.where(vessels > 0, vessel_hu, hu)
    voxel_sigma = [PARTIAL_VOLUME_SIGMA_MM / s for s in reversed(geometry.spacing)]
    hu = ndimage.gaussian_filter(hu, voxel_sigma, mode="nearest")
    noise = ndimage.gaussian_filter(rng.standard_normal(hu.shape, dtype=np.float32), (0.0, 0.7, 0.7))
    hu += noise * np.float32(NOISE_HU / max(float(noise.std()), 1e-6))
    image = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)

    levels = rater_profiles(raters, seed) + rng.uniform(-0.03, 0.03, raters)
    annotations = []
    for level in levels:
        perturbation = np.clip(RATER_PERTURBATION * _smooth_field(rng, local, (20.0, 60.0), waves=8),
                               -RATER_PERTURBATION_CLIP, RATER_PERTURBATION_CLIP)
        mask = np.zeros(hu.shape, dtype=np.uint8)
        mask[box] = (latent[box] + perturbation) > level
        annotations.append(mask)

    organ = (pancreas | (latent > 0.5)).astype(np.uint8)
    return PhantomCase(
        name=f"case_{index:03d}", geometry=geometry, image=image, annotations=annotations,
        pancreas=organ, vessels=vessels, latent=latent,
    )


def write_case(case: PhantomCase, folder: Path, dicom: bool = False, uid_seed: str = "") -> Path:
    """Write one case in the CURVAS-PDACVI layout; returns its folder.

    ``dicom``: the CT as a DICOM series in ``image/`` instead of ``image.nii.gz`` (needs the
    ``dicom`` extra), its UIDs derived from ``uid_seed`` and the case name.
    """
    folder = Path(folder) / case.name
    folder.mkdir(parents=True, exist_ok=True)
    if dicom:
        from .dicom.ct_series import write_ct_series

        write_ct_series(Volume(case.image, case.geometry), folder / "image", patient_id=case.name,
                        uid_seed=f"twintrack phantom {uid_seed} {case.name}")
    else:
        write_image(folder / "image.nii.gz", case.image, case.geometry)
    for number, mask in enumerate(case.annotations, start=1):
        write_image(folder / f"annotation_{number}.nii.gz", mask, case.geometry)
    write_image(folder / "pancreas.nii.gz", case.pancreas, case.geometry)
    write_image(folder / "vessels.nii.gz", case.vessels, case.geometry)
    return folder


def write_cohort(out: Path, cases: int, raters: int = 5, seed: int = 0, size: str = "small",
                 progress: ProgressCallback = no_progress,
                 token: Optional[CancelToken] = None, first_index: int = 0, dicom: bool = False) -> List[Path]:
    """Generate and write ``cases`` cases into ``out``; returns the case folders.

    ``phantom.json`` in ``out`` records the generator settings for provenance.
    """
    if cases < 1:
        raise InputError(f"--cases must be at least 1, not {cases}.")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    folders = []
    for number, index in enumerate(range(first_index, first_index + cases)):
        if token is not None:
            token.check()
        progress(number / cases, f"case {number + 1} of {cases}")
        folders.append(write_case(generate_case(index, raters, seed, size), out, dicom,
                                  uid_seed=f"seed {seed} raters {raters} size {size}"))
    settings = {"generator": "twintrack phantom", "version": __version__, "cases": cases,
                "first_index": first_index, "raters": raters, "seed": seed, "size": size, "dicom": dicom,
                "vessel_labels": VESSEL_LABELS}
    write_json(out / "phantom.json", settings)
    progress(1.0, f"wrote {cases} cases")
    return folders


def describe(folders: Sequence[Path], raters: int, size: str) -> str:
    voxels, spacing = SIZES[size]
    return (f"{len(folders)} phantom case(s), {raters} rater(s) each, "
            f"{voxels[0]} x {voxels[1]} x {voxels[2]} voxels at "
            f"{spacing[0]} x {spacing[1]} x {spacing[2]} mm")
