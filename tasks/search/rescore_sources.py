"""Where the rescoring store's codes live: archive files read in place, or copies it keeps.

A row of the store is a global row number into its sources, concatenated in order. A source is a
run of ``rows`` codes at a byte ``offset`` of one file: a local ``.arrow`` archive shard itself
(nothing copied: the archive is the rescoring tier), or, for archives on an object store or in
the Parquet format of earlier versions, a copy of their codes in the store's own folder.

An archive file is checked against the size and modification time it had when it was indexed:
one rewritten since is never read through a stale offset (the store is rebuilt instead).
The first ``MAX_MAPS`` source files a search reads are memory-mapped and stay so while the store
is open, well below the kernel's map limit at any collection size; rows of further files (past
~8M passages, at 2,048 per archive shard) are read with ``pread``.
"""

from __future__ import annotations

import mmap
import os
import threading
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vecpress.infra import storage
from vecpress.tasks.codec.refine import Refiner, codes_region, read_archive

MAX_MAPS = 4096  # of the kernel's 65,530 per process (vm.max_map_count)


class StaleStoreError(RuntimeError):
    """An archive file changed after the store indexed it."""


@dataclass(frozen=True)
class Source:
    """``rows`` codes of ``width`` values from byte ``offset`` of ``path``: absolute for an
    archive read in place (with its ``size`` and ``mtime_ns`` then), else a file name inside the
    store's version folder."""

    path: str
    offset: int
    rows: int
    size: int = 0
    mtime_ns: int = 0

    @property
    def is_copy(self) -> bool:
        return "/" not in self.path

    def file(self, version: Path) -> Path:
        return version / self.path if self.is_copy else Path(self.path)

    def unchanged(self, stat: os.stat_result | None = None) -> bool:
        """The archive file (``stat``: of the file opened) is the one indexed, by its size and
        modification time; a copy always is."""
        if self.is_copy:
            return True
        try:
            stat = stat or os.stat(self.path)
        except FileNotFoundError:
            return False
        return (stat.st_size, stat.st_mtime_ns) == (self.size, self.mtime_ns)

    def to_json(self) -> dict:
        return asdict(self)


def add_shard(url: str, work: Path) -> tuple[np.ndarray, Refiner, Source, int]:
    """(pks, refiner, source, values per row) of one archive shard: located in place when it is
    a local ``.arrow`` file, else its codes copied into ``work`` (the version folder being
    built)."""
    local = "" if storage.is_remote(url) else os.path.abspath(url.removeprefix("file://"))
    stat = os.stat(local) if local else None  # before reading: a later rewrite then shows
    region = codes_region(local) if local else None
    if region is not None and stat is not None:
        return region.pks, region.refiner, Source(local, region.offset, len(region.pks),
                                                  stat.st_size, stat.st_mtime_ns), region.width
    pks, stored, refiner = read_archive(url)
    name = f"codes-{uuid.uuid4().hex}.bin"
    np.ascontiguousarray(stored).tofile(work / name)
    return pks, refiner, Source(name, 0, len(pks)), int(stored.shape[1])


class SourceMaps:
    """The sources of one store version, mapped on first use (at most ``MAX_MAPS`` at once)."""

    def __init__(self, version: Path, sources: list[Source], dtype: str, width: int) -> None:
        self.version, self.sources = version, sources
        self.dtype, self.width = np.dtype(dtype), width
        self.starts = np.cumsum([0] + [s.rows for s in sources], dtype=np.int64)
        self._maps: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    def gather(self, locs: np.ndarray) -> np.ndarray:
        """The stored codes of global rows ``locs``, in their order; each file read in row order.
        One numpy gather per source file the rows fall in: the per-file cost is a few µs."""
        out = np.empty((len(locs), self.width), self.dtype)
        if not len(locs):
            return out
        order = np.argsort(locs, kind="stable")
        ordered = locs[order]
        source = np.searchsorted(self.starts, ordered, side="right") - 1
        local = ordered - self.starts[source]
        bounds = [0, *(np.flatnonzero(source[1:] != source[:-1]) + 1).tolist(), len(order)]
        which = source[bounds[:-1]].tolist()
        out[order] = np.concatenate([self._rows(w, local[a:b]) for w, a, b in
                                     zip(which, bounds[:-1], bounds[1:], strict=True)])
        return out

    def _rows(self, which: int, rows: np.ndarray) -> np.ndarray:
        """Rows of source ``which``: from its map (the first ``MAX_MAPS`` sources read get one,
        kept while the store is open), else read with one ``pread`` per row. Mapping and
        unmapping in turn cost ~40 µs a file: 64x the copy's lookup at 4,000 shards
        (``rescore_lookup_*.json``)."""
        mapped = self._maps.get(which)
        if mapped is None:
            with self._lock:
                mapped = self._maps.get(which)
                if mapped is None and len(self._maps) < MAX_MAPS:
                    mapped = self._maps[which] = self._map(self.sources[which])
        if mapped is not None:
            return mapped[rows]
        return self._pread(self.sources[which], rows)

    def _check(self, source: Source, stat: os.stat_result) -> None:
        if not source.unchanged(stat):
            raise StaleStoreError(f"{source.path} changed after the rescoring store indexed "
                                  "it; open the collection again to rebuild it")

    def _map(self, source: Source) -> np.ndarray:
        """A read-only array over a memory map of the source's file (a plain array: indexing a
        ``np.memmap`` costs twice as much). The map closes with the last array over it."""
        with open(source.file(self.version), "rb") as fh:
            self._check(source, os.fstat(fh.fileno()))
            whole = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        return np.frombuffer(whole, self.dtype, source.rows * self.width,
                             source.offset).reshape(source.rows, self.width)

    def _pread(self, source: Source, rows: np.ndarray) -> np.ndarray:
        size = self.width * self.dtype.itemsize
        fd = os.open(source.file(self.version), os.O_RDONLY)
        try:
            self._check(source, os.fstat(fd))
            data = b"".join(os.pread(fd, size, source.offset + row * size)
                            for row in rows.tolist())
        finally:
            os.close(fd)
        return np.frombuffer(data, self.dtype).reshape(len(rows), self.width)

    def code_bytes(self) -> int:
        """Bytes of codes these sources hold (what a search may page in)."""
        return int(self.starts[-1]) * self.width * self.dtype.itemsize
