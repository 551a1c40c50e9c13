#!/usr/bin/env bash
# CRBNet comparison (issue #6): at one budget and with one network (the PyMIC-style UNet), train
#   1. the reference UNet bundle on the full masks,
#   2. the reference UNet bundle on the radical caliper pseudo-labels,
#   3. the reference UNet bundle on the conservative caliper pseudo-labels,
#   4. the CRBNet bundle on the calipers (no mask read in training),
# and score all four on the same test section against the real masks (Dice, HD95, aspect-ratio error, s/it).
#
#   benchmarks/crbnet_comparison.sh TRAIN_DATALIST TEST_DATALIST WORK_DIR [EPOCHS] [SIZE] [THREADS] [TRAIN_KEY] [TEST_KEY]
#
# TRAIN_DATALIST: a prepared datalist whose training items have 'calipers' (usseg prepare ... --calipers, or
# usseg calipers); TEST_DATALIST: the datalist scored (may be the same file, or a held-back one), section
# TEST_KEY (default test). Validation during training uses TRAIN_DATALIST's 'validation' section.
# Budget: cpu-yardstick (batch 16) with EPOCHS epochs (default 12) at SIZExSIZE pixels (default 128);
# THREADS torch threads (default 2).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
TRAIN_DL="$(realpath "$1")"
TEST_DL="$(realpath "$2")"
WORK="$3"
EPOCHS="${4:-12}"
SIZE="${5:-128}"
THREADS="${6:-2}"
TRAIN_KEY="${7:-training}"
TEST_KEY="${8:-test}"
mkdir -p "$WORK"

run() {  # run NAME BUNDLE TRAIN_DATALIST
  if [ -f "$WORK/$1/results.json" ]; then echo "$WORK/$1 done, kept"; return; fi
  usseg benchmark "$2" --budget cpu-yardstick --epochs "$EPOCHS" --image-size "$SIZE" "$SIZE" --threads "$THREADS" \
    --train-datalist "$3" --train-key "$TRAIN_KEY" --val-key validation \
    --test-datalist "$TEST_DL" --test-key "$TEST_KEY" --output "$WORK/$1"
}

for kind in radical conservative; do
  if [ ! -f "$WORK/labels_$kind/datalist.json" ]; then
    python "$HERE/pseudo_label_datalist.py" "$TRAIN_DL" --kind "$kind" --output "$WORK/labels_$kind" \
      --train-key "$TRAIN_KEY" --overwrite
  fi
done

run crbnet crbnet_us_2d_segmentation "$TRAIN_DL"
run unet_full_masks unet_us_2d_segmentation "$TRAIN_DL"
run unet_radical unet_us_2d_segmentation "$WORK/labels_radical/datalist.json"
run unet_conservative unet_us_2d_segmentation "$WORK/labels_conservative/datalist.json"

python "$HERE/compare_results.py" "$WORK/crbnet/results.json" "$WORK/unet_full_masks/results.json" \
  "$WORK/unet_radical/results.json" "$WORK/unet_conservative/results.json" | tee "$WORK/comparison.md"
