"""A streaming run's progress is counted in passages embedded, against the run's passages
(estimated from the input bytes until every group is chunked), with the shards loaded beside it:
a first run loads nothing until its codec is fitted, so shards loaded alone stood at 0 for most
of the run, and their total grew as groups were chunked."""

from __future__ import annotations

import logging

import pytest

from vecpress.flows.progress import StreamProgress
from vecpress.tasks.collection.catalog import Catalog, ShardRow
from vecpress.tasks.ingest.groups import Group, shard_id
from vecpress.tasks.ingest.ledger import Ledger
from vecpress.tasks.inputs.records import SourceFile


def _group(name: str, size: int) -> Group:
    return Group(name, (SourceFile(f"file:///in/{name}.jsonl", size, "jsonl"),))


def _chunked(ledger: Ledger, group: Group, rows: list[int]) -> None:
    ledger.add_group(group.group_id, {"documents": 1, "passages_by_source": {}, "errors": [],
                                      "urls": [f"p{i}" for i in rows], "rows": rows})
    for part, n in enumerate(rows):
        ledger.set(ShardRow("b", shard_id(group.group_id, part), group.group_id, part, "chunked",
                            f"p{part}", "", "", n, ""))


def test_progress_counts_passages_embedded_against_the_runs_passages(tmp_path,
                                                                     caplog: pytest.LogCaptureFixture
                                                                     ) -> None:
    groups = [_group("a", 1000), _group("b", 3000)]
    ledger = Ledger(Catalog(str(tmp_path / "catalog")), "run")
    assert ledger.progress(groups).line() == "0/? passages embedded, 0/0 shards loaded"
    _chunked(ledger, groups[0], [200, 50])  # 250 passages from 1,000 of the 4,000 bytes
    first = ledger.progress(groups)
    assert (first.embedded, first.passages, first.estimated) == (0, 1000, True)
    assert first.line() == "0/~1,000 passages embedded, 0/2 shards loaded"
    ledger.set(ledger.rows[shard_id("a", 0)], state="embedded")
    _chunked(ledger, groups[1], [200, 200, 300])
    ledger.set(ledger.rows[shard_id("b", 2)], state="loaded")
    now = ledger.progress(groups)
    assert (now.embedded, now.passages, now.estimated, now.loaded, now.shards) == \
        (500, 950, False, 1, 5)
    with caplog.at_level(logging.INFO, logger="vecpress"), StreamProgress("ingest") as progress:
        progress.update(now)
    assert "500/950 passages embedded, 1/5 shards loaded" in caplog.text
