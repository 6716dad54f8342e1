"""Scale benchmark: whole `vecpress ingest` commands at 100k, 300k and 1M real passages on one machine.

What it measures, per corpus size: the wall time of every stage (from the run's ``summary.json``)
and of the whole command, end-to-end passages/s, the peak RSS of the flow process and of each Dask
worker (sampled every 0.25 s, with a coarse timeline so memory that grows with the run shows),
bytes on the storage root per passage split by catalog / shards / codecs / runs, Milvus rows/s of
the load, and the Milvus Lite ``.db`` (or Milvus server data folder) size per row.

Why: ``benchmarks/pipeline.py`` measures 20k-200k passages; whether a 2-core machine takes 1M is a
question of what grows with the corpus (memory, catalog, per-shard overheads, Milvus), not of the
model. So the model is ``--model tiny`` of pipeline.py (a random 1-layer, 64-d BERT with MiniLM's
tokenizer): embedding is nearly free and every other stage shows at full size.

Real passages: the standard library's and site-packages' docstrings give ~200k, so the corpus adds
other real text installed on the machine, in this order until the pool is full: installed
packages' descriptions and summaries, BSD fortunes (``benchmarks/corpora.py``), Python source
comments, C/C++ header comments, package documentation files, /usr/share/doc, the common licenses,
English man pages, info manuals, then translated man pages. Paragraphs of 8-200 words, mostly
letters, whitespace normalised; exact duplicate texts are dropped (first copy wins); ids are unique.
The pool (the first ``max(--passages)`` of that stream) is shuffled once with a fixed seed and each
size takes a prefix, so every size of one invocation has the same mix of kinds. The JSON says how
many passages and distinct source files (or packages) each kind gave. Cached under
data/bench/scale/ (git-ignored); delete it to rebuild.

    .venv/bin/python benchmarks/scale.py --passages 100000 300000 1000000 --milvus lite
    .venv/bin/python benchmarks/scale.py --passages 100000 --milvus server [--storage-root DIR]

``--milvus server`` starts the Milvus 2.3.5 standalone of the ``milvus`` PyPI package (a dev
dependency), with an empty data folder for each size. ``--storage-root`` defaults to a fresh folder
per size (data/bench/scale/runs/<milvus>-<size>/storage); a given root is shared by the sizes, each
size in its own collection (``scale_<milvus>_<size>``, removed first). Results, written after
every size: benchmarks/results/scale_tiny_<milvus>_<sizes>.json.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import random
import re
import shutil
import site
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpora
from pipeline import PER_FILE, machine, model_env, stage_rates

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SCALE = ROOT / "data" / "bench" / "scale"
MIN_WORDS, MAX_WORDS = 8, 200
SAMPLE_S = 0.25
TIMELINE_POINTS = 240
SEED = 0

Item = tuple[str, str, str]  # (source file or package, id within the kind, text)

# ---------------------------------------------------------------------------------------------
# The corpus: real text installed on the machine


def _prose(text: str) -> bool:
    """8-200 words, and at least 70% of the non-space characters are letters (no code, tables)."""
    words = len(text.split())
    if not MIN_WORDS <= words <= MAX_WORDS:
        return False
    chars = [c for c in text if not c.isspace()]
    return sum(c.isalpha() for c in chars) >= 0.7 * len(chars)


def _paragraphs(text: str) -> Iterator[tuple[int, str]]:
    for n, para in enumerate(re.split(r"\n\s*\n", text)):
        clean = corpora.clean(para)
        if _prose(clean):
            yield n, clean


def _read_text(path: Path) -> str | None:
    """The file's text (gunzipped if .gz), or None if it is binary, not UTF-8 or unreadable."""
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        if b"\0" in data[:4096]:
            return None
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile):
        return None


def _python_roots() -> list[tuple[str, Path]]:
    stdlib = Path(os.path.dirname(os.__file__))
    return [("", stdlib)] + [("site:", Path(p)) for p in sorted(set(site.getsitepackages()))
                             if Path(p).is_dir()]


def _files(root: Path, patterns: tuple[str, ...]) -> Iterator[Path]:
    """Files under ``root`` matching any pattern, sorted, once each (symlinks resolved)."""
    seen: set[Path] = set()
    for path in sorted({p for pattern in patterns for p in root.rglob(pattern)}):
        try:
            real = path.resolve()
        except OSError:
            continue
        if real in seen or not real.is_file():
            continue
        seen.add(real)
        yield path


