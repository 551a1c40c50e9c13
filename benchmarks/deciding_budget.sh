#!/usr/bin/env bash
# The deciding budget (#16): the calipers protocol on BUSI lesions at `cpu-decide` (128x128, batch 16, 1040
# iterations) and the budget curve (the same protocol at fewer iterations), one training at a time.
#
#   benchmarks/deciding_budget.sh BUSI_SRC WORK [RECIPE] [THREADS] [ITERATIONS...]
#
# BUSI_SRC: the dataset as downloaded (e.g. ../shared/data/BUSI). WORK: a folder (prepared data and one suite folder
# per point: WORK/it<N>/). RECIPE: crbnet_official (default) or project. ITERATIONS: the curve's points (default
# 1040 260 520: the deciding point first). Each point is its own suite run (finished runs are reused, so the script
# resumes where it stopped); the test set is the prepared datalist's own validation section, as in docs/results.md.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
BUSI_SRC="$1"; WORK="$(realpath -m "$2")"; RECIPE="${3:-crbnet_official}"; THREADS="${4:-2}"
shift $(( $# < 4 ? $# : 4 ))
POINTS=("$@"); [ ${#POINTS[@]} -gt 0 ] || POINTS=(1040 260 520)
mkdir -p "$WORK"
[ -f "$WORK/busi/datalist.json" ] || usseg prepare busi "$BUSI_SRC" --output "$WORK/busi" --seed 0 --val-fraction 0.2 --calipers
[ -f "$WORK/busi/datalist_lesions.json" ] || python "$HERE/lesion_only_datalist.py" "$WORK/busi/datalist.json" \
  --output "$WORK/busi/datalist_lesions.json"
for n in "${POINTS[@]}"; do
  usseg benchmark --suite calipers --dataset-name BUSI-lesions --budget cpu-decide --iterations "$n" \
    --recipe "$RECIPE" --threads "$THREADS" --output "$WORK/it$n" \
    --train-datalist "$WORK/busi/datalist_lesions.json" --test-datalist "$WORK/busi/datalist_lesions.json" \
    --test-key validation --report "$WORK/it$n/report/results.md"
done
