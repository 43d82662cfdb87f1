#!/usr/bin/env bash
# Issue 17's GPU checks in one go (one H100/H200, about 8 minutes), from the repository root:
#   bash benchmarks/gpu_issue17.sh OUTDIR
# (1) the paper preset's measured update and checkpoint times, its projected training time, and each
# update with the real-text pipeline (built ahead) against one pre-built batch; (2) compiled bf16 MFU
# at 300M and 1B with twice the batch of the 2026-11-23 table.
set -u
out=${1:-/tmp/gpu17}
mkdir -p "$out"
repo=$PWD
export PYTHONPATH=$repo${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a "$out/gpu.txt"
work=$(mktemp -d) && cd "$work" && python3 -m mechrare.examples.corpus corpus >/dev/null
timeout 230 python3 "$repo/benchmarks/paper_preset_time.py" --steps 20 --warmup 3 2>&1 | tee "$out/paper_time.txt"
timeout 220 python3 "$repo/benchmarks/gpu_throughput.py" --sizes 300M 1B --batch 64 32 --seq 1024 --steps 10 --compile --no-fp32 2>&1 | tee "$out/mfu.txt"
