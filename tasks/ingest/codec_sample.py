"""The codec's sample on a build without a codec (a first run): which groups the codec is fitted
on, and which chunked shards wait for it.

The sample is the first groups in job order (random, reproducible) up to ``codec.sample_size``
passages, taken in that order as they are chunked: the same sample whatever order the workers
finish in. Its shards are embedded to FP32; every other shard is held until the fit starts, so
the FP32 intermediate stays bounded by the sample. Once every group of the sample is chunked and
fewer of its shards are left to embed than there are worker slots, held shards fill the slots
they leave idle (``fill``), to FP32 as well: a worker no longer waits while the sample's last
shards are embedded (on 2 cores a 2,048-passage MiniLM shard is ~14 s of one worker's time; with
65,536-passage GPU shards the sample is one shard that every other GPU waited for). None is
released when the last one finishes: that slot is the fit's. While the codec is fitted the
workers go on embedding the held shards (to FP32, bounded by the fit's time) instead of idling.
This class keeps only that bookkeeping; the engine submits the work.
"""

from __future__ import annotations

from vecpress.tasks.collection.catalog import ShardRow
from vecpress.tasks.ingest.groups import Group
from vecpress.tasks.ingest.ledger import Ledger


class CodecSample:
    """The groups the codec is fitted on and the shards held until the fit starts."""

    def __init__(self, size: int, ledger: Ledger, slots: int = 1) -> None:
        self.size, self.ledger, self.slots = size, ledger, slots
        self.groups: set[str] = set()
        self.rows = 0
        self.cursor = 0  # next group (in job order) to consider for the sample
        self.held: list[str] = []  # chunked shards waiting for the codec
        self.fitting = False  # the codec is being fitted on a worker
        self.complete = False  # every group of the sample is chunked
        self.taken_ahead: set[str] = set()  # shards beyond the sample embedded before the fit

    def hold(self, row: ShardRow) -> bool:
        """Hold ``row`` for the codec unless its group is in the sample or the fit has started;
        whether it was held."""
        if row.group_id in self.groups or self.fitting or row.shard_id in self.taken_ahead:
            return False
        self.held.append(row.shard_id)
        return True

    def grow(self, order: list[Group]) -> list[str]:
        """Take chunked groups into the sample in job order until it holds ``size`` passages;
        the held shards of the groups taken, to embed now."""
        released: list[str] = []
        while self.cursor < len(order) and self.rows < self.size:
            group = order[self.cursor].group_id
            if group not in self.ledger.meta:
                break  # not chunked yet
            self.groups.add(group)
            self.rows += sum(self.ledger.meta[group]["rows"])
            self.cursor += 1
            taken = [s for s in self.held if self.ledger.rows[s].group_id == group]
            self.held = [s for s in self.held if self.ledger.rows[s].group_id != group]
            released += taken
        self.complete = self.cursor == len(order) or self.rows >= self.size
        return released

    def fill(self) -> list[str]:
        """Held shards for the worker slots the sample's last shards leave idle, to embed now:
        once the sample is complete, while fewer of its shards are left to embed than there
        are ``slots``, less the shards taken so that are still being embedded."""
        if not self.complete or self.fitting:
            return []
        left = sum(r.state != "embedded" for r in self._parts())
        running = sum(self.ledger.rows[s].state != "embedded" for s in self.taken_ahead)
        free = self.slots - left - running if left else 0  # none left: the slot is the fit's
        taken, self.held = self.held[:max(free, 0)], self.held[max(free, 0):]
        self.taken_ahead.update(taken)
        return taken

    def ready(self) -> list[ShardRow]:
        """The sample's shards in id order, once the sample is complete (``grow``) and every
        shard of it is embedded and no fit has started; otherwise none."""
        if self.fitting:
            return []
        parts = self._parts()
        if not self.complete or any(r.state != "embedded" for r in parts):
            return []
        return sorted(parts, key=lambda r: r.shard_id)

    def _parts(self) -> list[ShardRow]:
        """The latest row of every shard of the sample's groups."""
        return [self.ledger.rows[s] for g in self.groups for s in self.ledger.parts_of[g]]

    def start_fit(self) -> list[str]:
        """The fit is submitted: nothing is held from now on; the shards held so far."""
        self.fitting = True
        return self.release()

    def release(self) -> list[str]:
        """Every held shard, in the order held."""
        released, self.held = self.held, []
        return released
