"""Does a Lite server keep an idle connection that pymilvus pings? Run beside the suite.

    python tests/keepalive_probe.py RESULT.json

pymilvus pings its server every 10 s, also between calls. Under gRPC's default server policy a
connection idle for ~100 s is then closed with a GOAWAY (too_many_pings): the next call fails
(pymilvus retries it, printing two error lines into a long ingest). The in-process Lite server
(``infra.lite_engine``) accepts the pings. This probe makes one call on each server, stays idle
``IDLE_S``, calls again and writes what each call gave. It only sleeps, so the suite's controller
starts it at the session's start (tests/conftest.py) and the test reads its result, rather than
one of the two test workers sleeping for it (test_milvus_lite.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent import futures
from pathlib import Path

IDLE_S = 105.0  # gRPC's default policy closed the idle connection after 65–85 s (measured)
RESULT_ENV = "VECPRESS_TEST_KEEPALIVE_RESULT"  # where the session's probe writes (the workers see it)
WAIT_S = IDLE_S + 120.0


def start_beside_session(args: list[str], markexpr: str) -> subprocess.Popen | None:
    """Start the probe at a session's start when the session may run the test (not without the
    slow tests, nor when only other files or tests are named); the workers find its result
    through ``RESULT_ENV``, set here before xdist starts them."""
    if "not slow" in markexpr or not any(
            "test_milvus_lite" in a or Path(a.split("::")[0]).is_dir() for a in args):
        return None
    work = Path(tempfile.mkdtemp(prefix="vecpress-keepalive-"))
    os.environ[RESULT_ENV] = str(work / "result.json")
    with (work / "probe.log").open("wb") as log:
        return subprocess.Popen([sys.executable, __file__, os.environ[RESULT_ENV]],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)


def finish(probe: subprocess.Popen) -> None:
    """Stop a session's probe (still sleeping when the session did not run its test, or
    ``pytest --markers``, which ends without a session) and remove its folder; twice is once."""
    if probe.poll() is None:
        probe.kill()
        probe.wait()
    shutil.rmtree(Path(os.environ[RESULT_ENV]).parent, ignore_errors=True)


def keepalive_result(tmp_path: Path) -> dict:
    """The session's probe result, waited for; run here when no session probe was started."""
    given = os.environ.get(RESULT_ENV)
    if given is None:
        out = tmp_path / "result.json"
        subprocess.run([sys.executable, __file__, str(out)], check=True, timeout=WAIT_S)
        return json.loads(out.read_text())
    out, deadline = Path(given), time.monotonic() + WAIT_S
    while not out.exists():
        assert time.monotonic() < deadline, f"no probe result; see {out.parent / 'probe.log'}"
        time.sleep(1)
    return json.loads(out.read_text())


def probe(out: Path) -> None:
    import grpc
    from milvus_lite.adapter.grpc.servicer import MilvusServicer
    from milvus_lite.db import MilvusLite
    from pymilvus.grpc_gen import milvus_pb2, milvus_pb2_grpc

    from vecpress.infra import lite_engine

    work = Path(tempfile.mkdtemp(prefix="keepalive-", dir=out.parent))
    ours = lite_engine.open_engine(str(work / "ours.db"))
    ours.uri  # noqa: B018 - starts its gRPC server
    default = grpc.server(futures.ThreadPoolExecutor(max_workers=2))  # gRPC's own ping policy
    db = MilvusLite(str(work / "default.db"))
    milvus_pb2_grpc.add_MilvusServiceServicer_to_server(MilvusServicer(db), default)
    ports = {"ours": ours.port, "default": default.add_insecure_port("127.0.0.1:0")}
    default.start()
    pings = [("grpc.keepalive_time_ms", 10_000), ("grpc.keepalive_timeout_ms", 5_000),
             ("grpc.keepalive_permit_without_calls", 1)]  # pymilvus's channel options
    channels = {k: grpc.insecure_channel(f"127.0.0.1:{p}", options=pings) for k, p in ports.items()}
    calls = {k: milvus_pb2_grpc.MilvusServiceStub(c).HasCollection for k, c in channels.items()}
    request = milvus_pb2.HasCollectionRequest(collection_name="c")
    result: dict[str, str] = {}
    try:
        for call in calls.values():
            call(request, timeout=10)
        time.sleep(IDLE_S)
        for name, call in calls.items():
            try:
                call(request, timeout=10)
                result[name] = "ok"
            except grpc.RpcError as exc:
                result[name] = f"{exc.code()}: {exc.details()}"
    finally:
        for channel in channels.values():
            channel.close()
        default.stop(grace=None)
        db.close()
        lite_engine.release(str(work / "ours.db"))
    partial = out.with_suffix(".part")
    partial.write_text(json.dumps(result | {"idle_s": IDLE_S}))
    partial.replace(out)


if __name__ == "__main__":
    try:
        probe(Path(sys.argv[1]))
    except BaseException:  # the test says why, rather than waiting for a result that never comes
        import traceback

        Path(sys.argv[1]).write_text(json.dumps({"error": traceback.format_exc()}))
        raise
