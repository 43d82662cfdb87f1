#!/usr/bin/env bash
# Issue 17's small-models-together check on one GPU (about 7 minutes), from the repository root:
#   bash benchmarks/gpu_together.sh OUTDIR
set -u
out=${1:-/tmp/gpu17}
mkdir -p "$out"
repo=$PWD
export PYTHONPATH=$repo${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/gpu.txt"
work=$(mktemp -d) && cd "$work" && python3 -m mechrare.examples.corpus corpus >/dev/null
timeout 150 python3 "$repo/benchmarks/together_gpu.py" --size 4M --k 8 --steps 20 2>&1 | grep -v -i warn | tee "$out/together_4M.txt"
timeout 110 python3 "$repo/benchmarks/together_gpu.py" --size 20M --k 8 --steps 10 2>&1 | grep -v -i warn | tee "$out/together_20M.txt"
# a family (head width 24): 14M (8 layers) and 20M (16 layers), 4 seeds each, padded to 20M's depth
timeout 150 python3 "$repo/benchmarks/together_gpu.py" --size 14M --family 20M --k 4 --steps 10 2>&1 | grep -v -i warn | tee "$out/together_family_14M_20M.txt"
