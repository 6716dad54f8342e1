"""The layout is the architecture: no import cycles, and each layer imports only what it may.

Read from the source with ``ast`` (no module is executed), so the check is exact and fast; imports
under ``if TYPE_CHECKING:`` are left out (they never run). A second check imports every module in
one fresh interpreter, which is what a user's first command does.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Installed package name of each top-level folder (through the links vecpress/flows -> ../flows, ...).
PACKAGES = {"vecpress": "vecpress", "flows": "vecpress.flows", "tasks": "vecpress.tasks",
            "infra": "vecpress.infra", "deployments": "vecpress.deployments"}

# What each part may import from vecpress (besides itself). Sub-packages of tasks/ are stages;
# arrays, recall, similarity and worker_cache are leaves every stage may use; ingest (the engine and
# the Dask entry points shard_jobs and part_jobs) drives the stages.
LEAVES = {"vecpress.tasks.arrays", "vecpress.tasks.recall", "vecpress.tasks.similarity",
          "vecpress.tasks.worker_cache"}
ALLOWED = {
    "vecpress.infra": {"vecpress.infra"},
    "vecpress.tasks.inputs": {"vecpress.infra", "vecpress.tasks.inputs", "vecpress.tasks.embed"},
    "vecpress.tasks.embed": {"vecpress.infra", "vecpress.tasks.embed", "vecpress.tasks.inputs", *LEAVES},
    "vecpress.tasks.codec": {"vecpress.infra", "vecpress.tasks.codec", *LEAVES},
    "vecpress.tasks.collection": {"vecpress.infra", "vecpress.tasks.collection",
                                  "vecpress.tasks.inputs", "vecpress.tasks.codec", *LEAVES},
    "vecpress.tasks.search": {"vecpress.infra", "vecpress.tasks.search", "vecpress.tasks.embed",
                              "vecpress.tasks.codec", "vecpress.tasks.collection", *LEAVES},
    "vecpress.tasks.report": {"vecpress.infra", "vecpress.tasks.report"},
    "vecpress.tasks.arrays": {"vecpress.infra"},
    "vecpress.tasks.recall": set(),
    "vecpress.tasks.similarity": set(),
    "vecpress.tasks.worker_cache": set(),
    "vecpress.tasks.ingest": {"vecpress.infra", "vecpress.tasks"},
    "vecpress.flows": {"vecpress.infra", "vecpress.tasks", "vecpress.flows"},
    "vecpress.deployments": {"vecpress.infra", "vecpress.tasks", "vecpress.flows",
                             "vecpress.deployments"},
    "vecpress.api": {"vecpress.infra", "vecpress.tasks", "vecpress.flows"},
    "vecpress.web": {"vecpress.api", "vecpress.web", "vecpress.infra", "vecpress.tasks.search"},
    "vecpress.integrations": {"vecpress.api", "vecpress.integrations", "vecpress.tasks.search"},
    "vecpress.cli": {"vecpress.infra", "vecpress.tasks", "vecpress.flows", "vecpress.deployments",
                     "vecpress.api", "vecpress.web", "vecpress.cli.common"},
}


def _modules() -> dict[str, Path]:
    out = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([package, *parts])] = path
    return out


def _imports(path: Path, module: str, known: set[str]) -> set[str]:
    """vecpress modules imported by ``path`` (a ``from pkg import mod`` counts as ``pkg.mod``)."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for child in node.body for n in ast.walk(child)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("vecpress")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vecpress"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
    return {m for m in found if m in known and m != module}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: _imports(p, m, set(modules)) for m, p in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _part(module: str) -> str:
    """The most specific key of ALLOWED that ``module`` belongs to."""
    keys = [k for k in ALLOWED if module == k or module.startswith(k + ".")]
    return max(keys, key=len) if keys else module


def test_no_import_cycles() -> None:
    graph = _graph()
    assert len(graph) > 40  # the walk found the package
    assert _cycles(graph) == []


def test_each_layer_imports_only_what_it_may() -> None:
    wrong = []
    for module, imports in _graph().items():
        part = _part(module)
        if part not in ALLOWED:
            continue  # vecpress/__init__, __main__
        for target in imports:
            if not any(target == a or target.startswith(a + ".") for a in ALLOWED[part] | {part}):
                wrong.append(f"{module} imports {target}")
    assert wrong == []


def test_the_rule_catches_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_module_imports_in_a_fresh_interpreter() -> None:
    names = sorted(m for m in _modules() if not m.endswith("__main__"))
    code = f"import importlib\nfor name in {names!r}:\n    importlib.import_module(name)\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_readme_stays_short() -> None:
    """The README is for users: what it does, the two commands, usage, limits. It grew past 250
    lines twice; internals and figures belong in docs/."""
    lines = (ROOT / "README.md").read_text().count("\n")
    assert lines < 250, f"README.md has {lines} lines; move details to docs/ (limit 249)"


def test_the_command_line_starts_without_heavy_libraries() -> None:
    """``vecpress --help`` and every command's option parsing import typer and rich only: the
    settings models (pydantic), Prefect, Dask, Milvus, Arrow and the model runtimes are imported
    by the command that needs them, when it runs."""
    heavy = ["pydantic", "prefect", "pymilvus", "pandas", "distributed", "pyarrow", "numpy",
             "onnxruntime", "faiss", "torch", "tokenizers", "fsspec", "fastapi", "uvicorn"]
    code = ("import sys, vecpress.cli; "
            f"print(','.join(m for m in {heavy!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == "", f"imported at start-up: {loaded}"
