"""Benchmark: studio LoRA training's speed, in four parts; every variant runs in its own process.

    .venv/bin/python bench/train.py [--part cache|validation|diffusers|compile] [options of the part]

cache (the default): a run with cached latents and text embeddings vs the same run without the cache.
    [--steps 200] [--images 8] [--resolution 64] [--threads 1]
    Each variant trains builtin:tiny (SD 1.x), batch 1, validation off, from the same seed. Steps per second are
    timed from the run's own step events (the first 5 steps, which warm up, are left out); peak RSS is the
    process's maximum resident set. Without the cache every step encodes its image with the VAE and its caption with
    the text encoder, which is the work diffusers' train_dreambooth_lora.py does per step. A third process times the
    UNet's LoRA forward, backward and optimizer step alone on random inputs: the ceiling any trainer of this model
    could reach on this machine at this moment.

validation: the default settings against the same run with validation off, for two runs a new user makes.
    [--rounds 2] [--threads 1]
    pocket: the demo's run (`train --preset pocket --dataset zq --trigger zq`: 300 steps on 8 star drawings) and
    tiny: builtin:tiny on four crops of the astronaut photo, 64 px, 60 steps, every other setting the default. Each
    run's wall time is train()'s, from loading the base to the exported files. "default, first" draws the base
    model's validation grid; "default" finds it kept from that run (workspace/.cache/train/base_grids/), as every
    later run of the same base and prompts does. Rounds alternate the order of the variants. For pocket, the
    exported LoRAs of both are compared (validation must not change the weights) and the demo's checker counts the
    stars "a red zq on a white background" draws over 20 seeds with each; the epochs validated and the best epoch are
    listed.

diffusers: the studio's whole `python -m studio train` command against diffusers' train_dreambooth_lora.py.
    --diffusers-script PATH [--steps 200] [--images 4] [--resolution 64] [--rounds 3] [--threads 1]
    The project does not ship that script: take it from a diffusers checkout (git clone
    https://github.com/huggingface/diffusers, then examples/dreambooth/train_dreambooth_lora.py; the one measured is
    at commit 58eb52c0, which runs with the installed diffusers 0.42, offline, on the CPU). Both train builtin:tiny
    on the same images (one caption, the script's --instance_prompt), rank 4, lr 1e-4, constant schedule, batch 1,
    float32, validation off in both, each as its own command from a fresh process: whole-command wall (start-up,
    loading, caching, steps, saving) and steps/s from each one's own step log after 5 warm-up steps (the studio's
    step events; the script's "Steps" progress bar, printed once per step: TQDM_MININTERVAL=0). The rounds alternate
    which goes first; the summary is the median round.

compile: a run with `compile` (torch.compile of the denoiser) against the same run without.
    [--steps 200] [--images 4] [--resolution 64] [--threads 1]
    builtin:tiny, batch 1, validation off: wall time (compilation included) and steps/s after the first 5 steps.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.photos import astronaut_crops  # noqa: E402
from bench.rounds import STEP_LOG, alternate, child, run_script  # noqa: E402

_child = partial(child, __file__)  # this benchmark as a child (each variant in a fresh process)

WARMUP = 5
DATASET = "bench"  # the astronaut crops, under each root's workspace
SCRIPT_PROMPT = "sks, a photo"


def _studio(root: Path):
    import torch

    from studio.context import Studio
    from studio.settings import Settings

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    return Studio.open(Settings(root=root, models_dir=root / "models", allow_downloads=False))


def _train(studio, config) -> tuple[object, float]:
    from studio.train.loop import train
    from studio.train.runlog import RunLog

    import shutil

    run_dir = studio.settings.runs_dir / config.name
    shutil.rmtree(run_dir, ignore_errors=True)
    log = RunLog(run_dir)
    started = time.perf_counter()
    try:
        result = train(studio.store, studio.settings, config.check(), run_dir, log=log, should_stop=lambda: False)
    finally:
        log.close()
    return result, time.perf_counter() - started


def _rate(times: list[float]) -> float:
    times = times[WARMUP:]
    return (len(times) - 1) / (times[-1] - times[0])


def _step_times(run_dir: Path) -> list[float]:
    from studio.train.runlog import read_events

    return [e["time"] for e in read_events(run_dir) if e["type"] == "step"]


def _env(threads: int) -> dict:
    return dict(os.environ, OMP_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES="")


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


# ---- part 1: the caches ---------------------------------------------------------------------------------------

def cache_run(root: Path, cache: bool, steps: int, images: int, resolution: int) -> dict:
    import resource

    from studio.train.config import RunConfig

    studio = _studio(root)
    astronaut_crops(studio.settings.datasets_dir / DATASET, images, resolution,
            [f"sks, a photo, crop {i}" for i in range(images)])
    config = RunConfig(name=f"bench-{'cache' if cache else 'nocache'}", dataset=DATASET, model="builtin:tiny",
                       trigger="sks", resolution=resolution, max_steps=steps, epochs=0, validation_every=0,
                       cache=cache, seed=0)
    result, wall = _train(studio, config)
    return {"variant": config.name, "steps": result.steps, "wall_s": wall,
            "steps_per_s": _rate(_step_times(studio.settings.runs_dir / config.name)),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def unet_alone(root: Path, steps: int, resolution: int) -> dict:
    """The ceiling: LoRA forward, backward and AdamW step of the same UNet on random inputs, nothing else."""
    import resource

    import torch

    from studio.train.config import RunConfig
    from studio.train.methods import LoraMethod
    from studio.train.parts import load_parts

    studio = _studio(root)
    parts = load_parts(studio.store, "builtin:tiny", "cpu")
    method = LoraMethod(parts, RunConfig(name="x", dataset="x"))
    parts.denoiser.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(method.param_groups(), weight_decay=1e-2)
    side = resolution // parts.vae_factor
    latents = torch.randn(1, 4, side, side).to(memory_format=torch.channels_last)
    hidden = torch.randn(1, 77, parts.denoiser.config.cross_attention_dim)
    times = []
    for step in range(steps):
        pred = parts.denoiser(latents, torch.tensor([step * 7 % 1000]), hidden).sample
        torch.nn.functional.mse_loss(pred, latents).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.time())
    return {"variant": "unet", "steps": steps, "steps_per_s": _rate(times), "wall_s": 0.0,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def versus_cache(args) -> None:
    env = _env(args.threads)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        # the uncached run first builds the tiny model; the cached run then starts from the same files
        for variant in ("nocache", "cache", "unet"):
            rows[variant] = _child(["--one", variant, "--root", tmp, "--steps", str(args.steps), "--images",
                                    str(args.images), "--resolution", str(args.resolution)], env)
    print(f"LoRA on builtin:tiny, {args.resolution} px, batch 1, {args.steps} steps, {args.images} images, "
          f"{args.threads} thread(s)")
    labels = {"nocache": "no cache", "cache": "cache", "unet": "UNet alone"}
    print(f"{'variant':<11} {'steps/s':>8} {'wall s':>8} {'peak RSS MB':>12}")
    for variant, row in rows.items():
        wall = f"{row['wall_s']:>8.1f}" if row["wall_s"] else f"{'':>8}"
        print(f"{labels[variant]:<11} {row['steps_per_s']:>8.2f} {wall} {row['peak_rss_mb']:>12.0f}")
    speed = rows["cache"]["steps_per_s"] / rows["nocache"]["steps_per_s"]
    memory = rows["cache"]["peak_rss_mb"] / rows["nocache"]["peak_rss_mb"]
    print(f"cache / no cache: steps/s x{speed:.2f}, peak RSS x{memory:.2f}")
    print(f"cache / UNet alone (the ceiling of any trainer on this model): "
          f"x{rows['cache']['steps_per_s'] / rows['unet']['steps_per_s']:.2f}")


# ---- part 2: validation by budget -------------------------------------------------------------------------------

def validation_run(root: Path, case: str, variant: str) -> dict:
    """One run of `case` (pocket, tiny) with validation as `variant` says (off, default), in this process."""
    from dataclasses import replace

    from studio.train.config import RunConfig
    from studio.train.presets import apply_preset
    from studio.train.runlog import read_events

    studio = _studio(root)
    if case == "pocket":
        from studio.pocket.concept import write_concept_dataset

        if not (studio.settings.datasets_dir / "zq").is_dir():
            write_concept_dataset(studio.settings.datasets_dir / "zq", trigger="zq")
        config = apply_preset(RunConfig(name=f"zq-{variant}", dataset="zq", trigger="zq"), "pocket")
    else:
        astronaut_crops(studio.settings.datasets_dir / DATASET, 4, 64, [f"sks, a photo, crop {i}" for i in range(4)])
        config = RunConfig(name=f"tiny-{variant}", dataset=DATASET, model="builtin:tiny", trigger="sks",
                           resolution=64, max_steps=60, epochs=0)
    if variant == "off":
        config = replace(config, validation_every=0)
    result, wall = _train(studio, config)
    run_dir = studio.settings.runs_dir / config.name
    events = read_events(run_dir)
    said = [e["text"] for e in events if e["type"] == "message"]
    return {"wall_s": wall, "steps_per_s": _rate(_step_times(run_dir)),
            "validated": [v.epoch for v in result.validations], "best_epoch": result.best_epoch,
            "files": [str(f) for f in result.files],
            "plan": next((t for t in said if t.startswith("validation by")), None),
            "spent": next((t for t in said if t.startswith("validated ")), None),
            "cached": any("came from the cache" in t for t in said)}


def stars(root: Path, lora: str) -> dict:
    """The demo's check: how many of 20 seeds of "a red zq on a white background" the pocket checker sees as a
    star, with `lora`."""
    from studio.generate.request import LoraChoice
    from studio.pocket.concept import check_prompt
    from studio.pocket.demo import DEMO_PROMPT

    studio = _studio(root)
    result = check_prompt(studio, DEMO_PROMPT, seeds=20, loras=[LoraChoice(lora, 1.0)])
    return {"stars": result.labels.get("star", 0)}


def same_weights(a: str, b: str) -> float:
    """The largest difference between two LoRA files' tensors."""
    from safetensors.torch import load_file

    x, y = load_file(a), load_file(b)
    if x.keys() != y.keys():
        return float("inf")
    return max(float((x[k].float() - y[k].float()).abs().max()) for k in x)


