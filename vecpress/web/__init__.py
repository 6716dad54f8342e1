"""The HTTP search server (``vecpress api``): one process serving one or more collections.

``POST /collections/{name}/search`` (and ``POST /search`` for the first collection) take JSON
queries and return ranked hits with their texts and sources; ``GET /collections/{name}``
describes a collection; ``/healthz`` answers while the process runs and ``/readyz`` once every
collection is loaded; the OpenAPI page is at ``/docs``. Requests are bounded, authenticated when
keys are set, and micro-batched (``app``, ``guards``, ``tasks.search.batcher``).

Milvus Lite allows one process per file: while this server holds a Lite file, an ingest of the
same file waits for it (exit code 3 after its retries). Serve from a Milvus server to search
during ingests.
"""

from vecpress.web.app import create_app
from vecpress.web.guards import KeyCheck
from vecpress.web.served import Served

__all__ = ["KeyCheck", "Served", "create_app"]
