"""Suite-wide settings.

Under CI (CI=true) hypothesis draws the same examples every run, so a red
build always reproduces; locally it keeps exploring new ones, and its
database replays any failure it found.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def fixture_folder():
    """The tiny nnU-Net results folder with nnU-Net's own predictions (Testing/nnunet_fixture.py), built
    once and cached under .cache/ (or $TWINTRACK_NNUNET_FIXTURE). Needs the [nnunet] extra."""
    from nnunet_fixture import is_built

    repository = Path(__file__).resolve().parent.parent
    folder = Path(os.environ.get("TWINTRACK_NNUNET_FIXTURE", repository / ".cache" / "nnunet-fixture"))
    if not is_built(folder):
        subprocess.run([sys.executable, str(repository / "Testing" / "nnunet_fixture.py"), "--out", str(folder)],
                       check=True, cwd=repository)
    return folder
