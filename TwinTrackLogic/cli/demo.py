"""`twintrack demo`: the main job on the embedded default, end to end."""

from __future__ import annotations

from pathlib import Path

from .. import phantom
from ..progress import TerminalProgress


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the whole TwinTrack job on a demo phantom cohort and say where the outputs are",
        description="Generate a demo phantom cohort with five raters and run TwinTrack on it.",
    )
    parser.add_argument("--out", type=Path, default=Path("twintrack-demo"),
                        help="folder for everything the demo writes (default: ./twintrack-demo)")
    parser.add_argument("--cases", type=int, default=4, help="phantom cases to generate (default: 4)")
    parser.add_argument("--seed", type=int, default=2025, help="phantom seed (default: 2025)")
    parser.set_defaults(run=run)


def run(args) -> int:
    cohort = args.out / "cohort"
    folders = phantom.write_cohort(cohort, args.cases, raters=5, seed=args.seed,
                                   progress=TerminalProgress())
    print(f"Wrote {phantom.describe(folders, 5, 'small')}:")
    for folder in folders:
        print(f"  {folder}")
    print(f"Everything is in {args.out.resolve()}")
    return 0
