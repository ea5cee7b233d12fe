# Sourced by benchmarks/gpu_check.sh part2 (real CIFAR-10 unpacked in $C10; $R holds the dataset/output flags).
# Ordered by importance: the overall deadline cuts the last steps first. Product defaults unless a flag is named.
T="$CL train $R $EXTRA"
# scratch at the default budget (30 epochs), then 15 epochs: the time-to-accuracy run and its ablations
step f-scratch 75 $T --recipe scratch --name scratch
step f-scratch-e15 45 $T --recipe scratch --epochs 15 --name scratch-e15
step f-scratch-e15-ema 45 $T --recipe scratch --epochs 15 --set ema=0.999 --name scratch-e15-ema0.999
# transfer: EfficientNet-Lite0 at 224 px (its native size), full data; LP-FT with ImageNet BatchNorm statistics
# kept (norm_stats=auto -> frozen) against re-estimated from batches (the behaviour before issue 15)
step f-linear 75 $T --recipe linear --name linear-lite0
step f-finetune 110 $T --recipe finetune --epochs 3 --name finetune-lite0-e3
step f-finetune-bntrain 110 $T --recipe finetune --epochs 3 --set norm_stats=train --name finetune-lite0-e3-bntrain
step f-partial 80 $T --recipe partial --epochs 3 --name partial-lite0-e3
step f-ls02 45 $T --recipe scratch --epochs 15 --set label_smoothing=0.2 --name scratch-e15-ls0.2
step f-compile 80 $T --recipe scratch --epochs 15 --compile on --name scratch-e15-compile
step f-supcon 60 $T --recipe supcon --epochs 10 --name supcon-e10
step f-rotation 60 $T --recipe rotation --epochs 8 --name rotation-e8
step b-embed 60 $CL bench --dataset folder:$C10 --data-root $DATA --loops embed,finetune --resolution 224 --variants eager,compile --batch-sizes 256,1024 --steps 10 --repeats 3 --no-notebook
step f-linear-flip 60 $T --recipe linear --set flip_features=true --name linear-lite0-flip
step f-finetune-randhead 110 $T --recipe finetune --epochs 3 --set head_init=random --name finetune-lite0-e3-randhead
# learning rate against batch size at the large end (measured 2026-11-26 on an H100; re-run if time is left)
step f-bs1024 40 $T --recipe scratch --epochs 15 --batch-size 1024 --name scratch-e15-bs1024-capped
step f-bs2048-sqrt 40 $T --recipe scratch --epochs 15 --batch-size 2048 --set lr_scaling=sqrt --name scratch-e15-bs2048-sqrt
