"""The rescoring store's index on disk (sorted ``pks.npy``, row-aligned ``locs.npy``), merged with a
batch of new rows in memory bounded by the batch and a slice, whatever the index's size.

Why its own code: the index of a 100M-passage collection holds 800 MB of pks and 400 MB of
locations, and every search host and every ingest's check syncs it after a run. The merge before
held the merged pks in memory and ``np.isin`` sorted the old and new pks together, several times
the index; at 1M passages the check's store build grew the flow process by 122 MB, the only memory
of a run on a Milvus server that grew with the corpus (``benchmarks/rescore_merge_memory.py``).
Here the old index is read, and the merged one written, ``COPY_ROWS`` at a time with plain file
reads and writes: a memory-mapped file's pages would count in the process's resident memory.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

COPY_ROWS = 1 << 18  # old index rows read (and merged rows written) per step: ~15 MB


class NpyFile:
    """A one-dimensional ``.npy`` file read in slices, never mapped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with path.open("rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, _, self.dtype = read(f)
            self.offset = f.tell()
        self.rows = int(shape[0]) if shape else 0

    def read(self, start: int, count: int) -> np.ndarray:
        return np.fromfile(self.path, self.dtype, count,
                           offset=self.offset + start * self.dtype.itemsize)

    def slices(self) -> Iterator[tuple[int, np.ndarray]]:
        for start in range(0, self.rows, COPY_ROWS):
            yield start, self.read(start, min(COPY_ROWS, self.rows - start))


def write_empty(directory: Path) -> None:
    """An empty index: a new store's first version before its first merge."""
    np.save(directory / "pks.npy", np.empty(0, np.int64))
    np.save(directory / "locs.npy", np.empty(0, np.uint32))


def merge(origin: Path, out_dir: Path, new_pks: np.ndarray, first_loc: int, total_rows: int
          ) -> None:
    """Merge a batch into the index of ``origin``, written to ``out_dir`` (which may be
    ``origin``: the result replaces its files at the end). Row ``i`` of the batch lives at
    location ``first_loc + i``; a later row of a pk wins, within the batch and over the index.
    Locations are 4 bytes while the sources hold fewer than ``2**32`` rows (``total_rows``),
    else 8."""
    new_pks, new_locs = _latest(new_pks, first_loc)
    old_pks, old_locs = NpyFile(origin / "pks.npy"), NpyFile(origin / "locs.npy")
    replaced = sum(int(_present(new_pks, chunk).sum()) for _, chunk in old_pks.slices())
    rows = old_pks.rows - replaced + len(new_pks)
    loc_dtype = np.uint32 if total_rows < 1 << 32 else np.int64
    pks_tmp, locs_tmp = (out_dir / f"{name}.{os.getpid()}.tmp.npy" for name in ("pks", "locs"))
    with _writer(pks_tmp, np.dtype(np.int64), rows) as write_pks, \
            _writer(locs_tmp, np.dtype(loc_dtype), rows) as write_locs:
        done = 0  # new rows written so far
        for start, chunk in old_pks.slices():
            locs = old_locs.read(start, len(chunk))
            # The new rows up to this slice's last pk (after the last slice: all the rest).
            end = len(new_pks) if start + len(chunk) == old_pks.rows else \
                int(np.searchsorted(new_pks, chunk[-1], "right"))
            kept = ~_present(new_pks[done:end], chunk)
            _write_merged(write_pks, write_locs, chunk[kept], locs[kept],
                          new_pks[done:end], new_locs[done:end])
            done = end
        _write_merged(write_pks, write_locs, new_pks[:0], new_locs[:0], new_pks[done:],
                      new_locs[done:])  # an empty index: the whole batch
    os.replace(locs_tmp, out_dir / "locs.npy")
    os.replace(pks_tmp, out_dir / "pks.npy")


def _latest(pks: np.ndarray, first_loc: int) -> tuple[np.ndarray, np.ndarray]:
    """The batch's distinct pks in order, with the location of each one's last row."""
    order = np.argsort(pks, kind="stable")  # equal pks keep their batch order
    ordered = pks[order]
    last = np.ones(len(ordered), bool)
    np.not_equal(ordered[1:], ordered[:-1], out=last[:-1])
    if not last.all():  # a pk twice in the batch (no copies when, as usual, there is none)
        ordered, order = ordered[last], order[last]
    order += first_loc
    return ordered, order


def _present(sorted_pks: np.ndarray, probe: np.ndarray) -> np.ndarray:
    """Which of ``probe`` are in ``sorted_pks``."""
    at = np.searchsorted(sorted_pks, probe)
    found = at < len(sorted_pks)
    found[found] = sorted_pks[at[found]] == probe[found]
    return found


def _write_merged(write_pks: Callable[[np.ndarray], None],
                  write_locs: Callable[[np.ndarray], None], a_pks: np.ndarray,
                  a_locs: np.ndarray, b_pks: np.ndarray, b_locs: np.ndarray) -> None:
    """Two sorted runs of distinct pks, merged in order, appended to the files."""
    if not len(a_pks) or not len(b_pks):  # one run (a new store's batch): as it is
        write_pks(a_pks if len(a_pks) else b_pks)
        write_locs(a_locs if len(a_pks) else b_locs)
        return
    rows = len(a_pks) + len(b_pks)
    a_at = np.arange(len(a_pks)) + np.searchsorted(b_pks, a_pks)
    b_at = np.arange(len(b_pks)) + np.searchsorted(a_pks, b_pks)
    pks = np.empty(rows, np.int64)
    pks[a_at], pks[b_at] = a_pks, b_pks
    write_pks(pks)
    locs = np.empty(rows, np.int64)
    locs[a_at], locs[b_at] = a_locs, b_locs
    write_locs(locs)


@contextmanager
def _writer(path: Path, dtype: np.dtype, rows: int) -> Iterator[Callable[[np.ndarray], None]]:
    """A ``.npy`` file of ``rows`` values written in appended pieces; checked complete."""
    written = 0
    with path.open("wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                 "fortran_order": False, "shape": (rows,)})

        def write(values: np.ndarray) -> None:
            nonlocal written
            np.asarray(values, dtype).tofile(f)
            written += len(values)

        yield write
    if written != rows:
        raise AssertionError(f"{path}: wrote {written} of {rows} index rows")
