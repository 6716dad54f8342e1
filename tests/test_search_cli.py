"""`vecpress search` on bad flags, bad queries and unreachable or busy Milvus: one line, the exit
code of the kind of problem (2 usage or configuration, 3 Milvus), and notes that keep stdout clean.

One small real collection (a tiny random BERT, ~40 passages, Milvus Lite) is ingested through the
CLI; searches run the real command in-process (typer's runner) or as a process where another
process is involved (the Lite file lock).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vecpress.cli import app

pytestmark = pytest.mark.slow
COLLECTION = "searchcli"
PASSAGES = 40  # paragraphs ingested; short ones give one passage each


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory, paragraphs, model_cache: Path, tiny_model: str,
       dask_address: str, prefect_harness) -> dict:
    """A collection of a few dozen passages, ingested by the real CLI with a tiny model."""
    from prefect.settings import PREFECT_API_URL

    root = tmp_path_factory.mktemp("search-cli")
    short = [(i, t) for i, t in paragraphs if len(t) < 400][:PASSAGES]
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in short))
    env = os.environ | {
        "PREFECT_API_URL": str(PREFECT_API_URL.value()), "COLUMNS": "200",
        "VECPRESS_MODEL__CACHE_DIR": str(model_cache),
        "VECPRESS_MODEL__PATH": tiny_model,
        "VECPRESS_CODEC__PCA_DIM": "32", "VECPRESS_CODEC__PQ_M": "8",
        "VECPRESS_CODEC__SAMPLE_SIZE": "600", "VECPRESS_DASK__ADDRESS": dask_address}
    uri = str(root / "milvus.db")
    args = ["--collection", COLLECTION, "--storage-root", str(root / "data"), "--milvus-uri", uri]
    ingest = subprocess.run([sys.executable, "-m", "vecpress", "ingest", str(corpus), *args,
                             "--json"], env=env, capture_output=True, text=True, timeout=600)
    assert ingest.returncode == 0, ingest.stderr[-3000:]
    summary = json.loads(ingest.stdout[ingest.stdout.index("{\n"):])
    return {"root": root, "env": env, "args": args, "uri": uri, "summary": summary,
            "cache": {"VECPRESS_MODEL__CACHE_DIR": str(model_cache), "COLUMNS": "200"}}


def search(ws: dict, *args: str, env: dict | None = None, flags: list[str] | None = None):
    """``vecpress search ARGS`` in this process (the real typer app, the real collection)."""
    result = CliRunner().invoke(app, ["search", *args, *(ws["args"] if flags is None else flags)],
                                env=ws["cache"] | (env or {}))
    assert "Traceback" not in result.stderr, result.stderr
    if result.exit_code not in (0, 2, 3):
        raise AssertionError(result.stderr) from result.exception
    return result


def one_error_line(stderr: str) -> str:
    """The single ``error:`` line of a failed search (and that there is no other)."""
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize("k", ["0", "-1", "1025"])
def test_k_outside_1_to_1024_is_a_usage_error(ws: dict, k: str) -> None:
    result = search(ws, "parse a file", "-k", k)
    assert result.exit_code == 2
    assert "Invalid value for '-k'" in result.stderr
    assert f"{k} is outside the range 1 to 1024" in result.stderr


def test_help_gives_the_range_of_k(ws: dict) -> None:
    result = CliRunner().invoke(app, ["search", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "Results per query, 1 to 1024" in result.stdout


def test_an_empty_query_is_a_usage_error(ws: dict) -> None:
    result = search(ws, "  \t ")
    assert result.exit_code == 2
    assert "Invalid value for 'QUERY': the query is empty" in result.stderr


def test_an_empty_query_line_names_file_and_line(ws: dict, tmp_path: Path) -> None:
    queries = tmp_path / "queries.jsonl"
    queries.write_text(json.dumps({"id": "a", "text": "open a socket"}) + "\n\n"
                       + json.dumps({"id": "b", "text": "   "}) + "\n")
    result = search(ws, "--queries", str(queries))
    assert result.exit_code == 2
    assert f"{queries}:3: query 'b' is empty" in result.stderr
    assert "'--queries'" in result.stderr


def test_a_query_id_given_twice_names_both_lines(ws: dict, tmp_path: Path) -> None:
    """Results carry their query's id: two queries of one id could not be told apart."""
    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps(q) + "\n" for q in (
        {"id": "a", "text": "open a socket"}, {"text": "read a file"},
        {"id": "a", "text": "parse a date"})))
    result = search(ws, "--queries", str(queries), "--json")
    assert result.exit_code == 2 and result.stdout == ""
    assert f"{queries}:3: query id 'a' is also line 1's" in " ".join(result.stderr.split())
    queries.write_text(queries.read_text().replace('"id": "a", "text": "parse',
                                                   '"id": "2", "text": "parse'))
    stderr = search(ws, "--queries", str(queries)).stderr
    assert "query id '2' is also line 2's" in " ".join(stderr.split())