def versus_validation(args) -> None:
    env = _env(args.threads)
    load = os.getloadavg()[0]
    table = {}
    with tempfile.TemporaryDirectory(prefix="bench-validation-") as tmp:
        for case in ("pocket", "tiny"):
            rows = {"off": [], "first": [], "default": []}
            root = str(Path(tmp) / case)
            for n in range(args.rounds):
                # the first round draws the base grid ("first"); later default runs find it kept
                order = ["off", "default"] if n % 2 == 0 else ["default", "off"]
                for variant in order:
                    row = _child(["--one", "validation", "--case", case, "--variant", variant, "--root", root], env)
                    rows["first" if variant == "default" and not row["cached"] else variant].append(row)
            table[case] = rows
            if case == "pocket":
                off, on = rows["off"][0], (rows["default"] or rows["first"])[0]
                lora = next(f for f in on["files"] if f.endswith(".safetensors") and "/lora/" in f)
                lora_off = next(f for f in off["files"] if f.endswith(".safetensors") and "/lora/" in f)
                table["weights"] = same_weights(lora, lora_off)
                table["stars"] = {v: _child(["--one", "stars", "--lora", Path(f).stem, "--root", root], env)["stars"]
                                  for v, f in (("off", lora_off), ("default", lora))}
    print(f"default settings vs validation off; {args.threads} thread(s), {args.rounds} round(s), load average "
          f"{load:.1f} -> {os.getloadavg()[0]:.1f}; wall: train() from loading the base to the exported files")
    print(f"{'run':<7} {'variant':<16} {'wall s':>7} {'x off':>6} {'steps/s':>8}  validated epochs (best)")
    for case in ("pocket", "tiny"):
        rows = table[case]
        off = _median([r["wall_s"] for r in rows["off"]])
        for variant, label in (("off", "validation off"), ("first", "default, first"), ("default", "default")):
            if not rows[variant]:
                continue
            wall = _median([r["wall_s"] for r in rows[variant]])
            last = rows[variant][-1]
            epochs = last["validated"]
            shown = ", ".join(map(str, epochs[:8])) + (f", ... {epochs[-1]}" if len(epochs) > 8 else "")
            print(f"{case:<7} {label:<16} {wall:>7.1f} {wall / off:>6.2f} "
                  f"{_median([r['steps_per_s'] for r in rows[variant]]):>8.2f}  {shown or '-'} "
                  f"({last['best_epoch']})")
        for row in rows["default"][:1] or rows["first"][:1]:
            print(f"        {row['plan']}")
            print(f"        {row['spent']}")
    print(f"pocket: the exported LoRAs differ by at most {table['weights']:.2g}; the demo's checker sees a star in "
          f"{table['stars']['default']}/20 seeds with the default run's, {table['stars']['off']}/20 with the "
          f"validation-off run's")


