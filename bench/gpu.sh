#!/usr/bin/env bash
# The one script for a lent GPU (H100/H200; no network there): every GPU-size training preset at its real size, a few
# LoRA steps each, peak VRAM (allocator and nvidia-smi) and it/s printed as a table (bench/gpu_presets.py), within
# about 7 minutes. The wheels the GPU machine lacks (diffusers, torchao; bitsandbytes if it fits the 64 MiB a call
# carries) are fetched here first with bench/gpu_wheels.sh into .whl/ and carried (run's `carry: [".whl"]`).
#
#   bench/gpu.sh            on the lent GPU: prints the table (and writes it to $OUT/gpu-presets.md when $OUT is set)
#   bench/gpu.sh --dry      here, on the CPU: every preset's real-size model checked on the meta device
#   bench/gpu.sh --presets flux-8gb,flux-24gb --steps 3
set -euo pipefail
cd "$(dirname "$0")/.."
PY=python3
[ -x .venv/bin/python ] && [ "${1:-}" = --dry ] && PY=.venv/bin/python
if [ "${1:-}" != --dry ] && compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
out=${OUT:-/tmp}/gpu-presets.md
"$PY" -c 'import torch, diffusers, peft; print("torch", torch.__version__, "diffusers", diffusers.__version__, "peft", peft.__version__, "cuda", torch.cuda.is_available())'
[ "${1:-}" != --dry ] && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
timeout 450 "$PY" bench/gpu_presets.py "$@" | tee "$out"
