#!/usr/bin/env bash
# One GPU run on a fresh CUDA machine: install what is missing, then measure (bench/gpu_bench.py) in
# <= 8 minutes and print one table in the bench/RESULTS.md format.
#
#   bash bench/gpu.sh             # measure (no GPU: says so and exits 0)
#   bash bench/gpu.sh --dry-run   # CPU: every step's imports and arguments, tiny model, nothing timed
#
# Environment: PYTHON (default .venv/bin/python, else python3); TORCH_INDEX (CUDA torch wheels, default
# https://download.pytorch.org/whl/cu128); WHEELS (a folder of wheels to install from, offline);
# BUDGET_S (measurement budget, default 480); GPU_WORK (keep models/bundles there between runs).
# An install that fails is reported and the run goes on: its rows say why they were skipped.
set -u -o pipefail

DRY=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "bench/gpu.sh: unknown argument $arg (expected --dry-run)" >&2; exit 2 ;;
  esac
done

cd "$(dirname "$0")/.." || exit 2
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
TORCH_VERSION="2.13.0"  # the project's pin (requirements/constraints.txt)
TORCH_INDEX="${TORCH_INDEX:-https://download.pytorch.org/whl/cu128}"
BUDGET_S="${BUDGET_S:-480}"
say() { echo "bench/gpu.sh: $*" >&2; }

if ! "$PY" -c "import differad_edge" 2>/dev/null; then
  say "python $PY cannot import differad_edge; run 'make venv' (or pip install -e .[vlm,onnx,export]) first"
  exit 2
fi

if [ "$DRY" -eq 0 ] && ! command -v nvidia-smi >/dev/null 2>&1; then
  say "no CUDA GPU here (nvidia-smi not found): nothing measured"
  exit 0
fi
if [ "$DRY" -eq 0 ] && ! nvidia-smi -L >/dev/null 2>&1; then
  say "nvidia-smi finds no GPU: nothing measured"
  exit 0
fi

pip_install() {  # pip_install DESCRIPTION ARGS... (never fatal)
  local what="$1"; shift
  local src=()
  if [ -n "${WHEELS:-}" ]; then src=(--no-index --find-links "$WHEELS"); fi
  if [ "$DRY" -eq 1 ]; then
    say "dry run: would install $what: $PY -m pip install ${src[*]} $*"
    "$PY" -m pip --version >/dev/null || { say "pip is missing in $PY"; return 1; }
    return 0
  fi
  say "installing $what"
  if ! timeout 300 "$PY" -m pip install -q "${src[@]}" "$@"; then
    say "could not install $what; the rows that need it will say so"
    return 1
  fi
}

# 1) CUDA torch (same version as the pin), 2) onnxruntime-gpu (CUDA EP), 3) tensorrt (vision plan).
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  if [ -n "${WHEELS:-}" ]; then
    pip_install "CUDA torch $TORCH_VERSION" "torch==$TORCH_VERSION"
  else
    pip_install "CUDA torch $TORCH_VERSION" "torch==$TORCH_VERSION" --index-url "$TORCH_INDEX"
  fi
fi
if ! "$PY" -c "import onnxruntime as o, sys; sys.exit(0 if 'CUDAExecutionProvider' in o.get_available_providers() else 1)" 2>/dev/null; then
  ORT_VERSION="$("$PY" -c 'import onnxruntime; print(onnxruntime.__version__)' 2>/dev/null || echo 1.31.1)"
  if [ "$DRY" -eq 0 ]; then "$PY" -m pip uninstall -q -y onnxruntime >/dev/null 2>&1 || true; fi
  pip_install "onnxruntime-gpu $ORT_VERSION" "onnxruntime-gpu==$ORT_VERSION" \
    || pip_install "onnxruntime $ORT_VERSION (CPU, restored)" "onnxruntime==$ORT_VERSION"
fi
if ! "$PY" -c "import tensorrt" 2>/dev/null; then
  pip_install "tensorrt" tensorrt
fi

ARGS=(--budget-s "$BUDGET_S")
if [ -n "${GPU_WORK:-}" ]; then mkdir -p "$GPU_WORK" && ARGS+=(--work "$GPU_WORK"); fi
if [ "$DRY" -eq 1 ]; then
  say "dry run: checking every step on the CPU (tiny model, 64 px, one pair; nothing is timed)"
  exec "$PY" bench/gpu_bench.py --dry-run "${ARGS[@]}"
fi
exec timeout $((BUDGET_S + 240)) "$PY" bench/gpu_bench.py "${ARGS[@]}"
