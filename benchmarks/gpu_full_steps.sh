# Sourced by benchmarks/gpu_check.sh part2 (real CIFAR-10 unpacked in $C10; $R holds the dataset/output flags).
# Ordered by importance: the overall deadline cuts the last steps first. First the runs whose timings count, each
# alone on the GPU with the product's defaults; then a wave of accuracy-only runs that share the GPU.
# The H200 and H100 runs of 2026-11-26 (docs/results.md) sized these limits: scratch 30 epochs 43 s whole run,
# linear lite0 29 s, lite0 fine-tune ~9.5 s per epoch with channels_last (bench: 4,880 img/s) plus ~17 s of cuDNN
# plans for its first shapes; the fast preset's epochs took 1.45 s before the EMA stopped reading the device.
T="$CL train $R $EXTRA"
# alone: the default scratch budget (start-up, first epoch vs median), the fast preset (time to accuracy), the lite0
# linear probe with today's defaults (flip features on CUDA, padded evaluation batches), the LP-FT fine-tune at
# issue 14's 5 epochs
step f-scratch 55 $T --recipe scratch --name scratch
step f-fast 40 $T --recipe scratch --preset fast --name scratch-fast-s0
step f-linear 50 $T --recipe linear --name linear-lite0
step f-finetune 130 $T --recipe finetune --epochs 5 --name finetune-lite0-e5
# alone: the lite0 fine-tune step and embedding loops in the product's format (channels_last) against NCHW, steady
# state and first call (cuDNN plans) apart, beside the in-run rates of f-linear and f-finetune
step b-lite0 50 $CL bench --dataset folder:$C10 --data-root $DATA --resolution 224 --loops finetune --variants \
eager,nchw --batch-sizes 128 --steps 10 --repeats 3 --no-notebook
step b-embed 35 $CL bench --dataset folder:$C10 --data-root $DATA --resolution 224 --loops embed --variants \
eager,nchw --batch-sizes 1024 --steps 5 --repeats 3 --no-notebook
# alone too (faster than in a wave): RotNet pretraining, then fine-tuning from it (issue 14's RotNet rows)
step f-rotation 90 bash -c "$T --recipe rotation --epochs 8 --name rotation-e8 && \
$T --recipe finetune --model resnet18 --init $RUNS/rotation-e8 --epochs 5 --name finetune-from-rotation-e5"

# wave: the fast preset's other seeds (3 seeds with f-fast), batch 256 (the best single lever at 15 epochs, twice)
# at the default budget, and the default's seed 1 (SupCon's longer budgets need a longer lease than a wave allows)
wave_add w-fast-s1 "$T --recipe scratch --preset fast --seed 1 --name scratch-fast-s1"
wave_add w-fast-s2 "$T --recipe scratch --preset fast --seed 2 --name scratch-fast-s2"
wave_add w-e30-bs256 "$T --recipe scratch --batch-size 256 --name scratch-bs256"
wave_add w-scratch-s1 "$T --recipe scratch --seed 1 --name scratch-s1"
wave_run 170
