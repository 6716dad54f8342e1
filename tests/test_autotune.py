"""Auto-tune on real embeddings: IVF-PQ + rescoring simulated with FAISS, cheapest code that qualifies."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vecpress.infra.index_plan import plan_index
from vecpress.infra.settings import CodecSettings, MilvusSettings
from vecpress.tasks.codec.autotune import autotune
from vecpress.tasks.codec.codec import fit_codec

GRID = {"autotune_pca_dims": [32, 64], "autotune_pq_m": [4, 8, 16], "autotune_queries": 100,
        "autotune_rotation": [False, True], "autotune_probe_shares": [0.25, 1.0],
        "autotune_rescore_factors": [2, 8], "autotune_refine": ["sq4", "sq8", "fp16"]}


@pytest.fixture(scope="module")
def sample(docstring_embeddings) -> np.ndarray:
    return docstring_embeddings


@pytest.fixture(scope="module")
def table(sample):
    return autotune(sample, CodecSettings(recall_target=0.6, **GRID), MilvusSettings(nprobe=8))


def test_grid_rows_and_rescoring_gain(table) -> None:
    shapes = {(r.pca_dim, r.rotation, r.pq_m) for r in table.rows}
    assert shapes == {(d, rot, m) for d in (32, 64) for rot in (False, True) for m in (4, 8, 16)}
    assert table.queries == 100 and table.base_vectors == 1400
    # per shape: the plan's nprobe and 2 shares of the lists, each with the plan's factor and 2,
    # each rescored with 3 tiers
    assert {len([r for r in table.rows if (r.pca_dim, r.rotation, r.pq_m) == s]) for s in shapes} \
        == {len({table.nprobe, math.ceil(0.25 * table.nlist), table.nlist}) * 3 * 3}
    for row in table.rows:
        assert 0.0 < row.recall_ann <= 1.0 and 0.0 < row.recall_rescored <= 1.0
        assert row.ms_per_query > 0 and row.nlist == table.nlist
    by = {(r.pca_dim, r.rotation, r.pq_m, r.nprobe, r.rescore_factor, r.refine): r
          for r in table.rows}
    full = table.nlist
    for rot in (False, True):
        assert by[(64, rot, 16, full, 8, "sq8")].recall_ann > \
            by[(64, rot, 4, full, 8, "sq8")].recall_ann
        # rescoring 8 candidates per result finds more than the ANN order alone
        assert by[(64, rot, 8, full, 8, "sq8")].recall_rescored > \
            by[(64, rot, 8, full, 8, "sq8")].recall_ann
        # the tiers: 1 B per dimension for sq8 loses little against FP16's 2; sq4 costs half
        sq4, sq8, fp16 = (by[(64, rot, 8, full, 8, kind)] for kind in ("sq4", "sq8", "fp16"))
        assert (sq4.refine_bytes, sq8.refine_bytes, fp16.refine_bytes) == (32, 64, 128)
        assert sq8.recall_rescored >= fp16.recall_rescored - 0.03
        assert sq4.recall_ann == sq8.recall_ann == fp16.recall_ann  # one ANN search, rescored 3 ways


def test_choice_is_the_cheapest_code_meeting_the_target(table, sample) -> None:
    assert table.met
    meeting = [r for r in table.rows if r.recall_rescored >= 0.6]
    # bytes: the index code plus the rescoring tier's codes, the two a vector costs
    assert table.chosen.bytes == min(r.code_bytes + r.refine_bytes for r in meeting)
    assert table.chosen.ms_per_query == min(r.ms_per_query for r in meeting
                                            if r.bytes == table.chosen.bytes)
    assert table.chosen in table.pareto
    for row in table.pareto:  # nothing on the front is beaten on all three counts
        assert not any(o.bytes < row.bytes and o.recall_rescored > row.recall_rescored
                       and o.ms_per_query < row.ms_per_query for o in table.rows)
    tuned = table.settings(CodecSettings(recall_target=0.6, **GRID))
    assert (tuned.pca_dim, tuned.pq_m, tuned.random_rotation, tuned.refine) == (
        table.chosen.pca_dim, table.chosen.pq_m, table.chosen.rotation, table.chosen.refine)
    codec = fit_codec(sample, tuned, autotune=table.to_dict())
    assert codec.report["autotune"]["chosen"]["pq_m"] == tuned.pq_m
    assert codec.refiner.kind == codec.report["refine"] == table.chosen.refine
    assert any("<- chosen" in line for line in table.lines())
    # a real auto-tune keeps its wording; only the report-only curve says it chose nothing
    assert table.lines()[0].startswith("auto-tune: recall@10 target 0.6")
    assert not any("report only" in line or "<- configured" in line for line in table.lines())
    # the index plan serves with the chosen point's rescoring factor and at least its probes
    chosen = codec.report["autotune"]["chosen"] | {"base_vectors": table.base_vectors}
    plan = plan_index(MilvusSettings(uri="http://m:19530"), 1400, tuned.pq_m, 8, tuned=chosen)
    assert plan.rescore_factor == table.chosen.rescore_factor
    assert plan.nprobe >= table.chosen.probe_share * plan.nlist
    # at a million rows the tuned point's scan (its share of the sample) is a floor, not a share
    big = plan_index(MilvusSettings(uri="http://m:19530"), 1_000_000, tuned.pq_m, 8,
                     tuned=chosen | {"probe_share": 1.0})
    assert big.nprobe == 400  # the plan's own rule: 1,400 tuned vectors scan less than 50,000


def test_a_latency_budget_limits_the_choice(table, sample) -> None:
    budget = sorted(r.ms_per_query for r in table.rows)[len(table.rows) // 4]
    tight = autotune(sample, CodecSettings(recall_target=0.6, autotune_latency_ms=budget, **GRID),
                     MilvusSettings(nprobe=8))  # the grid of ``table``, now with a budget
    assert tight.chosen.ms_per_query <= budget * 1.5  # re-measured: timing varies a little
    assert f"≤ {budget} ms/query" in tight.lines()[0]


def test_unreachable_target_picks_best_recall_and_says_so(sample) -> None:
    result = autotune(sample, CodecSettings(recall_target=1.0, autotune_pca_dims=[16],
                                            autotune_pq_m=[4], autotune_queries=100,
                                            autotune_rotation=[False], autotune_probe_shares=[],
                                            autotune_rescore_factors=[],
                                            autotune_refine=["sq8"]),
                      MilvusSettings(nprobe=4, rescore_factor=1))
    assert not result.met and result.chosen == result.rows[0] and len(result.rows) == 1
    assert "no candidate met 1.0" in result.lines()[-1]
    with pytest.raises(ValueError, match="at least 400 sample vectors"):
        autotune(sample[:300], CodecSettings(recall_target=0.9, autotune_queries=100),
                 MilvusSettings())
