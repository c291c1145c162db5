"""Benchmark: FLUX.1 LoRA training's memory and speed, in three parts; every variant runs in its own process.

    .venv/bin/python bench/flux.py [--part storage|encoders|diffusers] [--device cpu] [options of the part]

storage (the default): FLUX.1's frozen transformer stored as the LoRA presets store it, against bf16.
    [--double 1] [--single 1] [--steps 3] [--resolution 512] [--checkpointing]
    Each variant builds FLUX.1's transformer at its real widths (hidden 3072 = 24 heads x 128, T5 4096, CLIP 768,
    64 packed latent channels) with `--double` double-stream and `--single` single-stream blocks from the config
    (random weights, no download), stores it as the training loop does (`ModelLoading.store_frozen`: bf16; fp8 or
    int8 weight-only through torchao; nf4 through bitsandbytes as it loads, CUDA only), adds the studio's FLUX LoRA
    (rank 16 on every linear layer of every block, as the flux-* presets) and runs LoRA training steps (forward,
    backward, AdamW) on a `--resolution` picture's worth of packed tokens ((side / 16)^2: 1024 at 512 px) and 128
    T5 tokens. It prints the bytes of the stored weights, the peak memory during the steps (reset after the model
    is built and stored), seconds per step, and each as a ratio to bf16 measured in the same command. The real
    FLUX.1 has 19 + 38 blocks; the stored-bytes ratio carries over (the blocks are nearly all of it), the absolute
    figures are for this cut-down transformer. A variant the libraries cannot run here says so.

encoders: the training step's memory and time with cached vs live text encoders.
    [--t5-layers 2] [--steps 8] [--images 4] [--resolution 256] [--sequence 128] [--base-precision bf16] [--threads 1]
    Builds FLUX.1 at its real widths once (studio.models.families.flux1_builds.build_flux_at_real_widths: 1 + 1 transformer
    blocks, CLIP-L's 12 layers, `--t5-layers` of T5-XXL's, random weights, saved as a diffusers folder) and trains
    the studio's FLUX LoRA on it (studio.train.loop.train: rank 16 on every linear layer, bf16 autocast, the base
    stored as `--base-precision`) from the same images, captions and seed, twice: `cache` (the default: CLIP and
    T5 encode every caption once and are unloaded before the transformer loads) and `live` (cache off: the
    encoders stay loaded and every step encodes its caption, and its image with the VAE, which is narrow here and
    costs little). It prints the memory held when the first step starts, the peak during the steps (read at the
    last step, before the export), the peak before them (loading, encoding), s/step, the fastest step and CPU
    s/step (all the process's threads, which other processes on a shared machine inflate less than wall time),
    the first 2 steps left out, with ratios live / cached and the machine's load average.

diffusers: studio FLUX LoRA steps/s against diffusers' examples/dreambooth/train_dreambooth_lora_flux.py.
    --diffusers-script PATH [--steps 100] [--images 4] [--resolution 64] [--rank 4] [--batch 1] [--rounds 3]
    The project does not ship that script: take it from a diffusers checkout (git clone
    https://github.com/huggingface/diffusers, then examples/dreambooth/train_dreambooth_lora_flux.py; the one
    measured is at commit 58eb52c0, which runs with the installed diffusers 0.42, offline, on the CPU). Both train
    builtin:tiny-flux on the same images with one caption (the script's --instance_prompt), the same steps, rank
    (alpha = rank), batch, resolution, learning rate, T5 length (512) and LoRA layers (the attention projections
    of every block: the studio's lora_layers=attention, the script's --lora_layers set to the same modules),
    float32, latents cached (the studio's default, the script's --cache_latents). Steps/s come from each one's
    own step log, the first 5 steps left out: the studio's step events, the script's "Steps" progress bar
    (printed once per step with its elapsed seconds: TQDM_MININTERVAL=0 and TQDM_BAR_FORMAT in its
    environment), over the whole stretch and from its median step; neither saves a checkpoint on the way. The
    rounds alternate which of the two runs first, and the summary is the median round. The two LoRA files are
    checked to hold the same layers.

On a GPU (--device cuda) the memory figures are torch.cuda's allocated bytes (stored: what the GPU holds after
storing; peaks: max_memory_allocated) instead of the process's resident set (Linux's VmRSS / VmHWM, the peak
reset through /proc/self/clear_refs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.memory import held, peak, reset_peak  # noqa: E402
from bench.photos import astronaut_crops  # noqa: E402
from bench.rounds import STEP_LOG, alternate, child, lora_modules, rates, run_script  # noqa: E402

_child = partial(child, __file__)  # this benchmark as a child (each variant in a fresh process)

VARIANTS = ("bf16", "int8", "fp8", "nf4")
ENCODER_WARMUP = 2  # steps left out of s/step in the encoders part (allocations, first-touch of weights)
SCRIPT_WARMUP = 5  # steps left out of steps/s in the diffusers part
# The studio's lora_layers=attention on FLUX.1, as module suffixes for the script's --lora_layers (peft matches
# suffixes, so these take the double blocks' joint attention and the single blocks' q, k, v alike).
ATTENTION_MODULES = ("attn.to_q,attn.to_k,attn.to_v,attn.to_out.0,attn.add_q_proj,attn.add_k_proj,attn.add_v_proj,"
                     "attn.to_add_out")
SCRIPT_PROMPT = "sks, a photo"
DATASET = "flux-bench-photos"  # under the run's own workspace (a bare name, so not a folder of the checkout)
RESOLUTIONS = {"storage": 512, "encoders": 256, "diffusers": 64}  # each part's default side in pixels


# ---- part 1: the frozen transformer's storage -----------------------------------------------------------------

def one_variant(precision: str, double: int, single: int, steps: int, device: str, resolution: int,
                checkpointing: bool) -> dict:
    import gc

    import torch
    from diffusers import FluxTransformer2DModel
    from peft import LoraConfig

    from studio.cache import module_bytes
    from studio.models import families
    from studio.models.loaders import ModelLoading, nf4_config

    nf4 = nf4_config(device) if precision == "nf4" else None  # says why not (no CUDA, no bitsandbytes) first
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)  # built as a bf16 checkpoint loads: no float32 copy to leave pages behind
    model = FluxTransformer2DModel(num_layers=double, num_single_layers=single, guidance_embeds=True)
    torch.set_default_dtype(torch.float32)
    if nf4 is not None:  # quantized as it loads, as the store loads it (the FLUX.1 family's load_denoiser)
        with tempfile.TemporaryDirectory(prefix="bench-flux-") as tmp:
            model.save_pretrained(tmp)
            del model
            gc.collect()
            model = FluxTransformer2DModel.from_pretrained(tmp, quantization_config=nf4, dtype=torch.bfloat16)
    else:
        model = model.to(device)
    model.requires_grad_(False)
    ModelLoading.store_frozen(model, precision, device)
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    stored = held(device) if device.startswith("cuda") else module_bytes(model)
    reset_peak(device)  # the peak from here on: what training holds, not the build before storing
    model.add_adapter(LoraConfig(r=16, lora_alpha=16, init_lora_weights="gaussian",
                                 target_modules=families.get("flux").lora_targets("transformer").denoiser))
    if checkpointing:
        model.enable_gradient_checkpointing()
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=1e-4)
    tokens, text = (resolution // 16) ** 2, 128  # 8x VAE latents packed 2 x 2 (1024 at 512 px); T5 prompt length
    g = torch.Generator().manual_seed(1)
    inputs = dict(hidden_states=torch.randn(1, tokens, 64, generator=g), encoder_hidden_states=torch.randn(
        1, text, 4096, generator=g), pooled_projections=torch.randn(1, 768, generator=g),
        timestep=torch.tensor([0.5]), guidance=torch.tensor([1.0]), img_ids=torch.zeros(tokens, 3),
        txt_ids=torch.zeros(text, 3))
    inputs = {k: v.to(device, torch.bfloat16 if v.is_floating_point() else v.dtype) for k, v in inputs.items()}
    target = torch.randn(1, tokens, 64, generator=g).to(device)
    seconds = []
    for _ in range(steps):
        started = time.perf_counter()
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16):
            out = model(**inputs, return_dict=False)[0]
        loss = torch.nn.functional.mse_loss(out.float(), target)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - started)
    return {"precision": precision, "stored_bytes": stored, "peak_bytes": peak(device),
            "params": sum(p.numel() for p in model.parameters() if not p.requires_grad),
            "lora_params": sum(p.numel() for p in trained), "loss": float(loss), "tokens": tokens,
            # the first step warms up (allocations, kernel choice): the others are what a run sees
            "s_per_step": sum(seconds[1:]) / max(1, len(seconds) - 1)}


def storage(args) -> None:
    steps = args.steps or 3
    load = os.getloadavg()[0]
    results = {}
    for variant in VARIANTS:
        try:
            results[variant] = _child(["--one", variant, "--double", str(args.double), "--single", str(args.single),
                                       "--steps", str(steps), "--device", args.device, "--resolution",
                                       str(args.resolution)] + (["--checkpointing"] if args.checkpointing else []))
        except RuntimeError as e:
            print(f"{variant}: could not run here: {e}")
    base = results.get("bf16")
    if base is None:
        print("bf16 did not run: no baseline to compare with")
        return
    memory = "allocated" if args.device.startswith("cuda") else "RSS"
    print(f"FLUX.1 transformer at real widths, {args.double} double + {args.single} single blocks: "
          f"{base['params'] / 1e6:.0f} M frozen parameters, {base['lora_params'] / 1e6:.1f} M LoRA parameters "
          f"(rank 16, every linear layer), {base['tokens']} image ({args.resolution} px) + 128 text tokens, "
          f"{args.device}{', gradient checkpointing' if args.checkpointing else ''}, load average "
          f"{load:.1f} -> {os.getloadavg()[0]:.1f}")
    print(f"{'stored as':10} {'weights MB':>11} {'ratio':>6} {'peak ' + memory + ' MB':>17} {'ratio':>6} "
          f"{'s/step':>8} {'ratio':>6}")
    for variant, r in results.items():
        print(f"{variant:10} {r['stored_bytes'] / 2**20:11.0f} {r['stored_bytes'] / base['stored_bytes']:6.2f} "
              f"{r['peak_bytes'] / 2**20:17.0f} {r['peak_bytes'] / base['peak_bytes']:6.2f} "
              f"{r['s_per_step']:8.2f} {r['s_per_step'] / base['s_per_step']:6.2f}")


# ---- part 2: cached vs live text encoders, through the studio's own loop --------------------------------------

def _run_log(run_dir: Path, device: str):
    """A RunLog that also measures: memory when the steps start (the loop sets its status to running just before
    the first step), the peak before then, the peak during the steps (read at the last step's event, before the
    export), and each step's time."""
    from studio.train.runlog import RunLog

    class MeasuringLog(RunLog):
        def status(self, state, message="", **fields):
            super().status(state, message, **fields)
            if state == "running":
                self.total, self.before, self.at_start = fields["total_steps"], peak(device), held(device)
                self.times, self.cpu = [], []
                reset_peak(device)

        def event(self, kind, **fields):
            super().event(kind, **fields)
            if kind == "step":
                self.times.append(time.perf_counter())
                self.cpu.append(time.process_time())  # all of this process's threads
                if fields["step"] == self.total:
                    self.during = peak(device)

    return MeasuringLog(run_dir)


