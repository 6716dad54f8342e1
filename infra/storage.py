"""Where run artifacts live: Parquet shards and JSON files under a local path or fsspec URL.

Layout under ``storage_root``::

    models/<artifact>/                          exported ONNX models (local cache)
    collections/<name>/catalog/{builds,files,shards}/   Delta tables: the collection's catalog
    collections/<name>/codecs/<codec_id>/       codec.faiss + report.json
    collections/<name>/shards/<group_id>/       part-NNNN.parquet (passages), archive-<codec>-NNNN
                                                .arrow (PCA codes), embeddings-NNNN (FP32, first run
                                                only, until the codec exists), group.json
    collections/<name>/runs/<run_id>/           summary.json, quarantine.jsonl of each run
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping
from contextlib import suppress
from typing import Any

import fsspec
import fsspec.config
import fsspec.utils
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import url_to_fs


def is_remote(url: str) -> bool:
    """An object store or other non-local root: other hosts see it, this host's disk they do not."""
    return fsspec.utils.get_protocol(url) not in ("file", "local")


def configure(storage_root: str, options: Mapping[str, Any]) -> None:
    """Make every fsspec file system of the storage root's protocol in this process use
    ``options`` (``storage_options``: endpoint, region, credentials...), through fsspec's own
    per-protocol defaults, so that every read and write here (and in Delta Lake, see
    ``delta_options``) reaches the same store. Without options, s3fs and delta-rs read the usual
    AWS variables and files themselves. Called by each process that opens the root: the CLI, the
    flow, the Python API, and every Dask worker (``infra.cluster.StorageOptions``)."""
    if not options:
        return
    cls = fsspec.get_filesystem_class(fsspec.utils.get_protocol(storage_root))
    protocols = cls.protocol if isinstance(cls.protocol, (tuple, list)) else [cls.protocol]
    if all(fsspec.config.conf.get(p) == dict(options) for p in protocols):
        return  # already in place: cached file systems keep their connections
    for protocol in protocols:
        fsspec.config.conf[protocol] = dict(options)
    fsspec.AbstractFileSystem.clear_instance_cache()


def delta_options(url: str) -> dict[str, str] | None:
    """The configured fsspec options of ``url``'s store, translated for delta-rs (object_store
    keys). S3 only; other stores read their usual environment variables. ``allow_http`` lets an
    ``http://`` endpoint (a local S3-compatible server) be used: the endpoint itself is the user's
    choice, this never turns an https endpoint into http."""
    protocol = fsspec.utils.get_protocol(url)
    if protocol not in ("s3", "s3a"):
        return None
    conf = dict(fsspec.config.conf.get(protocol, {}))
    client = dict(conf.get("client_kwargs") or {})
    found = {"aws_access_key_id": conf.get("key"), "aws_secret_access_key": conf.get("secret"),
             "aws_session_token": conf.get("token"),
             "aws_endpoint": conf.get("endpoint_url") or client.get("endpoint_url"),
             "aws_region": client.get("region_name"),
             "aws_skip_signature": "true" if conf.get("anon") else None}
    return {"allow_http": "true"} | {k: str(v) for k, v in found.items() if v}


class StorageRootError(OSError):
    """The object-store root cannot be used (an infrastructure error: exit code 3)."""


def check_root(storage_root: str) -> None:
    """Fail at once, saying what to fix, when an object-store root cannot be reached: a missing
    driver (s3fs), bucket or credentials would otherwise surface mid-run as a client traceback."""
    if not is_remote(storage_root):
        return
    try:
        fs, path = url_to_fs(storage_root)
    except ImportError as exc:
        raise ValueError(f"the storage root {storage_root} needs an fsspec driver that is not "
                         f"installed ({exc}); for s3:// run: pip install 'vecpress[s3]'") from exc
    bucket = path.split("/", 1)[0]
    hint = ("check the bucket name in --storage-root, the credentials (the AWS_* variables or "
            "VECPRESS_STORAGE_OPTIONS) and the endpoint, then run the same command again")
    try:
        fs.info(bucket)
    except FileNotFoundError as exc:
        raise StorageRootError(f"the bucket '{bucket}' of the storage root {storage_root} does "
                               f"not exist or these credentials cannot see it; {hint}") from exc
    except PermissionError:
        try:  # credentials limited to a prefix may not read the bucket itself
            fs.ls(path, refresh=True)
        except FileNotFoundError:
            pass
        except Exception as exc:
            raise StorageRootError(f"access to the storage root {storage_root} was refused "
                                   f"({exc}); {hint}") from exc
    except Exception as exc:  # botocore's credential and connection errors are no OSError
        raise StorageRootError(f"cannot reach the storage root {storage_root} ({exc}); "
                               f"{hint}") from exc


def join(base: str, *parts: str) -> str:
    return posixpath.join(base.rstrip("/"), *parts)


