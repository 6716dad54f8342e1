"""Disk-backed rescoring codes: the archive's PCA codes, looked up by pk, never copied twice.

Search rescoring needs the PCA vector of each ANN candidate. Holding every archived vector in RAM
costs their whole width, more than the Milvus index itself; instead the store is an index on
local disk, memory-mapped: one sorted ``pks.npy`` (int64) and one row-aligned ``locs.npy`` that
says where each pk's codes are (``tasks.search.rescore_sources``). On a local storage root they
are read in place from the archive shards themselves, so the archive is the rescoring tier and
the store adds 12 B per passage; archives on an object store (or in an earlier version's Parquet
format) are copied once into the store, derived data on the search host. Lookups are
``np.searchsorted``; the codes (``tasks.codec.refine``: scalar-quantizer codes, 1 B per dimension
by default, or FP16) are decoded for the few candidates a search looks up.

Each version's ``manifest.json`` lists the archive shards merged into it, in order, and their
sources. When the collection gains shards, only the new ones are merged into a new version
(later shards win for a pk, as in Milvus upserts); when its shard list changes otherwise, or an
archive file it reads changed, the store is rebuilt. A version is published by replacing the
``current`` link, so concurrent readers (searches beside an ingest) always map a matching set.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_fixed

from vecpress.tasks.arrays import sorted_lookup
from vecpress.tasks.codec.refine import FP16, ArchiveFormatError, Refiner
from vecpress.tasks.search import rescore_merge
from vecpress.tasks.search.rescore_sources import Source, SourceMaps, add_shard

FORMAT = 3  # 1: FP16 rows only; 2: a copy of every code (both rebuilt on first use)
BATCH_ROWS = 1 << 22  # new index rows merged per step: bounds the build's memory (~30 B each)
PRUNE_AFTER_S = 30.0  # a superseded version stays this long for readers that just resolved it


class RescoreStore:
    """PCA codes of the archive, looked up by primary key (latest shard wins).

    ``directory`` is a local folder for the memory-mapped index, by default a folder under the
    user cache keyed by the archive's location. Each version of the store is a folder of its own,
    published by moving the ``current`` link in one step: a reader maps the arrays of one
    version, never one array of each.
    """

    def __init__(self, archive_urls: list[str], directory: str | os.PathLike | None = None) -> None:
        self.directory = Path(directory) if directory else default_directory(archive_urls)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.merged, self._pks, self._locs, self._sources, self.refiner = _open(
            self.directory, list(archive_urls))
        self.nbytes = int(self._pks.nbytes + self._locs.nbytes) + self._sources.code_bytes()

    def __len__(self) -> int:
        return len(self._pks)

    @property
    def dim(self) -> int:
        index = self.refiner.index
        return self._sources.width if index is None else int(index.d)

    def lookup(self, pks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(found mask, float32 vectors of the found pks, in the order of ``pks``)."""
        found, rows = sorted_lookup(self._pks, pks)
        if len(self._pks) == 0:
            return found, np.empty((0, self.dim), np.float32)
        return found, self.refiner.decode(self._sources.gather(np.asarray(self._locs[rows],
                                                                          np.int64)))


@retry(retry=retry_if_exception_type(FileNotFoundError), stop=stop_after_attempt(3),
       wait=wait_fixed(0.1), reraise=True)
def _open(directory: Path, archive_urls: list[str]
          ) -> tuple[int, np.ndarray, np.ndarray, SourceMaps, Refiner]:
    """(shards merged, mapped pks, mapped locations, their sources, their refiner) of the synced
    store. Another process (an ingest's check, a second searcher) may publish and prune versions
    of the same folder at the same moment, so a version resolved a moment ago can be gone: then
    the sync starts over."""
    merged, version, manifest = sync(directory, archive_urls)
    sources = SourceMaps(version, [Source(**s) for s in manifest["sources"]],
                         manifest["dtype"], manifest["width"])
    return (merged, _mapped(version / "pks.npy"), _mapped(version / "locs.npy"), sources,
            _refiner(version, manifest))


def _manifest(version: Path) -> dict[str, Any]:
    return json.loads((version / "manifest.json").read_text())


def _refiner(version: Path, manifest: dict[str, Any]) -> Refiner:
    """The quantizer a version's rows are coded with (FP16: none)."""
    path = version / "refine.faiss"
    return Refiner.from_bytes(manifest.get("refine", "fp16"), path.read_bytes()) \
        if path.exists() else FP16


def default_directory(archive_urls: list[str]) -> Path:
    """A user-cache folder for the collection the archive belongs to."""
    return cache_directory(archive_urls[0].rsplit("/shards/", 1)[0] if archive_urls else "empty")


def cache_directory(collection_root: str) -> Path:
    """The user-cache folder of the collection at ``collection_root``."""
    key = hashlib.sha256(collection_root.encode()).hexdigest()[:16]
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vecpress" / key


def current_version(directory: Path) -> tuple[Path | None, dict[str, Any]]:
    """(folder of the published version, its manifest: empty when the version is of an earlier
    format or an archive file it reads has changed since). Read once per open: at 100M passages
    it lists ~49k sources."""
    link = directory / "current"
    if not link.exists():
        return None, {}
    version = link.resolve()
    manifest = _manifest(version)
    if manifest.get("format") != FORMAT or \
            not all(Source(**s).unchanged() for s in manifest["sources"]):
        return version, {}
    return version, manifest