# ---- part 3: the whole command against diffusers' script -------------------------------------------------------

def studio_command(root: Path, steps: int, images: int, resolution: int, threads: int) -> dict:
    """`python -m studio train` as a user types it, timed from start to exit; steps/s from its step events."""
    env = _env(threads)
    cmd = [sys.executable, "-m", "studio", "--root", str(root), "--models-dir", str(root / "models"), "--offline",
           "train", "--model", "builtin:tiny", "--dataset", DATASET, "--out", "versus", "--trigger", "sks",
           "--steps", str(steps), "--resolution", str(resolution), "--batch-size", "1", "--rank", "4", "--alpha", "4",
           "--lr", "1e-4", "--lr-scheduler", "constant", "--seed", "0", "--validation-every", "0"]
    import shutil

    shutil.rmtree(root / "workspace" / "runs" / "versus", ignore_errors=True)
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parent.parent)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"studio train exited {done.returncode}: {done.stderr.strip()[-300:]}")
    return {"wall_s": wall, "steps_per_s": _rate(_step_times(root / "workspace" / "runs" / "versus"))}


def script_command(script: Path, model: Path, images: Path, out: Path, steps: int, resolution: int,
                   threads: int) -> dict:
    """diffusers' script as its README runs it (plus offline, CPU, float32), timed from start to exit."""
    cmd = [sys.executable, str(script), "--pretrained_model_name_or_path", str(model), "--instance_data_dir",
           str(images), "--instance_prompt", SCRIPT_PROMPT, "--output_dir", str(out), "--resolution", str(resolution),
           "--train_batch_size", "1", "--max_train_steps", str(steps), "--rank", "4", "--learning_rate", "1e-4",
           "--lr_scheduler", "constant", "--lr_warmup_steps", "0", "--mixed_precision", "no", "--seed", "0",
           "--checkpointing_steps", str(steps + 1)]
    done = run_script(cmd, dict(_env(threads), **STEP_LOG))
    return {"wall_s": done.wall_s, "steps_per_s": _rate([t for _, t in done.steps_at])}


