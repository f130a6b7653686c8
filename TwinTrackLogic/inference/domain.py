"""Does this CT look like the data the model was trained on? Warnings, never silence.

A bundle's manifest may declare its training ``domain`` (``bundle.schema.json``): the
modality, whether it was trained on synthetic phantoms only, the range of voxel spacing, HU
percentiles inside the body, and what its localiser's organ looks like on training data
(volume, HU mean and spread inside it), and the largest share of the body the region may
take. :func:`domain_warnings` measures the same things on the input and on the localiser's
own output and returns one sentence per check that fails. The pipeline puts them into the
result's provenance (``warnings``), the command line prints them, and ``predict --strict``
refuses to write anything when there is one.

What these checks can catch: a scan of another modality or not in HU, a resolution the
models never saw, a scan whose intensities are unlike the training scans (for a bundle
trained on phantoms: any real CT, which has dense bone and a wider HU spread), and a
localiser that found no organ, too little or too much of one, or a region that covers a
large part of the body. What they cannot catch: a CT that is in range on all of these and
still unlike the training data (another contrast phase, another scanner's noise, an unusual
anatomy), or a localiser that found an organ of the right size and density in the wrong
place. Passing them is not evidence that the result is right.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..io import Volume

BODY_HU = -500.0  # voxels above this are body (air and lung are below)
AIR_HU = -900.0  # a CT in HU has voxels of air below this
SAMPLE_STEP = 2  # body percentiles are measured on every 2nd voxel along each axis

Range = Tuple[float, float]


@dataclass(frozen=True)
class Domain:
    """A bundle's declared training domain (``manifest["domain"]``)."""

    modality: str = "CT"
    synthetic: bool = False
    description: str = ""
    spacing_min: Optional[Tuple[float, float, float]] = None  # mm, (x, y, z)
    spacing_max: Optional[Tuple[float, float, float]] = None
    body_hu: Optional[Mapping[str, Range]] = None  # {"p1": (low, high), "p50": ..., "p99_9": ...}
    organ_name: str = "organ"
    organ_volume_ml: Optional[Range] = None
    organ_hu_mean: Optional[Range] = None
    organ_hu_std: Optional[Range] = None
    max_region_fraction_of_body: Optional[float] = None

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> Optional["Domain"]:
        """The domain of a manifest already checked against the schema; None if it declares none."""
        entry = manifest.get("domain")
        if entry is None:
            return None
        spacing = entry.get("spacing_mm") or {}
        organ = entry.get("organ") or {}
        return cls(
            modality=entry["modality"], synthetic=bool(entry["synthetic"]),
            description=entry.get("description", ""),
            spacing_min=_tuple(spacing.get("min")), spacing_max=_tuple(spacing.get("max")),
            body_hu={key: _tuple(value) for key, value in (entry.get("body_hu") or {}).items()},
            organ_name=organ.get("name", "organ"), organ_volume_ml=_tuple(organ.get("volume_ml")),
            organ_hu_mean=_tuple(organ.get("hu_mean")), organ_hu_std=_tuple(organ.get("hu_std")),
            max_region_fraction_of_body=entry.get("max_region_fraction_of_body"),
        )


def _tuple(values: Optional[Sequence[float]]):
    return None if values is None else tuple(float(v) for v in values)


def _outside(value: float, bounds: Optional[Range]) -> bool:
    return bounds is not None and not bounds[0] <= value <= bounds[1]


PERCENTILES = {"p1": 1.0, "p50": 50.0, "p99_9": 99.9}


