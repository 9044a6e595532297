#!/usr/bin/env bash
# One GPU run on a fresh CUDA machine: install what is missing, then measure (bench/gpu_bench.py) in
# <= 8 minutes and print one table in the bench/RESULTS.md format.
#
#   bash bench/gpu.sh                     # measure (no GPU: says so and exits 0)
#   bash bench/gpu.sh --dry-run           # CPU: every step's imports and arguments, tiny model, nothing timed
#   bash bench/gpu.sh --fetch-wheels DIR  # here, with a package index: the wheels an offline GPU machine lacks
#
# Environment: PYTHON (default .venv/bin/python, else python3); TORCH_INDEX (CUDA torch wheels, default
# https://download.pytorch.org/whl/cu128); WHEELS (a folder of wheels to install from, offline);
# BUDGET_S (measurement budget, default 480); GPU_WORK (keep models/bundles there between runs);
# GPU_SITE (where installs go, default /tmp/differad-gpu-site, first on PYTHONPATH).
# Nothing already installed is changed: every install goes into GPU_SITE. An install that fails is
# reported and the run goes on: its rows say why they were skipped.
#
# An offline machine (no package index; a python3 that holds CUDA torch, as this workplace's GPU
# machines): fetch the wheels here first, carry the folder, and point WHEELS at it there:
#   bash bench/gpu.sh --fetch-wheels .whl      # pydantic & co, the pinned transformers, bitsandbytes
#   WHEELS=.whl bash bench/gpu.sh              # on the GPU machine
set -u -o pipefail

