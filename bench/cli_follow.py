"""Benchmark: what the `python -m studio train` process costs while it follows its run (it may follow for hours).

    .venv/bin/python bench/cli_follow.py [--baseline DIR] [--steps 40]

This checkout's `studio` is measured, and with `--baseline` also the one in DIR (a copy of another commit:
`git archive main | tar -x -C /tmp/main`), in the same run, with the ratios. The command trains builtin:pocket on its star
dataset in a child process; in the command's own process this script records, once the run's child is training:
the seconds from the command's start to its first line (imports, checks, the child started), the command's
resident memory, and which heavy packages (torch, diffusers, transformers, gradio) it has imported.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HEAVY = ("torch", "diffusers", "transformers", "gradio", "cv2", "mediapipe", "pandas")

# Runs in a fresh interpreter: the command in the main thread, the measurements in a thread once the child trains.
PROBE = r"""
import json, sys, threading, time
started = time.perf_counter()
import psutil
from pathlib import Path
root, steps = Path(sys.argv[1]), sys.argv[2]
first_line = {}
real_print = print
def noting_print(*args, **kwargs):
    first_line.setdefault("s", time.perf_counter() - started)
    real_print(*args, **{**kwargs, "file": sys.stderr})
import builtins
builtins.print = noting_print
from studio.cli import main
argv = ["--root", str(root), "--models-dir", str(root / "models"), "--offline", "train", "--model",
        "builtin:pocket", "--dataset", "zq", "--trigger", "zq", "--out", "b", "--steps", steps, "--resolution", "64",
        "--validation-every", "0"]
seen = {}
def measure():
    metrics = root / "workspace" / "runs" / "b" / "metrics.jsonl"
    while not (metrics.is_file() and '"step"' in metrics.read_text()):
        time.sleep(0.2)
    seen.update(first_line_s=round(first_line.get("s", -1), 2),
                rss_mb=round(psutil.Process().memory_info().rss / 2**20, 1),
                heavy=[m for m in sys.argv[3].split(",") if m in sys.modules])
threading.Thread(target=measure, daemon=True).start()
seen["exit_code"] = main(argv)  # in the main thread: the command sets signal handlers
real_print(json.dumps(seen))
"""


def measure(code: Path, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        builtin = Path(__file__).resolve().parent.parent / "models" / "builtin" / "pocket"
        (root / "models" / "builtin").mkdir(parents=True)
        (root / "models" / "builtin" / "pocket").symlink_to(builtin)
        subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; "
                        "from studio.pocket.concept import write_concept_dataset; "
                        "write_concept_dataset(Path(sys.argv[1]), trigger='zq', shape='star', count=8)",
                        str(root / "workspace" / "datasets" / "zq")], cwd=code, check=True)
        out = subprocess.run([sys.executable, "-c", PROBE, str(root), str(steps), ",".join(HEAVY)],
                             cwd=code, capture_output=True, text=True)
        if out.returncode:
            sys.exit(out.stderr[-3000:])
        seen = json.loads(out.stdout.strip().splitlines()[-1])
        if seen["exit_code"]:
            sys.exit(out.stderr[-3000:])
    print(f"{code}: first line after {seen['first_line_s']} s; resident while following {seen['rss_mb']} MB; "
          f"heavy imports: {', '.join(seen['heavy']) or 'none'}")
    return seen


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout to measure the same way")
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    here = measure(Path(__file__).resolve().parent.parent, args.steps)
    if args.baseline:
        before = measure(args.baseline, args.steps)
        print(f"baseline / this: first line {before['first_line_s'] / here['first_line_s']:.1f}x, resident "
              f"{before['rss_mb'] / here['rss_mb']:.1f}x")


if __name__ == "__main__":
    main()
