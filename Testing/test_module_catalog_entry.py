"""The extension is publishable: what the Slicer Extensions Index checks, done here offline.

The index's CI (Slicer/ExtensionsIndex @07f1d1b, ``scripts/check_description_files.py`` run by
``.github/workflows/extension-validation.yml``) clones the repository named in the catalog entry
and checks: the entry against the catalog-entry JSON schema (``check_json_schema``, Slicer main
``Schemas/slicer-extension-catalog-entry-schema-v1.0.1.json``), LF-only JSON
(``check_json_file_format``), the name (``check_extension_name``), the category
(``check_category``), the scm URL (``check_scm_url_syntax``, ``check_git_repository_name``), the
top-level CMakeLists.txt (``check_cmakelists_content``: project name, icon and screenshot URLs
that return images), the repository size (``check_repository_size``, 100 MB) and a licence file
in the root (``check_license_file``). The checks below are our own, equivalent ones; what needs
the network (the URLs answer, the GitHub topic ``3d-slicer-extension``) is checked against the
files those URLs will serve once the repository is published.
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENTRY = ROOT / "TwinTrack.json"
NAME = ENTRY.stem
CONTRIBUTORS = "TwinTrack contributors (TwinTrack project, https://github.com/twintrack/SlicerTwinTrack)"

# The catalog-entry schema v1.0.1, as constraints: required keys, no other keys, each key's type.
REQUIRED_KEYS = {"$schema", "category", "scm_url"}
KEY_TYPES = {"$schema": str, "category": str, "scm_url": str, "scm_revision": str, "scm_type": str,
             "build_dependencies": list, "build_subdirectory": str, "enabled": bool, "tier": int}
SCHEMA_URL = "https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/slicer-extension-catalog-entry-schema-v1.0.1.json"


def entry() -> dict:
    return json.loads(ENTRY.read_text(encoding="utf-8"))


def cmake_settings() -> dict:
    """``set(EXTENSION_X "value")`` of the top-level CMakeLists.txt."""
    text = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    return dict(re.findall(r'^\s*set\s*\(\s*(EXTENSION_\w+)\s+"([^"]*)"\s*\)', text, re.MULTILINE))


def s4ext() -> dict:
    settings = {}
    for line in (ROOT / "extension.s4ext").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            settings[key] = value.strip()
    return settings


def png_size(path: Path):
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def served_file(url: str) -> Path:
    """The repository file a raw.githubusercontent.com URL of this repository serves."""
    parts = urlsplit(url)
    assert parts.scheme == "https" and parts.netloc == "raw.githubusercontent.com", url
    owner, repo, revision, *path = parts.path.strip("/").split("/")
    scm = urlsplit(entry()["scm_url"]).path.strip("/").removesuffix(".git").split("/")
    assert [owner, repo] == scm, f"{url} is not in the repository the catalog entry names"
    assert revision == entry()["scm_revision"], f"{url} is not on the revision the index builds"
    return ROOT.joinpath(*path)


def test_the_catalog_entry_matches_the_schema_and_is_lf_only():
    raw = ENTRY.read_bytes()
    assert b"\r" not in raw, "the index accepts LF line endings only"
    data = entry()
    assert REQUIRED_KEYS <= data.keys()
    assert not data.keys() - KEY_TYPES.keys(), f"keys the schema forbids: {data.keys() - KEY_TYPES.keys()}"
    for key, value in data.items():
        assert isinstance(value, KEY_TYPES[key]) and not (KEY_TYPES[key] is int and isinstance(value, bool)), key
    assert data["$schema"].split("#")[0] == SCHEMA_URL
    assert data.get("scm_type", "git") in ("git", "local")
    assert 1 <= data.get("tier", 1) <= 5
    assert all(isinstance(name, str) for name in data.get("build_dependencies", []))


def test_name_category_and_repository_follow_the_index_rules():
    data = entry()
    assert not NAME.lower().startswith("slicer"), "an extension name must not start with 'Slicer'"
    # One of the index's ACCEPTED_EXTENSION_CATEGORIES (check_description_files.py @07f1d1b).
    assert data["category"] == "Segmentation"
    url = urlsplit(data["scm_url"])
    assert url.scheme in ("git", "https") and url.netloc
    repository = url.path.strip("/").split("/")[-1].removesuffix(".git")
    assert repository.startswith("Slicer"), "the git repository name must start with 'Slicer'"


def test_cmakelists_names_the_project_and_points_at_images_the_repository_serves():
    text = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    projects = re.findall(r"project\s*\(\s*([^\s)]+)", text, re.IGNORECASE)
    assert projects and projects[0].strip("\"'") == NAME, "project() must match the catalog entry's file name"
    settings = cmake_settings()
    icon = served_file(settings["EXTENSION_ICONURL"])
    assert icon.is_file() and png_size(icon) == (128, 128)
    screenshots = settings["EXTENSION_SCREENSHOTURLS"].split()
    assert screenshots, "at least one screenshot"
    for url in screenshots:
        path = served_file(url)
        assert path.is_file() and min(png_size(path)) >= 256, url
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", str(icon), *map(str, map(served_file, screenshots))],
                             cwd=ROOT, capture_output=True, text=True)
    assert tracked.returncode == 0, f"the images must be committed to be served: {tracked.stderr}"


def test_cmake_the_legacy_s4ext_and_the_module_agree():
    settings, legacy = cmake_settings(), s4ext()
    assert settings["EXTENSION_CATEGORY"] == legacy["category"] == entry()["category"]
    assert settings["EXTENSION_ICONURL"] == legacy["iconurl"]
    assert settings["EXTENSION_SCREENSHOTURLS"].split() == legacy["screenshoturls"].split()
    assert settings["EXTENSION_HOMEPAGE"] == legacy["homepage"]
    assert legacy["scmurl"] == entry()["scm_url"] and legacy["scmrevision"] == entry()["scm_revision"]
    assert settings["EXTENSION_CONTRIBUTORS"] == legacy["contributors"] == CONTRIBUTORS
    module = (ROOT / "TwinTrack" / "TwinTrack.py").read_text(encoding="utf-8")
    assert f'self.parent.contributors = ["{CONTRIBUTORS}"]' in module
    homepage = urlsplit(settings["EXTENSION_HOMEPAGE"])
    assert homepage.path.startswith(urlsplit(entry()["scm_url"]).path.removesuffix(".git"))


def test_the_root_holds_the_apache_2_licence_that_pyproject_declares():
    names = ["LICENSE", "LICENCE", "License.txt", "license.txt", "LICENSE.txt", "COPYING", "COPYING.txt"]
    found = [name for name in names if (ROOT / name).is_file()]
    assert found == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License\n                           Version 2.0, January 2004" in text
    for section in ("1. Definitions.", "2. Grant of Copyright License.", "3. Grant of Patent License.",
                    "4. Redistribution.", "9. Accepting Warranty or Additional Liability.",
                    "END OF TERMS AND CONDITIONS"):
        assert section in text, f"the licence text is not complete: {section!r} is missing"
    assert "Copyright 2026 the TwinTrack contributors" in text
    assert re.search(r'^license = "Apache-2.0"$', (ROOT / "pyproject.toml").read_text(), re.MULTILINE)


def test_the_repository_is_under_the_index_size_limit():
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    total = sum((ROOT / name).stat().st_size for name in listed.decode().split("\0")
                if name and (ROOT / name).is_file())
    assert total < 100 * 1024 * 1024


@pytest.mark.parametrize("pattern, example", [
    ("TwinTrackLogic/*.py", "TwinTrackLogic/pipeline.py"),
    ("Resources/DemoBundle/*", "Resources/DemoBundle/manifest.json"),
    ("TwinTrackLogic/schemas/*.json", None),
])
def test_the_module_cmake_installs_the_core_the_demo_bundle_and_the_schemas(pattern, example):
    text = (ROOT / "TwinTrack" / "CMakeLists.txt").read_text(encoding="utf-8")
    assert "${TWINTRACK_ROOT}/" + pattern in text, f"{pattern} is no longer installed"
    matched = list(ROOT.glob(pattern.replace("*", "**/*", 1) if pattern.endswith("/*") else pattern))
    assert matched, f"{pattern} matches nothing: the extension would ship without it"
    if example:
        assert (ROOT / example) in matched