def _settings(root: Path, device: str):
    import torch

    from studio.settings import Settings

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    return Settings(root=root, models_dir=root / "models", allow_downloads=False, device=device)


def encoders_run(root: Path, model: Path, cache: bool, steps: int, images: int, resolution: int, sequence: int,
                 base_precision: str, device: str) -> dict:
    from studio.context import Studio
    from studio.train.config import RunConfig
    from studio.train.loop import train

    settings = _settings(root, device)
    studio = Studio.open(settings)
    if not (settings.datasets_dir / DATASET).is_dir():
        astronaut_crops(settings.datasets_dir / DATASET, images, resolution,
                [f"sks, a photo of a person, crop {i} of the astronaut" for i in range(images)])
    name = "bench-cache" if cache else "bench-live"
    config = RunConfig(name=name, dataset=DATASET, model=str(model), trigger="sks", resolution=resolution,
                       max_steps=steps, epochs=0, validation_every=0, validation_prompts=[], cache=cache, seed=0,
                       buckets=False, rank=16, alpha=16.0, lora_layers="transformer", mixed_precision="bf16",
                       base_precision=base_precision, max_sequence_length=sequence, device=device).check()
    log = _run_log(settings.runs_dir / name, device)
    started = time.perf_counter()
    try:
        train(studio.store, settings, config, settings.runs_dir / name, log=log, should_stop=lambda: False)
    finally:
        log.close()
    times, cpu = log.times[ENCODER_WARMUP - 1:], log.cpu[ENCODER_WARMUP - 1:]  # from the end of the warm-up steps
    return {"variant": name, "steps": len(log.times), "s_per_step": (times[-1] - times[0]) / (len(times) - 1),
            "cpu_s_per_step": (cpu[-1] - cpu[0]) / (len(cpu) - 1),
            "fastest_s": min(b - a for a, b in zip(times, times[1:])),
            "at_start": log.at_start, "during": log.during, "before": log.before,
            "wall_s": time.perf_counter() - started}


