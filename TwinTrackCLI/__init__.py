"""The ``twintrack`` command: thin subcommands over the core, no logic of their own.

Each subcommand lives in its own module exposing ``register(subparsers)``,
which adds its parser and sets ``run`` (a function taking the parsed
arguments and returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

from TwinTrackLogic import Cancelled, TwinTrackError, __version__
from TwinTrackLogic.signals import Terminated, signals_unwind

# Order here is the order in `twintrack --help`.
SUBCOMMANDS = ("demo", "phantom", "predict", "calibrate", "apply", "evaluate", "export-dicom", "bundle",
               "review")

EXIT_OK = 0
EXIT_PARTIAL = 1  # finished, but some cases failed (a cohort run reports which)
EXIT_ERROR = 2  # refused: bad input or settings, message says why
EXIT_CANCELLED = 130  # Ctrl-C (SIGINT) or a cancel; SIGTERM exits 143 and SIGHUP 129 (128 + signal)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="twintrack",
        description=(
            "Calibrate a segmentation ensemble's tumour probability on contrast CT to the mean "
            "human response (MHR): the fraction of expert annotators who would label a voxel "
            "tumour. Run `twintrack COMMAND --help` for each command's options."
        ),
    )
    parser.add_argument("--version", action="version", version=f"twintrack {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__name__}.{name.replace('-', '_')}").register(subparsers)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # argparse printed the refused option (exit 2), --help or --version (0)
        return int(done.code or EXIT_OK)

    try:
        with signals_unwind():
            return int(args.run(args) or EXIT_OK)
    except Terminated as signal:
        print(f"\ntwintrack {args.command}: {signal}; no partial output was kept.", file=sys.stderr)
        return signal.exit_code
    except Cancelled as error:
        print(f"twintrack {args.command}: {error}", file=sys.stderr)
        return EXIT_CANCELLED
    except KeyboardInterrupt:
        print(f"\ntwintrack {args.command}: interrupted; no partial output was kept.", file=sys.stderr)
        return EXIT_CANCELLED
    except TwinTrackError as error:
        print(f"twintrack {args.command}: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as error:  # disk full, permissions, a folder that vanished
        where = f" ({error.filename})" if error.filename else ""
        print(f"twintrack {args.command}: error: {error.strerror or error}{where}. Check that the folder "
              "exists, is writable and has free space; no partial output was kept.", file=sys.stderr)
        return EXIT_ERROR
    except MemoryError:
        print(f"twintrack {args.command}: error: ran out of memory. Close other programs, crop the "
              "volume, or lower TWINTRACK_MEMORY_BUDGET_MB so that large inputs are refused up front; "
              "no partial output was kept.", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