def version_bytes(version: Path, manifest: dict[str, Any]) -> tuple[int, int]:
    """(bytes of the files the version keeps: its index and copies, bytes a search maps: its
    index and every code it reads). With no ``manifest`` (``current_version``: an earlier
    format, whose codes are its own files, or an index the next open rebuilds): its files."""
    kept = sum(f.stat().st_size for f in version.iterdir() if f.suffix in (".npy", ".bin"))
    if not manifest:
        return kept, kept
    index = sum((version / name).stat().st_size for name in ("pks.npy", "locs.npy"))
    codes = sum(s["rows"] for s in manifest["sources"]) * manifest["width"] * \
        np.dtype(manifest["dtype"]).itemsize
    return kept, index + codes


def sync(directory: Path, archive_urls: list[str]) -> tuple[int, Path, dict[str, Any]]:
    """Bring the store up to ``archive_urls``: (shards merged, folder of the version to map, its
    manifest).

    When the collection only gained shards, they are merged into a copy of the current index;
    otherwise the store is rebuilt from the archive. The new version is published atomically.
    """
    current, manifest = current_version(directory)
    done = manifest.get("archives", [])
    if current is not None and manifest and done == archive_urls:
        return 0, current, manifest
    if current is None or not done or archive_urls[: len(done)] != done:
        current, done, manifest = None, [], {}  # (an empty version may be of an earlier format)
    refiner = _refiner(current, manifest) if current is not None else None
    sources = [Source(**s) for s in manifest.get("sources", [])]
    work = directory / f".build-{uuid.uuid4().hex}"
    work.mkdir()
    try:
        for source in sources:
            if source.is_copy:  # copies are shared by the versions that read them
                os.link(source.file(current), work / source.path)  # type: ignore[arg-type]
        refiner, width = _merge_shards(current, work, archive_urls[len(done):], sources,
                                       refiner, manifest.get("width", 0))
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    refiner = refiner or FP16
    if refiner.index is not None:
        (work / "refine.faiss").write_bytes(refiner.to_bytes())
    published = {"format": FORMAT, "archives": archive_urls, "refine": refiner.kind,
                 "dtype": np.dtype(refiner.dtype).name, "width": width,
                 "sources": [s.to_json() for s in sources]}
    (work / "manifest.json").write_text(json.dumps(published))
    version = directory / f"v-{uuid.uuid4().hex}"
    work.rename(version)
    link = directory / f".current-{uuid.uuid4().hex}"
    link.symlink_to(version.name)
    os.replace(link, directory / "current")  # the one step that publishes the version
    _prune(directory, keep={version.name, current.name if current else ""})
    return len(archive_urls) - len(done), version, published


def _merge_shards(current: Path | None, work: Path, todo: list[str], sources: list[Source],
                  refiner: Refiner | None, width: int) -> tuple[Refiner | None, int]:
    """Index the ``todo`` shards (appending their sources) into ``work``, merged with the index
    of ``current``; return the refiner they share and their values per row."""
    rescore_merge.write_empty(work)
    origin = current or work
    total = sum(s.rows for s in sources)
    batch: list[np.ndarray] = []
    first = total  # the location of the batch's first row
    for url in todo:
        pks, coded, source, width = add_shard(url, work)
        refiner = refiner or coded  # the first shard of a new store says how its rows are coded
        if not coded.same_as(refiner):
            raise ArchiveFormatError(f"{url} is coded unlike the archive shards before it; the "
                                     "shards of one build share one codec: reindex the "
                                     "collection or ingest it with --recreate")
        if source.rows:
            sources.append(source)
        batch.append(pks)
        total += len(pks)
        if total - first >= BATCH_ROWS:
            rescore_merge.merge(origin, work, _joined(batch), first, total)
            origin, first = work, total
    if batch:
        rescore_merge.merge(origin, work, _joined(batch), first, total)
    elif origin is not work:  # nothing new to merge: the version is a copy of the current one
        for name in ("pks.npy", "locs.npy"):
            shutil.copyfile(origin / name, work / name)
    return refiner, width


def _joined(batch: list[np.ndarray]) -> np.ndarray:
    """The batch's pks in one array; the batch is emptied, so its pieces are freed at once."""
    joined = np.concatenate(batch)
    batch.clear()
    return joined


def _prune(directory: Path, keep: set[str]) -> None:
    """Old versions go (open maps of them stay valid). The previous one stays for late readers,
    and so does any published in the last ``PRUNE_AFTER_S``: another process may have resolved
    ``current`` to it a moment ago and not mapped it yet."""
    recent = time.time() - PRUNE_AFTER_S
    for old in directory.glob("v-*"):
        try:
            if old.name not in keep and old.stat().st_mtime < recent:
                shutil.rmtree(old, ignore_errors=True)
        except FileNotFoundError:  # pruned by another process meanwhile
            pass


# numpy parses a .npy header with ast.literal_eval, and CPython 3.11's AST constructor is not
# thread-safe: two searchers opening stores at once raised "SystemError: AST constructor
# recursion depth mismatch" (seen once in CI, 3.11.7). Opening a map is cheap; one at a time.
_HEADER_LOCK = threading.Lock()


def _mapped(path: Path) -> np.ndarray:
    """The .npy file memory-mapped read-only, its header parsed under ``_HEADER_LOCK``."""
    with _HEADER_LOCK:
        return np.load(path, mmap_mode="r")
