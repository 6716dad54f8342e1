"""Disk-backed rescoring vectors: the archive's PCA codes, memory-mapped, looked up by pk.

Search rescoring needs the PCA vector of each ANN candidate. Holding every archived vector in RAM
costs their whole width, more than the Milvus index itself; instead one sorted ``pks.npy`` (int64)
and one row-aligned ``vectors.npy`` per collection live on local disk and are memory-mapped, so
the OS keeps only the pages that searches touch. Lookups are ``np.searchsorted``. The rows are
kept as the archive codes them (``tasks.codec.refine``: scalar-quantizer codes, 1 B per dimension
by default, or FP16) and decoded for the few candidates a search looks up.

The store is derived data: each version's ``manifest.json`` lists the archive shards merged into
it, in order. When the collection gains shards, only the new ones are merged into a new version
(later shards win for a pk, as in Milvus upserts); when its shard list changes otherwise, the
store is rebuilt from the archive. A version is published by replacing the ``current`` link, so
concurrent readers (searches beside an ingest) always map a matching pair of arrays.
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

import numpy as np
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_fixed

from vecpress.tasks.arrays import sorted_lookup
from vecpress.tasks.codec.refine import FP16, ArchiveFormatError, Refiner, read_archive

FORMAT = 2  # 1: FP16 rows only (rebuilt on first use)
BATCH_BYTES = 256 << 20  # archive rows read per merge step; bounds the build's memory
COPY_ROWS = 1 << 18
PRUNE_AFTER_S = 30.0  # a superseded version stays this long for readers that just resolved it


class RescoreStore:
    """PCA vectors of the archive, looked up by primary key (latest shard wins).

    ``directory`` is a local folder for the memory-mapped files, by default a folder under the
    user cache keyed by the archive's location. Each version of the store is a folder of its own,
    published by moving the ``current`` link in one step: a reader maps both arrays of one
    version, never one array of each.
    """

    def __init__(self, archive_urls: list[str], directory: str | os.PathLike | None = None) -> None:
        self.directory = Path(directory) if directory else default_directory(archive_urls)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.merged, self._pks, self._vectors, self.refiner = _open(self.directory,
                                                                    list(archive_urls))
        self.nbytes = int(self._pks.nbytes + self._vectors.nbytes)  # on disk, not in RAM

    def __len__(self) -> int:
        return len(self._pks)

    @property
    def dim(self) -> int:
        index = self.refiner.index
        return int(self._vectors.shape[1]) if index is None else int(index.d)

    def lookup(self, pks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(found mask, float32 vectors of the found pks, in the order of ``pks``)."""
        found, rows = sorted_lookup(self._pks, pks)
        if len(self._pks) == 0:
            return found, np.empty((0, self.dim), np.float32)
        # Reading sorted rows touches each mapped page once; then restore the caller's order.
        order = np.argsort(rows, kind="stable")
        vectors = np.empty((len(rows), self.dim), np.float32)
        vectors[order] = self.refiner.decode(self._vectors[rows[order]])
        return found, vectors


@retry(retry=retry_if_exception_type(FileNotFoundError), stop=stop_after_attempt(3),
       wait=wait_fixed(0.1), reraise=True)
def _open(directory: Path, archive_urls: list[str]
          ) -> tuple[int, np.ndarray, np.ndarray, Refiner]:
    """(shards merged, mapped pks, mapped vectors, their refiner) of the synced store. Another
    process (an ingest's check, a second searcher) may publish and prune versions of the same
    folder at the same moment, so a version resolved a moment ago can be gone: then the sync
    starts over."""
    merged, version = sync(directory, archive_urls)
    return (merged, _mapped(version / "pks.npy"), _mapped(version / "vectors.npy"),
            _refiner(version))


def _refiner(version: Path) -> Refiner:
    """The quantizer a version's rows are coded with (FP16: none)."""
    kind = json.loads((version / "manifest.json").read_text()).get("refine", "fp16")
    path = version / "refine.faiss"
    return Refiner.from_bytes(kind, path.read_bytes()) if path.exists() else FP16


def default_directory(archive_urls: list[str]) -> Path:
    """A user-cache folder for the collection the archive belongs to."""
    return cache_directory(archive_urls[0].rsplit("/shards/", 1)[0] if archive_urls else "empty")


def cache_directory(collection_root: str) -> Path:
    """The user-cache folder of the collection at ``collection_root``."""
    key = hashlib.sha256(collection_root.encode()).hexdigest()[:16]
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vecpress" / key


def current_version(directory: Path) -> tuple[Path | None, list[str]]:
    """(folder of the published version, the archive shards it holds)."""
    link = directory / "current"
    if not link.exists():
        return None, []
    version = link.resolve()
    manifest = json.loads((version / "manifest.json").read_text())
    return version, manifest["archives"] if manifest.get("format") == FORMAT else []


