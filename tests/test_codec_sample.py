"""The codec's sample on a first run: which shards are embedded before the fit, in the order the
engine calls it (a chunked shard is offered to ``hold`` first, then ``grow`` takes its group).

The sample itself (its groups, so the codec fitted on them) must not depend on how many shards
are embedded ahead of it; only the held shards' timing may.
"""

from __future__ import annotations

from pathlib import Path

from vecpress.tasks.collection.catalog import Catalog, ShardRow
from vecpress.tasks.ingest.codec_sample import CodecSample
from vecpress.tasks.ingest.groups import Group, shard_id
from vecpress.tasks.ingest.ledger import Ledger

GROUPS = [Group(f"g{i}", ()) for i in range(6)]  # job order; each group: 2 shards of 100 rows


def chunk(sample: CodecSample, ledger: Ledger, group: str) -> list[str]:
    """What the engine does when ``group`` is chunked; the shards it would embed now."""
    ledger.add_group(group, {"urls": ["a", "b"], "rows": [100, 100]})
    now = []
    for part, sid in enumerate(ledger.parts_of[group]):
        ledger.set(ShardRow("b1", sid, group, part, "chunked", "", "", "", 100, ""))
        if not sample.hold(ledger.rows[sid]):
            now.append(sid)
    return now + sample.grow(GROUPS)


def embedded(ledger: Ledger, shards: list[str]) -> None:
    for sid in shards:
        ledger.set(ledger.rows[sid], state="embedded")


def run(tmp_path: Path, ahead: int) -> tuple[CodecSample, list[list[str]]]:
    """Groups chunked out of job order (g2, g0, g1, g3); the sample is 300 passages, so g0 and
    g1. Returns the sample and the shards to embed after each step."""
    ledger = Ledger(Catalog(str(tmp_path / f"c{ahead}")), "r1")
    sample = CodecSample(300, ledger, ahead=ahead)
    steps = [chunk(sample, ledger, g) for g in ("g2", "g0", "g1", "g3")]
    assert sample.ready() == []  # the sample's shards are not embedded yet
    embedded(ledger, [shard_id(g, p) for g in ("g0", "g1") for p in (0, 1)])
    parts = sample.ready()
    assert [r.shard_id for r in parts] == sorted(shard_id(g, p) for g in ("g0", "g1")
                                                 for p in (0, 1))
    steps.append(sample.start_fit())
    assert sample.ready() == []  # one fit a run
    return sample, steps


def test_worker_slots_embed_beyond_the_sample_while_its_last_shards_are(tmp_path) -> None:
    sample, steps = run(tmp_path, ahead=1)
    g = {name: [shard_id(name, 0), shard_id(name, 1)] for name in ("g0", "g1", "g2", "g3")}
    assert steps[0] == []  # g2 chunked first: held, the sample is not complete
    assert steps[1] == g["g0"]
    # g1 completes the sample: its shards, and one held shard (one worker slot) ahead of the fit
    assert steps[2] == g["g1"] + g["g2"][:1]
    assert steps[3] == []  # the look-ahead is spent: g3 waits for the fit
    assert steps[4] == g["g2"][1:] + g["g3"]  # the fit started: every held shard
    assert sample.groups == {"g0", "g1"} and sample.taken_ahead == {g["g2"][0]}


def test_the_sample_is_the_same_with_or_without_shards_ahead(tmp_path) -> None:
    without, steps = run(tmp_path, ahead=0)
    assert steps[2] == [shard_id("g1", 0), shard_id("g1", 1)]  # nothing ahead of the fit
    for ahead in (1, 3, 10):
        with_ahead, ahead_steps = run(tmp_path, ahead=ahead)
        assert with_ahead.groups == without.groups and with_ahead.rows == without.rows
        # every shard is embedded exactly once, whenever it is
        flat = [s for step in ahead_steps for s in step]
        assert sorted(flat) == sorted(s for step in steps for s in step) and len(set(flat)) == 8
