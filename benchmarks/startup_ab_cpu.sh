#!/usr/bin/env bash
# Lone-process start-up, two versions of cifarlab side by side (interleaved, 3 rounds): a short scratch run on the
# shared CIFAR-10 (its summary's startup_s, parts, data_load_s and the process's wall time) and `cifarlab recipes`
# (a command that trains nothing: its wall time is the imports').
#   git worktree add /tmp/base-wt COMMIT
#   bash benchmarks/startup_ab_cpu.sh /tmp/base-wt/src src OUT
set -uo pipefail
cd "$(dirname "$0")/.."
A=$(realpath "${1:?usage: startup_ab_cpu.sh SRC_A SRC_B OUT}"); B=$(realpath "${2:?}"); OUT=${3:?}
DATA=${CIFARLAB_DATASET:-folder:../shared/datasets/cifar10-png.tar.gz}
PY=.venv/bin/python
wall() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); $PY -c "print(f'{$e - $s:.2f}')"; }
for i in 1 2 3; do
  for v in A B; do
    src=$A; [ $v = B ] && src=$B
    w=$(PYTHONPATH=$src wall $PY -m cifarlab.cli train --recipe scratch --model resnet18 --dataset "$DATA" \
      --per-class 20 --epochs 2 --set test_per_class=10 --set embed_samples=0 --set tta=off --out "$OUT" \
      --name "su$v$i" --overwrite --progress off)
    $PY -c "import json; s = json.load(open('$OUT/su$v$i/summary.json')); print('$v train wall $w', s['status'], \
'startup_s', s.get('startup_s'), s.get('startup_parts_s'), 'data_load_s', s.get('data_load_s'))"
    echo "$v recipes wall $(PYTHONPATH=$src wall $PY -m cifarlab.cli recipes)"
  done
done