def test_a_queries_file_over_its_byte_limit_is_refused_before_it_is_read(ws: dict,
                                                                         tmp_path: Path) -> None:
    """The file is read whole: one over search.max_query_file_bytes exits 2 naming the setting,
    without reading it (a sparse 4 GiB file: reading it would take 4 GiB and many seconds)."""
    import time

    huge = tmp_path / "huge.jsonl"
    with huge.open("wb") as fh:
        fh.truncate(4 << 30)
    started = time.monotonic()
    result = search(ws, "--queries", str(huge))
    assert result.exit_code == 2 and time.monotonic() - started < 30
    said = " ".join(result.stderr.split())
    assert f"has {4 << 30:,} bytes, over the {64 << 20:,} of search.max_query_file_bytes" in said
    small = tmp_path / "small.jsonl"
    small.write_text(json.dumps({"id": "a", "text": "open a socket"}) + "\n")
    over = search(ws, "--queries", str(small), env={"VECPRESS_SEARCH__MAX_QUERY_FILE_BYTES": "16"})
    assert over.exit_code == 2 and "split it into smaller files" in " ".join(over.stderr.split())


def test_a_queries_file_over_the_search_limits_is_sent_in_batches(ws: dict, tmp_path: Path
                                                                  ) -> None:
    """Eleven queries at k=4 with at most 3 queries and 8 hits per search: six searches of two,
    one result line per query, in order."""
    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps({"id": f"q{n}", "text": f"open file number {n}"}) + "\n"
                               for n in range(11)))
    result = search(ws, "--queries", str(queries), "-k", "4", "--json",
                    env={"VECPRESS_SEARCH__MAX_QUERIES": "3", "VECPRESS_SEARCH__MAX_HITS": "8"})
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["id"] for line in lines] == [f"q{n}" for n in range(11)]
    assert all(len(line["results"]) == 4 for line in lines)


def test_a_query_over_the_byte_limit_is_a_usage_error(ws: dict) -> None:
    result = search(ws, "word " * 4000)
    assert result.exit_code == 2
    assert "query 'query' has 20,000 bytes: the limit is 16,384 (setting " \
           "search.max_query_bytes" in " ".join(result.stderr.split())


def test_fewer_results_than_k_is_noted_on_stderr_only(ws: dict) -> None:
    passages = ws["summary"]["passages"]
    assert passages < 1024
    result = search(ws, "read lines from a file", "-k", "1024", "--json")
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]  # stdout: JSON only
    assert len(lines) == 1 and len(lines[0]["results"]) == passages
    assert (f"note: only {passages} of 1024 results: the collection has {passages} passages"
            in result.stderr)
    assert "note:" not in search(ws, "read lines from a file", "-k", "3").stderr


def test_a_query_longer_than_the_window_is_noted_as_truncated(ws: dict) -> None:
    words = " ".join(f"word{n}" for n in range(400))
    result = search(ws, words, "-k", "2", "--json")
    assert result.exit_code == 0, result.stderr
    note = re.search(r"note: query 'query' has (\d+) tokens; it was truncated to 256 tokens",
                     result.stderr)
    assert note is not None and int(note[1]) > 256, result.stderr
    assert len(json.loads(result.stdout)["results"]) == 2


def test_a_model_cache_without_the_model_is_a_configuration_error(ws: dict, tmp_path: Path
                                                                  ) -> None:
    result = search(ws, "anything", env={"VECPRESS_MODEL__CACHE_DIR": str(tmp_path)})
    assert result.exit_code == 2
    line = one_error_line(result.stderr)
    assert f"no {tmp_path}/" in line and "meta.json" in line
    assert "give the same --storage-root as the ingest" in line


def test_another_milvus_uri_is_named_without_retrying(ws: dict, tmp_path: Path) -> None:
    """A Lite file without the collection is named; a Lite path with no file is too, and is
    not created (opening it made an empty database there, a read's side effect)."""
    from vecpress.infra import lite_engine

    other = str(tmp_path / "other.db")
    flags = [*ws["args"][:4], "--milvus-uri", other]
    result = search(ws, "anything", flags=flags)
    assert result.exit_code == 2
    line = one_error_line(result.stderr)
    assert f"there is no Milvus Lite file at {other} to hold '{ws['summary']['build']}'" in line
    assert "give the same --milvus-uri as the ingest" in line and not Path(other).exists()
    lite_engine.open_engine(other)  # a Lite file of other collections
    lite_engine.release(other)
    result = search(ws, "anything", flags=flags)
    assert result.exit_code == 2
    line = one_error_line(result.stderr)
    assert f"Milvus at {other} has no collection '{ws['summary']['build']}'" in line
    assert "give the same --milvus-uri as the ingest" in line


