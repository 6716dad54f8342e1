"""``vecpress export-model``: export a model to ONNX, check its fidelity and cache it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from vecpress.cli.common import console, quiet_libraries


def export_model_cmd(
    model_dir: Annotated[str, typer.Argument(help="Local sentence-transformers model directory.")],
    variant: Annotated[str, typer.Option(
        help="fp32 (exact), int8 (dynamic, per-channel) or fp16 (for CUDA).")] = "fp32",
    cache_dir: Annotated[Path, typer.Option(help="Where exported artifacts are cached.")] = Path(
        "data/models"),
    min_cosine: Annotated[float | None, typer.Option(
        help="Fidelity floor (min cosine vs sentence-transformers); default 0.999 fp32/fp16, 0.97 int8."
    )] = None,
    probes: Annotated[list[str] | None, typer.Option(
        help="Files, folders or URLs of your own text: the fidelity gate also checks 128 of "
             "their records (cut to 120 words).")] = None,
) -> None:
    """Export a model to ONNX (pooling + normalisation in the graph), check it, cache it."""
    quiet_libraries()
    from vecpress.infra.settings import InputSettings
    from vecpress.tasks.embed.export import ExportError, export_model
    from vecpress.tasks.embed.model_files import ModelDirError, read_model_spec, resolve_model_dir
    from vecpress.tasks.inputs.corpus import probe_passages
    from vecpress.tasks.inputs.sources import sample_texts

    try:
        spec = read_model_spec(resolve_model_dir(model_dir))
        artifact = export_model(spec, variant, cache_dir, probe_passages, min_cosine,
                                own_probes=(lambda: sample_texts(probes, InputSettings()))
                                if probes else None)
    except (ModelDirError, ExportError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    Console().print(f"{artifact.onnx_path}\n  variant {artifact.variant}, window "
                    f"{artifact.max_seq_length} tokens, {artifact.dim}-d; vs sentence-transformers on "
                    f"{artifact.probes} real passages ({artifact.own_probes} yours): min cosine "
                    f"{artifact.min_cosine:.5f}, mean "
                    f"{artifact.mean_cosine:.5f}, neighbour recall@10 "
                    f"{artifact.neighbour_recall_at_10:.3f} (on {artifact.checked_on})\n"
                    f"  fusion: {artifact.fusion}")
