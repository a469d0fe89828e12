#!/usr/bin/env bash
# The GPU checks, in order of value, each under its own time limit, for one short session on a
# lent GPU machine (no internet there; its image has torch and transformers, so tawin runs from
# src/ without an install):
#   1. `tawin eval --diagnostics` (test split, fp32, 20 beams like the experiment) for every model
#      folder under CHECKPOINTS (a model.safetensors.xz is unpacked first): the objective
#      diagnostics that cost ~1.25 CPU-s per row on the CPU, and the beam-search metrics again,
#      to set beside the CPU's.
#   2. tests/integration/test_cuda.py (pytest -m cuda): decoding and exact scores on CUDA equal the CPU's and
#      HF generate's; `tawin run` in bf16 autocast and under torch.compile.
#   3. benchmarks/decode_speed.py --device cuda on the default model.
#
#   OUT=/tmp/gpu bash benchmarks/gpu_check.sh [CHECKPOINTS]
#
# Writes env.txt, tests.log, diagnostics.log, diagnostics.json, decode.log and decode.json to $OUT.
set -u
OUT=${OUT:-/tmp/tawin-gpu}
CHECKPOINTS=${1:-gpu_carry/ckpt}
PY=${PY:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# Wheels in .whl/ (e.g. the transformers version pyproject.toml pins, where the image has another)
# are installed beside the image's packages, ahead of them on the path.
if ls .whl/*.whl > /dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH="$PWD/src:/tmp/site"
fi

{ date -u; nvidia-smi -L; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $PY -c "import torch, transformers; print('python', __import__('sys').version.split()[0], '| torch', torch.__version__, '| transformers', transformers.__version__, '|', torch.cuda.get_device_name())"
} 2>&1 | tee "$OUT/env.txt"

echo "== 1. diagnostics"
DIAG=/tmp/tawin-diagnostics
if [ -d "$CHECKPOINTS" ]; then
  SECONDS=0
  for folder in "$CHECKPOINTS"/*/; do
    name=$(basename "$folder")
    if [ -f "$folder/model.safetensors.xz" ] && [ ! -f "$folder/model.safetensors" ]; then
      $PY -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" \
        "$folder/model.safetensors.xz" "$folder/model.safetensors"
    fi
    echo "-- $name (${SECONDS}s)"
    timeout "${DIAG_EACH_S:-90}" $PY -m tawin eval --checkpoint "$folder" --out "$DIAG/$name" --split test --beams 20 \
      --diagnostics --dataset industrial --no-progress --overwrite \
      --set precision=fp32 --set eval.diagnostics_rows="${DIAG_ROWS:-1000}" --set eval.batch_size=32 --set eval.sample_size="${EVAL_ROWS:-0}"
    [ "$SECONDS" -gt "${DIAG_S:-240}" ] && { echo "diagnostics: time limit reached after $name"; break; }
  done 2>&1 | tee "$OUT/diagnostics.log"
  $PY - "$DIAG" "$OUT/diagnostics.json" <<'EOF'
import json, pathlib, sys
folders = sorted(p for p in pathlib.Path(sys.argv[1]).glob("*/metrics.json"))
json.dump({p.parent.name: json.loads(p.read_text()) for p in folders}, open(sys.argv[2], "w"), indent=1)
print(f"diagnostics.json: {len(folders)} checkpoints")
EOF
fi

echo "== 2. CUDA tests"
timeout "${TESTS_S:-150}" $PY -m pytest tests/integration/test_cuda.py -m cuda -q -p no:cacheprovider --durations=6 -W ignore::FutureWarning 2>&1 | tee "$OUT/tests.log"

echo "== 3. decode speed"
timeout "${DECODE_S:-120}" $PY benchmarks/decode_speed.py --device cuda --models default --hf-rows 16 --threads 4 \
  > "$OUT/decode.json" 2> "$OUT/decode.log"
echo "decode_speed exit $?"; tail -c 3000 "$OUT/decode.json"
