"""The filter hint's value-kind check on a metadata sample: which comparisons it reads."""

from __future__ import annotations

import pytest

from vecpress.tasks.search.filter_hints import other_kind

NUMBERS = [{"year": 2019}, {"year": 2021}, {"other": "x"}]
TEXT = [{"code": "a7"}, {"code": "b9"}]


@pytest.mark.parametrize("written", [
    'year >= "2020"', 'year=="2020"', '"2020" <= year', "'2020' == year",
    'metadata["year"] >= "2020"', "team == 1 and ('2020' < metadata['year'])"])
def test_a_number_key_compared_with_text_gets_the_hint(written: str) -> None:
    assert "metadata 'year' holds numbers (e.g. 2019)" in (other_kind("year", written, NUMBERS) or "")


@pytest.mark.parametrize("written", ["code == 7", "7 == code", 'metadata["code"] != -1',
                                     "(-1.5 < code)"])
def test_a_text_key_compared_with_a_number_gets_the_hint(written: str) -> None:
    assert "metadata 'code' holds text" in (other_kind("code", written, TEXT) or "")


@pytest.mark.parametrize(("key", "written", "sample"), [
    ("year", "year >= 2020", NUMBERS), ("year", "2020 <= year", NUMBERS),
    ("code", 'code == "a7"', TEXT), ("code", '"a7" == code', TEXT),
    ("year", 'label == "year 2020" and x == 1', NUMBERS),  # the key's name inside a string
    ("year", "years >= \"2020\"", NUMBERS),  # another key that starts alike
    ("missing", 'missing == "x"', NUMBERS)])  # no value in the sample: nothing to say
def test_comparisons_of_the_right_kind_get_none(key: str, written: str, sample: list) -> None:
    assert other_kind(key, written, sample) is None
