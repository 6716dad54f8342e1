"""Milvus bulk import: the server reads Parquet files itself instead of receiving upserts.

Measured on the Milvus 2.3.5 standalone server, 2 cores (``benchmarks/bulk_load.py``,
``results/bulk_load_server.json``): Parquet written with pyarrow and imported with
``do_bulk_insert`` loaded 50k and 200k rows 1.8x and 1.6x faster than the best upserts, counting
the file writing. So a new build's first load uses it once a run has ``milvus.bulk_min_rows``
passages; incremental runs keep upserts.

Bulk import inserts: it does not replace rows with the same primary key. So a shard is
bulk-imported only when the run that encoded it loads it, after its ``encoded`` state is committed;
a resumed run first waits until no import into the build is unfinished (a killed run's may be),
then upserts what it finds ``encoded`` (an upsert removes every row with its key first), and an
import is idempotent per file name (a task Dask re-runs after losing its worker finds the
finished or running import of the same file). Each passage is therefore in Milvus once.

Where the files go (``milvus.bulk_dir``) depends on the server: a standalone with local storage
opens a path on its own machine; a server on object storage reads keys of its own bucket, so
``s3://<Milvus's bucket>/<prefix>`` is written by the workers and the key is what Milvus is given.
"""

from __future__ import annotations

import posixpath
import time
import uuid
import warnings
from contextlib import suppress

import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from vecpress.infra import storage
from vecpress.infra.settings import MilvusSettings

POLL_S = 0.5


class BulkImportError(RuntimeError):
    """The server did not import a file (its reason is in the message); the caller upserts."""


class BulkImportTimeoutError(TimeoutError):
    """An import still runs on the server: upserting now could be overtaken by it (rows twice),
    so the run stops; the next run waits for the import before it loads anything."""


UNFINISHED = ("Pending", "Started", "Persisted")


# pymilvus 3 marks its ORM calls (``connections``, ``utility``) for removal in 3.1 with a
# FutureWarning on every call, which a user's terminal would show once per import. Its MilvusClient
# has no bulk insert over the gRPC API a 2.3 server offers (its ``bulk_import`` needs the REST API
# of 2.4+), so these calls stay and pyproject.toml keeps pymilvus below 3.1. One filter for this
# module's calls, set once: a ``catch_warnings`` around each call would race between a worker's
# threads (it swaps the process's filter list). Tests turn the warning into an error elsewhere.
warnings.filterwarnings("ignore", message=".*ORM-style PyMilvus API", category=FutureWarning,
                        module=r"vecpress\.infra\.milvus_bulk")


def server_path(url: str) -> str:
    """The file as the Milvus server names it: a key of its bucket, or a path on its machine."""
    if storage.is_remote(url):
        return url.split("://", 1)[1].split("/", 1)[1]
    return posixpath.abspath(url.removeprefix("file://"))


class BulkImporter:
    """Imports Arrow tables of collection rows through files under ``milvus.bulk_dir``.

    Imports are idempotent per file name: a file already imported (a task re-run by Dask after
    its worker was lost) is not imported again, one still importing is waited for.
    """

    def __init__(self, settings: MilvusSettings) -> None:
        from pymilvus import connections

        if not settings.bulk_dir:
            raise ValueError("milvus.bulk_dir is not set")
        self.settings, self.alias = settings, f"vecpress-bulk-{uuid.uuid4().hex[:8]}"
        token = settings.token.get_secret_value()
        connections.connect(alias=self.alias, uri=settings.uri,
                            **({"token": token} if token else {}))

    def close(self) -> None:
        from pymilvus import connections

        connections.disconnect(self.alias)

    def _tasks(self, collection: str) -> list:
        from pymilvus import utility

        return utility.list_bulk_insert_tasks(collection_name=collection, using=self.alias)

    def wait_for_imports(self, collection: str) -> None:
        """Return once no import into ``collection`` is unfinished (a killed run's may be): the
        upserts that follow then replace what it imported instead of being overtaken by it."""
        deadline = time.monotonic() + self.settings.bulk_timeout_s
        while any(t.state_name in UNFINISHED for t in self._tasks(collection)):
            if time.monotonic() > deadline:
                raise BulkImportTimeoutError(
                    f"imports into Milvus collection '{collection}' are still running after "
                    f"{self.settings.bulk_timeout_s:.0f}s; run the ingest again later")
            time.sleep(POLL_S)

    def import_table(self, collection: str, table: pa.Table, name: str) -> int:
        """Write ``table`` as one Parquet file, import it, wait; the rows imported."""
        from pymilvus import MilvusException, utility

        if not self.settings.bulk_dir:
            raise ValueError("bulk import needs milvus.bulk_dir (VECPRESS_MILVUS__BULK_DIR)")
        url = posixpath.join(self.settings.bulk_dir.rstrip("/"), collection, f"{name}.parquet")
        path_for_server = server_path(url)
        earlier = [t for t in self._tasks(collection) if path_for_server in (t.files or [])]
        if any(t.state_name == "Completed" for t in earlier):
            return next(int(t.row_count) for t in earlier if t.state_name == "Completed")
        fs, path = url_to_fs(url)
        task = next((t.task_id for t in earlier if t.state_name in UNFINISHED), None)
        try:
            if task is None:
                storage.makedirs(posixpath.dirname(url))
                with fs.open(path, "wb") as fh:
                    pq.write_table(table, fh)
                task = utility.do_bulk_insert(collection, files=[path_for_server],
                                              using=self.alias)
            return self._wait(task, url)
        except MilvusException as exc:
            raise BulkImportError(f"Milvus refused to import {url}: {exc}") from exc
        finally:
            with suppress(FileNotFoundError):
                fs.rm_file(path)

    def _wait(self, task: int, url: str) -> int:
        from pymilvus import utility

        deadline = time.monotonic() + self.settings.bulk_timeout_s
        while True:
            state = utility.get_bulk_insert_state(task, using=self.alias)
            if state.state_name == "Completed":
                return int(state.row_count)
            if state.state_name.startswith("Failed"):  # nothing of it is visible
                raise BulkImportError(f"Milvus could not import {url}: {state.failed_reason}")
            if time.monotonic() > deadline:
                raise BulkImportTimeoutError(
                    f"Milvus did not finish importing {url} within "
                    f"{self.settings.bulk_timeout_s:.0f}s (task {task}); run the ingest again: "
                    "it waits for the import, then loads the rest")
            time.sleep(POLL_S)


def wait_for_imports(settings: MilvusSettings, collection: str) -> None:
    """``BulkImporter.wait_for_imports`` with a connection of its own."""
    importer = BulkImporter(settings)
    try:
        importer.wait_for_imports(collection)
    finally:
        importer.close()