def docstrings() -> Iterator[Item]:
    from vecpress.tasks.inputs.corpus import docstring_paragraphs

    for doc_id, text in docstring_paragraphs(MIN_WORDS, MAX_WORDS):
        yield doc_id.removeprefix("site:").rsplit(":", 1)[0], doc_id, text


def _metadata_kind(load: Callable[[], list[tuple[str, str]]]) -> Iterator[Item]:
    for doc_id, text in load():
        if load is corpora.summaries or _prose(text):  # summaries: one line, 3+ words
            yield doc_id.split("#")[0], doc_id, text


_COMMENT = re.compile(r"^\s*#(?![!])\s?(.*)$")


def _other_python_roots() -> list[tuple[str, Path]]:
    """Python trees beyond this interpreter's: other installed interpreters' standard libraries
    (pyenv, the system's), the system's dist-packages, the Google Cloud SDK."""
    mine = {root.resolve() for _, root in _python_roots()}
    candidates = sorted(Path.home().glob(".pyenv/versions/*/lib/python[23]*")) + \
        sorted(Path("/usr/lib").glob("python3*")) + [Path("/usr/lib/google-cloud-sdk")]
    return [(f"py:{root}/", root) for root in candidates
            if root.is_dir() and root.resolve() not in mine]


def other_docstrings() -> Iterator[Item]:
    """Docstring paragraphs of the other Python trees (vecpress's own docstring reader)."""
    from vecpress.tasks.inputs.corpus import _tree_paragraphs

    for prefix, root in _other_python_roots():
        for doc_id, text in _tree_paragraphs(root, prefix, set(), MIN_WORDS, MAX_WORDS):
            yield doc_id.rsplit(":", 1)[0], doc_id, text


def python_comments(roots: Callable[[], list[tuple[str, Path]]] = _python_roots) -> Iterator[Item]:
    """Blocks of consecutive ``#`` comment lines in the standard library and site-packages."""
    for prefix, root in roots():
        for path in _files(root, ("*.py",)):
            rel = path.relative_to(root).as_posix()
            if rel.startswith(("site-packages/", "test/", "idlelib/idle_test/")) or "/tests/" in rel:
                continue
            text = _read_text(path)
            if text is None:
                continue
            for lineno, clean in _comment_blocks(text, _COMMENT):
                yield f"{prefix}{rel}", f"{prefix}{rel}:{lineno}", clean


_C_BLOCK = re.compile(r"/\*+(.*?)\*+/", re.S)
_C_LINE = re.compile(r"^\s*//+!?<?\s?(.*)$")


def _comment_blocks(text: str, line_comment: re.Pattern) -> Iterator[tuple[int, str]]:
    """(first line, cleaned prose) of each run of line comments that reads as prose."""
    block: list[str] = []
    for lineno, line in enumerate([*text.splitlines(), ""], 1):
        match = line_comment.match(line)
        if match and match.group(1).strip():
            block.append(match.group(1))
            continue
        if block:
            clean = corpora.clean(" ".join(block))
            if _prose(clean):
                yield lineno - len(block), clean
            block = []


def c_comments(roots: list[Path] | None = None) -> Iterator[Item]:
    """``/* */`` paragraphs and ``//`` blocks of the C/C++ headers and sources in site-packages
    (or under ``roots``)."""
    for root in roots if roots is not None else [r for _, r in _python_roots()[1:]]:
        for path in _files(root, ("*.h", "*.hpp", "*.hxx", "*.cuh", "*.c", "*.cc", "*.cpp")):
            rel = path.relative_to(root).as_posix() if roots is None else str(path)
            text = _read_text(path)
            if text is None:
                continue
            for k, body in enumerate(_C_BLOCK.findall(text)):
                lines = "\n".join(re.sub(r"^\s*\*+ ?", "", line) for line in body.splitlines())
                for n, para in _paragraphs(lines):
                    yield rel, f"{rel}:b{k}#{n}", para
            for lineno, clean in _comment_blocks(text, _C_LINE):
                yield rel, f"{rel}:{lineno}", clean


def _text_files(root: Path, patterns: tuple[str, ...], label: str,
                skip: Callable[[str], bool] = lambda rel: False) -> Iterator[Item]:
    for path in _files(root, patterns):
        rel = path.relative_to(root).as_posix()
        if skip(rel):
            continue
        text = _read_text(path)
        if text is None:
            continue
        for n, para in _paragraphs(text.replace("\x1f", "\n\n")):
            yield f"{label}{rel}", f"{label}{rel}#{n}", para


