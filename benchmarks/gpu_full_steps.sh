# Sourced by benchmarks/gpu_check.sh part2 (real CIFAR-10 unpacked in $C10; $R holds the dataset/output flags).
# Ordered by importance: the overall deadline cuts the last steps first. First the runs whose timings count, each
# alone on the GPU with the product's defaults; then a wave of accuracy-only runs that share the GPU.
# The H200 and H100 runs of 2026-11-26 (docs/results.md) sized these limits: scratch 30 epochs 43 s whole run,
# linear lite0 29 s, lite0 fine-tune ~9.5 s per epoch with channels_last (bench: 4,880 img/s) plus ~17 s of cuDNN
# plans for its first shapes; the fast preset's epochs took 1.45 s before the EMA stopped reading the device, so
# its 3 seeds + warm-up take about 70 s. The lite0 loops' bench (channels_last vs NCHW) was measured on the H100
# and left out here; the in-run rates come from f-linear and f-finetune.
T="$CL train $R $EXTRA"
# time to accuracy (issue 12 item 5), as airbench reports it: the fast preset, 3 seeds in one process after an
# untimed 1-epoch warm-up run, mean ± sd of test accuracy and training seconds (benchmarks/time_to_accuracy.py)
T2A="python3 benchmarks/time_to_accuracy.py --dataset folder:$C10 --data-root $DATA --out $RUNS/time-to-acc $T2A_EXTRA"
# alone: the default scratch budget (start-up, first epoch vs median), time to accuracy of the fast preset (also its
# epoch time after the EMA fix), the lite0 linear probe with today's defaults (flip features on CUDA, padded
# evaluation batches), the LP-FT fine-tune at issue 14's 5 epochs in channels_last (its test figure)
step f-scratch 55 $T --recipe scratch --name scratch
step t-fast 90 $T2A --seeds 0,1,2 --set preset=fast
step f-linear 50 $T --recipe linear --name linear-lite0
step f-finetune 130 $T --recipe finetune --epochs 5 --name finetune-lite0-e5
# alone too (faster than in a wave): RotNet pretraining, then fine-tuning from it (issue 14's RotNet rows)
step f-rotation 90 bash -c "$T --recipe rotation --epochs 8 --name rotation-e8 && \
$T --recipe finetune --model resnet18 --init $RUNS/rotation-e8 --epochs 5 --name finetune-from-rotation-e5"

# wave, accuracy only (issue 14: 94% in 15 epochs): the fast preset with the levers that measured best or are
# untried, 2 seeds each where time allows: batch 256 (the best single lever twice), batch 128, batch 256 trained on
# all 50,000 train images (val_fraction=0: no model selection, the last epoch is tested, airbench's protocol), and
# batch 256 at the default 30 epochs; then the default's seed 1 (3 seeds with H100/H200 seed 0s are not a mean)
W="$T2A --warmup-epochs 0"
wave_add w-fast-bs256 "$W --seeds 0,1 --set preset=fast --set batch_size=256"
wave_add w-fast-bs128 "$W --seeds 0 --set preset=fast --set batch_size=128"
wave_add w-fast-bs256-50k "$W --seeds 0,1 --set preset=fast --set batch_size=256 --set val_fraction=0"
wave_add w-e30-bs256 "$T --recipe scratch --batch-size 256 --name scratch-bs256"
wave_add w-scratch-s1 "$T --recipe scratch --seed 1 --name scratch-s1"
wave_run 170
grep -h "^time-to-accuracy" $LOG/t-fast.log $LOG/w-*.log 2>/dev/null | tee -a "$LOG/summary.txt"
