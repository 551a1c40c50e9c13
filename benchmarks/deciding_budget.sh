#!/usr/bin/env bash
# The deciding budget (#16): `cpu-decide` (128x128, batch 16, 1040 iterations) for the calipers protocol (under
# CRBNet's official recipe and the project recipe) and the few-masks protocol on BUSI lesion images and on DDTI, and
# the budget curve (the calipers protocol under CRBNet's recipe at fewer iterations), one training at a time.
#
#   benchmarks/deciding_budget.sh BUSI_SRC DDTI_SRC WORK [THREADS] [STEP...]
#
# BUSI_SRC / DDTI_SRC: the datasets as downloaded (e.g. ../shared/data/BUSI ../shared/data/DDTI). WORK: a folder
# (prepared data and one suite folder per number of iterations: WORK/it<N>/). THREADS: torch threads (default 2).
# STEP (default: every step, in this order): busi-calipers-official busi-calipers-project busi-few
# ddti-calipers-official ddti-calipers-project ddti-few curve-260 curve-520. The test set is each prepared datalist's
# own validation section, as in docs/results.md. The few-masks steps train at the mask fractions in
# $USSEG_FEW_FRACTIONS (default "0.04 0.1"; e.g. "0.04" for the #16 target's setting alone; a later run at both
# reuses the 4% runs).
#
# Resumable across sessions and machines: finished runs under WORK are reused, a run killed mid-training resumes
# from its last finished epoch when started again with the same WORK (at most one epoch is lost), and after every run the suite
# trains its record is merged into KEEP/it<N>.json.gz (`usseg benchmark --keep`; KEEP: $USSEG_DECIDING_KEEP, default
# docs/deciding/runs of this checkout, which git does not ignore: commit it), which the next invocation reuses
# (--reuse-runs) for the runs WORK lacks; the runs of other steps in it are kept. Each step writes
# WORK/it<N>/report/results.md.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
BUSI_SRC="$1"; DDTI_SRC="$2"; WORK="$(realpath -m "$3")"; THREADS="${4:-2}"
shift $(( $# < 4 ? $# : 4 ))
STEPS=("$@")
[ ${#STEPS[@]} -gt 0 ] || STEPS=(busi-calipers-official busi-calipers-project busi-few ddti-calipers-official
  ddti-calipers-project ddti-few curve-260 curve-520)
for step in "${STEPS[@]}"; do
  case "$step" in
    busi-calipers-official|busi-calipers-project|busi-few|ddti-calipers-official|ddti-calipers-project|ddti-few) ;;
    curve-[0-9]*) ;;
    *) echo "deciding_budget.sh: unknown step '$step'" >&2; exit 2 ;;
  esac
done
FEW_FRACTIONS=(${USSEG_FEW_FRACTIONS:-0.04 0.1})
for f in "${FEW_FRACTIONS[@]}"; do
  [[ "$f" =~ ^0?\.[0-9]*[1-9][0-9]*$ ]] || { echo "deciding_budget.sh: USSEG_FEW_FRACTIONS: '$f' is not a fraction in (0, 1)" >&2; exit 2; }
done
KEEP="$(realpath -m "${USSEG_DECIDING_KEEP:-$HERE/../docs/deciding/runs}")"
mkdir -p "$WORK" "$KEEP"
prepare() {
  case "$1" in
    busi)
      [ -f "$WORK/busi/datalist.json" ] || usseg prepare busi "$BUSI_SRC" --output "$WORK/busi" --seed 0 --val-fraction 0.2 --calipers >&2
      [ -f "$WORK/busi/datalist_lesions.json" ] || python "$HERE/lesion_only_datalist.py" "$WORK/busi/datalist.json" \
        --output "$WORK/busi/datalist_lesions.json" >&2
      echo "$WORK/busi/datalist_lesions.json" ;;
    ddti)
      [ -f "$WORK/ddti/datalist.json" ] || usseg prepare ddti "$DDTI_SRC" --output "$WORK/ddti" --seed 0 --val-fraction 0.2 --calipers >&2
      echo "$WORK/ddti/datalist.json" ;;
  esac
}
# suite DATASET_NAME DATALIST ITERATIONS PROTOCOL [options...]
suite() {
  local name="$1" dl="$2" n="$3" protocol="$4"; shift 4
  local out="$WORK/it$n" kept="$KEEP/it$n.json.gz" reuse=()
  [ -f "$kept" ] && reuse=(--reuse-runs "$kept")
  usseg benchmark --suite "$protocol" --dataset-name "$name" --budget cpu-decide --iterations "$n" \
    --threads "$THREADS" --output "$out" --train-datalist "$dl" --test-datalist "$dl" --test-key validation \
    --report "$out/report/results.md" --keep "$kept" "${reuse[@]}" "$@"
}
for step in "${STEPS[@]}"; do
  case "$step" in
    busi-calipers-official) suite BUSI-lesions "$(prepare busi)" 1040 calipers --recipe crbnet_official ;;
    busi-calipers-project) suite BUSI-lesions "$(prepare busi)" 1040 calipers --recipe project ;;
    busi-few) suite BUSI-lesions "$(prepare busi)" 1040 few_masks --fractions "${FEW_FRACTIONS[@]}" ;;
    ddti-calipers-official) suite DDTI "$(prepare ddti)" 1040 calipers --recipe crbnet_official ;;
    ddti-calipers-project) suite DDTI "$(prepare ddti)" 1040 calipers --recipe project ;;
    ddti-few) suite DDTI "$(prepare ddti)" 1040 few_masks --fractions "${FEW_FRACTIONS[@]}" ;;
    curve-*) suite BUSI-lesions "$(prepare busi)" "${step#curve-}" calipers --recipe crbnet_official ;;
  esac
done