def write_parquet(url: str, table: pa.Table) -> None:
    fs, path = url_to_fs(url)
    if not is_remote(url):
        fs.makedirs(posixpath.dirname(path), exist_ok=True)
    with fs.open(path, "wb") as fh:
        pq.write_table(table, fh, compression="zstd")


def read_parquet(url: str, columns: list[str] | None = None,
                 optional: tuple[str, ...] = ()) -> pa.Table:
    """The table at ``url`` (``columns`` of it), plus those of the ``optional`` columns the file
    has: a column added to a format later (passage metadata) is absent from older files."""
    fs, path = url_to_fs(url)
    with fs.open(path, "rb") as fh:
        if not optional or columns is None:
            return pq.read_table(fh, columns=columns)
        parquet = pq.ParquetFile(fh)
        names = set(parquet.schema_arrow.names)
        return parquet.read(columns=columns + [c for c in optional if c in names])


def parquet_rows(url: str) -> int:
    fs, path = url_to_fs(url)
    with fs.open(path, "rb") as fh:
        return pq.ParquetFile(fh).metadata.num_rows


def write_bytes(url: str, data: bytes) -> None:
    fs, path = url_to_fs(url)
    if is_remote(url):  # an object store's PUT is atomic already; its "move" is copy + delete
        fs.pipe_file(path, data)
        return
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp"
    with fs.open(tmp, "wb") as fh:
        fh.write(data)
    fs.mv(tmp, path)  # readers never see a half-written file


def read_bytes(url: str) -> bytes:
    with fsspec.open(url, "rb") as fh:
        return fh.read()


def write_json(url: str, obj: Any) -> None:
    write_bytes(url, json.dumps(obj, indent=2, sort_keys=True).encode())


def read_json(url: str) -> Any:
    return json.loads(read_bytes(url))


def exists(url: str) -> bool:
    fs, path = url_to_fs(url)
    return fs.exists(path)


def remove(url: str) -> None:
    """Remove the file or folder ``url``; one that is not there is nothing to do. No existence
    check first: on an object store that is a request less per removal."""
    fs, path = url_to_fs(url)
    with suppress(FileNotFoundError):
        fs.rm(path, recursive=True)


class CollectionPaths:
    """Names every artifact of one collection under the storage root."""

    def __init__(self, storage_root: str, collection: str) -> None:
        self.root = join(storage_root, "collections", collection)

    @property
    def state(self) -> str:
        return join(self.root, "state.json")

    @property
    def manifest(self) -> str:
        return join(self.root, "manifest.parquet")

    def codec_dir(self, codec_id: str) -> str:
        return join(self.root, "codecs", codec_id)

    def run_dir(self, run_id: str) -> str:
        return join(self.root, "runs", run_id)

    @property
    def shards(self) -> str:
        return join(self.root, "shards")

    def group_dir(self, group_id: str) -> str:
        return join(self.shards, group_id)


def makedirs(url: str) -> None:
    """A local folder; nothing on an object store (no folders there, and a bucket is never
    created by mistake: s3fs would create a misspelled one)."""
    if is_remote(url):
        return
    fs, path = url_to_fs(url)
    fs.makedirs(path, exist_ok=True)


def listdir(url: str) -> list[str]:
    """Full URLs of the entries directly under ``url`` (empty when it does not exist)."""
    fs, path = url_to_fs(url)
    if not fs.exists(path):
        return []
    return _named_like(url, fs, fs.ls(path, detail=False))


def find(url: str) -> list[str]:
    """Full URLs of every file under ``url``, recursively: one paged listing on an object store
    (1,000 keys per request on S3), not one request per folder."""
    fs, path = url_to_fs(url)
    if not fs.exists(path):
        return []
    return _named_like(url, fs, fs.find(path))


def sizes(url: str) -> dict[str, int]:
    """Bytes of every file under ``url`` by its path relative to ``url``: one paged listing on an
    object store. Links are left out (a local rescoring store's ``current`` link names a folder
    listed anyway)."""
    fs, path = url_to_fs(url)
    if not fs.exists(path):
        return {}
    base = path.rstrip("/") + "/"
    return {p.removeprefix(base): int(info.get("size") or 0)
            for p, info in fs.find(path, detail=True).items()
            if not info.get("islink") and info.get("type") != "directory"}


def _named_like(url: str, fs: fsspec.AbstractFileSystem, paths: list[str]) -> list[str]:
    """Listed paths as full URLs when ``url`` is one, as plain paths when it is a path."""
    return [fs.unstrip_protocol(p) if "://" in url else p for p in paths]


def modified_age_s(url: str) -> float:
    """Seconds since ``url`` was last modified (0 when the file system does not say)."""
    import time

    fs, path = url_to_fs(url)
    try:
        stamp = fs.modified(path)
    except (NotImplementedError, OSError, FileNotFoundError):
        return 0.0
    return max(0.0, time.time() - stamp.timestamp())
