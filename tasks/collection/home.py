"""Where a collection lives: the Milvus URI and the model cache its builds were made with.

Each complete run records them on its build in the catalog, so that a search (or a later
ingest) needs only the collection's name and storage root: what the caller does not set itself
is taken from the active build. Paths under the storage root are stored relative to it and
survive moving the root or working from another directory; other paths are stored absolute. A
server URI is stored without its user and password, and a token is never stored.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from vecpress.infra import storage
from vecpress.infra.settings import Settings
from vecpress.tasks.collection.catalog import Build, Catalog


class OtherMilvusError(ValueError):
    """An ingest was pointed at another Milvus than the one its collection lives on."""


def _local_root(storage_root: str) -> Path | None:
    root = storage_root.removeprefix("file://")
    return None if "://" in root else Path(root).expanduser().resolve()


def stored_path(path: str, storage_root: str) -> str:
    """``path`` relative to a local storage root when it lies under it, else absolute."""
    full = Path(path).expanduser().resolve()
    root = _local_root(storage_root)
    if root is not None and full.is_relative_to(root):
        return full.relative_to(root).as_posix()
    return str(full)


def resolved_path(stored: str, storage_root: str) -> str:
    """The path ``stored_path`` recorded, under the storage root as it is now."""
    if Path(stored).is_absolute():
        return stored
    root = _local_root(storage_root)
    return str((root or Path(storage_root)) / stored)


def _without_credentials(uri: str) -> str:
    parts = urlsplit(uri)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def home_of(settings: Settings) -> dict[str, str]:
    """What a build records about where it lives (``Build.milvus_uri`` and ``model_cache``).
    Under an object-store root the model cache is each host's own (the model is published on the
    root), so none is recorded."""
    uri = settings.milvus.uri
    cache = "" if storage.is_remote(settings.storage_root) else \
        stored_path(str(settings.model_cache_dir), settings.storage_root)
    return {"milvus_uri": stored_path(uri, settings.storage_root) if settings.milvus.is_lite
            else _without_credentials(uri), "model_cache": cache}


def milvus_uri_of(build: Build, storage_root: str) -> str:
    """The Milvus URI ``build`` lives on ("" for a build that did not record it)."""
    if not build.milvus_uri or "://" in build.milvus_uri:
        return build.milvus_uri
    return resolved_path(build.milvus_uri, storage_root)


def located(settings: Settings, build: Build | None) -> Settings:
    """``settings`` with the Milvus URI and model cache ``build`` recorded, where the caller
    (flag, environment, parameter) did not set them."""
    if build is None:
        return settings
    milvus, model = settings.milvus, settings.model
    uri = milvus_uri_of(build, settings.storage_root)
    if uri and "uri" not in milvus.model_fields_set:
        milvus = milvus.model_copy(update={"uri": uri})
    if build.model_cache and "cache_dir" not in model.model_fields_set:
        cache = resolved_path(build.model_cache, settings.storage_root)
        if Path(cache) != settings.model_cache_dir.expanduser().resolve():  # not the default
            model = model.model_copy(update={"cache_dir": cache})
    if milvus is settings.milvus and model is settings.model:
        return settings
    return settings.model_copy(update={"milvus": milvus, "model": model})


def check_same_milvus(settings: Settings, build: Build | None) -> None:
    """Refuse an incremental ingest into another Milvus than the collection's: it would load only
    the changed files there and leave the rest behind."""
    if build is None or not build.milvus_uri:
        return
    if build.milvus_uri != home_of(settings)["milvus_uri"]:
        lives_on = milvus_uri_of(build, settings.storage_root)
        raise OtherMilvusError(
            f"collection '{settings.collection}' lives on Milvus {lives_on}, not "
            f"{settings.milvus.uri}; leave --milvus-uri out to use it, or move the collection "
            "with --recreate (it is rebuilt there from its files)")


def collection_names(storage_root: str) -> list[str]:
    """The collections under ``storage_root`` that have a serving build, sorted (``vecpress api
    --all-collections``)."""
    names = []
    for url in storage.listdir(storage.join(storage_root, "collections")):
        name = url.rstrip("/").rsplit("/", 1)[-1]
        if Catalog(storage.CollectionPaths(storage_root, name).root).active() is not None:
            names.append(name)
    return sorted(names)
