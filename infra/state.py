"""The persistent record of a collection: which model and codec fill it, and its archive shards.

Search and later ingests read it to embed and project queries exactly as the stored vectors were.
"""

from __future__ import annotations

from pydantic import BaseModel

from vecpress.infra import storage


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