def encoders(args) -> None:
    steps = args.steps or 8
    if steps < ENCODER_WARMUP + 2:
        raise SystemExit(f"--steps must be at least {ENCODER_WARMUP + 2} (the first {ENCODER_WARMUP} warm up)")
    threads = args.threads
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1")
    load = os.getloadavg()[0]
    rows = {}
    with tempfile.TemporaryDirectory(prefix="bench-flux-encoders-") as tmp:
        model = Path(tmp) / "flux-real-widths"
        _child(["--one", "build", "--root", tmp, "--t5-layers", str(args.t5_layers)], env)
        on_disk = {part: sum(f.stat().st_size for f in (model / part).glob("*.safetensors"))
                   for part in ("transformer", "text_encoder", "text_encoder_2")}
        for variant in ("cache", "live"):
            try:
                rows[variant] = _child(["--one", variant, "--root", tmp, "--steps", str(steps), "--images",
                                        str(args.images), "--resolution", str(args.resolution), "--sequence",
                                        str(args.sequence), "--base-precision", args.base_precision, "--device",
                                        args.device], env)
            except RuntimeError as e:
                print(f"{variant}: could not run here: {e}")
    if len(rows) < 2:
        return
    mb = 2 ** 20
    memory = "allocated" if args.device.startswith("cuda") else "RSS"
    print(f"FLUX.1 LoRA (studio loop, rank 16 on every linear layer, bf16 autocast, base {args.base_precision}) on "
          f"FLUX.1 at real widths: transformer 1 + 1 blocks ({on_disk['transformer'] / mb:.0f} MB bf16), CLIP-L "
          f"12 layers ({on_disk['text_encoder'] / mb:.0f} MB), T5-XXL {args.t5_layers} layers "
          f"({on_disk['text_encoder_2'] / mb:.0f} MB); {args.resolution} px ({(args.resolution // 16) ** 2} image "
          f"tokens) + {args.sequence} T5 tokens, batch 1, {args.images} captions, {steps} steps, {args.device}, "
          f"{threads} thread(s), load average {load:.1f} -> {os.getloadavg()[0]:.1f}")
    print(f"{'text encoders':<26} {memory + ' at 1st step MB':>20} {'peak in steps MB':>17} {'peak before MB':>15} "
          f"{'s/step':>7} {'fastest':>8} {'CPU s/step':>11} {'wall s':>7}")
    labels = {"cache": "cached (encoded once)", "live": "live (encoded every step)"}
    for variant, r in rows.items():
        print(f"{labels[variant]:<26} {r['at_start'] / mb:20.0f} {r['during'] / mb:17.0f} {r['before'] / mb:15.0f} "
              f"{r['s_per_step']:7.2f} {r['fastest_s']:8.2f} {r['cpu_s_per_step']:11.2f} {r['wall_s']:7.1f}")
    cache, live = rows["cache"], rows["live"]
    print(f"live / cached: peak in steps x{live['during'] / cache['during']:.2f} "
          f"(+{(live['during'] - cache['during']) / mb:.0f} MB), peak before x{live['before'] / cache['before']:.2f}, "
          f"s/step x{live['s_per_step'] / cache['s_per_step']:.2f}, fastest step "
          f"x{live['fastest_s'] / cache['fastest_s']:.2f}, CPU s/step "
          f"x{live['cpu_s_per_step'] / cache['cpu_s_per_step']:.2f}")


