"""The filter hint on a metadata sample: which comparisons it reads, and what it says."""

from __future__ import annotations

import pytest

from vecpress.tasks.search.filter_hints import hint
from vecpress.tasks.search.filters import translate

NUMBERS = [{"year": 2019, "code": "a7"}, {"year": 2021, "code": "b9"}, {"other": "x"}]


def _hint(written: str) -> str:
    return hint(NUMBERS, translate(written, True, 4096)) or ""


@pytest.mark.parametrize("written", [
    'year >= "2020"', 'year=="2020"', '"2020" <= year', "'2020' == year",
    'metadata["year"] >= "2020"', "other == 1 and ('2020' < metadata['year'])",
    'year == 2020 or "2021" == year', 'year < 2030 and year >= "2020"'])
def test_a_number_key_compared_with_text_gets_the_hint(written: str) -> None:
    assert "metadata 'year' holds numbers (e.g. 2019)" in _hint(written)


@pytest.mark.parametrize("written", ["code == 7", "7 == code", 'metadata["code"] != -1',
                                     "(-1.5 < code)", 'code == "x" or code == 3'])
def test_a_text_key_compared_with_a_number_gets_the_hint(written: str) -> None:
    assert "metadata 'code' holds text" in _hint(written)


@pytest.mark.parametrize("written", [
    "year >= 2020", "2020 <= year", 'code == "a7"', '"a7" == code',
    '"O\'Brien 3" == code', '"it\'s 5" == code', r'"a\"5" == code',
    'code == "year == \\"2020\\""',  # a comparison inside a string is text, not a comparison
    'years >= "2020"',  # another key that starts alike: not in the sample
    'missing == "x"'])  # no value in the sample: nothing to say
def test_comparisons_of_the_right_kind_get_none(written: str) -> None:
    assert _hint(written) == ""


def test_a_passage_field_named_like_a_key_and_a_kind_slip_are_both_said() -> None:
    said = hint([{"source": "handbook", "year": 2020}],
                translate('source == "handbook" and year == "2020"', True, 4096))
    assert said is not None and 'metadata["source"]' in said and "'year' holds numbers" in said
