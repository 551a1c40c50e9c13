#!/usr/bin/env bash
# The main job. Until the first bundle lands, the project's job is preparing datasets: this prepares the
# embedded synthetic phantom dataset, and BUSI and DDTI when they are found (default ../shared/data, or
# $USSEG_DATA). Outputs go to ./outputs (or $USSEG_OUTPUTS).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/setup.sh"
data="${USSEG_DATA:-$root/../shared/data}"
out="${USSEG_OUTPUTS:-$root/outputs}"
usseg prepare phantom --output "$out/phantom_2d" --overwrite
if [ -d "$data/BUSI/Dataset_BUSI_with_GT" ]; then
  usseg prepare busi "$data/BUSI/Dataset_BUSI_with_GT" --output "$out/busi" --overwrite
fi
if [ -d "$data/DDTI" ]; then
  usseg prepare ddti "$data/DDTI" --output "$out/ddti" --overwrite
fi
echo "Prepared datasets are in $out (each has datalist.json and summary.json)."
