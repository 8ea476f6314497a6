#!/usr/bin/env bash
# PET-MRI and SPECT-MRI recipe: fine-tune from a CT-MRI checkpoint -> export -> quality report.
#
#   recipes/functional.sh DATA_ROOT OUT CT_MRI_CHECKPOINT
#   e.g. recipes/functional.sh ../shared/data runs/functional runs/harvard/finetune/best.pt
#
# For each pair in PAIRS (default "pet-mri spect-mri"): fine-tunes on
# DATA_ROOT/harvard-<pair>/train (PET/ or SPECT/ + MRI/, case-held-out validation split) from
# CT_MRI_CHECKPOINT (the CT-MRI recipe's best.pt: the functional luma takes the CT role), with the
# CT-MRI recipe's settings (recipes/harvard.toml) but the spec's detail target (DETAIL_TARGET, below)
# and each pair's epochs and detail weight (pair_settings, below); exports OUT/<pair>/art (for
# `medfuse-run pet.png mri.png -o fused.png --model OUT/pet-mri/art`) and writes
# OUT/<pair>/quality.{txt,json}: luma metrics against the pixel maximum (also of the model's
# inputs), Laplacian, wavelet and guided filtering baselines (coloured the same way), and the
# chroma error.
# MEDFUSE_THREADS=N sets torch's and ONNX Runtime's threads (run both pairs at once with
# PARALLEL=1 MEDFUSE_THREADS=1). An OUT/<pair> that already holds a run is refused; FORCE=1
# replaces it.
set -euo pipefail

source "$(dirname "$0")/common.sh"
need_args 3 "$0 DATA_ROOT OUT CT_MRI_CHECKPOINT" "$@"
DATA=$1
OUT=$2
INIT=$3
PAIRS=${PAIRS:-pet-mri spect-mri}
# The CT-MRI recipe keeps MRI edges out of CT's bright bone (no line through the skull). Here the
# bright "CT role" is the tracer uptake, and MRI anatomy inside the uptake is what the fused image
# is for, so the functional pairs ask for every edge of either source (the spec's target).
# Measured: benchmarks/RESULTS.md, seventh session (SPECT 4 -> 6 wins against the maximum).
DETAIL_TARGET=${DETAIL_TARGET:-max-of-gradients}

# Per pair: SPECT-MRI 10 epochs at the CT-MRI recipe's detail weight (7); PET-MRI 75 epochs at 14.
# Weight 14 raised SF, MI, VIF and Qabf for some colour (ChromaErr 5.9 -> 6.9; eleventh and twelfth
# sessions); 50 epochs instead of 25, then 75 instead of 50, raised SF, MI, VIF and Qabf on each of
# the three PET patients held out in turn (wins against the pixel maximum 5 / 4 / 4 at 25 epochs,
# 5 / 4 / 5 at 50, 5 / 5 / 5 at 75; fifteenth and sixteenth sessions, benchmarks/RESULTS.md).
# EPOCHS=N and W_DETAIL=W set both pairs.
pair_settings() {
    case $1 in
        pet-mri) echo --epochs "${EPOCHS:-75}" --set loss.w_detail="${W_DETAIL:-14}" ;;
        *) echo --epochs "${EPOCHS:-10}" ${W_DETAIL:+--set loss.w_detail="$W_DETAIL"} ;;
    esac
}

one_pair() {
    local pair=$1 data="$DATA/harvard-$1/train" out="$OUT/$1" settings
    read -ra settings <<< "$(pair_settings "$pair")"
    mkdir -p "$out"
    run medfuse-train finetune --data "$data" --modality-pair "$pair" --init "$INIT" --out "$out/finetune" \
        --overwrite --config "$CONFIG" --set loss.detail_target="$DETAIL_TARGET" "${settings[@]}" \
        "${THREADS[@]}" "${EXTRA[@]}"
    run medfuse-export "$out/finetune/best.pt" -o "$out/art" "${THREADS[@]}"
    run medfuse-bench quality --data "$data" --split val -c "$out/finetune/best.pt" -a "$out/art" \
        -e pytorch-fp32 -e onnxruntime-fp32 --baselines "$BASELINES" \
        "${THREADS[@]}" --json "$out/quality.json" > "$out/quality.txt"
    cat "$out/quality.txt"
}

need_files "$INIT" "$CONFIG"
for pair in $PAIRS; do
    case $pair in pet-mri | spect-mri) ;; *) die "PAIRS: unknown pair '$pair' (pet-mri, spect-mri)" ;; esac
    need_dirs "$DATA/harvard-$pair/train"
    refuse_finished "$OUT/$pair/finetune"
done

start=$(date +%s)
mkdir -p "$OUT"
pids=() names=()
# Background jobs of a script ignore Ctrl-C: stop them (and the medfuse command each is running)
# with the script, never leave them training unattended.
stop_pairs() {
    local pid
    for pid in "${pids[@]}"; do
        pkill -TERM -P "$pid" 2>/dev/null || true
        kill "$pid" 2>/dev/null || true
    done
}
trap 'stop_pairs; exit 130' INT TERM
for pair in $PAIRS; do
    if [[ -n ${PARALLEL:-} ]]; then
        one_pair "$pair" > "$OUT/$pair.log" 2>&1 &
        pids+=($!) names+=("$pair")
    else
        one_pair "$pair"
    fi
done
failed=()  # wait for every pair, so a failing one does not leave the other running unattended
for i in "${!pids[@]}"; do wait "${pids[$i]}" || failed+=("$OUT/${names[$i]}.log"); done
if (( ${#failed[@]} )); then
    echo "error: failed, see ${failed[*]}" >&2
    exit 1
fi
echo "functional recipe done in $(( ($(date +%s) - start) / 60 )) min; models in $OUT/<pair>/art" >&2
