"""Every exit code of `vecpress ingest`, through the real CLI: 1 for skipped records under
--strict (with a folder of every kind of bad input, whose good rows must all land), 2 for usage,
configuration and no usable input, 3 for infrastructure that does not answer. Each failure is one
line that says what to do, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from durable import catalog
from helpers import milvus_rows

pytestmark = pytest.mark.slow
CLOSED = "127.0.0.1:9"  # the discard port: nothing listens there


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory, model_cache: Path, tiny_model: str,
        dask_address: str, prefect_harness) -> dict:
    from prefect.settings import PREFECT_API_URL

    root = tmp_path_factory.mktemp("exits")
    env = os.environ | {"PREFECT_API_URL": str(PREFECT_API_URL.value()), "COLUMNS": "200",
                        "VECPRESS_MODEL__CACHE_DIR": str(model_cache),
                        "VECPRESS_MODEL__PATH": tiny_model,
                        "VECPRESS_CODEC__PCA_DIM": "32", "VECPRESS_CODEC__PQ_M": "8",
                        "VECPRESS_DASK__ADDRESS": dask_address}
    return {"root": root, "env": env}


def _ingest(cli: dict, source: Path | str, collection: str, *extra: str,
            env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vecpress", "ingest", str(source), "--collection", collection,
         "--storage-root", str(cli["root"] / "data"), "--milvus-uri",
         str(cli["root"] / f"{collection}.db"), *extra],
        env=cli["env"] | (env or {}), capture_output=True, text=True, timeout=600)


def _one_line_error(result: subprocess.CompletedProcess, *words: str) -> None:
    err = result.stderr
    assert "Traceback" not in err, err[-3000:]
    assert "error:" in err and all(w in err for w in words), err[-3000:]


# (file name, content, where the error is, words of its message); None: the file must load.
BAD_INPUTS = [
    ("blank.txt", " \n\t\n  \n", "", "empty file"),
    ("nul.txt", b"some text\x00\x01\x02 binary", "", "binary file"),
    ("types.jsonl", "\n".join(json.dumps(r) for r in [
        {"id": "t1", "text": None}, {"id": "t2", "text": 42}, {"id": "t3", "text": ["a"]},
        {"id": "t4", "text": "A good record among bad ones, about parsing configuration files."},
        {"id": "t4", "text": "The same id again, in the same file."}]) + "\n",
     "line 1", "is null"),
    ("wrong.parquet", pa.table({"id": ["p1", "p2"], "text": [1, 2]}), "schema", "int64"),
]


def test_strict_exits_1_and_every_good_record_still_lands(cli: dict,
                                                          paragraphs: list[tuple[str, str]]) -> None:
    src = cli["root"] / "mixed"
    src.mkdir()
    for name, content, _, _ in BAD_INPUTS:
        if isinstance(content, pa.Table):
            pq.write_table(content, src / name)
        elif isinstance(content, bytes):
            (src / name).write_bytes(content)
        else:
            (src / name).write_text(content)
    (src / "loop.txt").symlink_to(src / "loop.txt")  # a symlink loop
    # Good inputs of every shape: CJK, emoji and RTL text, a 5 MB paragraph, a 100 KB token.
    (src / "scripts.txt").write_text("数据压缩把重复的字节序列替换为更短的引用。\n\n"
                                     "Emoji in prose 🚀📦 still make a passage. 🙂\n\n"
                                     "ضغط البيانات يقلل حجم الملفات على القرص بشكل كبير.")
    words = " ".join(t for _, t in paragraphs[:400]).split()
    (src / "huge.txt").write_text(" ".join(words * (5_000_000 // (len(" ".join(words)) + 1) + 1)))
    (src / "token.txt").write_text("x" * 100_000)
    result = _ingest(cli, src, "mixed", "--strict", "--json")
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    summary = json.loads(result.stdout[result.stdout.index("{\n"):])
    errors = summary["errors"]
    for name, _, location, words_ in BAD_INPUTS:
        found = [e for e in errors if e["source"].endswith(name)]
        assert any(e["location"].startswith(location) and words_ in e["message"] for e in found), \
            (name, found)
    assert any(e["location"].startswith("line 5") and "already used" in e["message"]
               for e in errors if e["source"].endswith("types.jsonl"))
    assert any("symbolic links" in e["message"] for e in errors if e["source"].endswith("loop.txt"))
    run = cli["root"] / "data" / "collections" / "mixed" / "runs" / summary["run_id"]
    assert [json.loads(line) for line in (run / "quarantine.jsonl").read_text().splitlines()] \
        == errors
    # Every good record landed: one row per passage, each good file present.
    assert milvus_rows(str(cli["root"] / "data"), "mixed", str(cli["root"] / "mixed.db")) == \
        summary["passages"] > 1_000
    files = {Path(p).name for p in catalog({"root": cli["root"], "storage_root":
                                            cli["root"] / "data"}, "mixed")
             .files(f"mixed__v{1}").column("path").to_pylist()}
    assert {"scripts.txt", "huge.txt", "token.txt", "types.jsonl"} <= files


def test_usage_and_configuration_errors_exit_2(cli: dict) -> None:
    empty = cli["root"] / "only_empty"
    empty.mkdir()
    (empty / "a.txt").write_text("")
    result = _ingest(cli, empty, "nothing")
    assert result.returncode == 2
    _one_line_error(result, "no passages to ingest")
    result = _ingest(cli, f"{cli['root']}/nowhere/*.txt", "nothing")
    assert result.returncode == 2
    _one_line_error(result)
    result = _ingest(cli, empty, "nothing", env={"VECPRESS_CODEC__PQ_M": "7"})
    assert result.returncode == 2
    _one_line_error(result, "codec", "must divide")
    # A mistyped path into an existing collection is no usable input too (it exited 0 as "up
    # to date"), and changes nothing.
    good = cli["root"] / "one_good"
    good.mkdir()
    (good / "a.txt").write_text("How the log files are rotated, compressed and removed.\n")
    assert _ingest(cli, good, "existing").returncode == 0
    result = _ingest(cli, cli["root"] / "one_goood", "existing")
    assert result.returncode == 2
    _one_line_error(result, "no passages to ingest", "one_goood")
    again = _ingest(cli, good, "existing")
    assert again.returncode == 0 and "up to date" in again.stderr, again.stderr[-2000:]


@pytest.mark.parametrize(("what", "flags", "env", "words"), [
    ("dask", ["--dask-address", f"tcp://{CLOSED}"], {"VECPRESS_DASK__CONNECT_TIMEOUT_S": "2"},
     ["Dask scheduler", "--dask-address"]),
    ("milvus", ["--milvus-uri", f"http://{CLOSED}"], {"VECPRESS_MILVUS__RETRY_S": "2"},
     ["Milvus at", "server is up"]),
    ("prefect", [], {"PREFECT_API_URL": f"http://{CLOSED}/api", "VECPRESS_PREFECT_STARTUP_S": "3"},
     ["Prefect API", "does not answer"]),
])
def test_infrastructure_that_does_not_answer_exits_3(cli: dict, paragraphs, what: str,
                                                     flags: list[str], env: dict,
                                                     words: list[str]) -> None:
    src = cli["root"] / "small"
    src.mkdir(exist_ok=True)
    (src / "a.txt").write_text("\n\n".join(t for _, t in paragraphs[:30]))
    result = _ingest(cli, src, f"down_{what}", *flags, env=env)
    assert result.returncode == 3, result.stderr[-3000:]
    _one_line_error(result, *words)
    if what == "milvus":  # the flow ran and failed: its artifact names the error and the files
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

        with get_client(sync_client=True) as client:
            (artifact,) = client.read_artifacts(artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["vecpress-down-milvus-failed"])))
        assert "MilvusException" in artifact.data and str(src) in artifact.data


def test_an_ingest_into_a_lite_file_another_process_holds_waits_then_exits_3(cli: dict) -> None:
    """`vecpress api` (here: this test's process) holds the collection's Milvus Lite file: the
    ingest says it waits, then exits 3 in one line naming the file and what to do (it used to
    retry for 90 s in the flow, then blame a server); once the file is free the same command
    loads."""
    from vecpress.infra.milvus import MilvusStore
    from vecpress.infra.settings import MilvusSettings

    source = cli["root"] / "busy_source"
    source.mkdir()
    (source / "a.txt").write_text("How the log files are rotated, compressed and removed.\n")
    holder = MilvusStore(MilvusSettings(uri=str(cli["root"] / "busy.db")))
    try:
        result = _ingest(cli, source, "busy", env={"VECPRESS_MILVUS__RETRY_S": "2"})
        assert result.returncode == 3, result.stderr[-2000:]
        _one_line_error(result, "busy.db is still in use by another process after 2 s",
                        "stop `vecpress api`")
        assert "waiting up to 2 s for the Milvus Lite file" in result.stderr
    finally:
        holder.close()
    assert _ingest(cli, source, "busy").returncode == 0


def test_eval_queries_are_id_and_text_whatever_the_sources_fields_and_checked_first(
        cli: dict, paragraphs: list[tuple[str, str]]) -> None:
    """An --eval-queries file is {"id", "text"} per line (README), also when --id-field and
    --text-field name other fields of the sources: it was read with the sources' names and
    failed (exit 2, twice said) after the whole load. A bad or missing one exits 2 in one line
    naming the file and line before anything is loaded."""
    dump = cli["root"] / "dump.jsonl"
    dump.write_text("".join(json.dumps({"key": i, "body": t}) + "\n" for i, t in paragraphs[:8]))
    queries = cli["root"] / "evalq.jsonl"
    queries.write_text("".join(json.dumps({"id": i, "text": t}) + "\n"
                               for i, t in paragraphs[100:104]))
    fields = ("--id-field", "key", "--text-field", "body")
    result = _ingest(cli, dump, "kbj", *fields, "--eval-queries", str(queries), "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout[result.stdout.index("{\n"):])
    assert summary["recall"]["eval queries"] == 4 and summary["passages"] == 8, summary

    bad = cli["root"] / "evalq_bad.jsonl"
    bad.write_text(json.dumps({"id": "q1", "text": "How are log files rotated?"}) + "\n{broken\n")
    wrong = cli["root"] / "evalq_fields.jsonl"  # the sources' field names: not the documented ones
    wrong.write_text(json.dumps({"key": "q1", "body": "How are log files rotated?"}) + "\n")
    for path, where, words in [(bad, "line 2", "malformed JSON"),
                               (wrong, "line 1", "has no field 'text'"),
                               (cli["root"] / "evalq_missing.jsonl", "", "no such file")]:
        result = _ingest(cli, dump, "kbj_bad", *fields, "--eval-queries", str(path))
        assert result.returncode == 2, result.stderr[-3000:]
        _one_line_error(result, "evaluation queries", f"{path}{':' + where if where else ''}",
                        words)
        assert result.stderr.count(words) == 1, result.stderr[-3000:]  # said once
        if path is wrong:  # the hint names the file's format, not --text-field
            said = " ".join(result.stderr.split())  # however the terminal width wrapped it
            assert '{"id": ..., "text": ...}' in said, result.stderr[-3000:]
        # Checked before any ingest work: no model export, no build, no Milvus file.
        assert "model " not in result.stderr and "files:" not in result.stderr, result.stderr
        assert not (cli["root"] / "data" / "collections" / "kbj_bad").exists()
        assert not (cli["root"] / "kbj_bad.db").exists()
