#!/usr/bin/env bash
# CRII-Net comparison (issue #8): at one labeled fraction, one budget and one network family (the PyMIC-style
# UNet of CoarseRefinedNet), train
#   1. the CRII-Net bundle with method "labeled_only" (CE + Dice on the labeled images only),
#   2. the CRII-Net bundle with method "mean_teacher" (Tarvainen & Valpola 2017 baseline),
#   3. the CRII-Net bundle with method "cps" (cross pseudo supervision, Chen et al. CVPR 2021: the second standard
#      semi-supervised baseline of the few-masks protocol, #16),
#   4. the CRII-Net bundle with method "crii_net" (the method),
#   5. the reference UNet bundle on every training mask (the full-mask reference),
# and score all five on the same test section against the real masks (Dice, HD95, s/it).
#
#   benchmarks/crii_net_comparison.sh TRAIN_DATALIST TEST_DATALIST WORK_DIR [EPOCHS] [SIZE] [THREADS] [TRAIN_KEY] \
#       [TEST_KEY] [FRACTION]
#
# TRAIN_DATALIST: a prepared datalist (usseg prepare ...); its training section is partitioned once with
# `usseg split --labeled FRACTION` (default 0.04; stratified by class, seeded) into WORK_DIR/datalist_labeled.json,
# whose unlabeled items carry no mask, and the three CRII-Net runs train on that same partition (the bundle uses
# a partitioned datalist as it is; with a TRAIN_KEY other than 'training', which usseg split does not partition, the
# bundle partitions that section itself with labeled_fraction=FRACTION and its seed). The full-mask reference trains
# on TRAIN_DATALIST itself.
# TEST_DATALIST: the datalist scored (may be the same file, or a held-back one), section TEST_KEY (default test).
# Validation during training uses the training datalist's 'validation' section.
# Budget: cpu-yardstick (batch 16) with EPOCHS epochs (default 12) at SIZExSIZE pixels (default 128);
# THREADS torch threads (default 2). Runs already finished (results.json present) are kept.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
if [ "$#" -lt 3 ]; then
  sed -n '10,11p' "$0" >&2
  exit 2
fi
TRAIN_DL="$(realpath "$1")"
TEST_DL="$(realpath "$2")"
WORK="$3"
EPOCHS="${4:-12}"
SIZE="${5:-128}"
THREADS="${6:-2}"
TRAIN_KEY="${7:-training}"
TEST_KEY="${8:-test}"
FRACTION="${9:-0.04}"
mkdir -p "$WORK"
WORK="$(realpath "$WORK")"

run() {  # run NAME BUNDLE TRAIN_DATALIST [--set KEY=JSON ...]
  local name="$1" bundle="$2" datalist="$3"
  shift 3
  if [ -f "$WORK/$name/results.json" ]; then echo "$WORK/$name done, kept"; return; fi
  usseg benchmark "$bundle" --budget cpu-yardstick --epochs "$EPOCHS" --image-size "$SIZE" "$SIZE" \
    --threads "$THREADS" --train-datalist "$datalist" --train-key "$TRAIN_KEY" --val-key validation \
    --test-datalist "$TEST_DL" --test-key "$TEST_KEY" --output "$WORK/$name" "$@"
}

PARTITIONED="$WORK/datalist_labeled.json"
if [ ! -f "$PARTITIONED" ]; then
  usseg split --datalist "$TRAIN_DL" --labeled "$FRACTION" -o "$PARTITIONED" --overwrite
fi

run labeled_only crii_net_us_2d_segmentation "$PARTITIONED" --set method='"labeled_only"' \
  --set labeled_fraction="$FRACTION"
run mean_teacher crii_net_us_2d_segmentation "$PARTITIONED" --set method='"mean_teacher"' \
  --set labeled_fraction="$FRACTION"
run cps crii_net_us_2d_segmentation "$PARTITIONED" --set method='"cps"' \
  --set labeled_fraction="$FRACTION"
run crii_net crii_net_us_2d_segmentation "$PARTITIONED" --set method='"crii_net"' \
  --set labeled_fraction="$FRACTION"
run unet_full_masks unet_us_2d_segmentation "$TRAIN_DL"

python "$HERE/compare_results.py" "$WORK/labeled_only/results.json" "$WORK/mean_teacher/results.json" \
  "$WORK/cps/results.json" "$WORK/crii_net/results.json" "$WORK/unet_full_masks/results.json" | tee "$WORK/comparison.md"
