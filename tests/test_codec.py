"""PCA + PQ codec on real embeddings: fit, L2 geometry, save/load, archive round trip."""

from __future__ import annotations

import ctypes.util
import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pytest

from vecpress.infra import storage
from vecpress.infra.settings import CodecSettings
from vecpress.tasks.codec.codec import Codec, CodecError, fit_codec
from vecpress.tasks.codec.refine import read_archive, read_archive_vectors, write_archive
from vecpress.tasks.recall import recall_at_k


@pytest.fixture(scope="module")
def embeddings(docstring_embeddings) -> np.ndarray:
    return docstring_embeddings


def test_fit_reports_and_pca_keeps_neighbours(embeddings: np.ndarray) -> None:
    codec = fit_codec(embeddings, CodecSettings(pca_dim=128, pq_m=16, sample_size=1500))
    report = codec.report
    assert report["pca_dim"] == 128 and report["code_bytes"] == 16
    assert 0.5 < report["explained_variance"] <= 1.0
    assert 0.0 < report["pq_relative_error"] < 1.0
    queries, base = embeddings[:100], embeddings[100:]
    truth = np.argsort(-(queries @ base.T), axis=1)[:, :10]
    projected = codec.project(base)
    l2 = faiss.IndexFlatL2(codec.dim)
    l2.add(projected)
    _, found = l2.search(codec.project(queries), 10)
    assert recall_at_k(truth, found, 10) >= 0.75  # NOTES: PCA-128 with L2 keeps ~0.82 of top-10


def test_codes_are_stable_across_save_and_load(embeddings: np.ndarray, tmp_path) -> None:
    codec = fit_codec(embeddings, CodecSettings(pca_dim=64, pq_m=8, sample_size=1000))
    codec.save(str(tmp_path / "codec"))
    loaded = Codec.load(str(tmp_path / "codec"))
    assert loaded.codec_id == codec.codec_id
    np.testing.assert_array_equal(loaded.encode(embeddings[:50]), codec.encode(embeddings[:50]))
    np.testing.assert_allclose(loaded.project(embeddings[:50]), codec.project(embeddings[:50]))


def test_codec_id_depends_on_parameters_and_sample(embeddings: np.ndarray) -> None:
    a = fit_codec(embeddings[:600], CodecSettings(pca_dim=64, pq_m=8))
    b = fit_codec(embeddings[:600], CodecSettings(pca_dim=64, pq_m=8))
    c = fit_codec(embeddings[:700], CodecSettings(pca_dim=64, pq_m=8))
    assert a.codec_id == b.codec_id != c.codec_id


@pytest.mark.parametrize(("kind", "width", "atol"), [("sq8", 64, 0.02), ("sq6", 48, 0.06),
                                                    ("sq4", 32, 0.25), ("fp16", 128, 2e-3)])
