"""Benchmark: LoRA training of Z-Image, FLUX.2 klein and Qwen-Image, in two parts; every run in its own process.

    .venv/bin/python bench/new_families.py [--part real|diffusers] [--family zimage flux2 qwenimage] [options]

real (the default): each family's transformer at its real widths with a few blocks, on this machine.
    [--blocks 1] [--steps 3] [--resolution 256] [--base-precision auto] [--checkpointing]
    Builds the transformer from the real config the studio carries (studio/models/configs/: zimage-turbo,
    flux2-klein-4b, qwen-image) with only `--blocks` blocks (Z-Image: main layers, one refiner of each kind; klein:
    one double block and `--blocks` single blocks; Qwen-Image: blocks), random weights from the config, stores it
    as the training loop does (ModelLoading.store_frozen: float32 by default, which this CPU computes 6x faster than
    bf16; --base-precision bf16 / int8 for the stored sizes), adds the studio's LoRA (rank 16, lora_layers attention,
    as the presets) and runs LoRA steps through the family's own training objective (its packing, ids and time
    convention; forward, backward, AdamW) on a `--resolution` picture's latents and 128 prompt tokens (klein: its
    512, three Qwen3 layers wide). It prints the stored bytes, the peak resident memory during the steps (reset after
    storing), seconds per step, and the real model's parameter count (the family's memory facts, measured from the
    same configs). The blocks are nearly all of each model, so stored bytes per block carry over; the absolute
    figures are for the cut-down transformer.

diffusers: studio LoRA steps/s against diffusers' own training script of each family, on its tiny builtin.
    --scripts DIR [--steps 60] [--images 4] [--resolution 64] [--rank 4] [--rounds 3]
    DIR holds diffusers' examples/dreambooth/train_dreambooth_lora_{z_image,flux2_klein,qwen_image}.py (not shipped
    with the project: take them from a diffusers checkout; the ones measured are at commit 58eb52c0, which run with
    the installed diffusers 0.42, offline, on the CPU). Both train the family's tiny builtin on the same images with
    one caption (the script's --instance_prompt), the same steps, rank (alpha = rank), batch 1, resolution, learning
    rate and LoRA layers (each script's default targets, which are the studio's lora_layers=attention: the lists of
    trained layers are compared), float32, latents cached. The klein script is given klein's text layers 9 18 27
    (its default 10 20 30 is diffusers issue #13445). Steps/s come from each one's own step log, the first 5 steps
    left out, as in bench/flux.py; rounds alternate which runs first, and the summary is the median round.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import flux as flux_bench  # noqa: E402  (bench/flux.py: the studio's tiny run, the script's prompt and warm-up)
from bench.memory import peak, reset_peak  # noqa: E402
from bench.photos import astronaut_crops  # noqa: E402
from bench.rounds import STEP_LOG, alternate, child, lora_modules, rates, run_script  # noqa: E402

_child = partial(child, __file__)  # this benchmark as a child (each variant in a fresh process)

FAMILIES = ("zimage", "flux2", "qwenimage")
VARIANT = {"zimage": "zimage-turbo", "flux2": "flux2-klein-4b", "qwenimage": "qwen-image"}
BUILTIN = {"zimage": "builtin:tiny-zimage", "flux2": "builtin:tiny-flux2", "qwenimage": "builtin:tiny-qwenimage"}
SCRIPT = {"zimage": "train_dreambooth_lora_z_image.py", "flux2": "train_dreambooth_lora_flux2_klein.py",
          "qwenimage": "train_dreambooth_lora_qwen_image.py"}
SCRIPT_ARGS = {"flux2": ["--text_encoder_out_layers", "9", "18", "27"]}


# ---- part 1: real widths, a few blocks --------------------------------------------------------------------------

def _cut_down(family: str, blocks: int):
    """The family's transformer from its carried real config, with `blocks` blocks; and one batch of inputs for its
    objective at `resolution`: latents (1, C, h, w) as the VAE gives them and the prompt's conditioning."""
    import diffusers

    from studio.models.configs import variant_folder

    folder = variant_folder(VARIANT[family])
    cls = getattr(diffusers, {"zimage": "ZImageTransformer2DModel", "flux2": "Flux2Transformer2DModel",
                              "qwenimage": "QwenImageTransformer2DModel"}[family])
    config = dict(cls.load_config(str(folder), subfolder="transformer"))
    config.update({"zimage": dict(n_layers=blocks, n_refiner_layers=1), "flux2": dict(num_layers=1,
                   num_single_layers=blocks), "qwenimage": dict(num_layers=blocks)}[family])
    return cls.from_config(config), folder


