#!/usr/bin/env bash
# Harvard CT-MRI recipe: RoadScene pretraining -> CT-MRI fine-tuning -> export -> quality report.
#
#   recipes/harvard.sh DATA_ROOT OUT        e.g. recipes/harvard.sh ../shared/data runs/harvard
#
# DATA_ROOT holds roadscene/ (vis/ + ir/) and harvard-ct-mri/train/ (CT/ + MRI/). Writes
# OUT/pretrain, OUT/finetune (checkpoints, history, curves), OUT/art (exported model, for
# `medfuse-run --model OUT/art`) and OUT/quality.{txt,json} (validation cases 33 and 37 against
# the pixel maximum, the maximum of the model's own inputs, Laplacian pyramid, wavelet and
# guided filtering baselines).
#
# Settings: recipes/harvard.toml (fine-tuning; pretraining reads its [model] and [loss] sections,
# its schedule is set below). CONFIG=FILE uses another file. An OUT that already holds a run is
# refused; FORCE=1 replaces it.
# Device: auto (CUDA when PyTorch sees one, else CPU with bf16). On a busy CPU set
# MEDFUSE_THREADS=1 (one torch and ONNX Runtime thread for training, export and scoring; see
# README "Threads on a busy CPU").
# Smoke run of the whole chain (2 min here; the model it makes is untrained):
#   PRETRAIN_EPOCHS=1 FINETUNE_EPOCHS=1 EXTRA="--limit-pairs 8 --steps-per-epoch 2" recipes/harvard.sh DATA OUT
#
# Measured wall time on the 2-core dev machine (default model, bf16, 2 threads, nothing else
# running): 102 min, on a day when an epoch took 24 s (84 min when it took 20 s, 53 min at
# 12 s). Pretraining 4 epochs (176 RoadScene pairs, 44 steps of 128x128 windows) 133 s;
# fine-tuning all 220 epochs (31 steps of batch 4, 128x128 windows, BatchNorm fixed for the last
# 120; no early stopping: recipes/harvard.toml sets patience 0) 5908 s with validation on the
# whole 256x256 images and a checkpoint per epoch; export + quality report about a minute.
# FINETUNE_EPOCHS=180 saves about 18 min (quality not measured). With the full-resolution refinement
# block (refine_channels 32, eleventh session) on a fast day: 51 min. Results and what each setting
# changed:
# README "Results" and benchmarks/RESULTS.md. On a CUDA GPU the same command picks CUDA + fp16 by
# itself; on an H200 (measured with FINETUNE_EPOCHS=60) pretraining took 28 s and a fine-tuning
# epoch 2.5 s (5.6 s with that day's checkpoint writes), so all 220 take about 20 min there and
# far more epochs become affordable (raise FINETUNE_EPOCHS). Disk: about 6 GB (checkpoints).
set -euo pipefail

source "$(dirname "$0")/common.sh"
need_args 2 "$0 DATA_ROOT OUT" "$@"
DATA=$1
OUT=$2
PRETRAIN_EPOCHS=${PRETRAIN_EPOCHS:-4}
FINETUNE_EPOCHS=${FINETUNE_EPOCHS:-}

need_dirs "$DATA/roadscene" "$DATA/harvard-ct-mri/train"
need_files "$CONFIG"
refuse_finished "$OUT/pretrain" "$OUT/finetune"

start=$(date +%s)
mkdir -p "$OUT"
run medfuse-train pretrain --data "$DATA/roadscene" --out "$OUT/pretrain" --overwrite \
    --config "$CONFIG" --epochs "$PRETRAIN_EPOCHS" --lr 1e-3 --freeze-encoder-epochs 0 \
    --warmup-epochs 1 --set train.freeze_batchnorm_epochs=0 "${THREADS[@]}" "${EXTRA[@]}"
run medfuse-train finetune --data "$DATA/harvard-ct-mri/train" --init "$OUT/pretrain/last.pt" \
    --out "$OUT/finetune" --overwrite --config "$CONFIG" \
    ${FINETUNE_EPOCHS:+--epochs "$FINETUNE_EPOCHS"} "${THREADS[@]}" "${EXTRA[@]}"
run medfuse-export "$OUT/finetune/best.pt" -o "$OUT/art" "${THREADS[@]}"
run medfuse-bench quality --data "$DATA/harvard-ct-mri/train" --split val \
    -c "$OUT/finetune/best.pt" -a "$OUT/art" -e pytorch-fp32 -e onnxruntime-fp32 \
    --baselines "$BASELINES" "${THREADS[@]}" \
    --json "$OUT/quality.json" | tee "$OUT/quality.txt"
echo "recipe done in $(( ($(date +%s) - start) / 60 )) min; model in $OUT/art" >&2