def test_archive_round_trip(embeddings: np.ndarray, tmp_path: Path, kind: str, width: int,
                            atol: float) -> None:
    """The archive keeps each PCA vector as the codec's refiner codes it, in ``width`` bytes,
    and any reader decodes it from the shard alone (the quantizer rides in its schema)."""
    codec = fit_codec(embeddings, CodecSettings(pca_dim=64, pq_m=8, refine=kind))
    pca = codec.project(embeddings[:10])
    url = str(tmp_path / "archive.arrow")
    write_archive(url, np.arange(10), pca, codec.refiner)
    with pa.ipc.open_file(url) as shard:  # pk and the codes: Milvus builds its own index
        assert shard.schema.names == ["pk", codec.refiner.column]
    assert codec.report["refine_bytes"] == codec.refiner.bytes_per_vector(64) == width
    pks, stored, refiner = read_archive(url)
    assert stored.shape == (10, width // 2 if kind == "fp16" else width)
    assert stored.dtype == (np.float16 if kind == "fp16" else np.uint8)
    assert refiner.same_as(codec.refiner) and np.array_equal(pks, np.arange(10))
    _, back = read_archive_vectors(url)
    np.testing.assert_allclose(back, pca, atol=atol * float(np.abs(pca).max()))
    # coded again, decoded vectors keep their codes (incremental reuse re-archives them)
    np.testing.assert_array_equal(codec.refiner.encode(back), stored)
    # the leading components alone (what Milvus is loaded with) are those of the whole vector
    np.testing.assert_array_equal(codec.refiner.decode(stored, 20), back[:, :20])
    if kind != "fp16":  # decoded in numpy (no OpenMP per search), as FAISS decodes them
        np.testing.assert_allclose(back, codec.refiner.index.sa_decode(stored), atol=1e-5)
    again = Codec.load(_saved(codec, tmp_path))
    assert again.refiner.same_as(codec.refiner) and again.codec_id == codec.codec_id


def _saved(codec: Codec, tmp_path: Path) -> str:
    directory = str(tmp_path / "codec")
    codec.save(directory)
    return directory


def test_refine_kind_is_part_of_the_codec_id(embeddings: np.ndarray) -> None:
    """A codec whose archive is coded otherwise is another codec (its archives differ)."""
    ids = {kind: fit_codec(embeddings[:600], CodecSettings(pca_dim=64, pq_m=8, refine=kind))
           .codec_id for kind in ("sq8", "fp16")}
    assert ids["sq8"] != ids["fp16"]


def test_bad_settings_are_explained(embeddings: np.ndarray) -> None:
    with pytest.raises(ValueError, match="must divide"):
        CodecSettings(pca_dim=100, pq_m=16)
    with pytest.raises(CodecError, match="exceeds the embedding dimension"):
        fit_codec(embeddings, CodecSettings(pca_dim=512, pq_m=16))


def test_torch_backend_matches_faiss_cpu(embeddings: np.ndarray) -> None:
    """The torch k-means path (CUDA in production, the CPU device here) trains an equally good PQ."""
    faiss_codec = fit_codec(embeddings, CodecSettings(pca_dim=64, pq_m=8, train_backend="faiss"))
    torch_codec = fit_codec(embeddings, CodecSettings(pca_dim=64, pq_m=8, train_backend="torch"))
    assert faiss_codec.report["backend"] == "faiss-cpu"
    assert torch_codec.report["backend"] == "torch-cpu"
    assert torch_codec.codec_id != faiss_codec.codec_id
    f_err, t_err = faiss_codec.report["pq_relative_error"], torch_codec.report["pq_relative_error"]
    assert 0.0 < t_err < 1.0 and abs(t_err - f_err) / f_err < 0.05
    # The same PCA, so the torch codes decode to vectors as close as FAISS's.
    sample = embeddings[:200]
    t_rec = np.mean(np.sum((torch_codec.reconstruct(sample) - sample) ** 2, axis=1))
    f_rec = np.mean(np.sum((faiss_codec.reconstruct(sample) - sample) ** 2, axis=1))
    assert abs(t_rec - f_rec) / f_rec < 0.05


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_ivf_codec_encodes_residuals_with_list_numbers(embeddings: np.ndarray, backend: str,
                                                       tmp_path) -> None:
    flat = fit_codec(embeddings, CodecSettings(pca_dim=64, pq_m=8, train_backend=backend))
    ivf = fit_codec(embeddings, CodecSettings(pca_dim=64, pq_m=8, ivf_nlist=16,
                                              train_backend=backend))
    assert ivf.nlist == 16 and flat.nlist is None
    assert ivf.report["ivf_nlist"] == 16 and ivf.code_bytes == 8 + 1  # list number + PQ code
    # PQ on residuals of 16 coarse centroids fits better than PQ on the raw vectors.
    assert ivf.report["pq_relative_error"] < flat.report["pq_relative_error"]
    ivf.save(str(tmp_path / "ivf"))
    loaded = Codec.load(str(tmp_path / "ivf"))
    np.testing.assert_array_equal(loaded.encode(embeddings[:20]), ivf.encode(embeddings[:20]))


def test_opq_rotation_keeps_distances_and_balances_sub_spaces(embeddings: np.ndarray) -> None:
    codec = fit_codec(embeddings, CodecSettings(pca_dim=32, pq_m=8, opq=True))
    assert codec.report["opq"] and codec.index.chain.size() == 2
    a, b = embeddings[:100], embeddings[100:200]
    d_rot = np.sum((codec.project(a) - codec.project(b)) ** 2, axis=1)
    d_pca = np.sum((codec.pca.apply(a) - codec.pca.apply(b)) ** 2, axis=1)
    np.testing.assert_allclose(d_rot, d_pca, rtol=1e-4, atol=1e-5)  # a rotation: same L2 geometry

    def sub_space_variance(x: np.ndarray) -> np.ndarray:
        return x.var(axis=0).reshape(8, -1).sum(axis=1)

    # PCA orders dimensions by variance, so PQ's first sub-space gets most of it; OPQ spreads it.
    plain = sub_space_variance(codec.pca.apply(embeddings))
    rotated = sub_space_variance(codec.project(embeddings))
    assert rotated.max() / rotated.min() < 0.5 * plain.max() / plain.min()


def test_errors_are_measured_on_held_out_vectors(embeddings: np.ndarray) -> None:
    codec = fit_codec(embeddings, CodecSettings(pca_dim=64, pq_m=8))
    assert codec.report["error_on"] == "held-out sample"
    assert codec.report["train_vectors"] + codec.report["error_vectors"] == len(embeddings)
    assert 0.0 < codec.report["reconstruction_relative_error"] < 1.0


def test_auto_training_without_a_cuda_driver_does_not_import_torch(embeddings: np.ndarray,
                                                                   tmp_path: Path) -> None:
    """Without the CUDA driver library torch cannot see a device, so ``auto`` trains on FAISS
    without importing torch (1.5 s of a first run's codec fit here); asked for, torch is used."""
    np.save(tmp_path / "x.npy", embeddings[:1000])
    script = ("import sys, numpy as np\n"
              "from vecpress.infra.settings import CodecSettings\n"
              "from vecpress.tasks.codec.codec import fit_codec\n"
              f"x = np.load({str(tmp_path / 'x.npy')!r})\n"
              "auto = fit_codec(x, CodecSettings(pca_dim=16, pq_m=4, pq_nbits=4)).report['backend']\n"
              "print(auto, 'torch' in sys.modules)\n"
              "asked = fit_codec(x, CodecSettings(pca_dim=16, pq_m=4, pq_nbits=4, train_backend='torch'))\n"
              "print(asked.report['backend'], 'torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, check=True)
    if ctypes.util.find_library("cuda"):
        pytest.skip("this machine has a CUDA driver: torch is asked")
    assert done.stdout.split("\n")[:2] == ["faiss-cpu False", "torch-cpu True"]


def test_backend_setting_is_validated() -> None:
    with pytest.raises(ValueError, match="train_backend"):
        CodecSettings(train_backend="cuda")


@pytest.mark.parametrize("options", [{}, {"random_rotation": True}, {"opq": True},
                                     {"ivf_nlist": 16, "random_rotation": True}],
                         ids=["pca", "rotation", "opq", "ivf"])
def test_project_is_the_faiss_transform_chain(embeddings: np.ndarray, options: dict) -> None:
    """``project`` applies the chain as one numpy affine map (no OpenMP start per query)."""
    from vecpress.tasks.codec.codec import fit_exact

    codecs = [fit_codec(embeddings, CodecSettings(pca_dim=64, pq_m=8, sample_size=1500, **options)),
              fit_exact(embeddings[:100], "small")]
    for codec in codecs:
        expected = embeddings[:40].copy()
        for i in range(codec.index.chain.size()):
            expected = faiss.downcast_VectorTransform(codec.index.chain.at(i)).apply(expected)
        projected = codec.project(embeddings[:40])
        assert projected.dtype == np.float32 and projected.flags.c_contiguous
        np.testing.assert_allclose(projected, expected, atol=1e-5)
        # A query's bits do not depend on its batch (micro-batched search = a search alone).
        batch = codec.project_queries(embeddings[:40])
        np.testing.assert_allclose(batch, expected, atol=1e-5)
        alone = np.concatenate([codec.project_queries(embeddings[i : i + 1]) for i in range(40)])
        assert np.array_equal(batch, alone)


def test_the_codec_sample_has_exactly_the_sample_size(tmp_path) -> None:
    """Shares rounded per shard once added up to 599 of 600: a collection with
    min_fit_vectors == sample_size then kept whole vectors and re-fitted itself forever."""
    import pyarrow as pa

    from vecpress.tasks.ingest.part_jobs import sample_embeddings

    rows = [128, 128, 64, 128, 33, 128, 128, 100]
    urls = []
    for i, n in enumerate(rows):
        vectors = np.random.default_rng(i).normal(size=(n, 8)).astype(np.float32)
        urls.append(str(tmp_path / f"embeddings-{i}.parquet"))
        storage.write_parquet(urls[-1], pa.table({
            "pk": np.arange(n, dtype=np.int64),
            "embedding": pa.FixedSizeListArray.from_arrays(vectors.ravel(), 8)}))
    for size in (600, 601, 7, 837):
        sample = sample_embeddings(urls, rows, size, seed=1)
        assert sample.shape == (size, 8)
        assert len(np.unique(sample, axis=0)) == size  # without replacement
    assert len(sample_embeddings(urls, rows, 10_000, seed=1)) == sum(rows)


def test_saved_codecs_keep_only_what_serving_reads(embeddings: np.ndarray, tmp_path: Path) -> None:
    """A fitted codec is saved without the PCA's training matrix and an exact codec without its
    identity matrix (590 KB each for a 384-d model); loaded, both project and code as before."""
    from vecpress.tasks.codec.codec import fit_exact

    fitted = fit_codec(embeddings, CodecSettings(pca_dim=64, pq_m=8))
    exact = fit_exact(embeddings[:100], "small")
    for codec, name in ((fitted, "fitted"), (exact, "exact")):
        folder = tmp_path / name
        codec.save(str(folder))
        whole = len(faiss.serialize_index(codec.index))
        saved = (folder / "codec.faiss").stat().st_size
        d = embeddings.shape[1]
        assert saved <= whole - 4 * d * d  # the d x d matrix is not kept
        again = Codec.load(str(folder))
        assert again.codec_id == codec.codec_id and again.dim == codec.dim
        np.testing.assert_array_equal(again.project(embeddings[:20]), codec.project(embeddings[:20]))
        np.testing.assert_array_equal(again.encode(embeddings[:20]), codec.encode(embeddings[:20]))
    assert (tmp_path / "exact" / "codec.faiss").stat().st_size < 1024


def test_the_reports_plot_is_drawn_beside_the_stream(embeddings: np.ndarray, tmp_path) -> None:
    """The curve's job (on a worker, while the stream goes on) draws the recall-vs-bytes plot
    into the run's folder, and the report at the run's end embeds that file instead of drawing
    it again (matplotlib's import and drawing: ~0.8 s at the end of every first run)."""
    import base64

    from vecpress.infra.settings import MilvusSettings
    from vecpress.tasks.ingest.part_jobs import curve_job, fit_codec_job
    from vecpress.tasks.report.markdown import report_markdown
    from vecpress.tasks.report.summary import IngestSummary

    url = str(tmp_path / "embeddings-0.parquet")
    storage.write_parquet(url, pa.table({
        "pk": np.arange(len(embeddings), dtype=np.int64),
        "embedding": pa.FixedSizeListArray.from_arrays(embeddings.ravel(), embeddings.shape[1])}))
    settings, run_dir = CodecSettings(pca_dim=64, pq_m=8), str(tmp_path / "runs" / "r1")
    fitted = fit_codec_job([url], [len(embeddings)], settings, MilvusSettings(),
                           str(tmp_path / "codecs"), "cosine", run_dir)
    assert fitted.curve_due and not (tmp_path / "runs" / "r1").exists()  # no table, no plot yet
    curve = curve_job([url], [len(embeddings)], settings, MilvusSettings(),
                      str(tmp_path / "codecs" / fitted.codec_id), "cosine", run_dir)
    plot = tmp_path / "runs" / "r1" / "recall_vs_bytes.png"
    assert plot.read_bytes()[:4] == b"\x89PNG"
    plot.write_bytes(b"\x89PNG drawn on the worker")
    summary = IngestSummary("r1", "c", "lite.db", codec={"codec_id": fitted.codec_id,
                                                        "autotune": curve.table})
    markdown = report_markdown(summary, run_dir)
    assert base64.b64encode(b"\x89PNG drawn on the worker").decode() in markdown
    assert plot.read_bytes() == b"\x89PNG drawn on the worker"
    from vecpress.tasks.report.plot import save_plot

    save_plot({"rows": []}, str(tmp_path / "runs" / "r2"))  # not drawable: the job goes on
    assert not (tmp_path / "runs" / "r2").exists()
