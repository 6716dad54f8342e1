"""The codec's sample on a first run: which shards are embedded before the fit, in the order the
engine calls it (a chunked shard is offered to ``hold`` first, then ``grow`` takes its group; after
every event the engine asks ``ready`` for the fit, else ``fill`` for idle slots).

The sample itself (its groups, so the codec fitted on them) must not depend on the worker slots;
only the held shards' timing may, and the slot that embeds the sample's last shard is the fit's.
"""

from __future__ import annotations

from pathlib import Path

from vecpress.tasks.collection.catalog import Catalog, ShardRow
from vecpress.tasks.ingest.codec_sample import CodecSample
from vecpress.tasks.ingest.groups import Group, shard_id
from vecpress.tasks.ingest.ledger import Ledger

GROUPS = [Group(f"g{i}", ()) for i in range(6)]  # job order; each group: 2 shards of 100 rows
SAMPLE = [shard_id(g, p) for g in ("g0", "g1") for p in (0, 1)]  # 300 passages: g0 and g1


class Engine:
    """The engine's calls, with every shard it sends to embed recorded per event."""

    def __init__(self, tmp_path: Path, slots: int) -> None:
        self.ledger = Ledger(Catalog(str(tmp_path / f"c{slots}")), "r1")
        self.sample = CodecSample(300, self.ledger, slots=slots)
        self.events: list[list[str]] = []
        self.fitted_on: list[str] = []

    def chunked(self, group: str) -> None:
        self.ledger.add_group(group, {"urls": ["a", "b"], "rows": [100, 100]})
        now = []
        for part, sid in enumerate(self.ledger.parts_of[group]):
            self.ledger.set(ShardRow("b1", sid, group, part, "chunked", "", "", "", 100, ""))
            if not self.sample.hold(self.ledger.rows[sid]):
                now.append(sid)
        self.events.append(now + self.next_step())

    def embedded(self, sid: str) -> None:
        self.ledger.set(self.ledger.rows[sid], state="embedded")
        self.events.append(self.next_step())

    def next_step(self) -> list[str]:
        """The engine's ``_maybe_fit``."""
        released = self.sample.grow(GROUPS)
        parts = self.sample.ready()
        if not parts:
            return released + self.sample.fill()
        self.fitted_on = [r.shard_id for r in parts]
        return released + self.sample.start_fit()


def run(tmp_path: Path, slots: int) -> Engine:
    """g2 chunked before g0 and g1 (the sample), then g3; the sample's shards embedded one by
    one, the first ahead shard finishing before the sample's last."""
    engine = Engine(tmp_path, slots)
    for group in ("g2", "g0", "g1", "g3"):
        engine.chunked(group)
    for sid in SAMPLE[:3]:
        engine.embedded(sid)
    if engine.sample.taken_ahead:
        engine.embedded(sorted(engine.sample.taken_ahead)[0])
    engine.embedded(SAMPLE[3])
    return engine


def test_held_shards_fill_the_slots_the_samples_last_shards_leave_idle(tmp_path) -> None:
    g2, g3 = [shard_id("g2", p) for p in (0, 1)], [shard_id("g3", p) for p in (0, 1)]
    engine = run(tmp_path, slots=2)
    chunk_g2, chunk_g0, chunk_g1, chunk_g3, *embeds = engine.events
    assert chunk_g2 == []  # held: the sample is not complete
    assert chunk_g0 == SAMPLE[:2] and chunk_g1 == SAMPLE[2:]  # 4 left to embed on 2 slots
    assert chunk_g3 == []
    assert embeds[0] == [] and embeds[1] == []  # still 2 sample shards for the 2 slots
    assert embeds[2] == g2[:1]  # one sample shard left: the other slot takes a held shard
    assert embeds[3] == g2[1:]  # that one done, the sample's last still running: the next
    # The sample's last shard done: no held shard took its slot, the fit is submitted and
    # every shard still held goes with it.
    assert engine.fitted_on == SAMPLE and embeds[4] == g3
    assert engine.sample.taken_ahead == set(g2)


def test_one_slot_never_takes_a_shard_ahead_of_the_fit(tmp_path) -> None:
    engine = run(tmp_path, slots=1)
    assert engine.sample.taken_ahead == set()
    assert engine.events[-1] == [shard_id(g, p) for g in ("g2", "g3") for p in (0, 1)]


def test_the_sample_is_the_same_whatever_the_slots(tmp_path) -> None:
    alone = run(tmp_path, slots=1)
    for slots in (2, 3, 16):
        engine = run(tmp_path, slots)
        assert engine.sample.groups == alone.sample.groups == {"g0", "g1"}
        assert engine.fitted_on == alone.fitted_on == SAMPLE
        # every shard is sent to embed exactly once, whenever it is
        sent = [s for event in engine.events for s in event]
        assert sorted(sent) == sorted(s for event in alone.events for s in event)
        assert len(set(sent)) == len(sent) == 8
