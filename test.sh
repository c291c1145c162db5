#!/usr/bin/env bash
# Installs Likeness Studio with its test tools (first run only) and runs the test suite on the CPU, offline.
# Arguments go to pytest, e.g. ./test.sh -k generate, or ./test.sh -m gpu on a machine with a GPU.
set -euo pipefail
cd "$(dirname "$0")"
scripts/install.sh dev
export HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False
exec .venv/bin/python -m pytest "$@"
