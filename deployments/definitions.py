"""The three ways a team runs vecpress in Prefect, as deployments of the one ingest flow.

- ``<collection>-nightly``: a cron schedule (nightly by default) running an incremental ingest of
  the configured sources; unchanged files cost a stat each.
- ``<collection>-manual``: no schedule; "Run" in the Prefect UI opens a form built from the flow's
  typed parameters (sources, and the pydantic ``Settings``: collection, model and variant, codec or
  recall target, token budget, Dask address, Milvus URI ...), with defaults and descriptions.
- ``<collection>-on-change``: a deployment trigger on the watcher's ``vecpress.files.changed``
  events. A run reconciles the watched folders (new, changed and deleted files; unchanged ones
  cost a stat), not only the event's paths: whatever a failed or killed run left undone, and
  whatever order runs start in, the next run of the collection finishes it.

Each deployment admits one run at a time; later runs wait in Prefect (state
``AwaitingConcurrencySlot``, no process) instead of in a process blocked on a lock. The flow's
per-collection lock still keeps runs of different deployments and CLI runs from meeting.
"""

from __future__ import annotations

from typing import Any, cast

from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.client.schemas.schedules import CronSchedule
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

from vecpress.flows.ingest import ingest_flow
from vecpress.infra.settings import ServeSettings, Settings, masked

FILES_CHANGED = "vecpress.files.changed"


def watch_resource(collection: str) -> str:
    """The Prefect resource id the watcher's events carry for one collection."""
    return f"vecpress.watch.{collection}"


def deployment_names(collection: str) -> dict[str, str]:
    return {kind: f"{collection}-{kind}" for kind in ("nightly", "manual", "on-change")}


def build_deployments(settings: Settings, serve: ServeSettings) -> list[RunnerDeployment]:
    """Deployments for ``settings.collection``; parameters default to these settings."""
    names = deployment_names(settings.collection)
    # No token or storage credential in the parameters (the API stores them): runs read
    # VECPRESS_MILVUS__TOKEN (or the Secret block named by milvus.token_secret) and the storage
    # credentials (AWS variables) from the serving process's environment.
    params = settings.model_dump(mode="json", exclude={"milvus": {"token"}})
    params["storage_options"] = masked(settings.storage_options, drop=True)

    def deployment(name: str, **kwargs: Any) -> RunnerDeployment:
        """One of the collection's deployments: same tags, entrypoint and one-run-at-a-time
        queue (a run that finds the slot taken waits in AwaitingConcurrencySlot)."""
        # Called from sync code: Prefect's dual sync/async API returns the deployment itself.
        return cast(RunnerDeployment, ingest_flow.to_deployment(
            name, tags=["vecpress", settings.collection],
            entrypoint_type=EntrypointType.MODULE_PATH,
            concurrency_limit=ConcurrencyLimitConfig(
                limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE),
            **kwargs))

    nightly = deployment(
        names["nightly"],
        schedules=[CronSchedule(cron=serve.cron, timezone=serve.timezone)],
        # Without sources a schedule has nothing to do: keep it, paused, until sources are set.
        paused=not serve.sources,
        parameters={"sources": serve.sources, "settings": params},
        description=f"Incremental ingest of {serve.sources or 'no sources yet'} into "
                    f"'{settings.collection}' on '{serve.cron}' ({serve.timezone}).")
    manual = deployment(
        names["manual"],
        parameters={"sources": serve.sources, "settings": params},
        description=f"Run an ingest into '{settings.collection}' by hand: every setting is a "
                    "field of the run form.")
    on_change = deployment(
        names["on-change"],
        triggers=[DeploymentEventTrigger(
            name=f"{settings.collection}: files changed",
            expect={FILES_CHANGED},
            match={"prefect.resource.id": watch_resource(settings.collection)},
        )],
        parameters={"sources": serve.watched, "settings": params},
        description=f"Bring '{settings.collection}' up to date with {serve.watched} when the "
                    "watcher sees files change (new, changed and deleted; the event lists them).")
    return [nightly, manual, on_change]
