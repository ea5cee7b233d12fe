#!/usr/bin/env bash
# Issue 13's acceptance on the CPU: the product's defaults with only --batch-size set (no --lr anywhere), on the
# shared lossless CIFAR-10. Figures: docs/results.md ("Defaults that survive any batch size").
# Usage: bash benchmarks/cpu_defaults.sh OUT_DIR [SCRATCH_SEEDS]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: cpu_defaults.sh OUT_DIR [SCRATCH_SEEDS]}
SEEDS=${2:-0 1 2}
PNG=../shared/datasets/cifar10-png.tar.gz
[ -f "$PNG" ] || { echo "skipped: $PNG not present"; exit 0; }
CL=".venv/bin/cifarlab"
D="--dataset folder:$PNG --out $OUT --progress off"
t() { local s=$(date +%s); "$@" 2>&1 | grep -vE "^epoch|^lr "; echo "wall $(( $(date +%s) - s )) s: $*"; }
# 1. ResNet18 from scratch, 200 images per class, 3 epochs, batch 64 (was 21.57% at lr 0.4)
t $CL train --recipe scratch --model resnet18 $D --per-class 200 --epochs 3 --batch-size 64 --seed 0 --name scratch-bs64-s0
# 2. rotation at batch 64 (was 28.8%), then the last block + head on 100 labels per class, from it and from random
t $CL train --recipe rotation --model resnet18 $D --per-class 300 --epochs 3 --batch-size 64 --name rotation-bs64
for init in "$OUT/rotation-bs64" random; do
  t $CL train --recipe partial --model resnet18 $D --per-class 100 --batch-size 64 --init "$init" \
    --name "partial-$( [ "$init" = random ] && echo randinit || echo rotinit )-pc100"
done
# 3. two deliberately diverged runs, then the report over everything
for s in 0 1; do
  t $CL train --recipe scratch --model cnn_small $D --per-class 20 --epochs 2 --batch-size 32 --lr 100 --seed $s --name absurd-lr-s$s
done
t $CL report "$OUT" -o "$OUT/report.html" --embedding none
for s in $SEEDS; do [ "$s" = 0 ] || t $CL train --recipe scratch --model resnet18 $D --per-class 200 --epochs 3 --batch-size 64 --seed $s --name scratch-bs64-s$s; done
.venv/bin/python benchmarks/summarize_runs.py "$OUT"
