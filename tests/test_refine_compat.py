"""A collection written before the rescoring codes existed (FP16 archive shards in Parquet, a
codec with no quantizer, a rescoring store of format 1) keeps serving and growing under today's
defaults."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vecpress.infra import storage
from vecpress.infra.settings import Settings
from vecpress.tasks.codec.refine import CODES_COLUMN, FP16_COLUMN, METADATA_KEY, read_archive
from vecpress.tasks.collection.catalog import Catalog


def _archives(root: Path, suffix: str) -> list[Path]:
    return sorted((root / "collections" / "old" / "shards").rglob(f"archive-*{suffix}"))


def _as_written_before(root: Path) -> None:
    """Strip what only today's code writes: the codec report's refine keys, the rescoring
    store's format, and the Arrow container of the archive shards (the old code wrote the same
    table as Parquet; the catalog then named those files)."""
    catalog = Catalog(str(root / "collections" / "old"))
    rows = catalog.read("shards").to_pylist()
    for row in rows:
        arrow = row["archive_url"]
        row["archive_url"] = arrow.removesuffix(".arrow") + ".parquet"
        storage.write_parquet(row["archive_url"], pa.ipc.open_file(arrow).read_all())
        Path(arrow.removeprefix("file://")).unlink()
    catalog.upsert("shards", rows)
    for report in (root / "collections" / "old" / "codecs").glob("*/report.json"):
        data = json.loads(report.read_text())
        report.write_text(json.dumps({k: v for k, v in data.items()
                                      if not k.startswith("refine")}))
    for manifest in (root / "collections" / "old" / "rescore").glob("*/current/manifest.json"):
        manifest.write_text(json.dumps({"format": 1,
                                        "archives": json.loads(manifest.read_text())["archives"]}))


@pytest.mark.slow
def test_an_fp16_collection_keeps_serving_and_growing_with_its_own_codes(
        tiny_model: str, tmp_path: Path, model_cache: Path, paragraphs: list[tuple[str, str]],
        dask_address: str, prefect_harness) -> None:
    import vecpress

    texts = list(dict.fromkeys(t for _, t in paragraphs if 40 < len(t) < 300))[:400]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"p{i}", "text": t}) + "\n"
                              for i, t in enumerate(texts[:320])))
    root = tmp_path / "root"

    def settings(**codec: object) -> Settings:
        return Settings(collection="old", storage_root=str(root),
                        milvus={"uri": str(root / "old.db")},
                        model={"path": tiny_model, "cache_dir": str(model_cache)},
                        codec={"pca_dim": 64, "pq_m": 8, "min_fit_vectors": 200, **codec},
                        chunk={"max_tokens": 250}, dask={"address": dask_address})

    first = vecpress.ingest(str(corpus), settings(refine="fp16"))
    assert first.rows_in_milvus == 320 and not first.errors
    with vecpress.open_collection("old", storage_root=str(root)) as kb:
        before = kb.search(texts[:5], k=3)
    _as_written_before(root)
    (old,) = _archives(root, ".parquet")
    assert pq.read_schema(old).names == ["pk", FP16_COLUMN]
    assert METADATA_KEY not in (pq.read_schema(old).metadata or {})  # the old format

    # Today's defaults (sq8): the collection keeps its codec, so its new shards are FP16 too, and
    # the unchanged passages of the changed file keep their archived vectors bit for bit.
    corpus.write_text("".join(json.dumps({"id": f"p{i}", "text": t}) + "\n"
                              for i, t in enumerate(texts)))
    second = vecpress.ingest(str(corpus), settings())
    assert second.rows_in_milvus == 400 and second.passages_reused == 320 and not second.errors
    new = _archives(root, ".arrow")
    assert new and all(pa.ipc.open_file(a).schema.names == ["pk", FP16_COLUMN] for a in new)
    old_pks, old_vectors, _ = read_archive(str(old))
    new_pks, new_vectors, refiner = read_archive(str(new[-1]))
    assert refiner.kind == "fp16" and CODES_COLUMN not in pa.ipc.open_file(new[-1]).schema.names
    kept = np.isin(new_pks, old_pks)
    assert kept.sum() == 320
    order = np.argsort(old_pks)
    same = order[np.searchsorted(old_pks, new_pks[kept], sorter=order)]
    np.testing.assert_array_equal(new_vectors[kept], old_vectors[same])

    with vecpress.open_collection("old", storage_root=str(root)) as kb:
        after = kb.search(texts[:5], k=3)
        assert kb.info().codec.get("refine", "fp16") == "fp16"
    for was, now, text in zip(before, after, texts[:5], strict=True):
        assert was[0].text == now[0].text == text  # each text still finds itself first ...
        assert now[0].score == pytest.approx(was[0].score, abs=1e-5)  # ... from the same vector
