"""Exported models on the storage root, for hosts that share no disk with the one that exported.

ONNX Runtime needs the model as a local file, so the export cache is always local. When the
storage root is an object store, the flow also publishes the artifact there
(``<root>/models/<artifact>/``: the ONNX file(s), ``meta.json`` and the tokenizer as one
``tokenizer.json``); a Dask worker on another host, or a search host, copies it once into its own
temp folder and runs from that copy. The artifact's name holds its content key, so a copy is never
stale, and a ``complete`` marker written last means a half-published model is never used.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from filelock import FileLock
from fsspec.core import url_to_fs

from vecpress.infra import storage
from vecpress.tasks.embed.artifact import ModelArtifact
from vecpress.tasks.embed.model_files import load_tokenizer

COMPLETE = "complete"
TOKENIZER = "tokenizer.json"


def published_url(storage_root: str, name: str) -> str:
    return storage.join(storage_root, "models", name)


def publish(artifact: ModelArtifact, storage_root: str) -> ModelArtifact:
    """Put the artifact on the storage root (once); the artifact, knowing where it was put."""
    url = published_url(storage_root, artifact.name)
    if not storage.exists(storage.join(url, COMPLETE)):
        fs, path = url_to_fs(url)
        for file in sorted(Path(artifact.onnx_path).parent.iterdir()):
            if file.is_file():
                fs.put_file(str(file), f"{path}/{file.name}")
        fs.pipe_file(f"{path}/{TOKENIZER}",
                     load_tokenizer(Path(artifact.model_dir)).to_str().encode())
        fs.pipe_file(f"{path}/{COMPLETE}", b"")
    return dataclasses.replace(artifact, store_url=url)


def local_copy(artifact: ModelArtifact) -> ModelArtifact:
    """The artifact as files on this host. A published one runs from this host's copy (fetched
    once into the temp folder, whatever the exporting host's paths were); others as they are."""
    if not artifact.store_url:
        return artifact
    target = fetch(artifact.store_url, Path(tempfile.gettempdir()) / "vecpress-models")
    return dataclasses.replace(artifact, onnx_path=str(target / Path(artifact.onnx_path).name),
                               model_dir=str(target))


def fetch(url: str, cache: Path) -> Path:
    """The published artifact at ``url`` copied under ``cache`` (once per host: a file lock keeps
    two workers of one host from fetching it twice)."""
    name = url.rstrip("/").rsplit("/", 1)[-1]
    target = cache / name
    if (target / COMPLETE).is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache / f"{name}.lock")):
        if not (target / COMPLETE).is_file():
            fs, path = url_to_fs(url)
            if not fs.exists(f"{path}/{COMPLETE}"):
                raise FileNotFoundError(f"no complete exported model at {url}: ingest again to "
                                        "publish it")
            target.mkdir(exist_ok=True)
            for entry in fs.ls(path, detail=False):
                file = entry.rstrip("/").rsplit("/", 1)[-1]
                if file != COMPLETE:
                    fs.get_file(entry, str(target / file))
            (target / COMPLETE).touch()  # last: a copy cut short is fetched again
    return target


def load_published(storage_root: str, name: str, cache: Path) -> ModelArtifact | None:
    """A search host's way to the model of a collection built elsewhere: the published artifact
    fetched into ``cache`` (None when the root does not hold it)."""
    url = published_url(storage_root, name)
    try:
        target = fetch(url, cache)
    except FileNotFoundError:
        return None
    return dataclasses.replace(ModelArtifact.load(target), store_url=url)
