# Sourced by benchmarks/gpu_check.sh part2 (real CIFAR-10 unpacked in $C10; $R holds the dataset/output flags).
# Ordered by importance: the overall deadline cuts the last steps first. First the runs whose timings count, each
# alone on the GPU with the product's defaults; then a wave of accuracy-only runs that share the GPU.
# The H200 run of 2026-11-26 (docs/results.md) sized these limits: scratch 30 epochs 43 s whole run, linear lite0
# 23 s (before flip_features=auto doubled its embedding), lite0 fine-tune 23 s per epoch alone.
T="$CL train $R $EXTRA"
# alone: the default scratch budget (start-up, first epoch vs median), the fast preset (time to accuracy), the lite0
# linear probe with today's defaults (flip features on CUDA), the LP-FT fine-tune at issue 14's 5 epochs
step f-scratch 60 $T --recipe scratch --name scratch
step f-fast 40 $T --recipe scratch --preset fast --name scratch-fast-s0
step f-linear 50 $T --recipe linear --name linear-lite0
step f-finetune 170 $T --recipe finetune --epochs 5 --name finetune-lite0-e5
# alone too (faster than in a wave): RotNet pretraining, then fine-tuning from it (issue 14's RotNet rows)
step f-rotation 100 bash -c "$T --recipe rotation --epochs 8 --name rotation-e8 && \
$T --recipe finetune --model resnet18 --init $RUNS/rotation-e8 --epochs 5 --name finetune-from-rotation-e5"

# wave: the fast preset's other seeds, the rotation run's random-init control, batch 256 at 15 epochs
wave_add w-fast-s1 "$T --recipe scratch --preset fast --seed 1 --name scratch-fast-s1"
wave_add w-fast-s2 "$T --recipe scratch --preset fast --seed 2 --name scratch-fast-s2"
wave_add w-ft-random "$T --recipe finetune --model resnet18 --init random --epochs 5 --name finetune-random-init-e5"
wave_add w-e15-bs256 "$T --recipe scratch --epochs 15 --batch-size 256 --name scratch-e15-bs256"
wave_run 130
