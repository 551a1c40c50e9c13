#!/usr/bin/env bash
# BUSI reference benchmark: the 2D reference bundle vs. the plain MONAI UNet yardstick at an equal budget,
# on the lesion images (benign + malignant) of our own seeded train/validation split; validation = test set.
#
#   benchmarks/busi_reference.sh [BUSI_SOURCE] [WORK_DIR] [EPOCHS] [THREADS]
#
# BUSI_SOURCE defaults to ../shared/data/BUSI (never written to); WORK_DIR to /tmp/busi_bench.
# Cite: Al-Dhabyani et al., Dataset of breast ultrasound images, Data in Brief 28 (2020) 104863.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
SRC="${1:-$HERE/../../shared/data/BUSI}"
WORK="${2:-/tmp/busi_bench}"
EPOCHS="${3:-40}"
THREADS="${4:-2}"
PREP="$WORK/busi_prepared"

if [ ! -f "$PREP/datalist.json" ]; then
  usseg prepare busi "$SRC" --output "$PREP" --seed 0 --val-fraction 0.2
fi
python "$HERE/lesion_only_datalist.py" "$PREP/datalist.json" --output "$PREP/datalist_lesions.json"
DL="$PREP/datalist_lesions.json"

usseg benchmark unet_us_2d_segmentation --budget cpu-yardstick --epochs "$EPOCHS" --threads "$THREADS" \
  --train-datalist "$DL" --train-key training --val-key validation \
  --test-datalist "$DL" --test-key validation --output "$WORK/unet_us_2d_e$EPOCHS"

python "$HERE/plain_monai_unet_yardstick.py" --epochs "$EPOCHS" --threads "$THREADS" --image-size 128 128 --batch-size 16 \
  --train-datalist "$DL" --train-key training --test-datalist "$DL" --test-key validation \
  --output "$WORK/yardstick_e$EPOCHS.json"

python "$HERE/compare_results.py" "$WORK/unet_us_2d_e$EPOCHS/results.json" "$WORK/yardstick_e$EPOCHS.json"
