"""Disk-backed rescoring store: memory-mapped files, incremental merges, latest shard wins, and
versions published atomically for readers beside a writer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vecpress.infra import storage
from vecpress.tasks.codec.refine import (
    FP16,
    ArchiveFormatError,
    Refiner,
    archive_table,
    train_refiner,
    write_archive,
)
from vecpress.tasks.search import rescore_store
from vecpress.tasks.search.rescore_sources import StaleStoreError
from vecpress.tasks.search.rescore_store import RescoreStore


def _shard(root, run: str, pks: np.ndarray, vectors: np.ndarray, refiner: Refiner = FP16,
           suffix: str = ".arrow") -> str:
    """An archive shard: Arrow IPC as ingests write it, or Parquet as earlier versions did."""
    url = str(root / "collections" / "c" / "shards" / run / f"archive-x-0000{suffix}")
    if suffix == ".arrow":
        write_archive(url, pks, vectors, refiner)
    else:
        storage.write_parquet(url, archive_table(pks, vectors, refiner))
    return url


@pytest.mark.parametrize(("kind", "suffix"), [("sq8", ".arrow"), ("fp16", ".arrow"),
                                              ("sq8", ".parquet")])
def test_lookup_merge_and_latest_wins(tmp_path, monkeypatch, kind: str, suffix: str) -> None:
    rng = np.random.default_rng(0)
    a_pks = rng.choice(10**12, size=3000, replace=False).astype(np.int64)
    a_vecs = rng.standard_normal((3000, 16)).astype(np.float32)
    b_vecs = rng.standard_normal((1500, 16)).astype(np.float32)
    refiner = train_refiner(kind, np.vstack([a_vecs, b_vecs]))
    first = _shard(tmp_path, "r1", a_pks, a_vecs, refiner, suffix)
    store = RescoreStore([first], directory=tmp_path / "rescore")
    assert isinstance(store._locs, np.memmap) and len(store) == 3000 and store.merged == 1
    # The codes are the archive's as they are: 1 B per dimension for sq8, 2 for FP16. A local
    # Arrow archive is read in place: the store keeps 12 B per passage (pk, location); a Parquet
    # one (an earlier version's) is copied into the store once.
    code_bytes = 3000 * 16 * (1 if kind == "sq8" else 2)
    assert store.nbytes == 3000 * (8 + 4) + code_bytes and store.dim == 16
    kept, mapped = rescore_store.version_bytes(*rescore_store.current_version(store.directory))
    headers = 2 * 128
    assert mapped == store.nbytes + headers
    assert kept == mapped - (code_bytes if suffix == ".arrow" else 0)
    probe = np.concatenate([a_pks[[5, 17, 2999]], [-1]])
    found, vectors = store.lookup(probe)
    assert found.tolist() == [True, True, True, False]
    np.testing.assert_allclose(vectors, a_vecs[[5, 17, 2999]], atol=3e-2)
    np.testing.assert_array_equal(vectors, refiner.decode(refiner.encode(a_vecs[[5, 17, 2999]])))

    # A second run re-writes 500 passages (new vectors) and adds 1000; small merge batches force
    # several merges into the on-disk arrays.
    monkeypatch.setattr(rescore_store, "BATCH_ROWS", 1)
    monkeypatch.setattr(rescore_store, "PRUNE_AFTER_S", 0.0)
    b_pks = np.concatenate([a_pks[:500], rng.choice(10**12, size=1000).astype(np.int64) + 10**12])
    second = _shard(tmp_path, "r2", b_pks[:700], b_vecs[:700], refiner, suffix)
    third = _shard(tmp_path, "r3", b_pks[700:], b_vecs[700:], refiner)
    reader = store  # opened before the update: keeps mapping its own version
    store = RescoreStore([first, second, third], directory=tmp_path / "rescore")
    assert len(reader) == 3000 and reader.lookup(a_pks[:1])[0].all()
    assert store.merged == 2 and len(store) == 3000 + 1000  # only the new shards were read
    assert np.all(np.diff(np.asarray(store._pks)) > 0)
    found, vectors = store.lookup(b_pks[[0, 499, 1499]])
    np.testing.assert_allclose(vectors, b_vecs[[0, 499, 1499]], atol=3e-2)
    _, old = store.lookup(a_pks[[500, 2000]])
    np.testing.assert_allclose(old, a_vecs[[500, 2000]], atol=3e-2)
    manifest = json.loads((store.directory / "current" / "manifest.json").read_text())
    assert manifest["archives"] == [first, second, third]
    # Published versions: the current one and the one before it (for readers that resolved it).
    assert len(list(store.directory.glob("v-*"))) == 2

    again = RescoreStore([first, second, third], directory=tmp_path / "rescore")
    assert again.merged == 0  # up to date: nothing read
    rebuilt = RescoreStore([first], directory=tmp_path / "rescore")  # shard list changed: rebuilt
    assert rebuilt.merged == 1 and len(rebuilt) == 3000
    assert len(store) == 4000  # the reader of the previous version is unaffected


def test_a_store_of_fp16_archives_written_before_the_codes_is_rebuilt_and_served(tmp_path) -> None:
    """A collection written before the refine tier: FP16 archive shards and a store of format 1
    (no refiner). The store is rebuilt from the same shards and serves their vectors."""
    rng = np.random.default_rng(1)
    pks = np.arange(100, dtype=np.int64) * 7
    vecs = rng.standard_normal((100, 8)).astype(np.float32)
    url = _shard(tmp_path, "old", pks, vecs, suffix=".parquet")
    store = RescoreStore([url], directory=tmp_path / "r")
    manifest = store.directory / "current" / "manifest.json"
    manifest.write_text(json.dumps({"format": 1, "archives": [url]}))  # as the old code wrote it
    # Measured before any search rebuilds it: its own files, the codes among them.
    on_disk = sum(f.stat().st_size for f in (store.directory / "current").iterdir()
                  if f.name != "manifest.json")  # (an FP16 store has no refine.faiss)
    assert rescore_store.version_bytes(*rescore_store.current_version(store.directory)) == (
        on_disk, on_disk)
    again = RescoreStore([url], directory=tmp_path / "r")
    assert again.merged == 1 and again.refiner.kind == "fp16"
    np.testing.assert_allclose(again.lookup(pks[[3, 99]])[1], vecs[[3, 99]], atol=1e-2)
    # shards coded two ways in one store: refused with what to do, and nothing is published
    coded = _shard(tmp_path, "new", pks + 1, vecs, train_refiner("sq8", vecs))
    with pytest.raises(ArchiveFormatError, match=r"coded unlike.*--recreate"):
        RescoreStore([url, coded], directory=tmp_path / "r2")
    assert not (tmp_path / "r2" / "current").exists()
    assert not list((tmp_path / "r2").glob(".build-*"))


def test_default_directory_is_per_collection_in_the_user_cache(tmp_path) -> None:
    url = _shard(tmp_path, "g", np.array([1], np.int64), np.ones((1, 4), np.float32))
    other = str(tmp_path / "collections" / "d" / "shards" / "g" / "archive-x-0000.parquet")
    assert rescore_store.default_directory([url]) != rescore_store.default_directory([other])


def test_empty_archive_finds_nothing(tmp_path) -> None:
    store = RescoreStore([], directory=tmp_path / "r")
    found, vectors = store.lookup(np.array([1, 2]))
    assert not found.any() and len(vectors) == 0


def test_opening_beside_writers_that_publish_and_prune_never_fails(tmp_path) -> None:
    """An ingest's check and a following searcher sync one folder at the same moment: each prunes
    versions the other may have just resolved. Opening starts over then; it never fails."""
    import threading

    rng = np.random.default_rng(1)
    urls = [_shard(tmp_path, f"r{i}", rng.choice(10**9, 200).astype(np.int64) + i * 10**9,
                   rng.standard_normal((200, 8)).astype(np.float32)) for i in range(6)]
    directory = tmp_path / "rescore"
    errors: list[BaseException] = []
    stop = threading.Event()

    def publish(offset: int) -> None:
        turn = offset
        while not stop.is_set():  # alternate shard lists: every call publishes a new version
            try:
                RescoreStore(urls[: 2 + (turn % 4)], directory=directory)
            except BaseException as exc:
                errors.append(exc)
            turn += 1

    writers = [threading.Thread(target=publish, args=(i,)) for i in range(2)]
    for writer in writers:
        writer.start()
    try:
        for _ in range(150):
            store = RescoreStore(urls[:3], directory=directory)
            assert len(store) == 600
    finally:
        stop.set()
        for writer in writers:
            writer.join()
    assert not errors, errors[:3]


def test_archive_files_are_read_in_place_with_bounded_maps_and_never_through_a_stale_offset(
        tmp_path, monkeypatch) -> None:
    """The store reads codes from the archive shards themselves. However many shards, at most
    ``MAX_MAPS`` are mapped (the rest are read with pread, the same codes); an archive rewritten
    after it was indexed is never read at the old offsets: an open store says so, and opening
    again rebuilds the index."""
    from vecpress.tasks.search import rescore_sources

    monkeypatch.setattr(rescore_sources, "MAX_MAPS", 2)
    rng = np.random.default_rng(3)
    vecs = rng.standard_normal((5, 100, 8)).astype(np.float32)
    refiner = train_refiner("sq8", vecs.reshape(-1, 8))
    urls = [_shard(tmp_path, f"g{i}", np.arange(100, dtype=np.int64) + 1000 * i, vecs[i], refiner)
            for i in range(5)]
    store = RescoreStore(urls, directory=tmp_path / "r")
    assert not list((store.directory / "current").glob("codes-*"))  # nothing copied
    probe = np.array([1000 * i + r for i, r in ((4, 7), (0, 7), (3, 9), (1, 7), (2, 0), (0, 1))])
    for _ in range(2):
        found, got = store.lookup(probe)
        assert found.all() and len(store._sources._maps) == 2  # shards 0 and 1: the rest pread
        np.testing.assert_array_equal(got, refiner.as_kept(vecs[probe // 1000, probe % 1000]))

    # Shard 3 is written again with other vectors (atomically: a map keeps the old file).
    write_archive(urls[3], np.arange(100, dtype=np.int64) + 3000, vecs[3][::-1], refiner)
    with pytest.raises(StaleStoreError, match="changed after the rescoring store indexed it"):
        store.lookup(np.array([3009]))  # not mapped: read by pread, and refused
    again = RescoreStore(urls, directory=tmp_path / "r")
    assert again.merged == 5  # the index was rebuilt from the shards as they are now
    np.testing.assert_array_equal(again.lookup(np.array([3009]))[1],
                                  refiner.as_kept(vecs[3][::-1][[9]]))


def test_merges_in_slices_agree_with_a_dictionary_of_latest_rows(tmp_path, monkeypatch) -> None:
    """The index merge against the rule it implements (a later row of a pk wins), with batches
    and slices far smaller than the rows, so that every path of the slice-wise merge runs:
    new pks before, between and after the old ones, replacing old rows or not, repeated within
    a batch, and a batch that replaces nothing or everything."""
    from vecpress.tasks.search import rescore_merge

    monkeypatch.setattr(rescore_merge, "COPY_ROWS", 7)
    rng = np.random.default_rng(3)
    reference: dict[int, int] = {}
    directory = tmp_path / "index"
    directory.mkdir()
    rescore_merge.write_empty(directory)
    location = 0
    for batch in range(12):
        size = int(rng.integers(0, 60))
        if batch == 5:  # every row again, in another order
            pks = rng.permutation(np.array(sorted(reference), np.int64))
        else:
            pool = 10 ** (2 + batch % 3)  # small pools repeat pks within and across batches
            pks = rng.integers(-pool, pool, size=size).astype(np.int64)
        rescore_merge.merge(directory, directory, pks, location, location + len(pks))
        for i, pk in enumerate(pks.tolist()):
            reference[pk] = location + i
        location += len(pks)
        got_pks = np.load(directory / "pks.npy")
        got_locs = np.load(directory / "locs.npy")
        assert got_locs.dtype == np.uint32
        assert got_pks.tolist() == sorted(reference)
        assert got_locs.tolist() == [reference[pk] for pk in sorted(reference)]
    assert len(reference) > 100


def test_a_merge_into_a_large_index_stays_within_its_batch_memory(tmp_path) -> None:
    """Merging 1M new rows (half of them replacing old ones) into an index of 2M rows grows a
    fresh process by less than the new rows' own 16 MB of pks and locations, twice: the old
    index streams through in slices and the merged one is written as it goes. The merge
    before held the merged pks in memory and sorted the old and new pks together (``np.isin``):
    that algorithm on the same rows grew the process by 134 MB (*not committed*)."""
    import subprocess
    import sys

    from vecpress.tasks.search import rescore_merge

    rng = np.random.default_rng(0)
    old = rng.integers(0, 1 << 62, size=2_000_000)
    rescore_merge.write_empty(tmp_path)
    rescore_merge.merge(tmp_path, tmp_path, old, 0, len(old))
    np.save(tmp_path / "new.npy", np.concatenate([old[::4], rng.integers(0, 1 << 62, 500_000)]))
    script = f"""
import resource
from pathlib import Path
import numpy as np
from vecpress.tasks.search import rescore_merge
d = Path({str(tmp_path)!r})
new = np.load(d / "new.npy")
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rescore_merge.merge(d, d, new, 2_000_000, 3_000_000)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True)
    grown_mb = int(out.stdout.strip())
    assert len(np.load(tmp_path / "pks.npy")) == 2_500_000
    assert grown_mb < 32, f"the merge grew the process by {grown_mb} MB"