def one_real(family: str, blocks: int, steps: int, resolution: int, precision: str, checkpointing: bool) -> dict:
    import gc

    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler
    from peft import LoraConfig

    from studio.cache import module_bytes
    from studio.models import families
    from studio.models.families.base import Conditioning
    from studio.models.loaders import ModelLoading
    from studio.train.config import RunConfig

    torch.manual_seed(0)
    half = precision != "auto"
    torch.set_default_dtype(torch.bfloat16 if half else torch.float32)  # built as a bf16 checkpoint loads
    model, folder = _cut_down(family, blocks)
    torch.set_default_dtype(torch.float32)
    model.requires_grad_(False)
    ModelLoading.store_frozen(model, precision, "cpu")
    gc.collect()
    stored = module_bytes(model)
    fam = families.get(family)
    model.add_adapter(LoraConfig(r=16, lora_alpha=16, init_lora_weights="gaussian",
                                 target_modules=fam.lora_targets("attention").denoiser))
    if checkpointing:
        model.enable_gradient_checkpointing()
    scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(str(folder), subfolder="scheduler")
    config = RunConfig(name="bench", dataset="bench", timestep_sampling="shift")
    objective = fam.objective(SimpleNamespace(pipe=SimpleNamespace(scheduler=scheduler)), config)
    g = torch.Generator().manual_seed(1)
    channels, text, width = {"zimage": (16, 128, 2560), "flux2": (32, 512, 7680), "qwenimage": (16, 128, 3584)}[family]
    side = resolution // 8
    latents = torch.randn(1, channels, side, side, generator=g)
    cond = Conditioning(torch.randn(1, text, width, generator=g).to(torch.bfloat16 if half else torch.float32))
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=1e-4)
    reset_peak("cpu")
    seconds = []
    for _ in range(steps):
        started = time.perf_counter()
        error, _weight = objective.loss_map(model, latents, cond, None, None, g, lambda: torch.autocast(
            "cpu", dtype=torch.bfloat16, enabled=half))
        loss = error.mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        seconds.append(time.perf_counter() - started)
    return {"family": family, "stored_bytes": stored, "peak_bytes": peak("cpu"),
            "params": sum(p.numel() for p in model.parameters() if not p.requires_grad),
            "lora_params": sum(p.numel() for p in trained), "loss": float(loss),
            "real_transformer": fam.parameter_counts[VARIANT[family]]["transformer"],
            "s_per_step": sum(seconds[1:]) / max(1, len(seconds) - 1)}


def real(args) -> None:
    load = os.getloadavg()[0]
    print(f"LoRA steps at real widths on the CPU, {args.resolution} px, base stored {args.base_precision}, "
          f"{args.steps} steps (the first left out of s/step), gradient checkpointing "
          f"{'on' if args.checkpointing else 'off'}, load average {load:.1f}")
    print(f"{'family':<10} {'blocks':>6} {'params':>12} {'stored MB':>10} {'peak RSS MB':>12} {'s/step':>8} "
          f"{'LoRA params':>12} {'real transformer':>17}")
    for family in args.family:
        flags = ["--one", family, "--blocks", str(args.blocks), "--steps", str(args.steps or 3), "--resolution",
                 str(args.resolution), "--base-precision", args.base_precision]
        try:
            r = _child(flags + (["--checkpointing"] if args.checkpointing else []))
        except RuntimeError as e:
            print(f"{family:<10} could not run here: {e}")
            continue
        print(f"{family:<10} {args.blocks:>6} {r['params']:>12,} {r['stored_bytes'] / 2**20:>10.0f} "
              f"{r['peak_bytes'] / 2**20:>12.0f} {r['s_per_step']:>8.2f} {r['lora_params']:>12,} "
              f"{r['real_transformer']:>17,}")


# ---- part 2: studio vs diffusers' scripts -------------------------------------------------------------------------

def script_run(family: str, script: Path, model: Path, images: Path, out: Path, steps: int, resolution: int,
               rank: int, threads: int) -> dict:
    """diffusers' script as its README runs it (plus offline, CPU, float32), read from its step log."""
    cmd = [sys.executable, str(script), "--pretrained_model_name_or_path", str(model), "--instance_data_dir",
           str(images), "--instance_prompt", flux_bench.SCRIPT_PROMPT, "--output_dir", str(out), "--resolution",
           str(resolution), "--train_batch_size", "1", "--max_train_steps", str(steps), "--rank", str(rank),
           "--lora_alpha", str(rank), "--learning_rate", "1e-4", "--lr_scheduler", "constant", "--lr_warmup_steps",
           "0", "--mixed_precision", "no", "--cache_latents", "--seed", "0", "--report_to", "tensorboard",
           "--checkpointing_steps", str(steps + 1), *SCRIPT_ARGS.get(family, [])]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES="", **STEP_LOG)
    return {"steps_at": run_script(cmd, env).steps_at,
            "lora_modules": lora_modules(out / "pytorch_lora_weights.safetensors")}


