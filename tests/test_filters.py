"""Filter expressions: metadata keys named plainly become Milvus JSON-field paths; what is wrong
with a filter is said with its position before any search."""

from __future__ import annotations

import numpy as np
import pytest

from vecpress.tasks.search.filters import (
    FilterError,
    exact_rank,
    post_filter_limit,
    translate,
    widened_nprobe,
)


def test_metadata_keys_become_json_paths_and_the_rest_stays() -> None:
    found = translate('team == "t7" and year >= 2020 or doc_id like "a%" and not (chunk > 1)',
                      True, 4096)
    assert found is not None
    assert found.expression == ('metadata["team"] == "t7" and metadata["year"] >= 2020 or '
                                'doc_id like "a%" and not (chunk > 1)')
    assert found.metadata_keys == ("team", "year")
    # Strings, numbers, functions, keywords in any case and explicit paths are left alone.
    found = translate("json_contains(tags, 'year') AND metadata[\"x\"] in [1e5, 2] OR flag == TRUE",
                      True, 4096)
    assert found is not None and found.expression == (
        "json_contains(metadata[\"tags\"], 'year') AND metadata[\"x\"] in [1e5, 2] OR "
        "metadata[\"flag\"] == TRUE")
    assert translate("   ", True, 4096) is None


def test_a_keys_membership_becomes_equalities_which_milvus_lite_takes() -> None:
    """Milvus Lite refuses ``metadata["team"] in [...]`` ("left side of 'in' must be a field
    reference"); equalities joined by ``or`` mean the same on both backends."""
    found = translate('team in ["a", "]"] and year NOT IN [2020, -1.5] or pk in [1, 2]', True, 4096)
    assert found is not None and found.expression == (
        '(metadata["team"] == "a" or metadata["team"] == "]") and '
        'not (metadata["year"] == 2020 or metadata["year"] == -1.5) or pk in [1, 2]')
    # Not a list of literals: left to Milvus as written (which says what is wrong).
    for text in ("team in []", "team in [other, 1]", 'team in [-"a"]'):
        found = translate(text, True, 4096)
        assert found is not None and " or " not in found.expression and "in [" in found.expression


@pytest.mark.parametrize(("text", "says"), [
    ('team == "t7', "unclosed string at position 9"),
    ("(year > 1", "'(' at position 1"),
    ("year > 1)", "')' at position 9 of the filter"),
    ("x" * 5000, "over the 4,096 of search.max_filter_bytes"),
])
def test_a_broken_filter_is_said_with_its_position(text: str, says: str) -> None:
    with pytest.raises(FilterError, match=says.replace("(", r"\(").replace(")", r"\)")):
        translate(text, True, 4096)


def test_a_collection_without_metadata_names_the_fields_it_can_filter() -> None:
    assert translate("chunk == 0", False, 4096) is not None
    with pytest.raises(FilterError, match=r"names team.*can filter on chunk, codec_id, doc_id.*"
                                          r"--recreate"):
        translate('team == "t7"', False, 4096)


def test_probes_widen_by_one_over_the_filters_selectivity() -> None:
    assert widened_nprobe(16, 500, 1000) == 32
    assert widened_nprobe(16, 10, 1000) == 1600
    assert widened_nprobe(64, 1, 10_000) == 65_536  # Milvus's most
    assert widened_nprobe(16, 1000, 1000) == 16


def test_exact_rank_orders_by_distance_then_pk() -> None:
    vectors = np.array([[1, 0], [0, 1], [1, 0], [0.6, 0.8]], dtype=np.float32)
    ranked = exact_rank(np.array([1, 0], np.float32), np.array([9, 4, 3, 7]), vectors, 3)
    assert [pk for pk, _ in ranked] == [3, 9, 7]
    assert ranked[0][1] == pytest.approx(1.0)


def test_a_broad_filter_is_applied_after_a_search_of_enough_candidates() -> None:
    # 160 candidates of a filter keeping half the rows: 480 unfiltered ones hold ~240 matches.
    assert post_filter_limit(160, 0.5, 0.1, 65_536) == 480
    assert post_filter_limit(160, 0.1, 0.1, 65_536) == 2400
    assert post_filter_limit(160, 0.05, 0.1, 65_536) is None  # narrower than the setting
    assert post_filter_limit(160, 0.1, 0.1, 2000) is None  # more than a search may return
    assert post_filter_limit(160, 0.0, 0.0, 65_536) is None  # not counted
