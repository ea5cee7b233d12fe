# Sourced by benchmarks/gpu_check.sh part2 (real CIFAR-10 unpacked in $C10; $R holds the dataset/output flags).
# Ordered by importance: the overall deadline cuts the last steps first. First the runs whose timings count, each
# alone on the GPU with the product's defaults; then waves of accuracy-only runs that share the GPU.
T="$CL train $R $EXTRA"
# alone: the default scratch budget (start-up, first epoch vs median, s/epoch for time to accuracy), the lite0
# linear probe (embedding speed inside a run) and the LP-FT fine-tune (its head-init embedding, first vs second
# epoch)
step f-scratch 70 $T --recipe scratch --name scratch
step f-linear 60 $T --recipe linear --name linear-lite0
step f-finetune 60 $T --recipe finetune --epochs 2 --name finetune-lite0-e2

# wave 1: the scratch recipe at 15 epochs, one lever at a time against the defaults (seed 0), for issue 14's
# 94%-in-15-epochs target and the `fast` preset
E15="$T --recipe scratch --epochs 15"
wave_add w-e15 "$E15 --name e15"
wave_add w-e15-ema99 "$E15 --set ema=0.99 --name e15-ema0.99"
wave_add w-e15-ema998 "$E15 --set ema=0.998 --name e15-ema0.998"
wave_add w-e15-ls2 "$E15 --set label_smoothing=0.2 --name e15-ls0.2"
wave_add w-e15-cut8 "$E15 --set cutout=8 --name e15-cutout8"
wave_add w-e15-wu3 "$E15 --set warmup_epochs=3 --name e15-warmup3"
wave_add w-e15-lr08 "$E15 --set base_lr=0.8 --name e15-lr0.8"
wave_add w-e15-bs256 "$E15 --batch-size 256 --name e15-bs256"
wave_add w-e15-combo "$E15 --set ema=0.99 --set label_smoothing=0.2 --set warmup_epochs=3 --name e15-ema0.99-ls0.2-wu3"
wave_run 220

# wave 2: transfer, SupCon and RotNet at issue 14's budgets (accuracy only)
wave_add w-ft5 "$T --recipe finetune --epochs 5 --name finetune-lite0-e5"
wave_add w-ft5-bb1 "$T --recipe finetune --epochs 5 --set backbone_lr_factor=1.0 --name finetune-lite0-e5-bb1.0"
wave_add w-ft3-randhead "$T --recipe finetune --epochs 3 --set head_init=random --name finetune-lite0-e3-randhead"
wave_add w-linear-flip "$T --recipe linear --set flip_features=true --name linear-lite0-flip"
wave_add w-partial "$T --recipe partial --epochs 3 --name partial-lite0-e3"
wave_add w-supcon "$T --recipe supcon --epochs 10 --name supcon-e10"
wave_add w-rotation "$T --recipe rotation --epochs 8 --name rotation-e8 && \
$T --recipe finetune --model resnet18 --init $RUNS/rotation-e8 --epochs 5 --name finetune-from-rotation-e5"
wave_add w-ft-random "$T --recipe finetune --model resnet18 --init random --epochs 5 --name finetune-random-init-e5"
wave_run 200