def package_docs() -> Iterator[Item]:
    """Documentation files shipped inside site-packages (.rst, .md, .txt), not the .dist-info."""
    for _, root in _python_roots()[1:]:
        yield from _text_files(root, ("*.rst", "*.md", "*.txt"), "",
                               lambda rel: ".dist-info/" in rel or ".egg-info/" in rel)


def usr_share_doc() -> Iterator[Item]:
    """Debian package docs: READMEs, NEWS, changelogs (gunzipped), copyright files."""
    root = Path("/usr/share/doc")
    if root.is_dir():
        yield from _text_files(root, ("*.txt", "*.md", "*.rst", "*.gz", "README*", "NEWS*",
                                      "copyright", "changelog*", "AUTHORS*", "THANKS*", "TODO*"),
                               "doc:", lambda rel: rel.endswith((".html.gz", ".ps.gz", ".pdf.gz")))


def licenses() -> Iterator[Item]:
    root = Path("/usr/share/common-licenses")
    if root.is_dir():
        yield from _text_files(root, ("*",), "license:")


def info_manuals() -> Iterator[Item]:
    root = Path("/usr/share/info")
    if root.is_dir():
        yield from _text_files(root, ("*.info*",), "info:")


_POD_CODE = re.compile(r"[BCIFLESXZ]<+\s*([^<>]*?)\s*>+")


def perl_pod() -> Iterator[Item]:
    """POD documentation paragraphs of the installed Perl modules (code examples left out)."""
    roots = [Path("/usr/share/perl"), Path("/usr/share/perl5"),
             *sorted(Path("/usr/lib").glob("*-linux-gnu*/perl*"))]
    for root in roots:
        if not root.is_dir():
            continue
        for path in _files(root, ("*.pm", "*.pod", "*.pl")):
            text = _read_text(path)
            if text is None:
                continue
            in_pod = False
            for n, para in enumerate(re.split(r"\n\s*\n", text)):
                if para.startswith("=cut"):
                    in_pod = False
                elif para.startswith("="):
                    in_pod = True
                elif in_pod and not para[:1].isspace():
                    clean = corpora.clean(_POD_CODE.sub(r"\1", para))
                    if _prose(clean):
                        yield str(path), f"{path}#{n}", clean


_ROFF_SKIP = re.compile(r"\\f(?:\[[^\]]*\]|\(..|.)|\\[*n](?:\[[^\]]*\]|\(..|.)|\\s[+-]?\d+|"
                        r"\\[&|^%:/,!)dcuh0~]")
_ROFF_GLYPH = re.compile(r"\\\(..|\\\[[^\]]*\]")
_ROFF_FONT_MACROS = {"B", "I", "BR", "BI", "IB", "IR", "RB", "RI", "SM", "SB"}
_ROFF_BLOCKS = {"TS": "TE", "nf": "fi", "EX": "EE", "EQ": "EN", "de": ".", "ig": "."}


def _roff_text(source: str) -> str:
    """The running text of a man page's troff source: macros, tables, examples and escapes out."""
    out: list[str] = []
    until: str | None = None
    for line in source.splitlines():
        if until is not None:
            if line.startswith(f".{until}") or (until == "." and line.strip() == ".."):
                until = None
            continue
        if line.startswith(('.\\"', "'\\\"", '\\"')):  # comments
            continue
        if line.startswith((".", "'")):
            macro, _, rest = line[1:].strip().partition(" ")
            if macro in _ROFF_BLOCKS:
                until = _ROFF_BLOCKS[macro]
            elif macro in _ROFF_FONT_MACROS and rest:
                out.append(rest.replace('"', ""))
            elif macro not in ("br", "in", "ft", "ad", "na", "hy", "nh", "ne", "ti", "ll"):
                out.append("")  # PP, SH, SS, TP, IP, sp...: a paragraph break
            continue
        out.append(line)
    text = "\n".join(out).replace("\\-", "-").replace("\\e", "\\").replace("\\ ", " ")
    return _ROFF_GLYPH.sub(" ", _ROFF_SKIP.sub("", text))


