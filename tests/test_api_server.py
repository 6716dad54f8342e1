"""``vecpress api`` as a real server process over real HTTP: two collections in one process, API
keys, every abusive request refused within a second with the server's memory bounded, a full
queue (503), a deadline (504), micro-batched concurrent searches equal to sequential ones, a
property-based fuzz of its OpenAPI schema, and SIGTERM mid-request."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

import vecpress
from vecpress.infra import storage
from vecpress.infra.settings import Settings
from vecpress.infra.storage import CollectionPaths
from vecpress.tasks.collection.builds import live_shards
from vecpress.tasks.collection.catalog import Catalog
from vecpress.tasks.inputs.corpus import stdlib_docstring_paragraphs

pytestmark = pytest.mark.slow

KEY = "k3y-" + "0123456789abcdef" * 2


def _settings(root: Path, model_cache: Path, tiny: str, name: str) -> Settings:
    return Settings(
        collection=name, storage_root=str(root), milvus={"uri": str(root / "milvus.db")},
        model={"path": tiny, "cache_dir": str(model_cache)},
        codec={"pca_dim": 32, "pq_m": 8, "sample_size": 400, "min_fit_vectors": 400},
        chunk={"max_tokens": 48, "overlap_tokens": 8}, gc_grace_s=0,
        dask={"n_workers": 1, "threads_per_worker": 2})


def _texts(root: Path, name: str, count: int) -> list[str]:
    catalog = Catalog(CollectionPaths(str(root), name).root)
    texts = [t for passages, _, _ in live_shards(catalog, catalog.active().build)
             for t in storage.read_parquet(passages, columns=["text"]).column("text").to_pylist()]
    unique = [t for t in texts if texts.count(t) == 1 and len(t) > 80]
    return unique[:: max(1, len(unique) // count)][:count]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, tiny_model: str, model_cache: Path,
         prefect_harness) -> Path:
    """Two collections of different texts in one storage root and one Milvus Lite file."""
    base = tmp_path_factory.mktemp("served")
    data = base / "data"
    paragraphs = [t for _, t in itertools.islice(stdlib_docstring_paragraphs(), 1200)]
    for name, part in (("kb", paragraphs[:600]), ("notes", paragraphs[600:])):
        folder = base / name
        folder.mkdir()
        for i in range(10):
            # kb's files carry YAML front matter: their passages' metadata, filtered on below.
            matter = f"---\nshelf: {i % 2}\nlabel: kb-{i}\n---\n" if name == "kb" else ""
            (folder / f"{name}{i}.txt").write_text(matter + "\n\n".join(part[i * 60:(i + 1) * 60]))
        summary = vecpress.ingest(str(folder), _settings(data, model_cache, tiny_model, name))
        assert summary.rows_in_milvus > 400 and not summary.errors
    return data


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A ``vecpress api`` process in its own process group; ``stop`` sends SIGTERM."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vecpress", "api", *args, "--port", str(self.port)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
            env={**os.environ, **(env or {})})
        self.readiness: list[int] = []

    def wait_ready(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        with httpx.Client(base_url=self.base, timeout=10) as client:
            while True:
                assert self.process.poll() is None, self.process.communicate()[1][-3000:]
                try:
                    answer = client.get("/readyz")
                    self.readiness.append(answer.status_code)
                    if answer.status_code == 200:
                        return
                    assert answer.json()["loading"], answer.text
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, f"not ready in {timeout_s} s"
                time.sleep(0.1)

    @property
    def rss(self) -> int:
        return psutil.Process(self.process.pid).memory_info().rss

    def stop(self) -> tuple[int, str, str, float]:
        """SIGTERM; (exit code, stdout, stderr, seconds to exit)."""
        start = time.monotonic()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            out, err = self.process.communicate(timeout=30)
        finally:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.returncode, out, err, time.monotonic() - start


def test_no_keys_on_a_public_address_is_refused(root: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "vecpress", "api", "--storage-root", str(root),
                          "-c", "kb", "--host", "0.0.0.0"], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2 and "without API keys" in run.stderr and "--insecure" in run.stderr
    bad = subprocess.run([sys.executable, "-m", "vecpress", "api", "--storage-root", str(root),
                          "--port", "0"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "setting api.port (flag or VECPRESS_API_PORT)" in bad.stderr


def _stats(base: str, name: str = "kb") -> dict:
    answer = httpx.get(f"{base}/stats", timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["collections"][name]


def _unread_requests(port: int) -> int:
    """Connections to ``port`` holding bytes the server has not read yet (/proc/net/tcp)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, _, state, queues = line.split()[1:5]
        if int(local.rsplit(":", 1)[1], 16) == port and state == "01" and \
                int(queues.split(":")[1], 16) > 0:
            count += 1
    return count


