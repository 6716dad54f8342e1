"""The graph transforms behind each exported variant: ONNX Runtime's fusion, the int8 recipe
and the fp16 conversion.

Each takes the exported fp32 graph's file and writes its variant's; ``export.export_model``
chains them and gates every result on its fidelity to sentence-transformers.
"""

from __future__ import annotations

import logging
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from vecpress.tasks.embed.model_files import ModelSpec

if TYPE_CHECKING:
    import onnx


# ONNX Runtime's optimizer knows BERT-style encoders as "bert"; RoBERTa / XLM-R / DistilBERT share
# that graph shape. MPNet's relative attention bias does not match the attention pattern, so only
# LayerNorm / GELU / embedding fusions apply there; the fidelity gate checks every result.
FUSION_MODEL_TYPES = {"bert": "bert", "roberta": "bert", "xlm-roberta": "bert", "distilbert": "bert",
                      "mpnet": "bert"}


def fuse(spec: ModelSpec, src: Path, dst: Path) -> str:
    """ONNX Runtime's transformer fusion where it knows the family; returns what was applied."""
    ort_type = FUSION_MODEL_TYPES.get(spec.model_type)
    if ort_type is None or not spec.num_heads:
        shutil.copyfile(src, dst)
        return f"none (no ONNX Runtime fusion for model_type '{spec.model_type}')"
    from onnxruntime.transformers.optimizer import optimize_model

    try:
        optimized = optimize_model(str(src), model_type=ort_type, num_heads=spec.num_heads,
                                   hidden_size=spec.hidden_size, opt_level=1)
    except Exception as exc:  # the unfused graph is still exact; say why it stayed unfused
        shutil.copyfile(src, dst)
        return f"none (fusion failed: {type(exc).__name__}: {str(exc)[:200]})"
    optimized.save_model_to_file(str(dst))
    fused = {op: n for op, n in optimized.get_fused_operator_statistics().items() if n}
    return f"{ort_type}: " + (", ".join(f"{op}×{n}" for op, n in sorted(fused.items())) or "nothing fused")


GELU_OPS = {"Gelu", "FastGelu", "BiasGelu", "QuickGelu"}


def ffn_output_matmuls(model: onnx.ModelProto) -> list[str]:
    """The feed-forward output MatMuls (intermediate → hidden, fed by the GELU), layer by layer.

    They see GELU outputs with heavy tails, and per-batch activation scales lose most on them:
    their int8 error was the largest of any node's, measured one node at a time.
    """
    produced_by = {out: node.op_type for node in model.graph.node for out in node.output}
    return [node.name for node in model.graph.node
            if node.op_type == "MatMul" and produced_by.get(node.input[0]) in GELU_OPS]


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic per-channel int8 of the MatMul and fused Attention weights; the embedding table and
    the feed-forward output MatMuls of the first half of the layers stay fp32.

    Measured against sentence-transformers FP32 on docstrings, package READMEs, one-line titles
    and quotations (tasks/embed probes and benchmarks/embed.py): quantising every MatMul kept the
    mean cosine above 0.99 but let the worst passage of short, unusual text fall to 0.964–0.974;
    keeping the first half of the layers' FFN outputs in fp32 raised the worst to ≥ 0.98 at about
    the same speed (errors made early are carried through every later layer; the later ones
    cost more time than fidelity). Models without ONNX Runtime's fused GELU keep the plain recipe.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    ffn_out = ffn_output_matmuls(onnx.load(str(src), load_external_data=False))
    keep_fp32 = ffn_out[: (len(ffn_out) + 1) // 2]
    with _without_preprocessing_advice():
        quantize_dynamic(str(src), str(dst), per_channel=True, weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Attention"], nodes_to_exclude=keep_fp32,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


class _PreprocessingAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Please consider to run pre-processing")


@contextmanager
def _without_preprocessing_advice() -> Iterator[None]:
    """ONNX Runtime's quantiser advises, on the root logger, pre-processing meant for image
    models ("WARNING:root:Please consider to run pre-processing before quantization...") on
    every int8 export: a user's first int8 run printed it, and its ``logging.warning`` also gave
    the root logger a stderr handler for good. The recipe above is measured as it is; the
    advice is dropped, and a handler that prints nothing keeps the root logger as it was."""
    root, advice, quiet = logging.getLogger(), _PreprocessingAdvice(), logging.NullHandler()
    root.addFilter(advice)
    root.addHandler(quiet)
    try:
        yield
    finally:
        root.removeHandler(quiet)
        root.removeFilter(advice)


def convert_fp16(src: Path, dst: Path) -> None:
    """fp16 weights and activations, fp32 inputs/outputs; casts of the mask to float stay fp32.

    Converting the pooling mask's Cast to fp16 breaks the graph (measured), hence the block list.
    """
    import onnx
    from onnxconverter_common import float16

    model = onnx.load(str(src))
    keep = [n.name for n in model.graph.node if n.op_type == "Cast" and any(
        a.name == "to" and a.i == onnx.TensorProto.FLOAT for a in n.attribute)]
    with warnings.catch_warnings():  # "number ... will be truncated": expected for fp16
        warnings.simplefilter("ignore")
        converted = float16.convert_float_to_float16(model, keep_io_types=True, node_block_list=keep)
    onnx.save(converted, str(dst))
