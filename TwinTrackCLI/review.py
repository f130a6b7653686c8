"""`twintrack review`: the agreement review in a web browser (trame-slicer).

This module only checks what the command was given and decides what the
server may see: the address, the access token and the cases (one case folder,
or the case folders of one cohort, fixed at start). The web app itself lives
in the optional ``TwinTrackWeb`` package (``pip install ".[review]"``), which
runs the scene layer on trame-slicer; it is imported only when the command
runs, so the rest of the command line works without the extra.
"""

from __future__ import annotations

import ipaddress
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from TwinTrackLogic import Case, InputError, TwinTrackError, find_cases
from TwinTrackLogic.review.levels import DEFAULT_REVIEW_LEVEL

from . import options as checked

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
TOKEN_BYTES = 24  # 32 URL-safe characters, as Jupyter's default token length order


# Top-level packages the web app needs beyond the core: their absence means the extra is missing.
EXTRA_PACKAGES = {"TwinTrackWeb", "trame", "trame_slicer", "trame_server", "trame_client", "trame_vuetify",
                  "trame_rca", "trame_common", "wslink", "aiohttp", "slicer", "vtk", "vtkmodules", "TwinTrackLib"}


class ExtraMissing(TwinTrackError):
    """The review needs the optional web extra, which is not installed."""


@dataclass
class ReviewOptions:
    """Everything the web app is allowed to know, fixed before it starts."""

    host: str
    port: int
    token: Optional[str]  # None only on a loopback address with --no-token
    cases: List[Case] = field(default_factory=list)  # empty: the demo phantom
    bundle: Optional[Path] = None
    calibrator: Optional[Path] = None
    level: float = 0.6

    def url(self, host: Optional[str] = None) -> str:
        shown = host or self.host
        if ":" in shown:
            shown = f"[{shown}]"
        query = f"?secret={self.token}" if self.token else ""
        return f"http://{shown}:{self.port}/index.html{query}"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "review",
        help="review a case's agreement map in a web browser (needs the .[review] extra)",
        description=(
            "Serve the TwinTrack review (slice views, 3D view, agreement slider with read-outs, band mode, "
            "contours, opacity, colour map, uncalibrated toggle, volume curve, mask export) to a web "
            "browser. Give one case folder (image.nii.gz, optional annotation_K.nii.gz) or a cohort folder "
            "of case folders to pick from; without one it opens the demo phantom. The ensemble runs on the "
            "server with progress and Cancel. The server listens on 127.0.0.1 unless told otherwise and "
            "prints a URL with a random access token; the page and its websocket refuse anyone without it. "
            "Only the cases under the folder given here can be opened. One process serves one review: "
            "everyone with the token shares the same scene, so start one process per reviewer."
        ),
    )
    parser.add_argument("cases", nargs="?", type=Path, metavar="CASE_OR_COHORT",
                        help="a case folder or a cohort folder of case folders (default: the demo phantom)")
    parser.add_argument("--bundle", type=Path, help="model bundle (default: the embedded demo bundle)")
    parser.add_argument("--calibrator", type=Path, help="calibrator JSON (default: the bundle's own)")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to listen on (default {DEFAULT_HOST}: this machine only)")
    parser.add_argument("--port", type=checked.whole(0, 65535), default=DEFAULT_PORT,
                        help=f"port to listen on (default {DEFAULT_PORT}; 0 picks a free one)")
    parser.add_argument("--level", type=checked.level, default=DEFAULT_REVIEW_LEVEL,
                        help=f"initial agreement level in percent of annotators (default {DEFAULT_REVIEW_LEVEL * 100:g})")
    parser.add_argument("--no-token", action="store_true",
                        help="serve without an access token; refused unless --host is a loopback address")
    parser.set_defaults(run=run)


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_access(host: str, no_token: bool) -> Optional[str]:
    """The access token for this run, or None; refuses a reachable address without one."""
    if no_token and not is_loopback(host):
        raise InputError(
            f"--host {host} makes the review reachable from other machines, and --no-token would let "
            "anyone who reaches the port see the case and drive the review. Drop --no-token (a random "
            "token is then printed with the URL) or listen on 127.0.0.1.")
    return None if no_token else secrets.token_urlsafe(TOKEN_BYTES)


def resolve_cases(folder: Optional[Path]) -> List[Case]:
    """The cases the browser may open: one case folder, or every case of a cohort folder."""
    if folder is None:
        return []
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder. Give a case folder (with image.nii.gz) or a cohort "
                         "folder of case folders, or nothing for the demo phantom.")
    try:
        return [Case.from_folder(folder)]
    except InputError:
        return find_cases(folder)  # its refusal names the layout a cohort needs


def options_from(args) -> ReviewOptions:
    for name in ("bundle", "calibrator"):
        path = getattr(args, name)
        if path is not None and not path.exists():
            raise InputError(f"--{name} {path} does not exist.")
    return ReviewOptions(host=args.host, port=args.port, token=check_access(args.host, args.no_token),
                         cases=resolve_cases(args.cases), bundle=args.bundle, calibrator=args.calibrator,
                         level=args.level)


def load_web_app():
    """The web app's ``serve`` function, or a refusal that says how to install it."""
    try:
        from TwinTrackWeb.app import serve
    except ImportError as error:
        missing = (error.name or "").split(".")[0]
        if missing not in EXTRA_PACKAGES:
            raise  # a bug, not a missing extra: keep its traceback
        raise ExtraMissing(
            f"`twintrack review` needs the optional web extra, which is not installed ({missing} is missing). "
            "Install it with: pip install \"twintrack[review]\" (from a checkout: pip install -e \".[review]\"); "
            "the rest of the command line works without it.") from None
    return serve


def run(args) -> int:
    options = options_from(args)
    serve = load_web_app()
    print(f"TwinTrack review: {len(options.cases) or 'the demo'} case(s); starting the server...", file=sys.stderr)
    return int(serve(options) or 0)
