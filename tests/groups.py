"""How ``make test`` (``pytest -n 2``) spreads the suite over two worker processes.

A *group* runs whole on one worker: every test of a module (so its module fixtures are built
once), and every module that uses one of the costly shared session fixtures (so that fixture is
built on one worker only; the Milvus server also binds fixed ports, and two would clash).

xdist's own ``--dist loadgroup`` cannot be used: with pytest 9 its ``xdist_group`` marks are
silently ignored (it renames ``item._nodeid``, which pytest 9 no longer reads), and the group
then ran on both workers. So the controller schedules by the table below, which needs no
collection; each worker checks the table against what the tests really use (``check``), so a new
module that uses a shared fixture cannot be scheduled wrongly without failing collection.
"""

from __future__ import annotations

import pytest

# Shared session fixture -> the modules that use it (checked at collection: ``check``).
SHARED = {
    "milvus_server": ("test_bulk_import", "test_durable_server", "test_milvus_server",
                      "test_python_api", "test_reindex"),
    "docstring_embeddings": ("test_autotune", "test_codec", "test_codec_drift"),
}
GROUP_OF_MODULE = {module: group for group, modules in SHARED.items() for module in modules}
# The groups that take longest, started first so that none is left to run alone at the end
# (measured: benchmarks/results/test_suite_cpu_2core_xdist.json); the rest keep their order.
LONG_FIRST = ("milvus_server", "test_durable", "test_object_store", "test_pipeline_e2e",
              "test_deployments", "test_cli_exit_codes", "docstring_embeddings", "test_drift_flow",
              "test_local_server",
              "test_api_server", "test_prefect_lifecycle", "test_oom", "test_fp16")


def module_of(nodeid: str) -> str:
    return nodeid.split("::")[0].rsplit("/", 1)[-1].removesuffix(".py")


def group_of(nodeid: str) -> str:
    module = module_of(nodeid)
    return GROUP_OF_MODULE.get(module, module)


def check(items: list[pytest.Item]) -> None:
    """Fail collection when a test uses a shared fixture that its module's group does not own."""
    for item in items:
        for fixture in SHARED.keys() & set(getattr(item, "fixturenames", ())):
            if group_of(item.nodeid) != fixture:
                raise pytest.UsageError(
                    f"{item.nodeid} uses the shared fixture {fixture!r}: add "
                    f"{module_of(item.nodeid)!r} to SHARED[{fixture!r}] in tests/groups.py")


def order(items: list[pytest.Item]) -> None:
    """Long groups first, then collection order (every worker sorts alike: xdist checks it)."""
    rank = {group: i for i, group in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(group_of(item.nodeid), len(rank)))


def make_scheduler(config: pytest.Config, log: object) -> object:
    """A load-scope scheduler whose scope is the group: a group goes whole to one worker."""
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    config.option.loadscopereorder = False  # keep ``order``: long groups first
    return GroupScheduling(config, log)  # type: ignore[arg-type]
