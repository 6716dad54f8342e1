"""The codec's sample on a build without a codec (a first run): which groups the codec is fitted
on, and which chunked shards wait for it.

The sample is the first groups in job order (random, reproducible) up to ``codec.sample_size``
passages, taken in that order as they are chunked: the same sample whatever order the workers
finish in. Its shards are embedded to FP32; every other shard is held until the fit starts, so
the FP32 intermediate stays bounded by the sample. While the codec is fitted the workers go on
embedding the held shards (to FP32, bounded by the fit's time) instead of idling. This class
keeps only that bookkeeping; the engine submits the work.
"""

from __future__ import annotations

from vecpress.tasks.collection.catalog import ShardRow
from vecpress.tasks.ingest.groups import Group
from vecpress.tasks.ingest.ledger import Ledger


class CodecSample:
    """The groups the codec is fitted on and the shards held until the fit starts."""

    def __init__(self, size: int, ledger: Ledger) -> None:
        self.size, self.ledger = size, ledger
        self.groups: set[str] = set()
        self.rows = 0
        self.cursor = 0  # next group (in job order) to consider for the sample
        self.held: list[str] = []  # chunked shards waiting for the codec
        self.fitting = False  # the codec is being fitted on a worker

    def hold(self, row: ShardRow) -> bool:
        """Hold ``row`` for the codec unless its group is in the sample or the fit has started;
        whether it was held."""
        if row.group_id in self.groups or self.fitting:
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
        return released

    def ready(self, order: list[Group]) -> list[ShardRow]:
        """The sample's shards in id order, once the sample is complete and every shard of it
        is embedded and no fit has started; otherwise none."""
        if self.fitting:
            return []
        complete = self.cursor == len(order) or self.rows >= self.size
        parts = [self.ledger.rows[s] for g in self.groups for s in self.ledger.parts_of[g]]
        if not complete or any(r.state != "embedded" for r in parts):
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
