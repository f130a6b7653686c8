"""Cost of the vascular-involvement read-out inside ``run_case``, against ``run_case`` without it, same run.

On a full-size phantom case (512 x 512 x 100 voxels at 0.8 x 0.8 x 2.5 mm, its five vessels), this
times ``run_case`` with a given raw map, the pancreas as region and the demo calibrator (5 raters),
without vessels (the reference) and with the case's vessel label map (the read-out at 5 levels:
the label check, the per-vessel rim contact), alternating the two, and prints both medians and the
added share; issue 22 bounds it at 10 %. The reference leaves out the ensemble, which a `predict`
run adds on top, so the share printed is an upper bound for a real run.

The raw map is the phantom's latent tumour field (0 outside the tumour, smooth at its margin), so
the tumour touches some vessels and not others, as in a real case.

    .venv/bin/python benchmarks/bench_involvement.py               # 7 repeats each
    .venv/bin/python benchmarks/bench_involvement.py --repeats 3 --case 4
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
from measure import median_seconds  # benchmarks/measure.py

from TwinTrackLogic.calibration import load_calibrator
from TwinTrackLogic.io import Volume
from TwinTrackLogic.phantom import generate_case
from TwinTrackLogic.pipeline import run_case

DEMO_CALIBRATOR = Path(__file__).resolve().parents[1] / "Resources" / "DemoBundle" / "calibrator.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of each variant (default 7)")
    parser.add_argument("--case", type=int, default=0, help="phantom case index (seed 0; default 0)")
    args = parser.parse_args()
    case = generate_case(args.case, raters=5, seed=0, size="full")
    calibrator = load_calibrator(DEMO_CALIBRATOR)
    image = Volume(None, case.geometry)
    raw, region, vessels = case.latent.astype(np.float32), case.pancreas > 0, case.vessels

    def without():
        return run_case(image, raw=raw, region=region, calibrator=calibrator)

    own: list[float] = []

    def with_vessels():
        result = run_case(image, raw=raw, region=region, calibrator=calibrator, vessels=vessels,
                          vessels_source="phantom vessels")
        own.append(result.provenance["timings_s"]["involvement_s"])
        return result

    without(), with_vessels()  # warm caches and imports before timing
    # Single runs in the order AB, BA, AB, ...: a change in the machine's load, or the freeing of the
    # previous run's arrays, falls on both variants alike.
    reference: list[float] = []
    read_out: list[float] = []
    own.clear()
    for repeat in range(args.repeats):
        pair = ((reference, without), (read_out, with_vessels))
        for times, variant in (pair if repeat % 2 == 0 else pair[::-1]):
            times.append(median_seconds(variant, 1))
    base, full, own_s = statistics.median(reference), statistics.median(read_out), statistics.median(own)
    result = with_vessels()
    nx, ny, nz = case.geometry.size
    print(f"{case.name} ({nx} x {ny} x {nz} voxels), vessels {', '.join(result.involvement.vessels)}; "
          f"median of {args.repeats} alternating runs")
    print(f"  run_case without vessels    {base:7.3f} s")
    print(f"  run_case with the read-out  {full:7.3f} s   ratio {full / base:.3f}: added {100 * (full - base) / base:5.1f} %"
          " (bound 10 %)")
    print(f"  the read-out's own timer    {own_s:7.3f} s   = {100 * own_s / base:.1f} % of run_case without vessels "
          "(the same cost, without the run-to-run noise of a shared machine)")
    for line in result.involvement.table_lines():
        print(line)


if __name__ == "__main__":
    main()