def versus_diffusers(args) -> None:
    script = args.diffusers_script
    if script is None or not script.is_file():
        raise SystemExit(f"the diffusers part needs --diffusers-script PATH to diffusers' "
                         f"examples/dreambooth/train_dreambooth_lora.py (not shipped with the project; see --help)"
                         f"{'' if script is None else f': {script} is not a file'}")
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-train-diffusers-") as tmp:
        root = Path(tmp)
        astronaut_crops(root / "workspace" / "datasets" / DATASET, args.images, args.resolution,
                [SCRIPT_PROMPT] * args.images)
        astronaut_crops(root / "instance", args.images, args.resolution, None)  # the script: every file an image
        model = Path(_child(["--one", "model", "--root", tmp], _env(args.threads))["path"])
        pairs = alternate(args.rounds,
                          lambda: studio_command(root, args.steps, args.images, args.resolution, args.threads),
                          lambda _: script_command(script.resolve(), model, root / "instance", root / "out",
                                                   args.steps, args.resolution, args.threads))
        rounds = [{"studio": studio, "script": theirs} for studio, theirs in pairs]
    print(f"LoRA on builtin:tiny, {args.resolution} px, batch 1, rank 4, {args.steps} steps, {args.images} images, "
          f"validation off, float32 on the CPU, {args.threads} thread(s), load average {load:.1f} -> "
          f"{os.getloadavg()[0]:.1f}; each a whole command from a fresh process")
    print(f"{'round':<6} {'studio wall s':>13} {'script wall s':>13} {'wall x':>7} {'studio st/s':>11} "
          f"{'script st/s':>11} {'st/s x':>7}")
    walls, speeds = [], []
    for n, r in enumerate(rounds, 1):
        walls.append(r["script"]["wall_s"] / r["studio"]["wall_s"])
        speeds.append(r["studio"]["steps_per_s"] / r["script"]["steps_per_s"])
        print(f"{n:<6} {r['studio']['wall_s']:>13.1f} {r['script']['wall_s']:>13.1f} {walls[-1]:>7.2f} "
              f"{r['studio']['steps_per_s']:>11.2f} {r['script']['steps_per_s']:>11.2f} {speeds[-1]:>7.2f}")
    print(f"studio vs {script.name} (median of {len(rounds)} round(s); above 1: the studio is faster): whole-command "
          f"wall x{_median(walls):.2f}, steps/s x{_median(speeds):.2f}")