# ---- part 3: studio vs diffusers' train_dreambooth_lora_flux.py --------------------------------------------------

def studio_tiny_run(root: Path, steps: int, images: int, resolution: int, rank: int, batch: int,
                    model_id: str = "builtin:tiny-flux", max_sequence_length: int = 512) -> dict:
    """The studio's LoRA run on a tiny builtin (bench/new_families.py's other families too), from its own step log."""
    from studio.context import Studio
    from studio.train.config import RunConfig
    from studio.train.loop import train
    from studio.train.runlog import RunLog, read_events

    settings = _settings(root, "cpu")
    studio = Studio.open(settings)
    model = studio.store.resolve(model_id).path  # built from configs on first use
    astronaut_crops(settings.datasets_dir / DATASET, images, resolution, [SCRIPT_PROMPT] * images)
    config = RunConfig(name="bench-studio", dataset=DATASET, model=model_id, trigger="sks",
                       resolution=resolution, max_steps=steps, epochs=0, validation_every=0, validation_prompts=[],
                       cache=True, seed=0, buckets=False, rank=rank, alpha=float(rank), lr=1e-4, batch_size=batch,
                       lora_layers="attention", max_sequence_length=max_sequence_length, device="cpu",
                       save_every_epochs=steps).check()  # saved once at the end, as the script (no checkpoints)
    run_dir = settings.runs_dir / config.name
    shutil.rmtree(run_dir, ignore_errors=True)  # the last round's run (in the bench's own temporary root)
    log = RunLog(run_dir)
    try:
        result = train(studio.store, settings, config, run_dir, log=log, should_stop=lambda: False)
    finally:
        log.close()
    steps_at = [(e["step"], e["time"]) for e in read_events(run_dir) if e["type"] == "step"]
    peft_file = next(f for f in result.files if f.name == "pytorch_lora_weights.safetensors")
    return {"model": str(model), "steps_at": steps_at, "lora_modules": lora_modules(peft_file)}


