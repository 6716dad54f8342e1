"""A Milvus Lite file another process holds: asked before a command opens it, so that the user
gets one clear line instead of a connection error retried for ``milvus.retry_s``.

Milvus Lite allows one process per file (`vecpress api` holds it while it serves; a search or an
ingest while it runs). A search asks once and exits 3; an ingest waits up to ``milvus.retry_s``
for a search to finish, saying so, then exits 3 naming the file and what to do. Inside the flow
the same wait had printed a retry warning per attempt and ended in a connection error that
named no file and told the user to check a server (a new user's `vecpress ingest` beside
`vecpress api`). An ingest of a collection another ingest is running does not wait here: it
queues on the collection's lock, as every second run of a collection does (it had exited 3 after
90 s, blaming `vecpress api`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from vecpress.infra.settings import Settings


def lite_in_use(uri: str) -> bool:
    """True when another process holds the lock of the Milvus Lite data directory ``uri``."""
    from vecpress.infra.lite_recovery import holding_lock
    from vecpress.infra.milvus_reads import lite_open_here

    if lite_open_here(uri):  # another collection of this process holds it: shared, not busy
        return False
    lock = Path(uri).expanduser() / "LOCK"
    if not lock.is_file():
        return False
    with holding_lock(lock) as held:
        return held is False  # None: no flock here (Windows), Lite's own error is reported


def collection_lite_uri(settings: Settings) -> str | None:
    """The Milvus Lite file the collection lives in (its own, once it has a build), or None on
    a Milvus server."""
    from vecpress.infra import storage
    from vecpress.tasks.collection.catalog import Catalog
    from vecpress.tasks.collection.home import located

    milvus = settings.milvus
    if "uri" not in milvus.model_fields_set:  # given: the collection must live there
        paths = storage.CollectionPaths(settings.storage_root, settings.collection)
        milvus = located(settings, Catalog(paths.root).active()).milvus
    return milvus.uri if milvus.is_lite else None


def wait_for_lite_file(settings: Settings, console: Console) -> str | None:
    """Wait up to ``milvus.retry_s`` while another process holds the collection's Lite file;
    None once it is free (or on a server), else the one-line reason to exit 3 with."""
    from vecpress.infra.locks import held_elsewhere

    uri = collection_lite_uri(settings)
    if uri is None or not lite_in_use(uri):
        return None
    if held_elsewhere(settings.storage_root, settings.collection):
        return None  # another ingest of this collection: the run queues on its lock, as documented
    limit = settings.milvus.retry_s
    console.print(f"waiting up to {limit:.0f} s for the Milvus Lite file {uri}: another process "
                  "holds it (`vecpress api`, a search or another ingest)", highlight=False)
    deadline = time.monotonic() + limit
    while lite_in_use(uri):
        if time.monotonic() >= deadline:
            return (f"the Milvus Lite file {uri} is still in use by another process after "
                    f"{limit:.0f} s (milvus.retry_s): stop `vecpress api` or let the other "
                    "command finish, then run the same command again; or load into a Milvus "
                    "server (--milvus-uri http://HOST:19530)")
        time.sleep(0.5)
    return None
