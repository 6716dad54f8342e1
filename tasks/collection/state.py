"""The persistent record of a collection: which model and codec fill it, and its archive shards.

Search and later ingests read it to embed and project queries exactly as the stored vectors were.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pydantic import BaseModel

from vecpress.infra import storage
from vecpress.infra.milvus import MilvusStore
from vecpress.infra.settings import Settings
from vecpress.infra.storage import CollectionPaths


def new_run_id() -> str:
    """Sortable and unique: the UTC start time plus a random suffix."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


def drop_collection(settings: Settings) -> None:
    """Drop the Milvus collection and delete everything stored for it (``--recreate``)."""
    store = MilvusStore(settings.milvus)
    try:
        store.drop(settings.collection)
    finally:
        store.close()
    storage.remove(CollectionPaths(settings.storage_root, settings.collection).root)


class CollectionState(BaseModel):
    collection: str
    model_artifact_dir: str
    model_variant: str
    codec_id: str
    codec_dir: str
    chunking: dict = {}  # chunk settings of the last run: a change means reading every file again
    archives: list[str] = []
    runs: list[str] = []

    @classmethod
    def load(cls, url: str) -> CollectionState | None:
        return cls.model_validate(storage.read_json(url)) if storage.exists(url) else None

    def save(self, url: str) -> None:
        storage.write_json(url, self.model_dump())
