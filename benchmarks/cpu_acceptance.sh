#!/usr/bin/env bash
# The CPU acceptance runs behind docs/results.md, in order, on the shared lossless CIFAR-10 copy.
# Usage: bash benchmarks/cpu_acceptance.sh OUT_DIR   (needs ../shared/datasets/cifar10-png.tar.gz)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: cpu_acceptance.sh OUT_DIR}
PNG=../shared/datasets/cifar10-png.tar.gz
[ -f "$PNG" ] || { echo "skipped: $PNG not present"; exit 0; }
CL=".venv/bin/cifarlab"
D="--dataset folder:$PNG --out $OUT --progress off"
t() { local s=$(date +%s); "$@"; echo "wall $(( $(date +%s) - s )) s: $*"; }

# issue 2: ResNet18 from scratch, 200 images per class, 3 epochs
t $CL train --recipe scratch --model resnet18 $D --per-class 200 --epochs 3 --batch-size 64 --lr 0.1 --name scratch-resnet18-pc200

# issue 4: SupCon vs the same linear evaluation of a random-init encoder, and the CE baseline (same budget)
S="--model cnn_small --per-class 500 --batch-size 128 --lr 0.05 --set warmup_epochs=1 --set linear_epochs=50"
t $CL train --recipe supcon $S $D --epochs 10 --name supcon-cnn_small
t $CL train --recipe supcon $S $D --epochs 0 --name supcon-control-randinit
t $CL train --recipe supcon_ce $S $D --epochs 10 --name supcon_ce-cnn_small
t $CL train --recipe simclr $S $D --epochs 10 --name simclr-cnn_small

# issue 5: rotation pretraining (label-free, 3,000 images), then 50 labels per class: rotation init vs random init
t $CL train --recipe rotation --model cnn_small $D --train-fraction 0.06 --epochs 6 --batch-size 128 --lr 0.1 --name rotation-cnn_small
F="--model cnn_small --per-class 50 --epochs 15 --batch-size 64 --lr 0.05 --augment cropflip --set backbone_lr_factor=1.0"
for r in partial finetune; do
  t $CL train --recipe $r $F $D --init "$OUT/rotation-cnn_small" --name $r-rotinit-pc50
  t $CL train --recipe $r $F $D --init random --name $r-randinit-pc50
done
$CL report "$OUT" -o "$OUT/report.html"
