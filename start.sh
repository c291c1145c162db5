#!/usr/bin/env bash
# Installs Likeness Studio (first run only) and starts it at http://127.0.0.1:7860.
# Any arguments go to app.py (the same as `python -m studio serve`; try --help), e.g. ./start.sh --model path/to/model.safetensors
set -euo pipefail
cd "$(dirname "$0")"
scripts/install.sh
exec .venv/bin/python app.py "$@"
