#!/usr/bin/env bash
# #20 item 3, for a lent GPU: iteration / floor of every bundle at the papers' 256x256 (3D at 64x64x32) with the
# data path on the GPU (augment_device cuda:0: the cache and the random transforms on the device, num_workers 0,
# AMP on), and the projected training time of the paper budget (usseg_monai.evaluation.budgets.PAPER_PROTOCOLS):
#   calipers (UNet, CRBNet): 30000 iterations at batch 24;
#   class labels (SemiSeg-CAW): 300 epochs at batch 8 over the 499 BUSI training images = 18900 iterations;
#   few masks (CRII-Net): 200 epochs at batch 8 over the 373 unlabeled images of a 10% split = 9400 iterations.
#
#   bash benchmarks/bench_training_gpu.sh PREPARED_BUSI [OUT_DIR] [DEVICE]
#
# PREPARED_BUSI: the output of `usseg prepare busi ... --calipers` (its datalist.json); the lesion-only and
# semi-supervised datalists are written beside it when missing. Figures: OUT_DIR/*.json (default /tmp/bench_gpu).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
P="$(realpath "$1")"
OUT="${2:-/tmp/bench_gpu}"
DEV="${3:-cuda:0}"
mkdir -p "$OUT"
[ -f "$P/datalist_lesions.json" ] || python "$HERE/lesion_only_datalist.py" "$P/datalist.json" --output "$P/datalist_lesions.json"
[ -f "$P/dl_lesions_10pct.json" ] || usseg split --datalist "$P/datalist_lesions.json" -o "$P/dl_lesions_10pct.json" --labeled 0.1
[ -f "$P/dl_class100.json" ] || usseg split --datalist "$P/datalist.json" -o "$P/dl_class100.json" --labeled 0.2 --class-only 100
run() { python "$HERE/bench_training.py" --device "$DEV" --threads 4 --epochs 1 --override augment_device="$DEV" "$@"; }
run --image-size 256 256 --batch-size 24 --project-iterations 30000 --dataset-dir "$P" --datalist "$P/datalist_lesions.json" \
  --bundles unet_us_2d_segmentation crbnet_us_2d_segmentation --output "$OUT/calipers_256.json"
run --image-size 256 256 --batch-size 8 --project-iterations 18900 --dataset-dir "$P" --datalist "$P/dl_class100.json" \
  --bundles semiseg_caw_us_2d_segmentation --output "$OUT/class_labels_256.json"
run --image-size 256 256 --batch-size 8 --project-iterations 9400 --dataset-dir "$P" --datalist "$P/dl_lesions_10pct.json" \
  --bundles crii_net_us_2d_segmentation --output "$OUT/few_masks_256.json"
run --image-size 64 64 32 --batch-size 2 --epochs 4 \
  --bundles unet_us_3d_segmentation crbnet_us_3d_segmentation crii_net_us_3d_segmentation --output "$OUT/volumes_3d.json"
