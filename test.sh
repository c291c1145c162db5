#!/usr/bin/env bash
# Installs Likeness Studio with its test tools (first run only) and runs the test suite on the CPU, offline.
# Arguments go to pytest, e.g. ./test.sh -k generate, or ./test.sh -m gpu on a machine with a GPU.
# Two worker processes (pytest-xdist), a test file to each at a time, the heaviest files first (tests/conftest.py):
# every test runs one thread, so one process leaves the second of two cores idle. `./test.sh -n 0` runs in one.
set -euo pipefail
cd "$(dirname "$0")"
scripts/install.sh dev
export HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False
exec .venv/bin/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder "$@"
