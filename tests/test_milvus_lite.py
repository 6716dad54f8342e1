"""Milvus Lite through the store: idempotent upserts, index, search, schema checks."""

from __future__ import annotations

import numpy as np
import pytest

from vecpress.infra.milvus import MilvusSchemaError, MilvusStore, choose_index
from vecpress.infra.settings import MilvusSettings


@pytest.fixture()
def store(tmp_path):
    s = MilvusStore(MilvusSettings(uri=str(tmp_path / "m.db"), insert_batch_bytes=1 << 16))
    yield s
    s.close()


def _rows(vectors: np.ndarray, offset: int = 0) -> list[dict]:
    return [{"pk": offset + i, "doc_id": f"d{offset + i}", "chunk": 0, "text": f"t{i}",
             "source": "s", "codec_id": "c", "vector": v} for i, v in enumerate(vectors)]


def test_upsert_is_idempotent_and_search_finds_nearest(store: MilvusStore) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((600, 32)).astype(np.float32)
    store.ensure_collection("c1", 32, "c")
    assert store.upsert("c1", _rows(vectors)) == 600
    store.upsert("c1", _rows(vectors[:100]))  # the same primary keys again
    assert store.count("c1") == 600
    index = store.ensure_index("c1", 600, 8, 8)
    assert index["index_type"] == "IVF_SQ8"  # Lite has no IVF_PQ; auto picks SQ8
    hits = store.search("c1", vectors[[5, 77]], 3)
    best = [h[0][0] for h in hits]
    assert [store.rows("c1", best)[pk]["doc_id"] for pk in best] == ["d5", "d77"]


def test_dimension_mismatch_is_refused(store: MilvusStore) -> None:
    store.ensure_collection("c2", 32, "c")
    with pytest.raises(MilvusSchemaError, match="32-d vectors but the codec produces 64-d"):
        store.ensure_collection("c2", 64, "c")


def test_server_uri_picks_ivf_pq() -> None:
    settings = MilvusSettings(uri="http://localhost:19530")
    assert not settings.is_lite
    assert choose_index(MilvusSettings(), 10_000, 16, 8)["index_type"] == "IVF_SQ8"
    params = choose_index(settings, 10_000, 16, 8)
    # 4·√10,000 = 400 lists would train on 25 points each: capped at 10,000 / 39 = 256.
    assert params == {"index_type": "IVF_PQ", "params": {"nlist": 256, "m": 16, "nbits": 8}}
    assert choose_index(settings, 1_000_000, 16, 8)["params"]["nlist"] == 4000
    assert choose_index(settings, 100, 16, 8)["params"]["nlist"] == 2
