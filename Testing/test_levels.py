"""Agreement levels: percent where people type them, fractions inside, and no silent guess between the two."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from TwinTrackLogic.errors import InputError
from TwinTrackLogic.review.levels import DEFAULT_CONTOUR_LEVELS, check_level, parse_percent, parse_percents, percent_text


def test_a_percentage_becomes_the_fraction_the_mask_compares_with():
    assert parse_percent("60") == pytest.approx(0.6)
    assert parse_percent("100") == 1.0
    assert parse_percent(" 35 %") == pytest.approx(0.35)


@pytest.mark.parametrize("text", ["0.5", "1", "0.05"])
def test_a_fraction_where_a_percentage_belongs_is_refused_with_the_value_to_write(text):
    with pytest.raises(InputError, match=rf"looks like a fraction: write {float(text) * 100:g}"):
        parse_percent(text, "--level")


@pytest.mark.parametrize("text", ["0", "-5", "150", "nan", "inf", "half", ""])
def test_values_that_are_no_agreement_level_are_refused_naming_the_option(text):
    with pytest.raises(InputError, match="--contour"):
        parse_percent(text, "--contour")


def test_a_level_list_is_sorted_and_each_level_kept_once():
    assert parse_percents("80, 20;50,20") == (0.2, 0.5, 0.8)
    with pytest.raises(InputError, match="at least one"):
        parse_percents(" , ")


@given(st.lists(st.integers(min_value=2, max_value=100), min_size=1, max_size=6))
def test_showing_levels_and_reading_them_back_is_the_identity(percents):
    levels = parse_percents(",".join(map(str, percents)))
    assert parse_percents(percent_text(levels)) == levels
    assert levels == tuple(sorted({p / 100 for p in percents}))


def test_the_default_contours_read_back_as_the_panel_shows_them():
    assert percent_text(DEFAULT_CONTOUR_LEVELS, ", ") == "20, 50, 80"


@pytest.mark.parametrize("level", [0.0, 1.01, math.nan])
def test_a_fraction_outside_zero_to_one_is_refused_inside_the_core(level):
    with pytest.raises(InputError):
        check_level(level)