DRY=0
FETCH=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --fetch-wheels)
      [ $# -ge 2 ] || { echo "bench/gpu.sh: --fetch-wheels needs a folder" >&2; exit 2; }
      FETCH="$2"; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "bench/gpu.sh: unknown argument $1 (expected --dry-run or --fetch-wheels DIR)" >&2; exit 2 ;;
  esac
  shift
done

cd "$(dirname "$0")/.." || exit 2
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
PY="$(command -v "$PY")" || { echo "bench/gpu.sh: no python $PY" >&2; exit 2; }
case "$PY" in /*) ;; *) PY="$PWD/$PY" ;; esac
#: import checks run outside the checkout: its differad_edge/ folder (the core alone) would shadow the
#: installed package, whose edges (export, train, ...) live in other folders of the tree
py_check() { (cd / && "$PY" -c "$@"); }
TORCH_VERSION="2.13.0"  # the project's pin (requirements/constraints.txt)
TORCH_INDEX="${TORCH_INDEX:-https://download.pytorch.org/whl/cu128}"
BUDGET_S="${BUDGET_S:-480}"
say() { echo "bench/gpu.sh: $*" >&2; }
#: What the bench needs beyond a CUDA-torch image (a python3 with torch, numpy, onnx, onnxruntime,
#: tokenizers, opencv, scikit-image, accelerate, ...): versions as in this project's venv, or the pins.
CARRIED=(pydantic pydantic-core annotated-types typing-inspection transformers bitsandbytes)

if [ -n "$FETCH" ]; then  # runs here, where a package index answers: wheels for the GPU machine's python
  PYVER="${GPU_PYTHON_VERSION:-3.12}"
  mkdir -p "$FETCH" || exit 2
  specs=()
  for name in "${CARRIED[@]}"; do
    v="$(py_check "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name" 2>/dev/null)" \
      || v="$(sed -n "s/^${name}==//p" requirements/constraints.txt | head -1)"
    specs+=("${name}${v:+==$v}")
  done
  say "fetching ${specs[*]} for CPython $PYVER (manylinux x86_64) into $FETCH"
  plats=()
  for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do
    plats+=(--platform "$p")
  done
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
    "${plats[@]}" -d "$FETCH" "${specs[@]}" || { say "pip download failed"; exit 2; }
  total="$(du -cb "$FETCH"/*.whl | tail -1 | cut -f1)"
  say "$(ls "$FETCH"/*.whl | wc -l) wheels, $((total / 1048576)) MiB in $FETCH (a device call carries 64 MiB with the repo)"
  exit 0
fi

if [ "$DRY" -eq 0 ] && ! command -v nvidia-smi >/dev/null 2>&1; then
  say "no CUDA GPU here (nvidia-smi not found): nothing measured"
  exit 0
fi
if [ "$DRY" -eq 0 ] && ! nvidia-smi -L >/dev/null 2>&1; then
  say "nvidia-smi finds no GPU: nothing measured"
  exit 0
fi

SITE="${GPU_SITE:-/tmp/differad-gpu-site}"
mkdir -p "$SITE" || exit 2
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
# (the dry run does these two installs too: they only write GPU_SITE, and they are the offline path's steps)
if [ -n "${WHEELS:-}" ]; then
  say "installing the wheels of $WHEELS into $SITE"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl \
    || say "could not install the wheels of $WHEELS; the imports below say what is missing"
fi
# this checkout, built offline (no dependencies fetched) into the same folder, unless PY already has it
# (make venv: an editable install); a copy an earlier run left there is replaced (the code may have changed)
where="$(py_check "import differad_edge.export, os; print(os.path.dirname(differad_edge.__file__))" 2>/dev/null)"
if [ -z "$where" ] || [ "${where#"$SITE"}" != "$where" ]; then
  say "installing this checkout into $SITE"
  "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --upgrade --target "$SITE" . \
    || say "could not install this checkout with $PY"
fi
if ! err="$(py_check "import differad_edge.export, differad_edge.engines.vlm, pydantic, transformers" 2>&1)"; then
  say "python $PY cannot run the bench: $(echo "$err" | tail -1)"
  say "run 'make venv' here, or carry the missing wheels (bash bench/gpu.sh --fetch-wheels DIR) and set WHEELS=DIR"
  exit 2
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
  say "installing $what into $SITE"
  if ! timeout 300 "$PY" -m pip install -q --retries 1 --timeout 15 --target "$SITE" "${src[@]}" "$@"; then
    say "could not install $what; the rows that need it will say so"
    return 1
  fi
}

# 1) CUDA torch (same version as the pin), 2) onnxruntime-gpu (CUDA EP), 3) tensorrt (vision plan).
if ! py_check "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  if [ -n "${WHEELS:-}" ]; then
    pip_install "CUDA torch $TORCH_VERSION" "torch==$TORCH_VERSION"
  else
    pip_install "CUDA torch $TORCH_VERSION" "torch==$TORCH_VERSION" --index-url "$TORCH_INDEX"
  fi
fi
if ! py_check "import onnxruntime as o, sys; sys.exit(0 if 'CUDAExecutionProvider' in o.get_available_providers() else 1)" 2>/dev/null; then
  # into GPU_SITE, which comes first on PYTHONPATH: it shadows the CPU package, which stays installed
  ORT_VERSION="$(py_check 'import onnxruntime; print(onnxruntime.__version__)' 2>/dev/null || echo 1.31.1)"
  pip_install "onnxruntime-gpu $ORT_VERSION" "onnxruntime-gpu==$ORT_VERSION"
fi
if ! py_check "import tensorrt" 2>/dev/null; then
  pip_install "tensorrt" tensorrt
fi

ARGS=(--budget-s "$BUDGET_S")
if [ -n "${GPU_WORK:-}" ]; then mkdir -p "$GPU_WORK" && ARGS+=(--work "$GPU_WORK"); fi
if [ "$DRY" -eq 1 ]; then
  say "dry run: checking every step on the CPU (tiny model, 64 px, one pair; nothing is timed)"
  exec "$PY" bench/gpu_bench.py --dry-run "${ARGS[@]}"
fi
exec timeout $((BUDGET_S + 240)) "$PY" bench/gpu_bench.py "${ARGS[@]}"