async def _at_once(server: Server, bodies: list[dict]) -> list[httpx.Response]:
    """The requests sent while the server is stopped (SIGSTOP), so that it reads them all at
    once when it resumes: requests that really arrive together, on a machine of any speed."""
    async with httpx.AsyncClient(base_url=server.base, timeout=60) as client:
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            sent = [asyncio.ensure_future(client.post("/search", json=b)) for b in bodies]
            deadline = time.monotonic() + 60
            while _unread_requests(server.port) < len(bodies):  # every one written to its socket
                assert time.monotonic() < deadline, "the requests were not all sent in 60 s"
                await asyncio.sleep(0.05)
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        return list(await asyncio.gather(*sent))


def test_requests_that_arrive_together_share_batches_and_a_full_queue_gets_503(root: Path
                                                                              ) -> None:
    """One search thread, 100 hits of queue: 20 one-query requests (3 hits each) arrive together
    and are answered in a few batches, with the results each gets alone; then 10 requests of 33
    hits arrive together: three are admitted, the others get 503 with Retry-After at once."""
    tight = Server(["-c", "kb", "--storage-root", str(root)],
                   {"VECPRESS_API_MAX_QUEUED_HITS": "100", "VECPRESS_API_CONCURRENCY": "1",
                    "VECPRESS_SEARCH__MAX_HITS": "60", "VECPRESS_SEARCH__MAX_QUERIES": "20"})
    try:
        tight.wait_ready()
        assert tight.readiness == sorted(tight.readiness, reverse=True)  # 503s, then 200
        queries = _texts(root, "kb", 20)
        alone = [httpx.post(f"{tight.base}/search", json={"query": q, "k": 2}).json()
                 for q in queries]
        before = _stats(tight.base)
        together = asyncio.run(_at_once(tight, [{"query": q, "k": 2} for q in queries]))
        after = _stats(tight.base)
        assert [a.json()["results"] for a in together] == [a["results"] for a in alone]
        assert after["queries"] - before["queries"] == 20
        assert after["batches"] - before["batches"] <= 5, (before, after)
        assert after["cache_hits"] - before["cache_hits"] == 20  # no query embedded twice
        burst = asyncio.run(_at_once(tight, [{"queries": queries[:3], "k": 10}] * 10))
        codes = [a.status_code for a in burst]
        assert codes.count(200) == 3 and codes.count(503) == 7, codes
        full = next(a for a in burst if a.status_code == 503)
        assert full.headers["retry-after"] == "1" and "retry" in full.json()["detail"]
        assert httpx.get(f"{tight.base}/stats").json()["queued_hits"] == 0  # all given back
    finally:
        code, _, err, _ = tight.stop()
    assert code == 0 and "Traceback" not in err, err[-3000:]


def test_past_its_deadline_a_request_gets_504_and_its_work_is_dropped(root: Path) -> None:
    late = Server(["-c", "kb", "--storage-root", str(root)],
                  # One query per batch: the first batch runs, the rest wait past the deadline
                  # (with larger batches all 8 could start together, and none be dropped).
                  {"VECPRESS_API_TIMEOUT_S": "0.001", "VECPRESS_API_CONCURRENCY": "1",
                   "VECPRESS_API_MAX_BATCH_QUERIES": "1"})
    try:
        late.wait_ready()
        query = _texts(root, "kb", 1)[0]
        answers = asyncio.run(_at_once(late, [{"query": f"{query} {i}"} for i in range(8)]))
        assert {a.status_code for a in answers} == {504}
        assert "api.timeout_s" in answers[0].json()["detail"]
        deadline = time.monotonic() + 30  # the started batch finishes on its own
        while (stats := _stats(late.base))["queries"] + stats["dropped"] < 8:
            assert time.monotonic() < deadline, stats
            time.sleep(0.1)
        assert stats["dropped"] >= 1 and stats["queries"] + stats["dropped"] == 8, stats
        assert httpx.get(f"{late.base}/healthz").status_code == 200
    finally:
        code, _, err, _ = late.stop()
    assert code == 0 and "Traceback" not in err, err[-3000:]


@pytest.fixture(scope="module")
def keyfile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "keys.txt"
    path.write_text(f"# the team's key\n{KEY}\n")
    return path


@pytest.fixture(scope="module")
def server(root: Path, keyfile: Path) -> Iterator[Server]:
    """One process serving both collections, with a key file."""
    served = Server(["-c", "kb", "-c", "notes", "--storage-root", str(root),
                     "--api-key-file", str(keyfile)])
    served.wait_ready()
    yield served
    served.stop()


