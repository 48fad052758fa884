#!/usr/bin/env bash
# One-shot GPU check (bench/gpu_check.py): on a machine with an NVIDIA GPU, from the repository root:
#   bash bench/gpu_check.sh [reports/gpu_check.json]
# installs what is missing (the CUDA build of torch, bitsandbytes), then measures for at most ~8 min.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-reports/gpu_check.json}"
TORCH_INDEX="${TORCH_INDEX:-https://download.pytorch.org/whl/cu128}"
PY=.venv/bin/python

command -v nvidia-smi >/dev/null || { echo "gpu_check: no nvidia-smi: this is not a GPU machine" >&2; exit 2; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
[ -x "$PY" ] || make install TORCH_INDEX="$TORCH_INDEX"
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: installing the CUDA build of torch from $TORCH_INDEX" >&2
  .venv/bin/pip install -q --force-reinstall --no-deps "torch==$(sed -n 's/^TORCH_VERSION ?= //p' Makefile)" --index-url "$TORCH_INDEX"
fi
"$PY" -c "import bitsandbytes" 2>/dev/null || .venv/bin/pip install -q bitsandbytes || \
  echo "gpu_check: bitsandbytes could not be installed: the QLoRA section will say so" >&2
timeout 540 "$PY" bench/gpu_check.py --out "$OUT" --budget-s 450
