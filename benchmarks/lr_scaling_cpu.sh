#!/usr/bin/env bash
# Which rule should carry the scratch recipe's learning rate (0.4 per 512 images) to small batches?
# Linear (lr = 0.4 x B/512) against square-root (lr = 0.4 x sqrt(B/512)) at batch 32, 64 and 128, ResNet18 from
# scratch, 200 images per class, 3 epochs, 1,000 seeded test images. Each run sets --lr explicitly, so the rule is
# compared, not the product's default. Figures: docs/results.md ("Learning rate against batch size").
# Usage: bash benchmarks/lr_scaling_cpu.sh OUT_DIR [SEEDS]   (needs ../shared/datasets/cifar10-png.tar.gz)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: lr_scaling_cpu.sh OUT_DIR [SEEDS]}
SEEDS=${2:-0}
PNG=../shared/datasets/cifar10-png.tar.gz
[ -f "$PNG" ] || { echo "skipped: $PNG not present"; exit 0; }
for seed in $SEEDS; do
  for bs in 32 64 128; do
    for rule in linear sqrt; do
      lr=$(python3 -c "import math; r=$bs/512; print(round(0.4*(r if '$rule'=='linear' else math.sqrt(r)), 4))")
      .venv/bin/cifarlab train --recipe scratch --model resnet18 --dataset folder:$PNG --out "$OUT" --progress off \
        --per-class 200 --epochs 3 --batch-size $bs --lr $lr --seed $seed --set test_per_class=100 \
        --name "bs$bs-$rule-s$seed" --overwrite 2>&1 | grep -E "epoch|complete|error" || true
    done
  done
done
.venv/bin/python - "$OUT" <<'PY'
import json, sys, pathlib
rows = []
for p in sorted(pathlib.Path(sys.argv[1]).glob("bs*/summary.json")):
    s = json.loads(p.read_text()); c = json.loads((p.parent / "config.json").read_text())["config"]
    import csv
    m = list(csv.DictReader(open(p.parent / "metrics.csv")))
    print(f"{p.parent.name:<18} bs {c['batch_size']:>4} lr {c['lr']:<7} test {100*s.get('test_acc', float('nan')):6.2f}% "
          f"val-loss by epoch {[round(float(r['val_loss']), 2) for r in m]}")
PY
