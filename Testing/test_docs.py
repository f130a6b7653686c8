"""The documentation: every figure it shows is made by a script in the repository, and the
README stays one screen that points into the site."""

import importlib.util
import re
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent
PAGES = [REPOSITORY / "README.md", *sorted((REPOSITORY / "docs").glob("*.md"))]
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+\.(?:png|jpg|jpeg|svg|gif))\)")


def _figures():
    spec = importlib.util.spec_from_file_location("make_figures", REPOSITORY / "docs" / "make_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _images_used():
    used = {}
    for page in PAGES:
        for target in IMAGE.findall(page.read_text(encoding="utf-8")):
            path = (page.parent / target).resolve()
            used.setdefault(path, []).append(page.name)
    return used


def test_every_image_the_pages_show_exists_and_has_a_recipe():
    recipes = _figures().FIGURES
    used = _images_used()
    assert used, "no image found: the pattern or the pages changed"
    for path, pages in used.items():
        assert path.is_file(), f"{pages} show {path.name}, which is not in the repository"
        assert path.parent == REPOSITORY / "docs" / "images", f"{pages}: figures live in docs/images, not {path}"
        assert path.name in recipes, f"{path.name} (shown by {pages}) has no recipe in docs/make_figures.py"


def test_no_figure_is_kept_that_no_page_shows():
    shown = {path.name for path in _images_used()}
    kept = {path.name for path in (REPOSITORY / "docs" / "images").iterdir()}
    assert kept <= shown, f"unused figures: {sorted(kept - shown)}"


@pytest.mark.parametrize("image", sorted(_figures().FIGURES))
def test_each_recipe_names_a_script_that_writes_its_figure(image):
    module = _figures()
    recipe, writer = module.FIGURES[image]
    assert recipe in module.RECIPES
    source = (REPOSITORY / writer).read_text(encoding="utf-8")
    # The writer names the file, or (for per-case previews) the suffix it writes it under.
    suffix = image.split("_", 1)[1] if image.startswith("demo_") else image
    assert image in source or suffix in source or image.removesuffix(".png") in source, (
        f"{writer} does not write {image}")


def test_the_readme_is_one_screen_and_names_no_folder_of_a_machine():
    text = (REPOSITORY / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    assert not re.search(r"/(work|tmp|root|home)/", text)
    for target in re.findall(r"\]\((docs/[^)#\s]+)", text):
        assert (REPOSITORY / target).is_file(), f"the README links to {target}, which does not exist"