def auth(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_two_collections_one_process_and_api_keys(server: Server, root: Path) -> None:
    assert server.readiness[-1] == 200 and set(server.readiness) <= {200, 503}
    kb, notes = _texts(root, "kb", 3), _texts(root, "notes", 3)
    with httpx.Client(base_url=server.base, timeout=30) as client:
        for name, own in (("kb", kb), ("notes", notes)):
            answer = client.post(f"/collections/{name}/search", headers=auth(),
                                 json={"queries": own, "k": 3})
            assert answer.status_code == 200, answer.text
            assert all(any(q == h["text"] for h in hits)
                       for q, hits in zip(own, answer.json()["results"], strict=True))
        # Metadata (from the files' front matter) comes back, and filters keep only its matches.
        shelf = client.post("/collections/kb/search", headers=auth(),
                            json={"queries": kb, "k": 5, "filter": "shelf == 1"})
        assert shelf.status_code == 200, shelf.text
        hits = [h for found in shelf.json()["results"] for h in found]
        assert len(hits) == 15 and {h["metadata"]["shelf"] for h in hits} == {1}
        assert all(h["metadata"]["label"] in {f"kb-{i}" for i in (1, 3, 5, 7, 9)} for h in hits)
        # A filter that keeps nothing because it is a likely slip says why, as the CLI does.
        slip = client.post("/collections/kb/search", headers=auth(),
                           json={"queries": kb[:2], "k": 3, "filter": 'shelf == "1"'})
        assert slip.status_code == 200 and slip.json()["results"] == [[], []], slip.text
        assert "metadata 'shelf' holds numbers" in slip.json()["note"]
        assert "note" not in shelf.json()  # only where nothing matched
        for bad, says in (('shelf == "1', "unclosed string at position 10"),
                          ("shlef == 1", "no passage has the metadata key 'shlef'")):
            refused = client.post("/collections/kb/search", headers=auth(),
                                  json={"query": kb[0], "filter": bad})
            assert refused.status_code == 422 and says in refused.json()["detail"], refused.text
        default = client.post("/search", headers={"X-API-Key": KEY}, json={"query": kb[0], "k": 1})
        assert default.json()["collection"] == "kb" and default.json()["results"][0][0]["text"] == kb[0]
        assert client.get("/collections", headers=auth()).json() == {"collections": ["kb", "notes"]}
        info = client.get("/collections/notes", headers=auth()).json()
        assert info["name"] == "notes" and info["rows"] > 400 and KEY not in str(info)
        assert client.post("/collections/other/search", headers=auth(),
                           json={"query": "x"}).status_code == 404
        for headers in ({}, auth("wrong-" + KEY), {"X-API-Key": "nope"}):
            refused = client.post("/search", headers=headers, json={"query": kb[0]})
            assert refused.status_code == 401 and KEY not in refused.text
            assert refused.headers["www-authenticate"] == "Bearer"
        assert client.get("/collections/kb").status_code == 401
        assert client.get("/healthz").status_code == 200  # probes need no key
        assert client.get("/readyz").json()["ready"] is True


def test_concurrent_identical_queries_equal_sequential_ones(server: Server, root: Path) -> None:
    queries = _texts(root, "kb", 8)
    with httpx.Client(base_url=server.base, timeout=30, headers=auth()) as client:
        alone = [client.post("/collections/kb/search", json={"query": q, "k": 5}).json()
                 for q in queries]
        before = client.get("/stats").json()["collections"]["kb"]

    async def together() -> list[dict]:
        async with httpx.AsyncClient(base_url=server.base, timeout=30, headers=auth()) as client:
            answers = await asyncio.gather(*[
                client.post("/collections/kb/search", json={"query": q, "k": 5})
                for q in queries * 4])
        return [a.json() for a in answers]

    for i, answer in enumerate(asyncio.run(together())):
        expected = alone[i % len(queries)]["results"][0]
        assert [h["pk"] for h in answer["results"][0]] == [h["pk"] for h in expected]
    with httpx.Client(base_url=server.base, timeout=30, headers=auth()) as client:
        after = client.get("/collections/kb").json()["serving"]
    assert after["cache_hits"] - before["cache_hits"] == 32  # every repeat skipped the model
    assert after["queries"] - before["queries"] == 32


def _abusive(query: str) -> list[tuple[str, dict]]:
    """(what, request kwargs) of requests that must be refused before any work."""
    big = "x" * (3 << 20)
    return [
        ("1,024 queries x k=1,024", {"json": {"queries": [query] * 1024, "k": 1024}}),
        ("300 queries", {"json": {"queries": [query] * 300, "k": 1}}),
        ("100 queries x k=100", {"json": {"queries": [query] * 100, "k": 100}}),
        ("a 1.5 MB query", {"json": {"query": "word " * 300_000}}),
        ("a 3 MB body", {"content": '{"query": "' + big + '"}'}),
        ("a 3 MB chunked body", {"content": iter([b'{"query": "', big.encode(), b'"}'])}),
        ("malformed JSON", {"content": b'{"query": '}),
        ("an unknown field", {"json": {"query": query, "limit": 10 ** 9}}),
        ("k = 10**9", {"json": {"query": query, "k": 10 ** 9}}),
        ("no query", {"json": {"k": 3}}),
        ("an empty query", {"json": {"query": "   "}}),
    ]


def test_abusive_requests_are_refused_at_once_with_memory_bounded(server: Server,
                                                                   root: Path) -> None:
    query = _texts(root, "kb", 1)[0]
    with httpx.Client(base_url=server.base, timeout=30, headers=auth()) as client:
        for _ in range(3):  # warm: the model, the index and the allocator's pools
            client.post("/search", json={"queries": [query] * 64, "k": 64})
        idle = server.rss
        work = {k: v for k, v in client.get("/collections/kb").json()["serving"].items()
                if k in ("queries", "batches", "cache_hits", "cache_misses")}
        for _ in range(3):
            for what, request in _abusive(query):
                start = time.monotonic()
                answer = client.post("/search", **request)
                took = time.monotonic() - start
                assert answer.status_code in (413, 422), (what, answer.status_code, answer.text)
                assert took < 5.0, (what, took)  # generous for a busy machine: the counts below
                # say that no work was done
                serving = client.get("/collections/kb").json()["serving"]
                assert {k: serving[k] for k in work} == work, what
                if answer.status_code == 413:
                    assert answer.json()["setting"] in (
                        "search.max_queries", "search.max_hits", "search.max_query_bytes",
                        "api.max_payload_bytes"), what
        worst = client.post("/search", json={"queries": [query] * 256, "k": 16})
        assert worst.status_code == 200 and len(worst.json()["results"]) == 256

    async def crowd() -> list[int]:
        """16 clients at once, each sending ~1.9 MB of 300,000 two-letter queries (each body
        parses to ~25 MB of Python objects before its 413) and the largest allowed search."""
        many = '{"queries": [' + ",".join(['"ab"'] * 380_000) + "]}"
        async with httpx.AsyncClient(base_url=server.base, timeout=60, headers=auth()) as client:
            answers = await asyncio.gather(
                *[client.post("/search", content=many,
                              headers={"content-type": "application/json"}) for _ in range(16)],
                *[client.post("/search", json={"queries": [query] * 256, "k": 16})
                  for _ in range(8)])
        return [a.status_code for a in answers]

    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.05):
            peak = max(peak, server.rss)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        codes = asyncio.run(crowd())
    finally:
        done.set()
        sampler.join()
    # Refused (413), turned away (503), answered, or past the deadline on a loaded machine (504).
    assert set(codes[:16]) <= {413, 503} and set(codes[16:]) <= {200, 503, 504}, codes
    assert max(peak, server.rss) < 2 * idle, (peak, server.rss, idle)


