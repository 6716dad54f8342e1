"""The ingest's sanity check (each probe passage searched by its own text, found in the top 3)
and how a run summary prints it: copies of one text are found by their text, whichever key
ranks first, and a run with no probes or no items prints a dash, never "nan"."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from helpers import write_jsonl_texts
from rich.console import Console

from vecpress.infra import storage
from vecpress.infra.settings import Settings
from vecpress.infra.storage import CollectionPaths
from vecpress.tasks.collection.builds import live_shards
from vecpress.tasks.collection.catalog import Catalog
from vecpress.tasks.ingest.headlines import check_line
from vecpress.tasks.report.results import CheckResult
from vecpress.tasks.report.summary import IngestSummary, StageStat, render
from vecpress.tasks.search.evaluation import own_text_hit_rate
from vecpress.tasks.search.opening import open_searcher

COPIES = 20  # as many copies of a text as the check has probes: a copied README, say


@pytest.mark.slow
def test_copies_of_one_text_are_found_by_their_text(
        tiny_model: str, tmp_path: Path, model_cache: Path, paragraphs: list[tuple[str, str]],
        dask_address: str, prefect_harness) -> None:
    """Three texts in 20 records each, then 40 unique ones: the copies of a text tie in every
    search, so the top 3 holds 3 of its 20 keys, and by key alone most of them read as misses
    although every one of them is found by its text."""
    import vecpress

    texts = list(dict.fromkeys(t for _, t in paragraphs if 80 < len(t) < 300))[:43]
    copied, unique = texts[:3], texts[3:]
    records = [t for t in copied for _ in range(COPIES)] + unique
    corpus = write_jsonl_texts(tmp_path / "corpus.jsonl", records, "r")
    root = tmp_path / "root"
    settings = Settings(collection="dups", storage_root=str(root),
                        milvus={"uri": str(root / "dups.db")},
                        model={"path": tiny_model, "cache_dir": str(model_cache)},
                        chunk={"max_tokens": 250}, dask={"address": dask_address})
    summary = vecpress.ingest(str(corpus), settings)
    assert summary.rows_in_milvus == len(records) and not summary.errors
    assert summary.sanity_self_top3 == 1.0  # the run's own check, on its first shard

    catalog = Catalog(CollectionPaths(str(root), "dups").root)
    shards = [passages for passages, _, _ in live_shards(catalog, catalog.active().build)]
    searcher = open_searcher(settings)
    try:
        by_key = probes = 0
        for url in shards:  # every passage a probe: the copies among them for certain
            table = storage.read_parquet(url, columns=["pk", "text"])
            hits = searcher.search(table.column("text").to_pylist(), 3)
            by_key += sum(pk in {h.pk for h in row}
                          for pk, row in zip(table.column("pk").to_pylist(), hits, strict=True))
            probes += table.num_rows
            assert own_text_hit_rate(searcher, url, probes=table.num_rows) == 1.0
    finally:
        searcher.store.close()
        searcher.embedder.close()
    assert probes == len(records)
    # What the check counted before, by key alone: the copies' keys mostly miss (their top 3
    # has room for 3 of 20), so the same collection read as far below 100%.
    assert by_key < len(records)


def test_a_run_without_probes_or_items_prints_no_nan() -> None:
    """A run that changed nothing (``--full`` over unchanged files) ran no check and streamed
    no items: the summary shows a dash for the sanity share and for every rate it has none of."""
    summary = IngestSummary(run_id="r1", collection="kb", milvus_uri="kb.db",
                            index={"index_type": "IVF_SQ8", "params": {"nlist": 16}},
                            codec={"codec_id": "c1", "pca_dim": 32, "explained_variance": 0.9},
                            codec_reused=True)
    summary.stages += [StageStat("read + chunk (busy, all workers)", 0.0, 0),
                       StageStat("embed (busy, all workers)", 0.4, 0),
                       StageStat("Milvus flush + index + count", 0.0, 5, "rows"),
                       StageStat("Milvus upsert (busy)", 2.0, 50, "rows")]
    out = io.StringIO()
    render(summary, Console(file=out, width=200, color_system=None))
    printed = out.getvalue()
    assert "nan" not in printed.lower()
    sanity = next(line for line in printed.splitlines() if "own text found in top 3" in line)
    assert "—" in sanity and "%" not in sanity
    rates = [line for line in printed.splitlines() if "busy" in line or "flush" in line]
    assert [line.rstrip(" │").split()[-1] for line in rates] == ["—", "—", "—", "25.0"]
    # the check's headline, for a shard with no passages: nothing measured, not 0% nor nan%
    line = check_line(CheckResult(float("nan"), {}, 0, 0.1))
    assert "nan" not in line and "for — of probes" in line
    assert "100%" in check_line(CheckResult(1.0, {}, 20, 0.1))
    # and the --json / summary.json form: null where nothing was measured, never NaN (not JSON)
    data = json.loads(json.dumps(summary.to_dict(), allow_nan=False))
    assert data["sanity_self_top3"] is None and data["stages"][0]["per_second"] is None
    assert data["stages"][3]["per_second"] == 25.0
