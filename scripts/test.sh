#!/usr/bin/env bash
# The test command: set up the environment, then run the whole pytest suite. Extra args go to pytest.
#
# Two pytest-xdist workers (USSEG_TEST_WORKERS, default 2; 0 runs in this process), each with one OpenMP/torch
# thread: most of the suite is single-threaded Python (subprocesses importing torch and MONAI, small networks),
# so two one-thread workers use both cores, where two workers at two threads each would fight over them. A test
# module stays on one worker, so its trained-bundle fixtures are built once, except that each MONAI Label bundle
# server and each runnable docs block is a unit of its own (tests/conftest.py: xdist_scope); conftest.py also
# orders the longest parts first (--no-loadscope-reorder keeps that order).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/setup.sh"
cd "$root"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
workers="${USSEG_TEST_WORKERS:-2}"
exec python -m pytest -q -ra -n "$workers" --dist loadscope --no-loadscope-reorder "$@"
