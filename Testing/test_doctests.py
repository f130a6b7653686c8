"""The examples in the public functions' docstrings (numpydoc "Examples" sections, shown on the
documentation site's API page) run and give what they show."""

import doctest
import importlib

import pytest

MODULES_WITH_EXAMPLES = [
    "TwinTrackLogic.raters",
    "TwinTrackLogic.review.agreement",
    "TwinTrackLogic.review.readout",
    "TwinTrackLogic.review.levels",
    "TwinTrackLogic.involvement",
]


@pytest.mark.parametrize("name", MODULES_WITH_EXAMPLES)
def test_the_docstring_examples_run_as_shown(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} lists no example any more: take it off the list or add one"
    assert result.failed == 0
