"""Where the rescoring store's codes live: archive files read in place, or copies it keeps.

A row of the store is a global row number into its sources, concatenated in order. A source is a
run of ``rows`` codes at a byte ``offset`` of one file: a local ``.arrow`` archive shard itself
(nothing copied: the archive is the rescoring tier), or, for archives on an object store or in
the Parquet format of earlier versions, a copy of their codes in the store's own folder.

An archive file is checked against the size and modification time it had when it was indexed:
one rewritten since is never read through a stale offset (the store is rebuilt instead).
Memory maps are opened on first use and at most ``MAX_MAPS`` stay open, well below the kernel's
map limit at any collection size.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vecpress.infra import storage
from vecpress.tasks.codec.refine import Refiner, codes_region, read_archive

MAX_MAPS = 1024


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

    def unchanged(self) -> bool:
        """The archive file is the one indexed (a copy always is)."""
        if self.is_copy:
            return True
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return False
        return (stat.st_size, stat.st_mtime_ns) == (self.size, self.mtime_ns)

    def to_json(self) -> dict:
        return asdict(self)


def add_shard(url: str, work: Path) -> tuple[np.ndarray, Refiner, Source, int]:
    """(pks, refiner, source, values per row) of one archive shard: located in place when it is a local
    ``.arrow`` file, else its codes copied into ``work`` (the version folder being built)."""
    local = "" if storage.is_remote(url) else os.path.abspath(url.removeprefix("file://"))
    region = codes_region(local) if local else None
    if region is not None:
        stat = os.stat(local)
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
        self._maps: OrderedDict[int, np.memmap] = OrderedDict()
        self._lock = threading.Lock()

    def gather(self, locs: np.ndarray) -> np.ndarray:
        """The stored codes of global rows ``locs``, in their order; each file read in row order."""
        out = np.empty((len(locs), self.width), self.dtype)
        if not len(locs):
            return out
        order = np.argsort(locs, kind="stable")
        ordered = locs[order]
        source = np.searchsorted(self.starts, ordered, side="right") - 1
        cuts = np.flatnonzero(np.diff(source)) + 1
        for start, stop in zip(np.r_[0, cuts], np.r_[cuts, len(order)], strict=True):
            which = int(source[start])
            out[order[start:stop]] = self._map(which)[ordered[start:stop] - self.starts[which]]
        return out

    def _map(self, which: int) -> np.memmap:
        with self._lock:
            mapped = self._maps.pop(which, None)
            if mapped is None:
                source = self.sources[which]
                if not source.unchanged():
                    raise StaleStoreError(f"{source.path} changed after the rescoring store "
                                          "indexed it; open the collection again to rebuild it")
                mapped = np.memmap(source.file(self.version), self.dtype, "r", source.offset,
                                   (source.rows, self.width))
                if len(self._maps) >= MAX_MAPS:
                    self._maps.popitem(last=False)
            self._maps[which] = mapped
            return mapped

    def code_bytes(self) -> int:
        """Bytes of codes these sources hold (what a search may page in)."""
        return int(self.starts[-1]) * self.width * self.dtype.itemsize
