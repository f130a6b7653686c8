"""What the strict JSON reader and the schema check cost, against plain ``json.loads``.

    python benchmarks/bench_strict_json.py [--knots 65536] [--repeats 5]

Builds an isotonic calibrator with ``--knots`` knots (the size a fine fit can reach), then times,
in the same process, plain ``json.loads`` of its text, the strict parse
(``TwinTrackLogic.io.strictjson.parse_json``: duplicates, depth, integer size, NaN) and the
check against ``calibrator.schema.json``; prints the medians and the ratios to ``json.loads``.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from measure import median_seconds  # benchmarks/measure.py

from TwinTrackLogic.io.strictjson import parse_json
from TwinTrackLogic.schemas import validate


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--knots", type=int, default=65536)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    x = np.linspace(0.0, 1.0, args.knots)
    document = {"format": "twintrack-calibrator", "version": 1, "method": "isotonic",
                "parameters": {"x": x.tolist(), "y": (x ** 2).tolist()},
                "fitting": {"region": "r", "cases": 12, "voxels": 10 ** 9, "raters": 5, "probability_source": "p"},
                "software_version": "0", "created": "2026-01-01T00:00:00+00:00"}
    text = json.dumps(document)
    plain = median_seconds(lambda: json.loads(text), args.repeats)
    strict = median_seconds(lambda: parse_json(text, "bench.json"), args.repeats)
    schema = median_seconds(lambda: validate(document, "calibrator", "bench.json"), args.repeats)
    print(f"calibrator with {args.knots} knots, {len(text) / 1e6:.1f} MB, median of {args.repeats}:")
    print(f"  json.loads          {plain * 1e3:7.1f} ms")
    print(f"  strict parse        {strict * 1e3:7.1f} ms  ({strict / plain:.2f}x json.loads)")
    print(f"  schema check        {schema * 1e3:7.1f} ms  ({schema / plain:.2f}x json.loads)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
