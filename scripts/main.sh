#!/usr/bin/env bash
# The main job: train the fully supervised 2D reference bundle (bundles/unet_us_2d_segmentation) on the
# embedded synthetic phantom dataset (generated on first use into $USSEG_MONAI_CACHE, default
# ~/.cache/usseg_monai), evaluate it, and run inference on the validation images.
# Outputs go to $USSEG_OUTPUTS (default ./outputs/unet_us_2d_segmentation):
#   models/model.pt            best checkpoint          eval/summary.json   metrics at original resolution
#   eval/*_seg.png             predicted masks           eval/*overlay*.png  contour + measured calipers
#   eval/measurements.csv      long/short axis (mm), aspect ratio, taller-than-wide per lesion
# Extra arguments are passed to the training run (e.g. --max_epochs 2, --dataset_dir /data/busi_prepared).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/setup.sh"
bundle="$root/bundles/unet_us_2d_segmentation"
out="${USSEG_OUTPUTS:-$root/outputs}/unet_us_2d_segmentation"
mkdir -p "$out"
# MONAI warns on every run that a config may execute code; these are this project's own configs (a user's own
# `python -m monai.bundle run` keeps the notice). Only that one message is ignored; see usseg_monai/logs.py.
export PYTHONWARNINGS="ignore:parsing config_file:UserWarning${PYTHONWARNINGS:+,$PYTHONWARNINGS}"
echo "[main] training $bundle -> $out"
python -m monai.bundle run --config_file "$bundle/configs/train.json" --bundle_root "$out" "$@"
echo "[main] evaluating the best checkpoint"
python -m monai.bundle run --config_file "['$bundle/configs/train.json','$bundle/configs/evaluate.json']" \
  --bundle_root "$out" "$@"
echo "[main] inference on the validation images"
python -m monai.bundle run --config_file "$bundle/configs/inference.json" --bundle_root "$out" "$@"
echo "[main] done: checkpoint in $out/models, masks, overlays, measurements.csv and summary.json in $out/eval"