def script_run(script: Path, model: Path, images: Path, out: Path, steps: int, resolution: int, rank: int,
               batch: int, threads: int) -> dict:
    """Run diffusers' script as its README says (plus offline, CPU, float32) and read its step log."""
    cmd = [sys.executable, str(script), "--pretrained_model_name_or_path", str(model), "--instance_data_dir",
           str(images), "--instance_prompt", SCRIPT_PROMPT, "--output_dir", str(out), "--resolution", str(resolution),
           "--train_batch_size", str(batch), "--max_train_steps", str(steps), "--rank", str(rank), "--lora_alpha",
           str(rank), "--learning_rate", "1e-4", "--lr_scheduler", "constant", "--lr_warmup_steps", "0",
           "--max_sequence_length", "512", "--lora_layers", ATTENTION_MODULES, "--mixed_precision", "no",
           "--cache_latents", "--seed", "0", "--report_to", "all", "--checkpointing_steps", str(steps + 1)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES="", **STEP_LOG)
    return {"steps_at": run_script(cmd, env).steps_at,
            "lora_modules": lora_modules(out / "pytorch_lora_weights.safetensors")}


def versus_diffusers(args) -> None:
    script = args.diffusers_script
    if script is None or not script.is_file():
        raise SystemExit(f"the diffusers part needs --diffusers-script PATH to diffusers' "
                         f"examples/dreambooth/train_dreambooth_lora_flux.py (not shipped with the project; see "
                         f"--help){'' if script is None else f': {script} is not a file'}")
    steps = args.steps or 100
    if steps <= SCRIPT_WARMUP + 2:
        raise SystemExit(f"--steps must be more than {SCRIPT_WARMUP + 2} (the first {SCRIPT_WARMUP} warm up)")
    resolution, threads = args.resolution, args.threads
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1")
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-flux-diffusers-") as tmp:
        root = Path(tmp)
        astronaut_crops(root / "instance", args.images, resolution, None)  # the script takes every file as an image

        def ours():
            return _child(["--one", "studio", "--root", tmp, "--steps", str(steps), "--images", str(args.images),
                           "--resolution", str(resolution), "--rank", str(args.rank), "--batch", str(args.batch)],
                          env)

        def theirs(studio):
            return script_run(script.resolve(), Path(studio["model"]), root / "instance", root / "script-out", steps,
                              resolution, args.rank, args.batch, threads)

        rounds = alternate(args.rounds, ours, theirs)
    studio, diffusers = rounds[0]
    layers = f"{len(studio['lora_modules'])} LoRA layers in both"
    if studio["lora_modules"] != diffusers["lora_modules"]:
        layers = (f"LoRA layers differ: studio {len(studio['lora_modules'])}, script {len(diffusers['lora_modules'])},"
                  f" only in the studio's: {sorted(set(studio['lora_modules']) - set(diffusers['lora_modules']))[:4]}")
    print(f"FLUX.1 LoRA on builtin:tiny-flux, {resolution} px, batch {args.batch}, rank {args.rank} "
          f"(alpha {args.rank}), {steps} steps, {args.images} images, {layers}, float32 on the CPU, {threads} "
          f"thread(s), load average {load:.1f} -> {os.getloadavg()[0]:.1f}; steps/s from each one's step log, the "
          f"first {SCRIPT_WARMUP} steps left out")
    print(f"{'round':<6} {'studio steps/s':>15} {'script steps/s':>15} {'ratio':>6}   {'by median step:':<16}"
          f"{'studio':>7} {'script':>7} {'ratio':>6}")
    ratios = []
    for n, (studio, diffusers) in enumerate(rounds, 1):
        (mean, median), (their_mean, their_median) = (rates(studio["steps_at"], SCRIPT_WARMUP),
                                                      rates(diffusers["steps_at"], SCRIPT_WARMUP))
        ratios.append((mean / their_mean, median / their_median))
        print(f"{n:<6} {mean:15.2f} {their_mean:15.2f} {ratios[-1][0]:6.2f}   {'':<16}{median:7.2f} "
              f"{their_median:7.2f} {ratios[-1][1]:6.2f}")
    middle = len(ratios) // 2
    print(f"studio / {script.name} (median of {len(ratios)} round(s)): steps/s "
          f"x{sorted(r[0] for r in ratios)[middle]:.2f}, by median step x{sorted(r[1] for r in ratios)[middle]:.2f}")


