"""Benchmark: one evaluation on builtin:pocket, where the time goes, and what batching and torch's thread count do.

    .venv/bin/python bench/evaluate.py [--threads 1,2] [--seeds 4] [--lora NAME]

Runs the Evaluate tab's pocket default (2 variants x 3 prompts x `seeds` seeds, 64 px, 20 steps, CFG 4) once to load
the model, then for each torch thread count: with consecutive seeds in one batch (what evaluate() does) and one
picture per call (what it did), printing seconds per stage (generation, checker, grid and charts) and the ratios.
The second variant is the base again unless --lora names a LoRA in models/lora/ (e.g. the demo's zq). On a busy
2-core machine, compare --threads 1 with 2: torch's default (one thread per core) is what the studio uses.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def timed(studio, request) -> dict:
    """Seconds per stage of one evaluation, from its progress messages."""
    from studio.evaluate import evaluate

    marks = []
    start = time.perf_counter()
    report = evaluate(studio, request, progress=lambda f, m: marks.append((time.perf_counter() - start, m)))
    total = time.perf_counter() - start
    first = lambda text: next((t for t, m in marks if m.startswith(text)), total)  # noqa: E731
    checked, charted = first("what was drawn"), first("grid and charts")
    shutil.rmtree(report.folder)
    return {"pictures": len(report.rows), "generation": checked - first("image"), "checker": charted - checked,
            "grid+charts": total - charted, "total": total}


def main() -> None:
    import torch

    import studio.evaluate.run as run
    from studio.context import Studio
    from studio.evaluate import EvaluationRequest, parse_variant
    from studio.evaluate.defaults import defaults_for
    from studio.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default=f"1,{torch.get_num_threads()}", help="torch thread counts to compare")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--lora", default="", help="a LoRA for the second variant (default: the base twice)")
    parser.add_argument("--root", type=Path, default=None, help="the studio root (for --lora); default: a temp dir")
    args = parser.parse_args()

    root = args.root or Path(tempfile.mkdtemp(prefix="bench-evaluate-"))
    studio = Studio.open(Settings(root=root, allow_downloads=False, device="cpu", dtype="float32"))
    second = f"zq=builtin:pocket+lora:{args.lora}:1" if args.lora else "again=builtin:pocket"
    variants = [parse_variant("control=builtin:pocket"), parse_variant(second)]
    start = defaults_for(studio, variants)
    request = EvaluationRequest(name="bench", prompts=start.prompts, seeds=list(range(args.seeds)), variants=variants)
    counts = [int(t) for t in args.threads.split(",")]
    torch.set_num_threads(counts[0])
    timed(studio, request)  # load the model, the checker and matplotlib once
    print(f"{len(variants)} variants x {len(request.prompts)} prompts x {args.seeds} seeds, 64 px, 20 steps",
          flush=True)
    per_picture = {}
    for threads in counts:
        torch.set_num_threads(threads)
        batched = timed(studio, request)
        run.MAX_BATCH, limit = 1, run.MAX_BATCH
        try:
            single = timed(studio, request)
        finally:
            run.MAX_BATCH = limit
        for label, t in (("one picture per call", single), ("seeds batched", batched)):
            print(f"threads {threads}, {label:>20}: " + ", ".join(f"{k} {v:.1f} s" for k, v in t.items()
                                                                 if k != "pictures")
                  + f" ({t['generation'] / t['pictures']:.2f} s per picture)", flush=True)
        print(f"threads {threads}: batching makes generation {single['generation'] / batched['generation']:.2f}x "
              f"faster, the whole evaluation {single['total'] / batched['total']:.2f}x")
        per_picture[threads] = batched["generation"] / batched["pictures"]
    fastest = min(per_picture, key=per_picture.get)
    print("seconds per picture (batched) by torch threads: " + ", ".join(
        f"{t}: {s:.2f} ({s / per_picture[fastest]:.1f}x the fastest)" for t, s in per_picture.items()))


if __name__ == "__main__":
    main()