def _man_pages(english: bool) -> Iterator[Item]:
    root = Path("/usr/share/man")
    if not root.is_dir():
        return
    sections = sorted(d for d in root.iterdir() if d.is_dir() and d.name.startswith("man") == english)
    for folder in sections:
        for path in _files(folder, ("*",)):
            rel = path.relative_to(root).as_posix()
            text = _read_text(path)
            if text is None or text.lstrip().startswith(".so "):
                continue
            for n, para in _paragraphs(_roff_text(text)):
                yield f"man:{rel}", f"man:{rel}#{n}", para


KINDS: dict[str, Callable[[], Iterator[Item]]] = {
    "docstrings": docstrings,
    "package_descriptions": lambda: _metadata_kind(corpora.descriptions),
    "package_summaries": lambda: _metadata_kind(corpora.summaries),
    "fortunes": lambda: _metadata_kind(corpora.fortunes),
    "python_comments": python_comments,
    "c_comments": c_comments,
    "package_docs": package_docs,
    "usr_share_doc": usr_share_doc,
    "common_licenses": licenses,
    "man_pages_en": lambda: _man_pages(True),
    "info_manuals": info_manuals,
    "other_python_docstrings": other_docstrings,
    "other_python_comments": lambda: python_comments(_other_python_roots),
    "system_c_comments": lambda: c_comments([Path("/usr/include")]),
    "perl_pod": perl_pod,
    "man_pages_translated": lambda: _man_pages(False),
}


def build_pool(size: int) -> Path:
    """The first ``size`` distinct real passages of the KINDS stream, as JSONL (cached)."""
    path = SCALE / f"pool-{size}.jsonl"
    meta_path = path.with_suffix(".json")
    if meta_path.exists():
        return path
    SCALE.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    seen_texts: set[bytes] = set()
    seen_ids: set[str] = set()
    kinds: dict[str, dict] = {}
    count = 0
    with path.with_suffix(".tmp").open("w", encoding="utf-8") as fh:
        for kind, make in KINDS.items():
            sources: set[str] = set()
            taken = duplicates = 0
            kind_started = time.perf_counter()
            for source, local_id, text in make():
                digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
                if digest in seen_texts:
                    duplicates += 1
                    continue
                seen_texts.add(digest)
                doc_id = f"{kind}:{local_id}"
                suffix = 1
                while doc_id in seen_ids:
                    doc_id, suffix = f"{kind}:{local_id}~{suffix}", suffix + 1
                seen_ids.add(doc_id)
                sources.add(source)
                fh.write(json.dumps({"id": doc_id, "text": text, "kind": kind, "source": source}) + "\n")
                taken += 1
                count += 1
                if count >= size:
                    break
            kinds[kind] = {"passages": taken, "distinct_sources": len(sources),
                           "exact_duplicates_dropped": duplicates,
                           "seconds": round(time.perf_counter() - kind_started, 1)}
            print(f"corpus: {kind}: {taken:,} passages from {len(sources):,} sources "
                  f"({count:,}/{size:,})", flush=True)
            if count >= size:
                break
    if count < size:
        raise SystemExit(f"only {count:,} distinct real passages on this machine; ask for fewer "
                         f"(kinds: {json.dumps(kinds)})")
    path.with_suffix(".tmp").rename(path)
    meta = {"pool": size, "kinds": kinds, "seconds": round(time.perf_counter() - started, 1),
            "min_words": MIN_WORDS, "max_words": MAX_WORDS, "seed": SEED}
    meta_path.write_text(json.dumps(meta, indent=2))
    return path


def corpus(passages: int, pool_size: int) -> tuple[Path, dict]:
    """JSONL files of ``PER_FILE`` records: the first ``passages`` of the shuffled pool (cached),
    and what it holds per kind."""
    folder = SCALE / f"corpus-{passages}-of-{pool_size}"
    if not (folder / "done").exists():
        pool = build_pool(pool_size)
        with pool.open(encoding="utf-8") as fh:
            lines = fh.readlines()
        order = list(range(len(lines)))
        random.Random(SEED).shuffle(order)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        kinds: dict[str, dict] = {}
        sources: dict[str, set[str]] = {}
        for start in range(0, passages, PER_FILE):
            with (folder / f"part{start // PER_FILE:05d}.jsonl").open("w", encoding="utf-8") as out:
                for index in order[start:min(start + PER_FILE, passages)]:
                    record = json.loads(lines[index])
                    kind, source = record.pop("kind"), record.pop("source")
                    kinds.setdefault(kind, {"passages": 0})["passages"] += 1
                    sources.setdefault(kind, set()).add(source)
                    out.write(json.dumps(record) + "\n")
        for kind, files in sources.items():
            kinds[kind]["distinct_sources"] = len(files)
        (folder / "kinds.json").write_text(json.dumps(kinds, indent=2))
        (folder / "done").write_text(str(passages))
    return folder, json.loads((folder / "kinds.json").read_text())


