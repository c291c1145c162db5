#!/usr/bin/env bash
# Trains builtin:pocket from scratch in the four stages the shipped weights went through (docs/pocket.md), then
# measures it: 54 min of training with both cores of a quiet 2-core CPU (THREADS=2, the default here), about twice
# that on one busy core. OUT defaults to a scratch folder, so the shipped weights in models/builtin/pocket are only
# replaced when you copy the result there yourself.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-workspace/pocket}
THREADS=${THREADS:-2}
py=.venv/bin/python
train() { "$py" -m studio.pocket.train --threads "$THREADS" "$@"; }

# 1. VAE (1400 steps), then UNet + text encoder from random weights (1500 steps at lr 5e-4).
train --out "$OUT/stage1" --seed 0
# 2-4. Continue the UNet and text encoder at lr 2e-4 with offset noise, on freshly rendered scenes each time.
train --out "$OUT/stage2" --seed 1 --init-from "$OUT/stage1" --unet-steps 600 --unet-lr 2e-4 --offset-noise 0.1 --vae-steps 1
train --out "$OUT/stage3" --seed 2 --init-from "$OUT/stage2" --unet-steps 1200 --unet-lr 2e-4 --offset-noise 0.1 --vae-steps 1
train --out "$OUT/stage4" --seed 3 --init-from "$OUT/stage3" --unet-steps 1200 --unet-lr 2e-4 --offset-noise 0.1 --vae-steps 1

# 5. Prompt following over 50 seeds and face to dog, with a grid of generations.
"$py" -m studio.pocket.evaluate --model "$OUT/stage4" --seeds 50 --steps 15 --json "$OUT/eval.json" --grid "$OUT/grid.png"