def test_a_milvus_server_that_does_not_answer_fails_the_search_within_its_wait(ws: dict) -> None:
    """A search waits ``search.milvus_wait_s`` for a Milvus that does not answer, not the 90 s
    an ingest rides out (``milvus.retry_s``): someone is waiting for its answer."""
    import socket
    import time

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    result = search(ws, "anything", env={"VECPRESS_SEARCH__MILVUS_WAIT_S": "2"},
                    flags=[*ws["args"][:4], "--milvus-uri", f"http://127.0.0.1:{port}"])
    assert result.exit_code == 3 and time.monotonic() - started < 20
    assert one_error_line(result.stderr).startswith(f"error: Milvus at http://127.0.0.1:{port} "
                                                    "failed: Fail connecting to server")


def test_a_milvus_error_is_one_line_and_exit_3(ws: dict, tmp_path: Path) -> None:
    """A Milvus whose collection of that name is another one (8-d vectors): the search fails in
    Milvus itself."""
    from milvus_lite.server_manager import server_manager_instance
    from pymilvus import MilvusClient

    other = str(tmp_path / "foreign.db")
    client = MilvusClient(uri=other)
    client.create_collection(ws["summary"]["build"], dimension=8)
    client.insert(ws["summary"]["build"], [{"id": 1, "vector": [0.1] * 8}])
    client.close()
    server_manager_instance.release_server(other)  # unlock the file for the search
    result = search(ws, "anything", flags=[*ws["args"][:4], "--milvus-uri", other])
    assert result.exit_code == 3
    assert one_error_line(result.stderr).startswith(f"error: Milvus at {other} failed: ")


def test_a_lite_search_imports_neither_pymilvus_nor_grpc_nor_pandas(ws: dict) -> None:
    """Issue 25's search in about a second: on Milvus Lite the search path reads the engine in
    the process (``infra/lite_engine.py``), and pyarrow is kept from importing pandas."""
    code = ("import json, runpy, sys\nsys.argv = json.loads(sys.argv[1])\n"
            "try:\n    runpy.run_module('vecpress', run_name='__main__')\n"
            "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
            "print(json.dumps(sorted(m for m in ('pymilvus', 'grpc', 'pandas') "
            "if m in sys.modules)))")
    argv = ["vecpress", "search", "read lines from a file", "-k", "3", "--json", *ws["args"]]
    done = subprocess.run([sys.executable, "-c", code, json.dumps(argv)], env=ws["env"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    hits, loaded = done.stdout.splitlines()
    assert len(json.loads(hits)["results"]) == 3
    assert json.loads(loaded) == []


def test_a_lite_file_held_by_another_process_exits_3(ws: dict) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom pymilvus import MilvusClient\n"
         "client = MilvusClient(uri=sys.argv[1])\nprint('holding', flush=True)\ntime.sleep(120)",
         ws["uri"]], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        result = subprocess.run([sys.executable, "-m", "vecpress", "search", "anything",
                                 *ws["args"]], env=ws["env"], capture_output=True, text=True,
                                timeout=120)
    finally:
        os.kill(holder.pid, 9)
        holder.wait(timeout=30)
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    assert one_error_line(result.stderr) == (
        f"error: the Milvus Lite file {ws['uri']} is in use by another process (an ingest?); "
        "search again when it finishes, or serve the collection from a Milvus server")
    assert search(ws, "anything", "-k", "1").exit_code == 0  # free again once the holder is gone


def test_the_name_and_storage_root_are_enough_from_another_directory(
        ws: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No --milvus-uri and no model cache: both come from the collection's catalog; --json
    carries each hit's text and source."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VECPRESS_MODEL__CACHE_DIR", raising=False)
    monkeypatch.delenv("VECPRESS_MILVUS__URI", raising=False)
    query = "read lines from a file"
    result = search(ws, query, "-k", "3", "--json", flags=ws["args"][:4],
                    env={"VECPRESS_MODEL__CACHE_DIR": None})
    assert result.exit_code == 0, result.stderr
    hits = json.loads(result.stdout)["results"]
    assert len(hits) == 3 and [h["rank"] for h in hits] == [1, 2, 3]
    corpus = {json.loads(line)["text"] for line in (ws["root"] / "corpus.jsonl").open()}
    assert all(h["text"] in corpus and h["source"].endswith("corpus.jsonl") for h in hits)