def sync(directory: Path, archive_urls: list[str]) -> tuple[int, Path]:
    """Bring the store up to ``archive_urls``: (shards merged, folder of the version to map).

    When the collection only gained shards, they are merged into a copy of the current version;
    otherwise the store is rebuilt from the archive. The new version is published atomically.
    """
    current, done = current_version(directory)
    if current is not None and done == archive_urls:
        return 0, current
    if current is None or not done or archive_urls[: len(done)] != done:
        current, done = None, []  # (an empty version may be of an earlier format)
    todo = archive_urls[len(done):]
    refiner = _refiner(current) if current is not None else None
    work = directory / f".build-{uuid.uuid4().hex}"
    work.mkdir()
    _write(work, np.empty(0, np.int64), None)
    source = current or work
    batch_pks: list[np.ndarray] = []
    batch_vecs: list[np.ndarray] = []
    size = 0
    for url in todo:
        pks, stored, coded = read_archive(url)
        refiner = refiner or coded  # the first shard of a new store says how its rows are coded
        if not coded.same_as(refiner):
            shutil.rmtree(work, ignore_errors=True)
            raise ArchiveFormatError(f"{url} is coded unlike the archive shards before it; the "
                                     "shards of one build share one codec: reindex the "
                                     "collection or ingest it with --recreate")
        batch_pks.append(pks)
        batch_vecs.append(stored)
        size += stored.nbytes
        if size >= BATCH_BYTES:
            _merge(source, work, np.concatenate(batch_pks), np.concatenate(batch_vecs))
            source, batch_pks, batch_vecs, size = work, [], [], 0
    if batch_pks:
        _merge(source, work, np.concatenate(batch_pks), np.concatenate(batch_vecs))
    elif source is not work:  # nothing new to merge: the version is a copy of the current one
        for name in ("pks.npy", "vectors.npy"):
            shutil.copyfile(source / name, work / name)
    refiner = refiner or FP16
    if refiner.index is not None:
        (work / "refine.faiss").write_bytes(refiner.to_bytes())
    (work / "manifest.json").write_text(json.dumps({"format": FORMAT, "archives": archive_urls,
                                                    "refine": refiner.kind}))
    version = directory / f"v-{uuid.uuid4().hex}"
    work.rename(version)
    link = directory / f".current-{uuid.uuid4().hex}"
    link.symlink_to(version.name)
    os.replace(link, directory / "current")  # the one step that publishes the version
    _prune(directory, keep={version.name, current.name if current else ""})
    return len(todo), version


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


def _merge(source: Path, out_dir: Path, new_pks: np.ndarray, new_vecs: np.ndarray) -> None:
    """Merge one batch (later rows win) into the sorted arrays of ``source``, into ``out_dir``."""
    _, last = np.unique(new_pks[::-1], return_index=True)  # last occurrence of each pk
    keep = np.sort(len(new_pks) - 1 - last)
    new_pks, new_vecs = new_pks[keep], new_vecs[keep]
    order = np.argsort(new_pks, kind="stable")
    new_pks, new_vecs = new_pks[order], new_vecs[order]

    old_pks = _mapped(source / "pks.npy")
    old_vecs = _mapped(source / "vectors.npy") if len(old_pks) else \
        np.empty((0, new_vecs.shape[1]), new_vecs.dtype)
    kept = np.flatnonzero(~np.isin(old_pks, new_pks))  # old rows not overwritten by the batch
    kept_pks = np.asarray(old_pks[kept])
    # Positions in the merged order: each new pk goes after the kept pks smaller than it.
    new_pos = np.searchsorted(kept_pks, new_pks) + np.arange(len(new_pks))
    old_pos = np.searchsorted(new_pks, kept_pks) + np.arange(len(kept_pks))
    total = len(kept_pks) + len(new_pks)
    merged_pks = np.empty(total, np.int64)
    merged_pks[new_pos], merged_pks[old_pos] = new_pks, kept_pks

    tmp = out_dir / f"vectors.{os.getpid()}.tmp.npy"
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=new_vecs.dtype,
                                    shape=(total, new_vecs.shape[1]))
    out[new_pos] = new_vecs
    for start in range(0, len(kept), COPY_ROWS):  # old vectors stream through in slices
        out[old_pos[start:start + COPY_ROWS]] = old_vecs[kept[start:start + COPY_ROWS]]
    out.flush()
    del out, old_vecs, old_pks
    _write(out_dir, merged_pks, tmp)


def _write(directory: Path, pks: np.ndarray, vectors_tmp: Path | None) -> None:
    """Replace the arrays of an unpublished version folder."""
    if vectors_tmp is None:
        vectors_tmp = directory / f"vectors.{os.getpid()}.tmp.npy"
        np.save(vectors_tmp, np.empty((0, 0), np.float16))
    pks_tmp = directory / f"pks.{os.getpid()}.tmp.npy"
    np.save(pks_tmp, pks)
    os.replace(vectors_tmp, directory / "vectors.npy")
    os.replace(pks_tmp, directory / "pks.npy")


# numpy parses a .npy header with ast.literal_eval, and CPython 3.11's AST constructor is not
# thread-safe: two searchers opening stores at once raised "SystemError: AST constructor
# recursion depth mismatch" (seen once in CI, 3.11.7). Opening a map is cheap; one at a time.
_HEADER_LOCK = threading.Lock()


def _mapped(path: Path) -> np.ndarray:
    """The .npy file memory-mapped read-only, its header parsed under ``_HEADER_LOCK``."""
    with _HEADER_LOCK:
        return np.load(path, mmap_mode="r")