# ---- the command line ---------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__.split("\n", 3)[3],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("storage", "encoders", "diffusers"), default="storage")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=0, help="training steps per variant (0: the part's default)")
    parser.add_argument("--resolution", type=int, default=0, help="training side in pixels (0: the part's own, "
                        f"{', '.join(f'{k} {v}' for k, v in RESOLUTIONS.items())})")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per run in the encoders and diffusers parts (the machine is shared)")
    parser.add_argument("--rounds", type=int, default=3, help="diffusers: rounds of studio + script, alternating")
    parser.add_argument("--double", type=int, default=1)
    parser.add_argument("--single", type=int, default=1)
    parser.add_argument("--checkpointing", action="store_true", help="storage: gradient checkpointing as the presets")
    parser.add_argument("--t5-layers", type=int, default=2)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--sequence", type=int, default=128, help="encoders: T5 tokens per caption")
    parser.add_argument("--base-precision", default="bf16", choices=("auto", "bf16", "fp8", "int8", "nf4"))
    parser.add_argument("--diffusers-script", type=Path, help="path of diffusers' "
                        "examples/dreambooth/train_dreambooth_lora_flux.py (not shipped with the project)")
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.resolution = args.resolution or RESOLUTIONS[args.part]
    if args.one in VARIANTS:
        print(json.dumps(one_variant(args.one, args.double, args.single, args.steps, args.device, args.resolution,
                                     args.checkpointing)))
    elif args.one == "build":
        from studio.models.families.flux1_builds import build_flux_at_real_widths

        build_flux_at_real_widths(args.root / "flux-real-widths", t5_layers=args.t5_layers)
        print(json.dumps({"built": True}))
    elif args.one in ("cache", "live"):
        print(json.dumps(encoders_run(args.root, args.root / "flux-real-widths", args.one == "cache", args.steps,
                                      args.images, args.resolution, args.sequence, args.base_precision, args.device)))
    elif args.one == "studio":
        print(json.dumps(studio_tiny_run(args.root, args.steps, args.images, args.resolution, args.rank, args.batch)))
    elif args.part == "storage":
        storage(args)
    elif args.part == "encoders":
        encoders(args)
    else:
        versus_diffusers(args)


if __name__ == "__main__":
    main()
