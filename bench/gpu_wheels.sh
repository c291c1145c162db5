#!/usr/bin/env bash
# Fetches, here, the wheels bench/gpu.sh needs on the lent GPU machine (Python 3.12, x86-64, no network there) into
# .whl/ (ignored by git: .git/info/exclude), to be carried with the call (`carry: [".whl"]`). diffusers and torchao
# (about 10 MB) always; bitsandbytes (43 MB, for the nf4 presets and 8-bit AdamW) with --with-bitsandbytes, when the
# checkout and the wheels stay under the 64 MiB a call carries.
set -euo pipefail
cd "$(dirname "$0")/.."
exclude="$(git rev-parse --git-common-dir)/info/exclude"
grep -qx '/.whl/' "$exclude" 2>/dev/null || echo /.whl/ >> "$exclude"
wheels=(diffusers==0.42.1 torchao==0.18.0)
[ "${1:-}" = --with-bitsandbytes ] && wheels+=(bitsandbytes==0.50.2)
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${wheels[@]}"
du -sh .whl