def test_the_openapi_schema_fuzzed_gives_no_server_error(server: Server, tmp_path: Path) -> None:
    """schemathesis generates requests from the schema (valid and not): no 5xx, no traceback."""
    run = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"{server.base}/openapi.json",
         "--checks", "not_a_server_error", "--max-examples", "25", "--header",
         f"Authorization: Bearer {KEY}", "--seed", "1", "--no-color",
         "--generation-database", "none", "--phases", "examples,coverage,fuzzing"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)  # its cache: not the repo's
    assert run.returncode == 0, run.stdout[-4000:]
    assert server.process.poll() is None


def test_sigterm_mid_request_exits_within_10_s(server: Server, root: Path) -> None:
    """Last: it stops the module's server."""
    query = _texts(root, "kb", 1)[0]
    answers: list[int] = []

    def load(seed: int) -> None:
        with httpx.Client(base_url=server.base, timeout=30, headers=auth()) as client:
            for n in range(200):
                try:
                    answers.append(client.post("/search", json={
                        "queries": [f"{query} {seed} {n} {i}" for i in range(32)],
                        "k": 16}).status_code)
                except httpx.TransportError:
                    return

    threads = [threading.Thread(target=load, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while not answers:  # searches are running: the next arrive while it stops
        assert time.monotonic() < deadline and all(t.is_alive() for t in threads)
        time.sleep(0.05)
    code, out, err, took = server.stop()
    for thread in threads:
        thread.join(timeout=30)
    assert took < 10, took
    assert code == 0 and "Traceback" not in err, err[-3000:]
    assert KEY not in out + err
