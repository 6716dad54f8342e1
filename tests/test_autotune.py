"""Auto-tune on real embeddings: IVF-PQ + rescoring simulated with FAISS, cheapest code that qualifies."""

from __future__ import annotations

import numpy as np
import pytest

from vecpress.infra.settings import CodecSettings, MilvusSettings
from vecpress.tasks.codec.autotune import autotune
from vecpress.tasks.codec.codec import fit_codec
from vecpress.tasks.embed.embedder import OnnxEmbedder

GRID = {"autotune_pca_dims": [32, 64], "autotune_pq_m": [4, 8, 16], "autotune_queries": 100}


@pytest.fixture(scope="module")
def sample(fp32_artifact, paragraphs) -> np.ndarray:
    return OnnxEmbedder(fp32_artifact).encode([t for _, t in paragraphs[:1500]])


@pytest.fixture(scope="module")
def table(sample):
    return autotune(sample, CodecSettings(recall_target=0.6, **GRID), MilvusSettings(nprobe=8))


def test_grid_rows_and_rescoring_gain(table) -> None:
    assert [(r.pca_dim, r.pq_m) for r in table.rows] == [(32, 4), (32, 8), (32, 16), (64, 4),
                                                         (64, 8), (64, 16)]
    assert table.queries == 100 and table.base_vectors == 1400
    for row in table.rows:
        assert 0.0 < row.recall_ann <= row.recall_rescored <= 1.0  # rescoring never loses here
    by = {(r.pca_dim, r.pq_m): r for r in table.rows}
    assert by[(64, 16)].recall_ann > by[(64, 4)].recall_ann  # more sub-quantizers, better ADC


def test_choice_is_the_cheapest_code_meeting_the_target(table, sample) -> None:
    assert table.met
    meeting = [r for r in table.rows if r.recall_rescored >= 0.6]
    assert table.chosen.code_bytes == min(r.code_bytes for r in meeting)
    assert table.chosen.recall_rescored >= 0.6
    tuned = table.settings(CodecSettings(recall_target=0.6, **GRID))
    assert (tuned.pca_dim, tuned.pq_m) == (table.chosen.pca_dim, table.chosen.pq_m)
    codec = fit_codec(sample, tuned, autotune=table.to_dict())
    assert codec.report["autotune"]["chosen"]["pq_m"] == tuned.pq_m
    assert any("<- chosen" in line for line in table.lines())


def test_unreachable_target_picks_best_recall_and_says_so(sample) -> None:
    result = autotune(sample, CodecSettings(recall_target=1.0, autotune_pca_dims=[16],
                                            autotune_pq_m=[4], autotune_queries=100),
                      MilvusSettings(nprobe=4, rescore_factor=1))
    assert not result.met and result.chosen == result.rows[0]
    assert "no candidate met 1.0" in result.lines()[-1]
    with pytest.raises(ValueError, match="at least 400 sample vectors"):
        autotune(sample[:300], CodecSettings(recall_target=0.9, autotune_queries=100),
                 MilvusSettings())
