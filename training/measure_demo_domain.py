"""Measure the demo bundle's training domain and declare it in its manifest.

    python training/measure_demo_domain.py --bundle Resources/DemoBundle

Runs the bundle (onnxruntime, as ``twintrack predict`` does) on phantom cases of the
training and validation splits (phantom seeds 11 and 13) at both phantom sizes, measures
what ``TwinTrackLogic/inference/domain.py`` checks (HU percentiles in the body, the
localiser's organ volume and the HU inside it, the region's share of the body), and writes
each as a range into ``manifest.json``'s ``domain``: the measured minimum and maximum,
widened on each side by half their spread plus a floor (so that a fresh phantom of the same
generator stays inside while a real CT, with dense bone and a wider HU spread, falls out).
``synthetic`` is true: the demo models never saw a real scan. Called at the end of
``train_demo_bundle.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from TwinTrackLogic.inference.bundle import load_bundle
from TwinTrackLogic.inference import Ensemble
from TwinTrackLogic.inference.domain import measure
from TwinTrackLogic.io import Volume, write_json
from TwinTrackLogic.phantom import SIZES, generate_case

SEEDS = (11, 13)  # the training and validation splits of train_demo_bundle.py
FLOORS = {"p1": 40.0, "p50": 10.0, "p99_9": 40.0, "organ_ml": 10.0, "organ_hu_mean": 15.0, "organ_hu_std": 10.0}
MAX_REGION_FRACTION_OF_BODY = 0.10  # four times the largest share measured on phantoms (2.4 %)


def _range(values, floor):
    low, high = min(values), max(values)
    margin = (high - low) / 2 + floor
    return [round(low - margin, 1), round(high + margin, 1)]


def measure_demo_domain(bundle_dir: Path, cases: int = 4, full_cases: int = 1, threads: int = 2) -> dict:
    bundle = load_bundle(bundle_dir)
    ensemble = Ensemble(bundle, device="cpu", threads=threads)
    rows = []
    for seed in SEEDS:
        for size, count in (("small", cases), ("full", full_cases)):
            for index in range(count):
                case = generate_case(index, raters=1, seed=seed, size=size)
                volume = Volume(case.image.astype(np.float32), case.geometry)
                prediction = ensemble.predict(volume)
                rows.append(measure(volume, prediction.organ, prediction.region))
                print(f"seed {seed} {size} case {index}: {rows[-1]}", flush=True)
    spacings = [spacing for _, spacing in SIZES.values()]
    vessel_dice = (bundle.manifest.get("provenance") or {}).get("vessels", {}).get("held_out_dice_on_ct_grid")
    vessel_sentence = ""
    if vessel_dice:
        from train_vessel_stage import vessel_note  # a sibling script, on sys.path when run from training/

        vessel_sentence = " " + vessel_note(vessel_dice)
    domain = {
        "modality": "CT",
        "synthetic": True,
        "description": ("TwinTrack phantoms only (`twintrack phantom`, small and full size): abdominal-CT-like "
                        "volumes without dense bone, a pancreas of 35-50 mL; never a real scan" + vessel_sentence),
        "spacing_mm": {"min": [round(min(s[i] for s in spacings) * 0.6, 2) for i in range(3)],
                       "max": [round(max(s[i] for s in spacings) * 1.2, 2) for i in range(3)]},
        "body_hu": {key: _range([row["body_hu"][key] for row in rows], FLOORS[key])
                    for key in ("p1", "p50", "p99_9")},
        "organ": {"name": "pancreas",
                  "volume_ml": _range([row["organ_ml"] for row in rows], FLOORS["organ_ml"]),
                  "hu_mean": _range([row["organ_hu_mean"] for row in rows], FLOORS["organ_hu_mean"]),
                  "hu_std": _range([row["organ_hu_std"] for row in rows], FLOORS["organ_hu_std"])},
        "max_region_fraction_of_body": MAX_REGION_FRACTION_OF_BODY,
    }
    manifest = dict(bundle.manifest)
    manifest["domain"] = domain
    write_json(Path(bundle_dir) / "manifest.json", manifest)
    print(f"Declared the domain in {Path(bundle_dir) / 'manifest.json'}: {domain}", flush=True)
    return domain


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=Path("Resources/DemoBundle"))
    parser.add_argument("--cases", type=int, default=4, help="small phantoms per split")
    parser.add_argument("--full-cases", type=int, default=1, help="full-size phantoms per split")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    measure_demo_domain(args.bundle, args.cases, args.full_cases, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
