"""A Milvus token is never written anywhere in plain text: not in the settings' JSON, not in the
deployments' parameters, not in the collection's catalog; deployments read it from a Prefect
Secret block at run time."""

from __future__ import annotations

import json

from vecpress.infra.settings import ServeSettings, Settings
from vecpress.tasks.collection.catalog import Build, Catalog
from vecpress.tasks.collection.home import home_of, located

TOKEN = "admin:s3cr3t-Passw0rd"


def test_the_token_is_masked_in_every_dump_and_left_out_of_deployments() -> None:
    from vecpress.deployments.definitions import build_deployments

    settings = Settings(collection="kb", milvus={"uri": "http://user:pw@milvus:19530",
                                                 "token": TOKEN})
    assert settings.milvus.token.get_secret_value() == TOKEN
    assert TOKEN not in settings.model_dump_json() and TOKEN not in repr(settings)
    for deployment in build_deployments(settings, ServeSettings(sources=["/srv/in"])):
        params = json.dumps(deployment.parameters)
        assert TOKEN not in params and "token\"" not in params.replace("token_secret\"", "")


def test_the_catalog_records_where_milvus_is_without_credentials(tmp_path) -> None:
    settings = Settings(collection="kb", storage_root=str(tmp_path),
                        milvus={"uri": "https://user:pw@milvus.example:19530", "token": TOKEN})
    home = home_of(settings)
    assert home["milvus_uri"] == "https://milvus.example:19530"
    catalog = Catalog(str(tmp_path / "collections" / "kb"))
    catalog.save_build(Build("kb__v1", "active", "c", "m", "fp32", "{}", "r", **home))
    stored = b"".join(p.read_bytes() for p in (tmp_path / "collections").rglob("*") if p.is_file())
    assert TOKEN.encode() not in stored and b"user:pw" not in stored
    # Searching needs only name and root: the URI comes back, the token from the caller.
    found = located(Settings(collection="kb", storage_root=str(tmp_path),
                             milvus={"token": TOKEN}), catalog.active())
    assert found.milvus.uri == "https://milvus.example:19530"
    assert found.milvus.token.get_secret_value() == TOKEN


def test_ingest_runs_read_the_token_from_a_prefect_secret_block(prefect_harness) -> None:
    from prefect.blocks.system import Secret

    from vecpress.flows.ingest import _with_secret_token

    Secret(value=TOKEN).save("vecpress-test-milvus-token", overwrite=True)
    settings = _with_secret_token(Settings(milvus={"token_secret": "vecpress-test-milvus-token"}))
    assert settings.milvus.token.get_secret_value() == TOKEN
    given = Settings(milvus={"token_secret": "vecpress-test-milvus-token", "token": "other"})
    assert _with_secret_token(given).milvus.token.get_secret_value() == "other"


def test_storage_credentials_are_masked_in_dumps_and_left_out_of_deployments() -> None:
    from vecpress.deployments.definitions import build_deployments

    options = {"key": "AKIAEXAMPLE", "secret": TOKEN,
               "client_kwargs": {"endpoint_url": "http://minio:9000",
                                 "aws_session_token": TOKEN}}
    settings = Settings(collection="kb", storage_root="s3://bucket/vp", storage_options=options)
    assert settings.storage_options == options  # the run itself gets them
    dumped = settings.model_dump_json()
    assert TOKEN not in dumped and "AKIAEXAMPLE" not in dumped and "http://minio:9000" in dumped
    for deployment in build_deployments(settings, ServeSettings(sources=["s3://bucket/in"])):
        params = json.dumps(deployment.parameters)
        assert TOKEN not in params and "AKIAEXAMPLE" not in params and "**" not in params
        assert deployment.parameters["settings"]["storage_options"] == {
            "client_kwargs": {"endpoint_url": "http://minio:9000"}}
