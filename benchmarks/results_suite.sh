#!/usr/bin/env bash
# The results report (issue #9): prepare BUSI and DDTI with calipers, then run the suite's protocols on each and
# write the report.
#
#   benchmarks/results_suite.sh BUSI_SRC DDTI_SRC WORK [BUDGET] [THREADS] [TEST_DATALIST_BUSI] [TEST_DATALIST_DDTI] [TEST_KEY]
#
# BUSI_SRC / DDTI_SRC: the datasets as downloaded (e.g. ../shared/data/BUSI, ../shared/data/DDTI). WORK: a new
# folder (prepared data, runs, results.json). BUDGET: cpu-quick (default; about an hour on 2 cores), cpu-standard or
# paper (each protocol with its paper's settings; a GPU). Without held-back test datalists, each dataset's own
# validation section (20%, seeded, grouped by case) is the test set. The report is written to
# WORK/report/results.md (copy it with its figures/ folder into docs/ to publish it) and the suite's results file,
# gzip-compressed, to WORK/suite/results.json.gz (publish it as docs/results.json.gz: the report can be written again
# from it, and REUSE_RUNS=docs/results.json.gz in the environment reuses its runs instead of training them again).
# DECIDING=docs/deciding/runs/it1040.json.gz in the environment adds the deciding budget's tables (the suite results
# kept by benchmarks/deciding_budget.sh) to the report, titled "... at cpu-decide".
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
BUSI_SRC="$1"; DDTI_SRC="$2"; WORK="$(realpath -m "$3")"
BUDGET="${4:-cpu-quick}"; THREADS="${5:-2}"
mkdir -p "$WORK"
[ -f "$WORK/busi/datalist.json" ] || usseg prepare busi "$BUSI_SRC" --output "$WORK/busi" --seed 0 --val-fraction 0.2 --calipers
[ -f "$WORK/ddti/datalist.json" ] || usseg prepare ddti "$DDTI_SRC" --output "$WORK/ddti" --seed 0 --val-fraction 0.2 --calipers
[ -f "$WORK/busi/datalist_lesions.json" ] || python "$HERE/lesion_only_datalist.py" "$WORK/busi/datalist.json" \
  --output "$WORK/busi/datalist_lesions.json"
BUSI_TEST="${6:-$WORK/busi/datalist.json}"; DDTI_TEST="${7:-$WORK/ddti/datalist.json}"; TEST_KEY="${8:-validation}"
BUSI_LESION_TEST="${6:-$WORK/busi/datalist_lesions.json}"
common=(--budget "$BUDGET" --threads "$THREADS" --output "$WORK/suite" --test-key "$TEST_KEY")
[ -z "${REUSE_RUNS:-}" ] || common+=(--reuse-runs "$(realpath "$REUSE_RUNS")")
# calipers and few masks on BUSI lesion images (benign + malignant), class labels on all of BUSI (3 classes)
usseg benchmark --suite calipers,few_masks --dataset-name BUSI-lesions --fractions 0.04 0.1 "${common[@]}" \
  --train-datalist "$WORK/busi/datalist_lesions.json" --test-datalist "$BUSI_LESION_TEST"
usseg benchmark --suite class_labels --dataset-name BUSI --class-only 100 "${common[@]}" \
  --train-datalist "$WORK/busi/datalist.json" --test-datalist "$BUSI_TEST"
# DDTI: six TI-RADS classes
usseg benchmark --suite all --dataset-name DDTI --class-only 48 96 144 --fractions 0.04 0.1 --num-cls-classes 6 \
  "${common[@]}" --train-datalist "$WORK/ddti/datalist.json" --test-datalist "$DDTI_TEST"
extra=()
[ -z "${DECIDING:-}" ] || extra+=("$(realpath "$DECIDING")")
usseg report "$WORK/suite/results.json" "${extra[@]}" --output "$WORK/report/results.md" --preamble "$HERE/results_preamble.md"
gzip -n -c "$WORK/suite/results.json" > "$WORK/suite/results.json.gz.tmp" && mv "$WORK/suite/results.json.gz.tmp" "$WORK/suite/results.json.gz"