# ---------------------------------------------------------------------------------------------
# One ingest command, its process tree and what it left on disk


def _process_kind(proc: psutil.Process, workers: set[int]) -> str:
    cmd = " ".join(proc.cmdline())
    if "uvicorn" in cmd or "prefect" in " ".join(proc.cmdline()[:4]):
        return "prefect_api"
    if "milvus" in cmd.lower():
        return "milvus"
    if "resource_tracker" in cmd or "forkserver" in cmd:
        return "helper"
    if proc.ppid() in workers:
        return "worker_child"
    return "worker"


def ingest(folder: Path, collection: str, env: dict[str, str], storage_root: str, milvus_uri: str,
           logs: Path, server_pid: int | None = None) -> dict:
    """One `vecpress ingest` command: wall time, summary, peak RSS of each process (and of the
    Milvus server, ``server_pid``), a timeline."""
    cmd = [sys.executable, "-m", "vecpress", "ingest", str(folder), "--collection", collection,
           "--storage-root", storage_root, "--milvus-uri", milvus_uri, "--json"]
    full_env = os.environ | env
    full_env.pop("PREFECT_API_URL", None)
    logs.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    # Output to files, not pipes: a long run's log lines would fill a pipe and stall the command.
    with (logs / "stdout.txt").open("w") as out, (logs / "stderr.txt").open("w") as err:
        proc = subprocess.Popen(cmd, env=full_env, stdout=out, stderr=err, text=True,
                                start_new_session=True, cwd=logs)
        parent = psutil.Process(proc.pid)
        peaks: dict[int, tuple[str, int]] = {}
        timeline: list[tuple[float, int, int, int, int]] = []
        server = psutil.Process(server_pid) if server_pid else None
        while proc.poll() is None:
            try:
                flow = parent.memory_info().rss
                peaks[proc.pid] = ("flow", max(flow, peaks.get(proc.pid, ("", 0))[1]))
                workers = {p for p, (k, _) in peaks.items() if k == "worker"}
                total_workers = other = 0
                for child in parent.children(recursive=True):
                    try:
                        kind = peaks[child.pid][0] if child.pid in peaks else \
                            _process_kind(child, workers)
                        rss = child.memory_info().rss
                    except psutil.Error:
                        continue
                    peaks[child.pid] = (kind, max(rss, peaks.get(child.pid, ("", 0))[1]))
                    if kind in ("worker", "worker_child"):
                        total_workers += rss
                    else:
                        other += rss
                served = server.memory_info().rss if server else 0
                if server:
                    peaks[server.pid] = ("milvus_server", max(served, peaks.get(server.pid, ("", 0))[1]))
                timeline.append((round(time.perf_counter() - started, 1), flow >> 20,
                                 total_workers >> 20, other >> 20, served >> 20))
            except psutil.Error:
                pass
            time.sleep(SAMPLE_S)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        tail = (logs / "stderr.txt").read_text(errors="replace")[-4000:]
        return {"error": f"ingest exited {proc.returncode}", "stderr_tail": tail, "wall_s": wall}
    stdout = (logs / "stdout.txt").read_text()
    summary = json.loads(stdout[stdout.index("{\n"):])
    saved = _read_summary(storage_root, collection, summary.get("run_id", ""))
    by_kind: dict[str, list[int]] = {}
    for kind, peak in peaks.values():
        by_kind.setdefault(kind, []).append(peak >> 20)
    step = max(1, len(timeline) // TIMELINE_POINTS)
    return {"wall_s": wall, "summary": saved or summary, "summary_source":
            "summary.json" if saved else "stdout",
            "peak_rss_mb": {"flow": max(by_kind.get("flow", [0])),
                            "workers": sorted(by_kind.get("worker", []), reverse=True),
                            "worker_children": sorted(by_kind.get("worker_child", []), reverse=True),
                            "prefect_api": max(by_kind.get("prefect_api", [0])),
                            # None: Milvus Lite runs inside the flow process (milvus-lite 3)
                            "milvus_lite_process": max(by_kind["milvus"]) if "milvus" in by_kind
                            else None,
                            "milvus_server": max(by_kind["milvus_server"]) if "milvus_server" in by_kind
                            else None,
                            "helpers": max(by_kind.get("helper", [0]))},
            "first_worker_s": next((t for t, _, w, _, _ in timeline if w), None),
            "rss_timeline_mb": {"columns": ["t_s", "flow", "workers_sum", "other_children",
                                            "milvus_server"],
                                "points": timeline[::step]}}


def _read_summary(storage_root: str, collection: str, run_id: str) -> dict | None:
    from vecpress.infra import storage

    url = storage.join(storage_root, "collections", collection, "runs", run_id, "summary.json")
    try:
        return storage.read_json(url) if run_id else None
    except (OSError, ValueError):
        return None


def storage_bytes(storage_root: str, collection: str) -> dict:
    """Bytes under the storage root (models/ cache excluded): the collection's folders apart,
    shards split by file kind."""
    from fsspec.core import url_to_fs

    fs, root = url_to_fs(storage_root)
    files = fs.find(root, detail=True) if fs.exists(root) else {}
    base = f"{root.rstrip('/')}/"
    prefix = f"collections/{collection}/"
    out: dict[str, int] = {}
    shards: dict[str, int] = {}
    total = 0
    for path, info in files.items():
        rel = path[len(base):] if path.startswith(base) else path
        if rel.startswith("models/"):
            continue
        size = int(info.get("size") or 0)
        if not size:  # empty lock and marker files
            continue
        total += size
        if not rel.startswith(prefix):  # a shared --storage-root: other collections
            out["outside_collection"] = out.get("outside_collection", 0) + size
            continue
        part = rel[len(prefix):].split("/", 1)[0]
        out[part] = out.get(part, 0) + size
        if part == "shards":
            name = rel.rsplit("/", 1)[-1]
            kind = re.split(r"[-.]", name, maxsplit=1)[0]
            shards[kind] = shards.get(kind, 0) + size
    commits = {table: sum(1 for p in files if p.startswith(f"{base}{prefix}catalog/{table}/_delta_log/")
                          and p.endswith(".json"))
               for table in ("builds", "files", "shards")}
    data_files = {table: sum(1 for p in files if p.startswith(f"{base}{prefix}catalog/{table}/")
                             and p.endswith(".parquet") and "/_delta_log/" not in p)
                  for table in ("builds", "files", "shards")}
    return {"total_excl_models": total, "collection": out, "shard_files": shards,
            "catalog_commits": commits, "catalog_data_files": data_files}


def dir_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


@contextmanager
def milvus_server() -> Iterator[tuple[str, Path, int]]:
    """The Milvus 2.3.5 standalone of the ``milvus`` package, with an empty data folder (its
    unpacked binaries are kept between sizes); yields (uri, data folder, its process id)."""
    from milvus import default_server as server

    base = SCALE / "milvus-server"
    for sub in ("data", "logs"):
        shutil.rmtree(base / sub, ignore_errors=True)
    server.set_base_dir(str(base))
    server.start()
    try:
        yield f"http://127.0.0.1:{server.listen_port}", base / "data", server.server_proc.pid
    finally:
        server.stop()


def milvus_bytes(kind: str, where: Path) -> dict[str, int]:
    if kind == "lite":
        return {"db": dir_bytes(where)} if where.exists() else {}
    if not where.exists():
        return {}
    parts = {"etcd": dir_bytes(where / "etcd.data"), "rocksmq_wal": dir_bytes(where / "rocksmq")}
    parts["segments_and_indexes"] = dir_bytes(where) - sum(parts.values())
    return parts


def fresh_storage(storage_root: str, collection: str) -> None:
    from vecpress.infra import storage

    storage.remove(storage.join(storage_root, "collections", collection))


# ---------------------------------------------------------------------------------------------
# Per size


def warm_model(env: dict[str, str]) -> float:
    """Export the tiny model into the shared cache before the first size (as pipeline.py's
    embed_only does), so that no size pays a first export; seconds it took."""
    from vecpress.infra.settings import ModelSettings
    from vecpress.tasks.embed.export import export_for_settings

    started = time.perf_counter()
    model = ModelSettings(variant=env["VECPRESS_MODEL__VARIANT"], path=env["VECPRESS_MODEL__PATH"])
    export_for_settings(model, Path(env["VECPRESS_MODEL__CACHE_DIR"]))
    return time.perf_counter() - started


def one_size(passages: int, pool_size: int, args: argparse.Namespace, env: dict[str, str]) -> dict:
    started = time.perf_counter()
    folder, kinds = corpus(passages, pool_size)
    corpus_s = time.perf_counter() - started
    collection = f"scale_{args.milvus}_{passages}"
    work = SCALE / "runs" / f"{args.milvus}-{passages}"
    shutil.rmtree(work, ignore_errors=True)
    storage_root = args.storage_root or str(work / "storage")
    fresh_storage(storage_root, collection)
    if args.milvus == "lite":
        db = work / "milvus.db"
        result = ingest(folder, collection, env, storage_root, str(db), work / "logs")
        db_bytes = milvus_bytes("lite", db)
    else:
        with milvus_server() as (uri, data, pid):
            result = ingest(folder, collection, env, storage_root, uri, work / "logs", pid)
            db_bytes = milvus_bytes("server", data)
    row = {"records": passages, "corpus": str(folder.relative_to(ROOT)), "corpus_kinds": kinds,
           "corpus_prepare_s": round(corpus_s, 1), "storage_root": storage_root,
           "logs": str((work / "logs").relative_to(ROOT))}
    if "error" in result:
        return row | result
    summary = result["summary"]
    stages = {s["stage"]: round(s["seconds"], 2) for s in summary["stages"]}
    found = {s["stage"]: s for s in summary["stages"]}
    upsert = next((s for name, s in found.items() if name.startswith("Milvus upsert")), None)
    flush = next((s for name, s in found.items() if name.startswith("Milvus flush")), None)
    rows = summary.get("rows_in_milvus") or 0
    load_s = (upsert["seconds"] if upsert else 0) + (flush["seconds"] if flush else 0)
    disk = storage_bytes(storage_root, collection)
    n = summary["passages"] or 1
    milvus_total = sum(db_bytes.values())
    return row | {
        "passages": summary["passages"], "rows_in_milvus": rows, "shards": summary.get("shards"),
        "rows_bulk_imported": summary.get("rows_bulk_imported", 0),
        "cluster": summary.get("cluster"), "wall_s": round(result["wall_s"], 1),
        "wall_s_excl_model_export": round(result["wall_s"] - stages.get("model export (cached)", 0), 1),
        "first_worker_s": result["first_worker_s"],
        "end_to_end_per_s": round(summary["passages"] / result["wall_s"], 1),
        "stream_wall_s": round(summary.get("stream_seconds", 0), 1),
        "stages_s": stages, "stages_per_s": stage_rates(summary),
        "summary_source": result["summary_source"],
        "peak_rss_mb": result["peak_rss_mb"],
        "milvus_load": {
            "upsert_rows_per_busy_s": round(upsert["items"] / upsert["seconds"], 1)
            if upsert and upsert["seconds"] else None,
            "flush_index_count_s": round(flush["seconds"], 2) if flush else None,
            "rows_per_s_upsert_plus_flush_index": round(rows / load_s, 1) if load_s else None},
        "storage_bytes": disk,
        "catalog_commits": disk["catalog_commits"],
        "storage_bytes_per_passage": {
            "total_excl_models": round(disk["total_excl_models"] / n, 1),
            **{k: round(v / n, 1) for k, v in disk["collection"].items()},
            **{f"shards.{k}": round(v / n, 1) for k, v in disk["shard_files"].items()}},
        "milvus_bytes": db_bytes,
        "milvus_bytes_per_row": {"total": round(milvus_total / rows, 1) if rows else None,
                                 **{k: round(v / rows, 1) for k, v in db_bytes.items() if rows}},
        "index": summary.get("index"), "codec": summary.get("codec"),
        "bytes_per_vector": summary.get("bytes_per_vector"),
        "rss_timeline_mb": result["rss_timeline_mb"],
    }


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in ("vecpress", "onnxruntime", "pymilvus", "milvus-lite", "milvus", "dask",
                 "distributed", "prefect", "pyarrow", "deltalake", "faiss-cpu", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    sizes = result["sizes"]
    out = Table(title=f"scale benchmark: tiny model, Milvus {result['milvus']}")
    out.add_column("metric")
    for key in sizes:
        out.add_column(key, justify="right")

    def cell(row: dict, path: tuple[str, ...]) -> str:
        value: object = row
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, list):
            return " ".join(str(v) for v in value)
        return "-" if value is None else f"{value:,}" if isinstance(value, int | float) else str(value)

    rows: list[tuple[str, tuple[str, ...]]] = [
        ("passages", ("passages",)), ("rows in Milvus", ("rows_in_milvus",)),
        ("shards", ("shards",)), ("whole command (s)", ("wall_s",)),
        ("first Dask worker up at (s)", ("first_worker_s",)),
        ("end to end passages/s", ("end_to_end_per_s",)), ("streamed wall (s)", ("stream_wall_s",))]
    stage_names = list(dict.fromkeys(s for row in sizes.values() for s in row.get("stages_s", {})))
    rows += [(f"{s} (s)", ("stages_s", s)) for s in stage_names]
    rows += [("peak RSS flow (MB)", ("peak_rss_mb", "flow")),
             ("peak RSS workers (MB)", ("peak_rss_mb", "workers")),
             ("peak RSS Prefect API (MB)", ("peak_rss_mb", "prefect_api")),
             ("peak RSS Milvus server (MB)", ("peak_rss_mb", "milvus_server")),
             ("catalog commits: shards table", ("catalog_commits", "shards")),
             ("Milvus upsert rows/busy s", ("milvus_load", "upsert_rows_per_busy_s")),
             ("Milvus flush+index+count (s)", ("milvus_load", "flush_index_count_s")),
             ("Milvus rows/s (upsert+flush+index)", ("milvus_load", "rows_per_s_upsert_plus_flush_index"))]
    parts = list(dict.fromkeys(k for row in sizes.values()
                               for k in row.get("storage_bytes_per_passage", {})))
    rows += [(f"storage B/passage: {k}", ("storage_bytes_per_passage", k)) for k in parts]
    parts = list(dict.fromkeys(k for row in sizes.values() for k in row.get("milvus_bytes_per_row", {})))
    rows += [(f"Milvus B/row: {k}", ("milvus_bytes_per_row", k)) for k in parts]
    rows += [("error", ("error",))]
    for label, path in rows:
        cells = [cell(row, path) for row in sizes.values()]
        if label != "error" or any(c != "-" for c in cells):
            out.add_row(label, *cells)
    Console().print(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passages", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    parser.add_argument("--milvus", choices=["lite", "server"], default="lite")
    parser.add_argument("--storage-root", help="default: a fresh local folder per size")
    parser.add_argument("--bulk", action="store_true", help="server: first loads by Milvus bulk "
                        "import (milvus.bulk_dir on this machine, default bulk_min_rows)")
    parser.add_argument("--pool", type=int, help="passages drawn before shuffling (default: the "
                        "largest size); the same pool gives every size the same mix of kinds")
    args = parser.parse_args()
    sizes = sorted(args.passages)
    pool = max(args.pool or 0, sizes[-1])
    env = model_env("tiny", "fp32")
    if args.bulk:
        env |= {"VECPRESS_MILVUS__BULK_DIR": str(SCALE / "bulk")}  # imports of >= 50k rows
    RESULTS.mkdir(parents=True, exist_ok=True)
    kind = args.milvus + ("_bulk" if args.bulk else "")
    path = RESULTS / f"scale_tiny_{kind}_{'_'.join(str(s) for s in sizes)}.json"
    result: dict = {"benchmark": "scale", "model": "tiny (1 layer, 64 hidden, MiniLM tokenizer)",
                    "variant": "fp32", "milvus": args.milvus, "bulk_import": args.bulk, "pool": pool,
                    "machine": machine() | {"memory_gb": round(psutil.virtual_memory().total / 2**30, 1)},
                    "versions": versions(), "env": env,
                    "sizes": {}}
    result["model_warm_up_s"] = round(warm_model(env), 1)
    for passages in sizes:
        print(f"== {passages:,} passages, Milvus {args.milvus}", flush=True)
        row = one_size(passages, pool, args, env)
        result["sizes"][str(passages)] = row
        result["pool_kinds"] = json.loads((SCALE / f"pool-{pool}.json").read_text())["kinds"] \
            if (SCALE / f"pool-{pool}.json").exists() else None
        path.write_text(json.dumps(result, indent=2, default=str))  # after every size: a crash keeps them
        print(json.dumps({k: row.get(k) for k in ("passages", "wall_s", "end_to_end_per_s",
                                                  "peak_rss_mb", "error")}), flush=True)
    table(result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
