"""The codec settings: PCA and FAISS product quantisation, their auto-tune and drift check. Part
of ``infra.settings.Settings`` (``codec.*``, ``VECPRESS_CODEC__*``); kept apart so that the settings
module stays readable."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator


class CodecSettings(BaseModel):
    """PCA + FAISS product quantisation fitted on a sample of the embeddings."""

    pca_dim: int | None = Field(None, ge=8, description="Dimensions kept by PCA (searched with "
                                "L2); default: enough to keep codec.pca_variance of the sample's "
                                "variance, a multiple of pq_m, at least codec.pca_min_dim.")
    pca_variance: float = Field(0.99, gt=0.0, le=1.0, description="Share of the variance the "
                                "default PCA dimension keeps (0.99: 300-320 of MiniLM's 384 on "
                                "docstrings, READMEs and quotations).")
    pca_min_dim: int = Field(64, ge=8, description="Floor of the default PCA dimension (capped "
                             "at the model's dimension).")
    pq_m: int = Field(32, ge=1, description="PQ sub-quantizers; bytes per code at 8 bits.")
    pq_nbits: int = Field(8, ge=4, le=12, description="Bits per PQ sub-code.")
    milvus_dim: int | None = Field(
        128, ge=8, description="Leading PCA components Milvus stores and indexes (the "
        "highest-variance ones; a multiple of pq_m, capped at the PCA dim); rescoring reads all "
        "of them from the codec.refine codes. None: every component.")
    refine: Literal["sq8", "sq6", "sq4", "fp16"] = Field(
        "sq8", description="How the archive and the search host's rescoring store keep each PCA "
        "vector: a FAISS scalar quantizer trained with the codec, 8, 6 or 4 bits per dimension, "
        "or FP16 (16 bits). sq8 halves FP16's bytes for ~0.004 of recall@10.")
    sample_size: int = Field(20_000, ge=256, description="Vectors sampled to fit PCA and PQ.")
    min_fit_vectors: int = Field(1_000, ge=16, description="A new collection with fewer passages "
                                 "keeps whole vectors (exact search, no PCA/PQ); the first ingest "
                                 "that brings it to this many fits the codec into a new build.")
    seed: int = Field(1234, description="Seed for sampling and training.")
    random_rotation: bool = Field(False, description="Randomly rotate the PCA output: spreads variance "
                                  "evenly over PQ sub-spaces (also Milvus's own IVF_PQ) at no cost.")
    opq: bool = Field(False, description="Learn an OPQ rotation after PCA (balances PQ sub-spaces; "
                      "the rotated vectors are what Milvus stores).")
    ivf_nlist: int | None = Field(None, ge=1, description="IVF coarse lists in the codec (PQ on "
                                  "residuals); a Milvus server IVF_PQ index then uses this nlist.")
    train_backend: Literal["auto", "faiss", "torch"] = Field(
        "auto", description="auto: FAISS GPU build if it sees a GPU, else k-means in torch on a CUDA "
        "device, else faiss-cpu. torch runs on CUDA when available, else on the CPU.")
    drift_tolerance: float = Field(1.3, gt=1.0, description="New data drifts when its reconstruction "
                                   "error exceeds the training error by this factor.")
    drift_action: Literal["warn", "retrain"] = Field("warn", description="What a failed drift check "
                                                     "asks for.")
    drift_min_vectors: int = Field(32, ge=1, description="Fewest new vectors a drift check "
                                   "judges: a run with fewer keeps the codec unchecked (one "
                                   "same-kind passage read as drifted 12% of the time: "
                                   "benchmarks/results/drift_sample.json).")
    recall_target: float | None = Field(None, gt=0.0, le=1.0, description="Auto-tune PCA dim and M: "
                                        "smallest code whose rescored recall@10 meets this.")
    autotune_pca_dims: list[int] = Field([128, 192, 256, 320, 384], description="PCA dims tried "
                                         "(capped at the embedding dimension).")
    autotune_pq_m: list[int] = Field([8, 16, 24, 32], description="PQ sub-quantizers tried.")
    autotune_refine: list[Literal["sq8", "sq6", "sq4", "fp16"]] = Field(
        ["sq4", "sq6", "sq8", "fp16"], description="Rescoring tiers tried (codec.refine); the "
        "choice costs index code plus rescoring bytes.")
    autotune_rotation: list[bool] = Field([False, True], description="Random rotation after PCA, "
                                          "tried off and on.")
    autotune_probe_shares: list[float] = Field([0.25, 1.0], description="Shares of "
                                               "the IVF lists probed, tried (plus the index "
                                               "plan's own nprobe).")
    autotune_rescore_factors: list[int] = Field([16, 64], description="Rescoring "
                                                "factors tried (candidates per result).")
    autotune_latency_ms: float | None = Field(None, gt=0, description="Latency budget of the "
                                              "auto-tune's choice: simulated milliseconds per "
                                              "query (one thread, this machine); none: no limit.")
    autotune_queries: int = Field(200, ge=10, description="Sample vectors held out as queries.")

    @model_validator(mode="after")
    def _m_divides_dim(self) -> CodecSettings:
        if self.pca_dim is not None and self.pca_dim % self.pq_m:
            raise ValueError(
                f"codec.pq_m ({self.pq_m}) must divide codec.pca_dim ({self.pca_dim})"
            )
        return self

    @model_validator(mode="after")
    def _enough_to_fit(self) -> CodecSettings:
        """The codec is fitted only on samples it can be fitted on."""
        needed = max((self.pca_dim or 0) + 1, 2 * self.pq_m, 2 * (self.ivf_nlist or 0))
        if min(self.min_fit_vectors, self.sample_size) < needed:
            raise ValueError(f"codec.min_fit_vectors ({self.min_fit_vectors}) must be at least "
                             f"{needed} to fit PCA-{self.pca_dim}, PQ{self.pq_m}"
                             + (f" and {self.ivf_nlist} IVF lists" if self.ivf_nlist else ""))
        # A sample never holds more than sample_size vectors: a smaller sample size lowers it.
        self.min_fit_vectors = min(self.min_fit_vectors, self.sample_size)
        return self
