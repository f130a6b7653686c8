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

# The one place that says what kind each test file is (markers registered in pyproject.toml).
# `pytest -m "not slow"` is the fast loop; `-m browser`, `-m "dicom or pacs"` and so on pick a
# layer. A test may also carry @pytest.mark.slow itself, where only it is slow in its file.
TEST_KINDS = {
    "test_web_review.py": ("browser", "slow"),
    "test_ohif.py": ("browser", "dicom", "pacs", "slow"),
    "test_dicom_pacs.py": ("dicom", "pacs", "slow"),
    "test_dicom_export.py": ("dicom", "slow"),
    "test_dicom_series.py": ("dicom",),
    "test_dicom_sr.py": ("dicom",),
    "test_dicom_uids.py": ("dicom",),
    "test_dicomweb_limits.py": ("dicom",),
    "test_slicer_dicom_export.py": ("dicom", "slow"),
    "test_nnunet_import.py": ("nnunet", "slow"),
    "test_nnunet_parity.py": ("nnunet", "slow"),
    "test_nnunet_mode.py": ("nnunet",),
    "test_inference_demo.py": ("slow",),  # four cases through the demo ensemble, module fixture
    "test_distributed.py": ("dask", "slow"),
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        for kind in TEST_KINDS.get(item.path.name, ()):
            item.add_marker(getattr(pytest.mark, kind))


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
