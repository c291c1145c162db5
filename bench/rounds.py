"""What the benchmarks that race the studio against a reference script share: a benchmark's own children (each
variant in a fresh process), rounds in alternating order, and the reference script's run read from its step log."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# One progress line per step with its elapsed seconds: tqdm reads its defaults from TQDM_* variables.
STEP_LOG = {"TQDM_MININTERVAL": "0", "TQDM_BAR_FORMAT": "{desc}|{n}|{elapsed_s:.4f}\n"}


def child(script: str, args: list[str], env: dict | None = None) -> dict:
    """Run the benchmark `script` as a child with `args`; its last stdout line is its JSON result. A failure says
    why."""
    done = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise RuntimeError(last[:300])
    return json.loads(done.stdout.strip().splitlines()[-1])


def alternate(rounds: int, ours, theirs) -> list[tuple[dict, dict]]:
    """`rounds` pairs (ours(), theirs(first)), alternating which goes first, so a change in the machine's load hits
    both. `first`: ours' result of the same round when ours went first, else the first round's (the model the
    script trains is the one the studio's run made)."""
    pairs = []
    for n in range(rounds):
        if n % 2 == 0:
            studio = ours()
            script = theirs(studio)
        else:
            script = theirs(pairs[0][0])
            studio = ours()
        pairs.append((studio, script))
    return pairs


@dataclass
class ScriptRun:
    steps_at: list[tuple[int, float]]  # (step, seconds since the script's start) at each step's first print
    wall_s: float  # start to exit


def run_script(cmd: list[str], env: dict) -> ScriptRun:
    """Run a reference training script (`env` with STEP_LOG) and read its step log; a failure raises with the last
    lines it wrote."""
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        tail = [line for line in done.stderr.strip().splitlines() if line.strip()][-3:]
        raise RuntimeError(f"{Path(cmd[1]).name} exited {done.returncode}: " + " | ".join(tail)[:600])
    steps_at = {}
    for line in re.split(r"[\r\n]+", done.stderr + done.stdout):
        found = re.fullmatch(r"Steps\|(\d+)\|([\d.]+)", line.strip())
        if found and int(found[1]) > 0:
            steps_at.setdefault(int(found[1]), float(found[2]))  # a step's first print: right after its update
    return ScriptRun(sorted(steps_at.items()), wall)


def lora_modules(path: Path) -> list[str]:
    """The transformer modules a LoRA in diffusers' layout (pytorch_lora_weights.safetensors) adapts."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return sorted({k.split(".lora_")[0].removeprefix("transformer.") for k in f.keys()})


def rates(steps_at: list, warmup: int) -> tuple[float, float]:
    """Steps per second after warm-up step `warmup`: over the whole stretch, and from its median step (which a burst
    of load on a shared machine moves less)."""
    kept = [t for n, t in steps_at if n >= warmup]
    gaps = sorted(b - a for a, b in zip(kept, kept[1:]))
    return (len(kept) - 1) / (kept[-1] - kept[0]), 1 / gaps[len(gaps) // 2]
