#!/usr/bin/env bash
# Build (when missing) and print the path of the virtual environment that runs MONAI Label 0.8.5.
#
# The environment lives outside the checkout, in
#   ${USSEG_MONAI_CACHE:-~/.cache/usseg_monai}/venvs/monailabel-<first 12 hex of sha256(requirements-monailabel.txt)>
# so a change of requirements builds a new one and an unchanged file reuses it. A finished build is marked
# by the file `.complete`; an unfinished one (interrupted build) is removed and rebuilt. Concurrent calls
# are serialised with flock. This checkout is installed editable into it, so the bundles' `_target_`s
# (usseg_monai.*) resolve inside the MONAI Label server; when the venv was built from another checkout the
# editable install is re-pointed here.
#
# Usage: bash scripts/monailabel_env.sh          -> prints the venv path on stdout (logs on stderr)
#        "$(bash scripts/monailabel_env.sh)/bin/monailabel" start_server ...
# Environment: USSEG_MONAI_CACHE (cache root), USSEG_MONAILABEL_PYTHON (interpreter for the venv,
# default python3.11 or python3).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
req="$root/requirements-monailabel.txt"
[[ -f "$req" ]] || { echo "monailabel_env: missing $req" >&2; exit 2; }
hash="$(sha256sum "$req" | cut -c1-12)"
cache="${USSEG_MONAI_CACHE:-$HOME/.cache/usseg_monai}"
venv="$cache/venvs/monailabel-$hash"
mkdir -p "$cache/venvs"
py="${USSEG_MONAILABEL_PYTHON:-$(command -v python3.11 || command -v python3)}"

exec 9>"$venv.lock"
flock 9

log() { echo "monailabel_env: $*" >&2; }

if [[ ! -f "$venv/.complete" ]]; then
    rm -rf "$venv"
    log "building $venv from $req (one-off, several minutes)"
    start=$SECONDS
    "$py" -m venv "$venv"
    # the pins of torch, torchvision and numpy hold in every pip call below
    cons="$venv/constraints.txt"
    grep -E '^(torch|torchvision|numpy)==' "$req" > "$cons"
    pip=("$venv/bin/python" -m pip --disable-pip-version-check)
    "${pip[@]}" install -q -c "$cons" -r "$req" >&2
    "${pip[@]}" install -q -c "$cons" --no-deps "monailabel==0.8.5" >&2
    "${pip[@]}" install -q -c "$cons" --no-deps --no-build-isolation -e "$root" >&2
    "$venv/bin/python" - >&2 <<'PY'
import monai, monailabel, numpy, pydicom, torch, torchvision, torchvision.utils  # noqa: F401
from monailabel.tasks.infer.bundle import BundleInferTask  # noqa: F401
from monailabel.tasks.train.bundle import BundleTrainTask  # noqa: F401
import usseg_monai.networks, usseg_monai.transforms  # noqa: F401
assert numpy.__version__.startswith("1."), numpy.__version__
print("monailabel", monailabel.__version__, "monai", monai.__version__, "torch", torch.__version__,
      "torchvision", torchvision.__version__, "numpy", numpy.__version__, "pydicom", pydicom.__version__)
PY
    date -u +%FT%TZ > "$venv/.complete"
    log "built in $((SECONDS - start)) s"
fi

# point the editable install of usseg_monai at this checkout
# (from /, so that a checkout in the current folder cannot be imported in place of the installed one)
here="$(cd / && "$venv/bin/python" -c 'import os, usseg_monai; print(os.path.dirname(os.path.dirname(os.path.abspath(usseg_monai.__file__))))' 2>/dev/null || true)"
if [[ "$here" != "$root" ]]; then
    log "installing $root (editable) into $venv"
    "$venv/bin/python" -m pip --disable-pip-version-check install -q --no-deps --no-build-isolation -e "$root" >&2
fi
echo "$venv"