# ---- part 4: torch.compile --------------------------------------------------------------------------------------

def compile_run(root: Path, compiled: bool, steps: int, images: int, resolution: int) -> dict:
    from studio.train.config import RunConfig

    studio = _studio(root)
    astronaut_crops(studio.settings.datasets_dir / DATASET, images, resolution,
            [f"sks, a photo, crop {i}" for i in range(images)])
    config = RunConfig(name=f"bench-compile-{compiled}", dataset=DATASET, model="builtin:tiny", trigger="sks",
                       resolution=resolution, max_steps=steps, epochs=0, validation_every=0, seed=0,
                       compile=compiled)
    _, wall = _train(studio, config)
    return {"wall_s": wall, "steps_per_s": _rate(_step_times(studio.settings.runs_dir / config.name))}


def versus_compile(args) -> None:
    env = _env(args.threads)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="bench-compile-") as tmp:
        for compiled in (False, True, False, True):  # twice each, alternating
            row = _child(["--one", "compile", "--root", tmp, "--compiled", str(int(compiled)), "--steps",
                          str(args.steps), "--images", str(args.images), "--resolution", str(args.resolution)], env)
            rows.setdefault(compiled, []).append(row)
    print(f"LoRA on builtin:tiny, {args.resolution} px, batch 1, {args.steps} steps, {args.threads} thread(s), on the "
          f"CPU; median of 2 runs each")
    for compiled, label in ((False, "eager"), (True, "compile")):
        print(f"{label:<8} wall {_median([r['wall_s'] for r in rows[compiled]]):7.1f} s  steps/s "
              f"{_median([r['steps_per_s'] for r in rows[compiled]]):6.2f}")
    wall = _median([r["wall_s"] for r in rows[True]]) / _median([r["wall_s"] for r in rows[False]])
    speed = _median([r["steps_per_s"] for r in rows[True]]) / _median([r["steps_per_s"] for r in rows[False]])
    print(f"compile / eager: wall x{wall:.2f}, steps/s x{speed:.2f}")


# ---- the command line ---------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 3)[3],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("cache", "validation", "diffusers", "compile"), default="cache")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--images", type=int, default=0, help="dataset pictures (0: 8 for cache, 4 otherwise)")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (the machine is shared)")
    parser.add_argument("--rounds", type=int, default=0, help="validation: 2; diffusers: 3 (alternating order)")
    parser.add_argument("--diffusers-script", type=Path, help="path of diffusers' "
                        "examples/dreambooth/train_dreambooth_lora.py (not shipped with the project)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--lora", help=argparse.SUPPRESS)
    parser.add_argument("--compiled", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.images = args.images or (8 if args.part == "cache" else 4)
    if args.one:
        if args.one in ("cache", "nocache"):
            out = cache_run(args.root, args.one == "cache", args.steps, args.images, args.resolution)
        elif args.one == "unet":
            out = unet_alone(args.root, args.steps, args.resolution)
        elif args.one == "validation":
            out = validation_run(args.root, args.case, args.variant)
        elif args.one == "stars":
            out = stars(args.root, args.lora)
        elif args.one == "model":
            out = {"path": str(_studio(args.root).store.resolve("builtin:tiny").path)}  # built on first use
        else:
            out = compile_run(args.root, bool(args.compiled), args.steps, args.images, args.resolution)
        print(json.dumps(out))
        return
    if args.part == "cache":
        versus_cache(args)
    elif args.part == "validation":
        args.rounds = args.rounds or 2
        versus_validation(args)
    elif args.part == "diffusers":
        args.rounds = args.rounds or 3
        versus_diffusers(args)
    else:
        versus_compile(args)


if __name__ == "__main__":
    main()
