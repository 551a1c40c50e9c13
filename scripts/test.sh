#!/usr/bin/env bash
# The test command: set up the environment, then run the whole pytest suite. Extra args go to pytest.
#
# Two pytest-xdist workers (USSEG_TEST_WORKERS, default 2; 0 runs in this process), each with one OpenMP/torch
# thread: most of the suite is single-threaded Python (subprocesses importing torch and MONAI, small networks),
# so two one-thread workers use both cores, where two workers at two threads each would fight over them. A test
# module stays on one worker (--dist loadfile), so its trained-bundle and server fixtures are built once.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/setup.sh"
cd "$root"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
workers="${USSEG_TEST_WORKERS:-2}"
exec python -m pytest -q -ra -n "$workers" --dist loadfile "$@"
