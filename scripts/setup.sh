#!/usr/bin/env bash
# Set up (or reuse) the project's virtual environment in .venv: CPU torch 2.13.0 and this package with its
# test extras. Safe to run repeatedly: it reinstalls only when setup.cfg changed. Sourced by main.sh/test.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${USSEG_VENV:-$root/.venv}"
py="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  echo "[setup] creating virtual environment $venv"
  "$py" -m venv "$venv"
fi
stamp="$venv/.usseg-installed"
# the files' content only (not their paths): a copy of the checkout with the same files reuses the environment
want="$(cat "$root/setup.cfg" "$root/pyproject.toml" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing CPU torch and usseg-monai[test] into $venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  # The CPU wheel first: with torch 2.13.0 present, monai's torch requirement pulls nothing more.
  "$venv/bin/python" -m pip install --quiet torch==2.13.0
  "$venv/bin/python" -m pip install --quiet -e "$root[test]"
  echo "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
