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

# alone: why the lite0 fine-tune ran at 2,156 img/s and the in-run embedding at 5,900 img/s on the H200 (the bench
# loop: 20,190 img/s): the fine-tune step with batch statistics (eager) against running statistics (frozenbn, the
# product's default from ImageNet weights), and the embedding loop at the run's batch
step b-lite0 60 $CL bench --dataset folder:$C10 --data-root $DATA --resolution 224 --loops finetune --variants \
eager,frozenbn --batch-sizes 128 --steps 10 --repeats 3 --no-notebook
step b-embed 40 $CL bench --dataset folder:$C10 --data-root $DATA --resolution 224 --loops embed --variants eager \
--batch-sizes 1024 --steps 5 --repeats 3 --no-notebook

# wave: the fast preset's other seeds (3 seeds with f-fast), the rotation run's random-init control
wave_add w-fast-s1 "$T --recipe scratch --preset fast --seed 1 --name scratch-fast-s1"
wave_add w-fast-s2 "$T --recipe scratch --preset fast --seed 2 --name scratch-fast-s2"
wave_add w-ft-random "$T --recipe finetune --model resnet18 --init random --epochs 5 --name finetune-random-init-e5"
wave_run 110
