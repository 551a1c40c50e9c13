#!/usr/bin/env bash
# The test command: set up the environment, then run the whole pytest suite. Extra args go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/setup.sh"
cd "$root"
exec python -m pytest -q -ra "$@"