def measure(image: Volume, organ: Optional[np.ndarray], region: Optional[np.ndarray]) -> Dict[str, Any]:
    """What the checks compare: spacing, HU percentiles in the body, organ and region size."""
    ct = image.array
    geometry = image.geometry
    sample = ct[::SAMPLE_STEP, ::SAMPLE_STEP, ::SAMPLE_STEP]
    body_sample = sample[sample > BODY_HU]
    body_voxels = int(np.count_nonzero(ct > BODY_HU))
    measured: Dict[str, Any] = {
        "spacing_mm": [round(s, 4) for s in geometry.spacing],
        "min_hu": float(sample.min()) if sample.size else 0.0,
        "body_ml": round(body_voxels * geometry.voxel_volume_ml, 1),
        "body_hu": ({key: round(float(value), 1) for key, value in
                     zip(PERCENTILES, np.percentile(body_sample, list(PERCENTILES.values())))}
                    if body_sample.size else {}),
    }
    if organ is not None:
        organ_hu = ct[organ]
        measured["organ_ml"] = round(float(organ_hu.size) * geometry.voxel_volume_ml, 2)
        if organ_hu.size:
            measured["organ_hu_mean"] = round(float(organ_hu.mean()), 1)
            measured["organ_hu_std"] = round(float(organ_hu.std()), 1)
    if region is not None:
        measured["region_fraction_of_body"] = round(float(np.count_nonzero(region & (ct > BODY_HU)))
                                                    / max(body_voxels, 1), 4)
    return measured


def domain_warnings(domain: Optional[Domain], image: Volume, organ: Optional[np.ndarray],
                    region: Optional[np.ndarray]) -> Tuple[List[str], Dict[str, Any]]:
    """(one sentence per failed check, the measurements) for ``image`` and the localiser's output.

    organ: the localiser's mask (None without a localiser); region: where the members ran.
    """
    if image.array is None:
        return [], {}
    measured = measure(image, organ, region)
    warnings: List[str] = []
    if organ is not None and not organ.any():
        name = domain.organ_name if domain is not None else "organ"
        warnings.append(f"the localiser found no {name} in this CT, so there is no region and the tumour "
                        "probability is 0 everywhere; check that the CT covers the abdomen and is in HU")
    if domain is None:
        return warnings, measured
    if measured["min_hu"] > AIR_HU:
        warnings.append(f"the lowest value in the image is {measured['min_hu']:g}, but a {domain.modality} in "
                        f"HU has air near -1000: this may not be a {domain.modality} in Hounsfield units")
    spacing = tuple(image.geometry.spacing)
    if domain.spacing_min is not None and domain.spacing_max is not None and any(
            s < low or s > high for s, low, high in zip(spacing, domain.spacing_min, domain.spacing_max)):
        warnings.append(f"the voxel spacing {_fmt(spacing)} mm is outside the range the models were "
                        f"trained for ({_fmt(domain.spacing_min)} to {_fmt(domain.spacing_max)} mm)")
    for key, bounds in (domain.body_hu or {}).items():
        value = measured["body_hu"].get(key)
        if value is not None and _outside(value, bounds):
            warnings.append(f"the {key[1:].replace('_', '.')}th percentile of HU in the body is {value:g}, outside "
                            f"the training range [{bounds[0]:g}, {bounds[1]:g}]: the scan's intensities are "
                            "unlike the training scans")
    if organ is not None and organ.any():
        checks: Tuple[Tuple[str, Optional[Range], str, str], ...] = (
            ("organ_ml", domain.organ_volume_ml, f"the {domain.organ_name} volume found by the localiser", "mL"),
            ("organ_hu_mean", domain.organ_hu_mean, f"the mean HU inside the {domain.organ_name}", "HU"),
            ("organ_hu_std", domain.organ_hu_std, f"the HU spread (std) inside the {domain.organ_name}", "HU"))
        for key, limits, what, unit in checks:
            if key in measured and limits is not None and _outside(measured[key], limits):
                warnings.append(f"{what} is {measured[key]:g} {unit}, outside the training range "
                                f"[{limits[0]:g}, {limits[1]:g}] {unit}")
    fraction = measured.get("region_fraction_of_body")
    if (domain.max_region_fraction_of_body is not None and fraction is not None
            and fraction > domain.max_region_fraction_of_body):
        warnings.append(f"the region covers {fraction:.0%} of the body (at most "
                        f"{domain.max_region_fraction_of_body:.0%} on training data): the localiser has "
                        "probably not found the organ")
    if warnings and domain.synthetic:
        warnings.insert(0, "this model bundle was trained on synthetic phantoms only, and this CT is not like "
                           "them: its numbers say nothing about a real patient")
    return warnings, measured


def _fmt(values) -> str:
    return " x ".join(f"{v:g}" for v in values)
