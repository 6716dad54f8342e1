"""The codec's sample on a build without a codec (a first run): which groups the codec is fitted
on, and which chunked shards wait for it.

The sample is the first groups in job order (random, reproducible) up to ``codec.sample_size``
passages, taken in that order as they are chunked: the same sample whatever order the workers
finish in. Its shards are embedded to FP32; every other shard is held until the fit starts, so
the FP32 intermediate stays bounded by the sample. Once every group of the sample is chunked, up
to ``ahead`` held shards (one per worker slot) are embedded to FP32 as well, so that the workers
do not wait while the sample's last shards are embedded: on 2 cores each 2,048-passage MiniLM
shard is ~14 s of one worker's time, and with 65,536-passage GPU shards the sample is one shard
that every other GPU waited for. While the codec is fitted the workers go on embedding the held
shards (to FP32, bounded by the fit's time) instead of idling. This class keeps only that
bookkeeping; the engine submits the work.
"""

from __future__ import annotations

from vecpress.tasks.collection.catalog import ShardRow
from vecpress.tasks.ingest.groups import Group
from vecpress.tasks.ingest.ledger import Ledger


class CodecSample:
    """The groups the codec is fitted on and the shards held until the fit starts."""

    def __init__(self, size: int, ledger: Ledger, ahead: int = 0) -> None:
        self.size, self.ledger, self.ahead = size, ledger, ahead
        self.groups: set[str] = set()
        self.rows = 0
        self.cursor = 0  # next group (in job order) to consider for the sample
        self.held: list[str] = []  # chunked shards waiting for the codec
        self.fitting = False  # the codec is being fitted on a worker
        self.complete = False  # every group of the sample is chunked
        self.taken_ahead: set[str] = set()  # shards beyond the sample embedded before the fit

    def hold(self, row: ShardRow) -> bool:
        """Hold ``row`` for the codec unless its group is in the sample or the fit has started;
        whether it was held. Once the sample is complete, the first ``ahead`` shards beyond it
        are not held."""
        if row.group_id in self.groups or self.fitting or row.shard_id in self.taken_ahead:
            return False
        if self.complete and len(self.taken_ahead) < self.ahead:
            self.taken_ahead.add(row.shard_id)
            return False
        self.held.append(row.shard_id)
        return True

    def grow(self, order: list[Group]) -> list[str]:
        """Take chunked groups into the sample in job order until it holds ``size`` passages;
        the held shards of the groups taken (and, once the sample is complete, the first
        ``ahead`` shards held beyond it), to embed now."""
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
        if not self.complete and (self.cursor == len(order) or self.rows >= self.size):
            self.complete = True
            ahead, self.held = self.held[:self.ahead], self.held[self.ahead:]
            self.taken_ahead.update(ahead)
            released += ahead
        return released

    def ready(self) -> list[ShardRow]:
        """The sample's shards in id order, once the sample is complete (``grow``) and every
        shard of it is embedded and no fit has started; otherwise none."""
        if self.fitting:
            return []
        parts = [self.ledger.rows[s] for g in self.groups for s in self.ledger.parts_of[g]]
        if not self.complete or any(r.state != "embedded" for r in parts):
            return []
        return sorted(parts, key=lambda r: r.shard_id)

    def start_fit(self) -> list[str]:
        """The fit is submitted: nothing is held from now on; the shards held so far."""
        self.fitting = True
        return self.release()

    def release(self) -> list[str]:
        """Every held shard, in the order held."""
        released, self.held = self.held, []
        return released