def versus_diffusers(args) -> None:
    if args.scripts is None or not args.scripts.is_dir():
        raise SystemExit("the diffusers part needs --scripts DIR holding diffusers' examples/dreambooth/"
                         f"{', '.join(SCRIPT.values())} (not shipped with the project; see --help)")
    steps = args.steps or 60
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), HF_HUB_OFFLINE="1")
    for family in args.family:
        script = args.scripts / SCRIPT[family]
        load = os.getloadavg()[0]
        with tempfile.TemporaryDirectory(prefix=f"bench-{family}-diffusers-") as tmp:
            root = Path(tmp)
            astronaut_crops(root / "instance", args.images, args.resolution, None)

            def ours():
                return _child(["--one", f"studio-{family}", "--root", tmp, "--steps", str(steps), "--images",
                               str(args.images), "--resolution", str(args.resolution), "--rank", str(args.rank)],
                              env)

            def theirs(studio):
                return script_run(family, script.resolve(), Path(studio["model"]), root / "instance",
                                  root / "script-out", steps, args.resolution, args.rank, args.threads)

            rounds = alternate(args.rounds, ours, theirs)
        studio, diffusers = rounds[0]
        layers = f"{len(studio['lora_modules'])} LoRA layers in both"
        if studio["lora_modules"] != diffusers["lora_modules"]:
            layers = (f"LoRA layers differ: studio {len(studio['lora_modules'])}, script "
                      f"{len(diffusers['lora_modules'])}")
        print(f"{family}: {BUILTIN[family]}, {args.resolution} px, batch 1, rank {args.rank}, {steps} steps, "
              f"{args.images} images, {layers}, float32, {args.threads} thread(s), load average {load:.1f} -> "
              f"{os.getloadavg()[0]:.1f}")
        ratios = []
        for n, (studio, diffusers) in enumerate(rounds, 1):
            (mean, median), (their_mean, their_median) = (rates(studio["steps_at"], flux_bench.SCRIPT_WARMUP),
                                                          rates(diffusers["steps_at"], flux_bench.SCRIPT_WARMUP))
            ratios.append((mean / their_mean, median / their_median))
            print(f"  round {n}: studio {mean:.2f} steps/s, {script.name} {their_mean:.2f}, ratio "
                  f"{ratios[-1][0]:.2f} (by median step {median:.2f} / {their_median:.2f} = {ratios[-1][1]:.2f})")
        middle = len(ratios) // 2
        by_mean, by_median = sorted(r[0] for r in ratios)[middle], sorted(r[1] for r in ratios)[middle]
        print(f"  studio / {script.name} (median of {len(ratios)} round(s)): steps/s x{by_mean:.2f}, by median step "
              f"x{by_median:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 3)[3],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("real", "diffusers"), default="real")
    parser.add_argument("--family", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument("--steps", type=int, default=0, help="training steps per run (0: the part's default)")
    parser.add_argument("--resolution", type=int, default=0, help="training side in pixels (0: real 256, "
                                                                  "diffusers 64)")
    parser.add_argument("--blocks", type=int, default=1)
    parser.add_argument("--base-precision", default="auto", choices=("auto", "bf16", "fp8", "int8"),
                        help="auto: float32, what a CPU computes fastest (bf16 matmuls are emulated on most CPUs)")
    parser.add_argument("--checkpointing", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--scripts", type=Path, help="folder with diffusers' three training scripts")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.resolution = args.resolution or (256 if args.part == "real" else 64)
    if args.one in FAMILIES:
        import torch

        torch.set_num_threads(args.threads)
        print(json.dumps(one_real(args.one, args.blocks, args.steps, args.resolution, args.base_precision,
                                  args.checkpointing)))
    elif args.one and args.one.startswith("studio-"):
        print(json.dumps(flux_bench.studio_tiny_run(args.root, args.steps, args.images, args.resolution, args.rank, 1,
                                                    model_id=BUILTIN[args.one.removeprefix("studio-")],
                                                    max_sequence_length=0)))
    elif args.part == "real":
        real(args)
    else:
        versus_diffusers(args)


if __name__ == "__main__":
    main()
