"""Filters given as data by application frameworks become one vecpress expression, with values
as literals (never code). The retrievers themselves run against a real collection in
test_pipeline_e2e.py."""

from __future__ import annotations

import pytest

from vecpress.integrations.common import both, expression, literal
from vecpress.tasks.search.filters import FilterError, translate


def test_values_are_literals_and_a_quote_cannot_end_the_string() -> None:
    sneaky = 't3" or team == "t4'
    text = expression({"team": sneaky, "year": [2020, 2021], "half": True, "w": 0.5})
    assert text == ('team == "t3\\" or team == \\"t4" and year in [2020, 2021] and half == true '
                    'and w == 0.5')
    found = translate(text, True, 4096)  # the vecpress tokenizer sees one string, not an "or"
    assert found is not None and found.metadata_keys == ("team", "year", "half", "w")
    assert both("a == 1", None, "b == 2") == "(a == 1) and (b == 2)"
    assert both(None, "b == 2") == "b == 2" and both() is None


@pytest.mark.parametrize("bad", [{"team name": 1}, {"x": None}, {"x": float("nan")}, {"x": {}}])
def test_what_cannot_be_a_filter_says_so(bad: dict) -> None:
    with pytest.raises(FilterError, match=r"plain name|a filter value must be"):
        expression(bad)
    with pytest.raises(FilterError):
        literal(object())


def test_llamaindex_metadata_filters_nest_with_and_or_not() -> None:
    from llama_index.core.vector_stores.types import MetadataFilter, MetadataFilters

    from vecpress.integrations.llamaindex import metadata_filters

    filters = MetadataFilters(condition="or", filters=[
        MetadataFilter(key="team", value="t1"),
        MetadataFilters(condition="not", filters=[
            MetadataFilter(key="year", value=2020, operator="<"),
            MetadataFilter(key="lang", value=["de", "fr"], operator="nin")]),
        MetadataFilter(key="tags", value=["a", "b"], operator="any")])
    text = metadata_filters(filters)
    assert text == ('(team == "t1") or (not ((year < 2020) and (lang not in ["de", "fr"]))) or '
                    '(json_contains_any(tags, ["a", "b"]))')
    found = translate(text, True, 4096)
    assert found is not None and found.metadata_keys == ("team", "year", "lang", "tags")
    with pytest.raises(FilterError, match="'text_match' filter operator is not supported"):
        metadata_filters(MetadataFilters(filters=[
            MetadataFilter(key="t", value="x", operator="text_match")]))
