#!/usr/bin/env bash
# Issue 17's GPU checks that matter most, in one command of at most about 9 minutes (a lent GPU's whole
# session is 15 minutes of device time, machine start included), from the repository root:
#   bash benchmarks/gpu_next.sh OUTDIR
# In order of what is least known: (1) the paper preset's update times with the real-text pipeline against
# a pre-built batch and against fit() on one batch (data time hidden at 4M/20M/60M; the batch build was
# halved after the last GPU run) and its projected time; (2) 8 x 4M together: combined MFU, eager, and the
# vmap compiled with eager attention; (3) compiled bf16 MFU at 300M. Each step has its own time limit, so
# a slow step cannot take the others' time; what a step printed before its limit is kept in OUTDIR.
# gpu_issue17.sh and gpu_together.sh hold the longer versions (1B, 20M together, a family).
set -u
out=${1:-/tmp/gpu17}
mkdir -p "$out"
repo=$PWD
export PYTHONPATH=$repo${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a "$out/gpu.txt"
work=$(mktemp -d) && cd "$work" && python3 -m mechrare.examples.corpus corpus >/dev/null
timeout 230 python3 "$repo/benchmarks/paper_preset_time.py" --steps 20 --warmup 3 2>&1 | grep -v -i warn | tee "$out/paper_time.txt"
timeout 150 python3 "$repo/benchmarks/together_gpu.py" --size 4M --k 8 --steps 20 2>&1 | grep -v -i warn | tee "$out/together_4M.txt"
timeout 120 python3 "$repo/benchmarks/gpu_throughput.py" --sizes 300M --batch 64 --seq 1024 --steps 10 --compile --no-fp32 2>&1 | tee "$out/mfu_300M.txt"
