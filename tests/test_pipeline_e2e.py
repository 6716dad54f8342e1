"""The whole chain for real, through the CLI: files → chunks → ONNX → PCA + PQ → Milvus Lite → search.

Real text (standard-library docstrings), the packaged MiniLM model, a real Dask cluster, a real
Prefect API (test harness) and a real Milvus Lite file. Bad inputs are mixed into the sources.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import milvus_rows, vecpress

pytestmark = pytest.mark.slow
RECALL_FLOOR = 0.85  # recall@10 of rescored compressed search vs exact FP32, held-out queries
COLLECTION = "e2e"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, paragraphs, model_cache, fp32_artifact,
              dask_address: str) -> dict:
    """(``fp32_artifact``: the packaged model exported once for the run, not by this CLI run.)"""
    root = tmp_path_factory.mktemp("e2e")
    src = root / "sources"
    (src / "notes" / "deep").mkdir(parents=True)
    corpus, held_out = paragraphs[:700], paragraphs[2900:2960]
    with (src / "corpus.jsonl").open("w") as fh:
        # Metadata of three selectivities for the filtered searches: 50%, 10% and 1%.
        for n, (doc_id, text) in enumerate(corpus):
            # and a key named like a passage field (source), which filters reach as metadata[].
            fh.write(json.dumps({"id": doc_id, "text": text, "half": n % 2 == 0,
                                 "team": f"t{n % 10}", "rare": n % 100 == 0}
                                | ({"source": "handbook"} if n % 100 == 1 else {})) + "\n")
    # Multi-paragraph Markdown documents: chunked into several passages each.
    for n in range(3):
        body = "\n\n".join(t for _, t in paragraphs[1000 + 40 * n : 1040 + 40 * n])
        (src / "notes" / "deep" / f"note{n}.md").write_text(f"# Note {n}\n\n{body}")
    pq.write_table(pa.table({"id": [i for i, _ in paragraphs[1200:1300]],
                             "text": [t for _, t in paragraphs[1200:1300]]}), src / "more.parquet")
    # Bad inputs, each of which must be reported with its location while the rest loads.
    (src / "empty.txt").write_text("")
    (src / "latin1.txt").write_bytes("ok line\ncaf\xe9\n".encode("latin-1"))
    (src / "broken.jsonl").write_text(
        json.dumps({"id": "good-1", "text": "A perfectly fine record about parsing files."})
        + "\n{this is not json\n"
        + json.dumps({"id": "good-2", "text": "Another fine record about sockets."}) + "\n"
        # team is a typed varchar field (the first run's --typed-fields): a number is refused.
        + json.dumps({"id": "bad-team", "text": "A record whose team is a number.", "team": 7})
        + "\n")
    pq.write_table(pa.table({"id": ["x"], "body": ["no text column"]}), src / "notext.parquet")
    queries = root / "queries.jsonl"
    queries.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in held_out))
    return {"root": root, "sources": src, "queries": queries, "corpus": corpus,
            "model_cache": model_cache,
            # ~900 passages: below the default 1,000 a collection keeps whole vectors; this test
            # is about the compressed path (the small-collection path has its own test).
            "env": {"VECPRESS_CODEC__MIN_FIT_VECTORS": "500",
                    "VECPRESS_DASK__ADDRESS": dask_address},
            "args": ["--collection", COLLECTION, "--storage-root", str(root / "data"),
                     "--milvus-uri", str(root / "data" / "milvus.db")]}


def _ingest(workspace: dict, *extra: str) -> tuple[int, dict | None, str]:
    result = vecpress(workspace, "ingest", str(workspace["sources"]), *workspace["args"], "--json",
                      *extra)
    out = result.stdout
    summary = json.loads(out[out.index("{\n"):]) if "{\n" in out else None
    return result.returncode, summary, result.stdout + result.stderr


def _count(workspace: dict) -> int:
    return milvus_rows(str(workspace["root"] / "data"), COLLECTION,
                       str(workspace["root"] / "data" / "milvus.db"))


@pytest.fixture(scope="module")
def first_run(workspace: dict, prefect_harness) -> dict:
    # team and half get typed, indexed fields; later runs keep them without the flag.
    code, summary, output = _ingest(workspace, "--eval-queries", str(workspace["queries"]),
                                    "--typed-fields", "team:varchar,half:bool")
    assert code == 0, output
    workspace["first_output"] = output
    return summary


def test_the_terminal_shows_the_run_link_one_line_per_stage_and_warnings(
        first_run: dict, workspace: dict) -> None:
    lines = workspace["first_output"].splitlines()
    assert any(line.startswith("run: http://") for line in lines)
    for headline in ("model all-MiniLM-L6-v2 (fp32 ONNX) ready in",
                     f"files: {first_run['changes']['new']} new, 0 changed", "streamed in",
                     "index IVF_SQ8 over", "checks: own text in the top 3"):
        assert any(line.startswith(headline) for line in lines), (headline, lines)
    # Each bad input is a warning; Prefect's own lines (task states) only with --verbose.
    warned = [line for line in lines if line.startswith("warning: input error: ")]
    assert len(warned) == len(first_run["errors"]) >= 4, lines
    assert not any("Finished in state" in line or " | INFO " in line for line in lines)


def test_one_row_per_passage(first_run: dict, workspace: dict) -> None:
    assert first_run["passages"] >= 500
    # 3 Markdown notes of 40 paragraphs each must have been split into several passages.
    assert first_run["passages"] > first_run["documents"]
    assert first_run["rows_in_milvus"] == first_run["passages"] == _count(workspace)
    assert first_run["truncated"] == 0


def test_bad_inputs_are_reported_and_the_rest_loaded(first_run: dict, workspace: dict) -> None:
    errors = {(Path(e["source"]).name, e["location"], e["message"]) for e in first_run["errors"]}
    assert ("empty.txt", "", "empty file, nothing to index") in errors
    assert ("latin1.txt", "line 2 (byte 11)", "invalid UTF-8") in errors
    assert any(name == "broken.jsonl" and loc == "line 2" and "malformed JSON" in msg
               for name, loc, msg in errors)
    assert any(name == "notext.parquet" and loc == "schema" for name, loc, _ in errors)
    assert ("broken.jsonl", "record bad-team", "metadata field 'team' holds the number 7, but "
            "metadata.fields declares it varchar") in errors
    assert len(errors) == 5
    saved = workspace["root"] / "data" / "collections" / COLLECTION / "runs" / first_run["run_id"]
    quarantined = [json.loads(line) for line in (saved / "quarantine.jsonl").read_text().splitlines()]
    assert quarantined == first_run["errors"]
    # 700 JSONL + 100 Parquet + 2 good lines of the broken file + 3 notes.
    assert first_run["documents"] == 805


def test_recall_and_sanity(first_run: dict) -> None:
    assert first_run["sanity_self_top3"] == 1.0
    assert first_run["recall"]["eval queries"] == 60
    assert first_run["recall"]["recall@10 rescored"] >= RECALL_FLOOR
    # The default PCA keeps 99% of the sample's variance, in a multiple of M (32) dimensions.
    codec = first_run["codec"]
    dim = codec["pca_dim"]
    assert codec["explained_variance"] >= 0.99 and dim % 32 == 0 and 64 <= dim <= 384
    # Milvus holds the leading 128 components; rescoring reads all of them (codec.milvus_dim).
    assert codec["milvus_dim"] == min(128, dim) and dim % 32 == 0
    plan = first_run["index"]["plan"]  # the index is sized for the rows, searches follow it
    assert plan["index_type"] == "IVF_SQ8" and plan["rows"] == first_run["rows_in_milvus"]
    assert plan["nprobe"] == plan["params"]["nlist"]  # < 50,000 rows: every list is scanned
    sizes = first_run["bytes_per_vector"]
    assert sizes["FP32 embedding"] == 1536
    assert sizes[f"archive: PCA-{dim} sq8 (rescoring)"] == dim == codec["refine_bytes"]
    assert not any("PQ" in name and "code" in name for name in sizes)  # no PQ codes are archived


def _file_bytes(folder: Path) -> dict[str, int]:
    """Every regular file under ``folder`` (links left out) by its relative path: what ``du``
    would count, found independently of the code under test."""
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*")
            if p.is_file() and not p.is_symlink()}


def test_the_footprint_is_the_bytes_on_disk(first_run: dict, workspace: dict) -> None:
    """Every tier of the run summary is measured: each figure equals the bytes of its files."""
    footprint, data = first_run["footprint"], workspace["root"] / "data"
    assert footprint["passages"] == first_run["rows_in_milvus"]
    tiers = {tier: figures["bytes"] for tier, figures in footprint["tiers"].items()}
    kept = {path: n for path, n in _file_bytes(data / "collections" / COLLECTION).items()
            if not path.startswith("runs/")}  # the run's own log is written after the summary
    stored = tiers["at rest on the storage root"]
    assert sum(n for kind, n in stored.items() if kind != "run logs") == sum(kept.values())
    shards = {path: n for path, n in kept.items() if path.startswith("shards/")}
    assert stored["passage shards (text, metadata)"] == sum(
        n for path, n in shards.items() if Path(path).name.startswith("part-"))
    assert stored["archive (rescoring codes)"] == sum(
        n for path, n in shards.items() if Path(path).name.startswith("archive-"))
    in_milvus = _file_bytes(data / "milvus.db" / "collections" / first_run["build"])
    assert sum(tiers["at rest in Milvus"].values()) == sum(in_milvus.values())
    assert tiers["at rest in Milvus"]["index files"] == sum(
        n for path, n in in_milvus.items() if "/indexes/" in path)  # vector and scalar
    rescore = data / "collections" / COLLECTION / "rescore" / first_run["build"] / "current"
    ram = tiers["RAM while serving"]
    index = sum(p.stat().st_size for p in rescore.glob("*.npy"))
    dim = first_run["codec"]["pca_dim"]
    rows = first_run["rows_in_milvus"]  # sorted int64 keys and uint32 locations of their codes
    assert rows * 12 <= index <= rows * 12 + 2 * 128  # + two .npy headers
    assert {p.name for p in rescore.iterdir()} == {"pks.npy", "locs.npy", "manifest.json",
                                                   "refine.faiss"}  # no copy of the codes
    # A search maps the index and the sq8 codes (1 B per dimension) in the archive shards.
    assert ram["rescoring store (mapped codes), memory-mapped"] == index + rows * dim
    # Milvus Lite decodes every row into RAM: at least its float32 vector (the leading
    # components Milvus holds) and its text.
    width = first_run["codec"]["milvus_dim"]
    assert ram["rows, every field decoded"] >= first_run["rows_in_milvus"] * 4 * width
    assert ram["vector index"] > 0  # IVF_SQ8 over the rows
    per_passage = footprint["totals_per_passage"]
    at_rest = sum(in_milvus.values()) + sum(kept.values())
    assert per_passage["at rest, all tiers (run logs apart)"] == pytest.approx(
        at_rest / footprint["passages"], abs=0.1)


# Each filter with which passages it keeps (their metadata).
FILTERS = {"half == true": lambda m: m.get("half") is True,
           'team == "t7"': lambda m: m.get("team") == "t7",
           "rare == true and chunk >= 0": lambda m: m.get("rare") is True}


def test_filtered_search_returns_only_matches_with_recall_vs_exact_fp32(
        first_run: dict, workspace: dict, fp32_artifact) -> None:
    """At 50%, 10% and 1% selectivity, searched exactly over the matches (the default up to
    search.filter_exact_rows), through the index with widened probes, and applied to an
    unfiltered search's candidates (search.post_filter_share): only matching passages, recall@10
    ≥ 0.95 against exact FP32 search within the filtered set."""
    import numpy as np

    from vecpress.api import open_collection
    from vecpress.infra.settings import Settings
    from vecpress.tasks.embed.embedder import OnnxEmbedder

    shards = workspace["root"] / "data" / "collections" / COLLECTION / "shards"
    passages = pa.concat_tables([pq.read_table(p, columns=["pk", "text", "metadata"])
                                 for p in sorted(shards.glob("*/part-*.parquet"))])
    metadata = [json.loads(m) if m else {} for m in passages.column("metadata").to_pylist()]
    queries = [json.loads(line)["text"] for line in workspace["queries"].read_text().splitlines()]
    embedder = OnnxEmbedder(fp32_artifact)
    query_vectors = embedder.encode(queries)
    truths = {}  # per filter: the exact FP32 top 10 of the passages it keeps
    for text, keeps in FILTERS.items():
        rows = [i for i, m in enumerate(metadata) if keeps(m)]
        assert rows, text
        vectors = embedder.encode([passages.column("text")[i].as_py() for i in rows])
        pks = passages.column("pk").to_numpy()[rows]
        truths[text] = [set(pks[t].tolist())
                        for t in np.argsort(-(query_vectors @ vectors.T), axis=1)[:, :10]]
    recalls = {}
    # The default plan; the index with widened probes; after an unfiltered search (post-filter).
    for exact_rows, post in ((16_384, None), (0, 1.01), (0, 1e-9)):
        kb = open_collection(COLLECTION, workspace["root"] / "data", settings=Settings(
            search={"filter_exact_rows": exact_rows, "post_filter_share": post}))
        try:
            for text, keeps in FILTERS.items():
                found = kb.search(queries, k=10, filter=text)
                assert all(keeps(hit.metadata) for hits in found for hit in hits), text
                recalls[(text, exact_rows, post)] = float(np.mean(
                    [len({h.pk for h in hits} & truth) / len(truth)
                     for hits, truth in zip(found, truths[text], strict=True)]))
        finally:
            kb.close()
    assert min(recalls.values()) >= 0.95, recalls
    # A malformed filter is a ValueError that says what is wrong, before results.
    from vecpress.api import FilterError

    kb = open_collection(COLLECTION, workspace["root"] / "data")
    try:
        # team and half are filtered on their typed fields, rare on the JSON field.
        assert kb.info().typed_fields == {"half": "bool", "team": "varchar"}
        with pytest.raises(FilterError, match="not a valid expression"):
            kb.search("anything", k=3, filter="team === 3")
        # A key no passage has (a typo) is named with its position and the keys there are.
        with pytest.raises(FilterError, match=r"no passage has the metadata key 'teem' at "
                                              r"position 10 .* keys of this collection .*: "
                                              r"file_bytes, file_modified, half, rare, source, "
                                              r"team"):
            kb.search("anything", k=3, filter='half and teem == "t7"')
        # An unquoted value reads as a key: the message says how to write a value.
        with pytest.raises(FilterError, match=r"key 't7' at position 8 .*a value is quoted"):
            kb.search("anything", k=3, filter="team = t7 and half")
        # Two slips that match nothing, said when asked: the bare name source is the passage's
        # file (the record's own source is metadata["source"]); a number compared with text.
        assert kb.search("anything", k=3, filter='source == "handbook"') == [[]]
        assert 'metadata["source"]' in (kb.why_nothing_matched('source == "handbook"') or "")
        found = kb.search("anything", k=10, filter='metadata["source"] == "handbook"')[0]
        assert len(found) == sum(m.get("source") == "handbook" for m in metadata) >= 7
        assert {h.metadata["source"] for h in found} == {"handbook"}
        assert kb.search("anything", k=3, filter='file_bytes >= "1"') == [[]]
        assert "'file_bytes' holds numbers" in (kb.why_nothing_matched('file_bytes >= "1"') or "")
        assert "holds text" in (kb.why_nothing_matched("file_modified > 2020") or "")
        assert kb.why_nothing_matched("rare == true and half") is None
    finally:
        kb.close()
    cli = vecpress(workspace, "search", "anything", "--filter", 'source == "handbook"',
                   *workspace["args"])
    assert cli.returncode == 0 and 'metadata["source"]' in cli.stderr, cli.stderr


def test_framework_retrievers_return_text_score_metadata_within_filters(
        first_run: dict, workspace: dict) -> None:
    """LangChain's and LlamaIndex's retrievers over the real collection: the same passages as
    ``Collection.search``, with text, score and metadata, under their own kinds of filters."""
    import asyncio

    from langchain_core.documents import Document
    from llama_index.core.vector_stores.types import MetadataFilter, MetadataFilters

    from vecpress.api import open_collection
    from vecpress.integrations import langchain, llamaindex

    query = workspace["corpus"][7][1]
    with open_collection(COLLECTION, workspace["root"] / "data") as kb:
        expected = kb.search(query, k=5, filter='team == "t7"')[0]
        retriever = langchain.VecpressRetriever(collection=kb, k=5, filter={"team": "t7"})
        docs = retriever.invoke(query)
        assert all(isinstance(d, Document) for d in docs)
        assert [(d.id, d.page_content, d.metadata["score"]) for d in docs] == \
            [(str(h.pk), h.text, h.score) for h in expected] and len(docs) == 5
        source = workspace["sources"] / "corpus.jsonl"
        assert docs[0].metadata | {"score": 0, "file_modified": 0} == {
            "team": "t7", "half": False, "rare": False, "file_bytes": source.stat().st_size,
            "file_modified": 0, "source": expected[0].source, "score": 0,
            "doc_id": expected[0].doc_id, "chunk": 0, "pk": expected[0].pk}
        # A call's filter and k apply with the retriever's: t7 rows are all odd, never half.
        assert retriever.invoke(query, filter="half == true") == []
        assert [d.id for d in asyncio.run(retriever.ainvoke(query, k=2))] == \
            [d.id for d in docs[:2]]
        with pytest.raises(ValueError, match="k=0: give 1 to"):  # not the retriever's k, silently
            retriever.invoke(query, k=0)
        # A value is data: a quote in it cannot open a second condition.
        assert langchain.VecpressRetriever(
            collection=kb, filter={"team": 't7" or team == "t3'}).invoke(query) == []

        nodes = llamaindex.VecpressRetriever(kb, k=8, filters=MetadataFilters(
            condition="or", filters=[MetadataFilter(key="team", value="t1"),
                                     MetadataFilter(key="team", value=["t2", "t7"],
                                                    operator="in")])).retrieve(query)
        assert len(nodes) == 8 and nodes[0].node.node_id == str(expected[0].pk)
        assert {n.node.metadata["team"] for n in nodes} <= {"t1", "t2", "t7"}
        assert [n.score for n in nodes] == sorted((n.score for n in nodes), reverse=True)
        assert nodes[0].node.get_content() == expected[0].text
        assert [n.node.node_id for n in asyncio.run(llamaindex.VecpressRetriever(
            kb, k=3, filters={"team": "t7"}).aretrieve(query))] == [d.id for d in docs[:3]]
        outside = llamaindex.VecpressRetriever(kb, k=10, filters=MetadataFilters(filters=[
            MetadataFilter(key="team", value=[f"t{n}" for n in range(9)], operator="nin"),
            MetadataFilter(key="team", value="t", operator=">")])).retrieve(query)
        assert len(outside) == 10 and {n.node.metadata["team"] for n in outside} == {"t9"}


def test_run_report_has_the_recall_vs_bytes_curve(first_run: dict, workspace: dict) -> None:
    curve = first_run["codec"]["autotune"]
    assert curve["applied"] is False  # measured for the report; the configured codec is kept
    assert {r["pq_m"] for r in curve["rows"]} == {8, 16, 32} and curve["chosen"]["pq_m"] == 32
    rescored = {r["pq_m"]: r["recall_rescored"] for r in curve["rows"]}
    assert rescored[8] <= rescored[16] <= rescored[32] + 0.02  # more bytes, better recall
    run = workspace["root"] / "data" / "collections" / COLLECTION / "runs" / first_run["run_id"]
    assert (run / "recall_vs_bytes.png").read_bytes()[:4] == b"\x89PNG"
    # Measured beside the stream (not before its encoding), and kept with the codec.
    assert any(s["stage"].startswith("recall-vs-bytes curve") for s in first_run["stages"])
    codec_dir = workspace["root"] / "data" / "collections" / COLLECTION / "codecs" / \
        first_run["codec"]["codec_id"]
    assert json.loads((codec_dir / "report.json").read_text())["autotune"] == curve


def test_search_finds_a_passage_by_its_own_text(first_run: dict, workspace: dict) -> None:
    for doc_id, text in workspace["corpus"][::140]:
        result = vecpress(workspace, "search", text, "-k", "3", "--json", *workspace["args"])
        assert result.returncode == 0, result.stderr
        top3 = [r["doc_id"] for r in json.loads(result.stdout)["results"]]
        assert doc_id in top3
    table = vecpress(workspace, "search", "compress data with zlib", "-k", "5", *workspace["args"])
    assert table.returncode == 0 and "score" in table.stdout and "doc id" in table.stdout


def test_search_queries_file_writes_json_lines(first_run: dict, workspace: dict) -> None:
    result = vecpress(workspace, "search", "--queries", str(workspace["queries"]), "-k", "10",
                      "--json", *workspace["args"])
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 60
    first = lines[0]["results"]
    assert len(first) == 10 and [r["rank"] for r in first] == list(range(1, 11))
    assert {"doc_id", "chunk", "score", "pk"} <= set(first[0])
    assert first[0]["score"] >= first[-1]["score"]


def test_reingest_is_incremental_and_runs_on_an_external_dask_cluster(
        first_run: dict, workspace: dict, dask_address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing changed: good files are only compared with the manifest; the 3 files that gave no
    # passage at all are read (and reported) again until they are fixed.
    code, same, output = _ingest(workspace, "--verbose")
    assert code == 0, output
    assert "Finished in state Completed()" in output  # --verbose: Prefect's lines as well
    assert same["changes"]["new"] == 3 and same["changes"]["changed"] == 0
    assert len(same["errors"]) == 3
    assert same["passages_embedded"] == 0 and _count(workspace) == first_run["rows_in_milvus"]

    # One new file: only its passages are read and embedded, on the external cluster.
    extra = workspace["sources"] / "extra.jsonl"

    def write_extra(version: int) -> None:
        extra.write_text("".join(json.dumps({"id": f"extra-{n}", "version": version,
                                             "text": f"Extra record {n} about incremental "
                                             "loading of vector collections."}) + "\n"
                                 for n in range(5)))

    write_extra(1)
    shards = workspace["root"] / "data" / "collections" / COLLECTION / "shards"
    before = set(shards.glob("*/part-*.parquet"))
    try:
        with monkeypatch.context() as env:
            # This run's shards carry the chunker's token ids (as fp16 runs do), and the embed
            # stage on the external cluster (the session's, named by the flag) embeds from them.
            env.setenv("VECPRESS_CHUNK__KEEP_TOKEN_IDS", "true")
            code, again, output = _ingest(workspace, "--dask-address", dask_address)
            # Its metadata alone changes: the rows are rewritten, nothing is embedded again. Held-out
            # recall cannot be measured on a run that reuses the codec: it says so.
            write_extra(2)
            code_meta, meta_only, output_meta = _ingest(workspace, "--eval-queries",
                                                        str(workspace["queries"]))
    finally:
        extra.unlink()
    assert code == 0, output
    assert code_meta == 0, output_meta
    assert meta_only["changes"]["changed"] == 1 and meta_only["passages_embedded"] == 0
    assert meta_only["passages_reused"] == 5
    assert meta_only["recall"] == {} and "warning: recall@10 not measured: exact FP32 truth needs " \
        "every passage's FP32 vector, and 0 of this run's 1 shards kept one" in \
        " ".join(output_meta.split()), output_meta
    from vecpress.api import open_collection

    with open_collection(COLLECTION, workspace["root"] / "data") as kb:
        hits = kb.search("incremental loading of vector collections", k=5,
                         filter='version == 2 and file_bytes > 100 and file_modified > "2000"')
    assert sorted(h.doc_id for h in hits[0]) == [f"extra-{n}" for n in range(5)]
    new_shards = list(set(shards.glob("*/part-*.parquet")) - before)
    assert new_shards and all("token_ids" in pq.read_schema(s).names for s in new_shards)
    assert again["changes"]["new"] == 3 + 1 and again["passages_embedded"] == 5
    assert again["codec_reused"] is True
    assert again["codec"]["codec_id"] == first_run["codec"]["codec_id"]
    assert again["cluster"].startswith("external")
    assert again["rows_in_milvus"] == first_run["rows_in_milvus"] + 5 == _count(workspace)

    # The file is gone again: a run naming it deletes its rows.
    code, gone, output = _ingest(workspace)
    assert code == 0, output
    assert gone["changes"]["deleted"] == 1 and gone["rows_deleted"] == 5
    assert _count(workspace) == first_run["rows_in_milvus"]


def test_reindex_after_incremental_runs_brings_back_no_deleted_row(first_run: dict,
                                                                   workspace: dict) -> None:
    # Runs after the first added and deleted a file: only the live rows may be rebuilt.
    result = vecpress(workspace, "reindex", "--from-archive",
                      str(workspace["root"] / "data" / "collections" / COLLECTION),
                      "--collection", "e2e_copy", *workspace["args"][2:], "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    copy = json.loads(result.stdout[result.stdout.index("{"):])
    assert copy["rows_in_milvus"] == first_run["rows_in_milvus"] == _count(workspace)
    from vecpress.api import open_collection

    # The rebuilt collection keeps the typed fields of the one it was rebuilt from.
    with open_collection("e2e_copy", workspace["root"] / "data") as kb:
        assert kb.info().typed_fields == {"half": "bool", "team": "varchar"}


def test_a_run_with_only_bad_input_fails_clearly_and_loses_nothing(first_run: dict,
                                                                   workspace: dict) -> None:
    before = _count(workspace)
    result = vecpress(workspace, "ingest", str(workspace["sources"] / "empty.txt"),
                      *workspace["args"])
    assert result.returncode == 2
    assert "no passages to ingest" in result.stderr and "empty.txt" in result.stderr
    assert _count(workspace) == before


def test_unknown_collection_is_explained(workspace: dict) -> None:
    result = vecpress(workspace, "search", "anything", "--collection", "missing",
                      "--storage-root", str(workspace["root"] / "data"))
    assert result.returncode == 2
    assert "no collection 'missing'" in result.stderr
