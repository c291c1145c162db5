"""Benchmark: the memory plan (studio/train/plan.py) against what a training run holds at real sizes, phase by phase.

    .venv/bin/python bench/realsize.py --part sd15|sdxl|flux [--size 512] [--steps 1] [--root bench/out/realsize]
    .venv/bin/python bench/realsize.py --calibrate sd15|sdxl|flux|process
    .venv/bin/python bench/realsize.py --presets

--part builds the model from the configs the studio carries (random weights, seeded, nothing downloaded; SD 1.5
whole in float32, SDXL whole in bf16, FLUX.1 at its real widths with --double + --single transformer blocks and
--t5-layers of T5-XXL's 24 in bf16) as a diffusers folder, then trains a LoRA on it in a child process (the studio's
training loop, in float32: this CPU has no bf16 instructions) with one validation prompt. The child measures each
phase: load (the base, and a staged family's denoiser after its captions), caching (latents, captions), steps,
validation (every drawing of the prompts: the base's grid before the first step and the one after), export; two ways:
the peak resident set (VmHWM, reset through /proc/self/clear_refs as each phase starts) and the peak of the process's
own memory (RssAnon every 10 ms, plus the libraries' pages), which is what the plan is compared with: the weights
are copied out of their memory-mapped file as they are loaded (as moving them to a GPU copies them), so that memory
is the tensors alive and the process. The plan of the same run on "the CPU" (the same terms, the process in place
of the CUDA context) is printed beside each phase with the ratio.

What the comparison means: CPU resident memory is not VRAM. Both hold the same tensors (weights by dtype, optimizer
states, activations: autograd keeps the same tensors on either device, and both use flash attention), so the ratio
checks the plan's arithmetic and its activation figures; on a GPU the caching allocator's fragmentation and cuDNN's
workspaces come on top, and the process's own ~0.8 GB becomes the CUDA context's ~0.45 GB. The children run with
MALLOC_MMAP_THRESHOLD_ set, so memory freed goes back to the system and the resident set follows what is alive.

--calibrate runs bench/realsize_calibrate.py in a child: the activation figures the family modules carry.
--presets prints the plan at real sizes (the carried configs: sd15, sdxl-base, flux1-dev, zimage-base,
flux2-klein-4b/9b, qwen-image) of every GPU-tier preset on its own GPU size, against the issue's targets. It builds
nothing (meta device) and runs in seconds.

Run one part at a time, with nothing else heavy: SD 1.5 in float32 holds ~8 GB, FLUX.1 at 2 + 2 blocks ~9 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
REPO = Path(__file__).resolve().parent.parent
VARIANT = {"sd15": "sd15", "sdxl": "sdxl-base", "flux": "flux1-dev"}
ENV = {"MALLOC_MMAP_THRESHOLD_": "1048576", "OMP_NUM_THREADS": "2", "PYTHONPATH": str(REPO)}
# The issue's targets for the presets' plans at real sizes (GB), and the GPU each preset is for.
TARGETS = {"flux-24gb": 22.0, "flux-16gb": 15.0, "flux-12gb": 11.5, "flux-8gb": 7.5, "sdxl-12gb": 11.5,
           "sd15-8gb": 7.5}
REAL = {"sd1": ["sd15"], "sdxl": ["sdxl-base"], "flux": ["flux1-dev"], "zimage": ["zimage-base"],
        "flux2": ["flux2-klein-4b", "flux2-klein-9b"], "qwenimage": ["qwen-image"]}


# ---- the child: a run, phase by phase ---------------------------------------------------------------------------

class PhaseMeter:
    """The peak memory of each phase of a run in this process, two ways: the peak resident set (the kernel's VmHWM,
    reset as a phase starts and read as it ends), and the peak of the process's own memory (RssAnon, read every
    10 ms by a thread) plus the libraries' mapped pages as the run started: the tensors alive, as a GPU would hold
    them, without the pages of a memory-mapped weights file (see `owned`). A phase met again keeps its highest."""

    def __init__(self):
        import threading

        self.current, self.peaks, self.own = "load", {}, {}
        self.libraries = self._status("RssFile:")
        self._reset()
        self._lock = threading.Lock()
        threading.Thread(target=self._sample, daemon=True).start()

    @staticmethod
    def _status(field: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no {field} in /proc/self/status")

    @staticmethod
    def _reset() -> None:
        Path("/proc/self/clear_refs").write_text("5")

    def _sample(self) -> None:
        while True:
            anon = self._status("RssAnon:")
            with self._lock:
                self.own[self.current] = max(self.own.get(self.current, 0), anon + self.libraries)
            time.sleep(0.01)

    def enter(self, phase: str) -> str:
        with self._lock:
            before = self.current
            self.peaks[before] = max(self.peaks.get(before, 0), self._status("VmHWM:"))
            self.own[before] = max(self.own.get(before, 0), self._status("RssAnon:") + self.libraries)
            self.current = phase
            self._reset()
        return before

    def wrap(self, owner, name: str, phase: str, after: str | None = None, then=None) -> None:
        """Count the calls of `owner.name` as `phase`; `after`: the phase that follows (else the one before);
        `then(result, *args)`: run on the result, inside the phase."""
        inner = getattr(owner, name)

        def measured(*args, **kwargs):
            before = self.enter(phase)
            try:
                result = inner(*args, **kwargs)
                if then is not None:
                    then(result, *args)
                return result
            finally:
                self.enter(after or before)

        setattr(owner, name, measured)


def owned(*modules) -> None:
    """Copy the modules' weights into the process's own memory, as moving them to a GPU copies them there. Loaded
    from safetensors on the CPU, they are pages of the memory-mapped file, read in as they are first used and kept
    resident with the mapping (the channels-last copy of the UNet's convolutions then holds its weights twice:
    2.2 GB more for SD 1.5); copied, the file is let go and the resident set follows the tensors alive."""
    import gc

    for module in modules:
        if module is not None:
            module._apply(lambda t: t.clone())
    gc.collect()


def child(run_dir: Path, root: Path) -> None:
    """Train the run in `run_dir` in this process with the phases measured; print them as one JSON line."""
    import torch

    from studio.settings import Settings
    from studio.train import export, latents, loop, sampling, start, watch
    from studio.train.config import RunConfig
    from studio.train.runlog import RunLog

    torch.set_num_threads(2)
    meter = PhaseMeter()
    meter.wrap(start, "load_parts", "load", after="caching",
               then=lambda parts, *_: owned(*[m for m in parts.pipe.components.values()
                                              if isinstance(m, torch.nn.Module)]))
    meter.wrap(start, "load_denoiser", "load", after="steps", then=lambda _, store, parts, *rest: owned(parts.denoiser))
    meter.wrap(latents.Latents, "fill", "caching")
    meter.wrap(latents.TextEmbeddings, "fill", "caching")
    meter.wrap(start, "remember_prompts", "caching")
    meter.wrap(sampling, "_generate", "validation")
    meter.wrap(export, "export_final", "export")
    meter.wrap(watch.RunWatch, "begin", "steps", after="steps")  # the base's loss: the first forward passes
    original_status = RunLog.status

    def status(self, state, message="", **fields):  # the loop says "running" just before the first step
        if state == "running" and meter.current == "caching":
            meter.enter("steps")
        return original_status(self, state, message, **fields)

    RunLog.status = status
    settings = Settings(root=root, models_dir=root / "models", allow_downloads=False, device="cpu")
    from studio.models import ModelStore

    config = RunConfig.load(run_dir / "run.json").check()
    log = RunLog(run_dir)
    started = time.perf_counter()
    try:
        loop.train(ModelStore(settings), settings, config, run_dir, log=log, should_stop=lambda: False)
    finally:
        log.close()
    meter.enter("done")
    print(json.dumps({"peaks": meter.peaks, "own": meter.own, "s": round(time.perf_counter() - started, 1)}),
          flush=True)


# ---- the parent: build, run, compare ----------------------------------------------------------------------------

def build(folder: Path, args) -> None:
    """The part's model from the carried configs, random and seeded, as a diffusers folder."""
    import torch

    if args.part == "flux":
        from studio.models.families.flux1_builds import build_flux_at_real_widths

        build_flux_at_real_widths(folder, double=args.double, single=args.single, t5_layers=args.t5_layers)
        return
    from offline import _random_pipeline  # bench/offline.py: every carried component with random weights

    from studio.models.configs import variant_folder

    torch.manual_seed(0)
    dtype = torch.float32 if args.part == "sd15" else torch.bfloat16
    pipe = _random_pipeline(variant_folder(VARIANT[args.part]), dtype, args)
    pipe.save_pretrained(folder, safe_serialization=True)


def run_config(root: Path, model: Path, args):
    """A LoRA run on the model as `train` writes it: one picture at --size px, --steps steps, one validation prompt
    drawn in 2 steps before the first step and after the last, float32."""
    from PIL import Image
    from skimage import data as skdata

    from studio import fileio
    from studio.train.config import RunConfig

    dataset = root / "workspace" / "datasets" / "bench-photos"
    dataset.mkdir(parents=True, exist_ok=True)
    Image.fromarray(skdata.astronaut()).resize((args.size, args.size)).save(dataset / "000.png")
    (dataset / "000.txt").write_text("sks, a photo of a person")
    config = RunConfig(name="bench-lora", dataset="bench-photos", model=str(model), trigger="sks",
                       resolution=args.size, max_steps=args.steps, epochs=0, rank=4, alpha=4.0, lr=1e-3,
                       mixed_precision="no", gradient_checkpointing="on" if args.checkpointing else "off",
                       buckets=False, guard_loss_factor=0.0, validation_by="steps", validation_every=args.steps,
                       validation_steps=2, validation_prompts=["a photo of {trigger}"], device="cpu").check()
    folder = root / "workspace" / "runs" / "bench-lora"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    fileio.write_json(folder / "run.json", config.to_json())
    return config, folder


def part(args) -> None:
    from studio.models import families
    from studio.models.config_sizes import model_sizes
    from studio.train.config_checks import family_defaults
    from studio.train.plan import PHASES, plan_run

    root = args.root / args.part
    model = root / "model"
    print(f"# {args.part} at real size (variant {VARIANT[args.part]}), {args.size} px, {args.steps} step(s), "
          f"checkpointing {'on' if args.checkpointing else 'off'}, load average {os.getloadavg()[0]:.1f}", flush=True)
    if not (model / "model_index.json").is_file():
        shutil.rmtree(root, ignore_errors=True)
        model.mkdir(parents=True)
        done = subprocess.run(["nice", "-n", "5", sys.executable, __file__, "--build", args.part, "--root",
                               str(args.root), "--double", str(args.double), "--single", str(args.single),
                               "--t5-layers", str(args.t5_layers)], env={**os.environ, **ENV})
        if done.returncode:
            raise SystemExit("the build failed")
    config, folder = run_config(root, model, args)
    log = root / "child.log"
    with open(log, "w") as out:
        done = subprocess.run(["nice", "-n", "5", sys.executable, __file__, "--child", str(folder), "--root",
                               str(root)], env={**os.environ, **ENV}, stdout=subprocess.PIPE, stderr=out, text=True)
    if done.returncode:
        print(log.read_text()[-3000:])
        raise SystemExit("the training child failed")
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    family = families.get({"sd15": "sd1", "sdxl": "sdxl", "flux": "flux"}[args.part])
    plan = plan_run(model_sizes(model, family), family, family_defaults(config, family), device_kind="cpu",
                    model=str(model))
    print("| phase | plan (CPU) | measured: tensors and process | plan / measured | peak RSS |\n"
          "|---|---:|---:|---:|---:|")
    rows = []
    for name in PHASES:
        if name not in measured["peaks"]:
            continue
        planned = plan.phase(name).gb if any(p.name == name for p in plan.phases) else float("nan")
        own, rss = measured["own"][name] / 2**30, measured["peaks"][name] / 2**30
        rows.append({"phase": name, "plan_gb": round(planned, 2), "own_gb": round(own, 2), "rss_gb": round(rss, 2),
                     "ratio": round(planned / own, 3)})
        print(f"| {name} | {planned:.2f} GB | {own:.2f} GB | {planned / own:.2f} | {rss:.2f} GB |")
    print("\n".join(plan.lines()))
    print(json.dumps({"part": args.part, "rows": rows, "child_s": measured["s"]}), flush=True)


def presets() -> None:
    """The plan at real sizes of every GPU-tier preset on its own GPU size."""
    from studio.devices import planned_gpu
    from studio.models import families
    from studio.models.configs import variant_folder
    from studio.models.config_sizes import model_sizes
    from studio.train.config import RunConfig
    from studio.train.config_checks import family_defaults
    from studio.train.fit import Model, _plan, _tier, decide_defaults
    from studio.train.presets import PRESETS

    print("| preset | model | px | peak (phase) | steps | GPU | target | fits |\n|---|---|---:|---|---:|---:|---:|---|")
    for family_name, variants in REAL.items():
        family = families.get(family_name)
        for variant in variants:
            sizes = model_sizes(variant_folder(variant), family)
            model = Model(variant, family, sizes)
            for key in family.gpu_presets_for(sizes.denoiser_config):
                gpu = planned_gpu(_tier(key))
                config = family_defaults(replace(RunConfig(name="x", dataset="x", model=variant),
                                                 **PRESETS[key]), family)
                config = decide_defaults(model, config, gpu)[0]
                plan = _plan(model, config, gpu)
                peak, target = plan.peak, TARGETS.get(key)
                ok = peak.gb <= (target or gpu.memory_gb)
                print(f"| {key} | {variant} | {config.resolution} | {peak.gb:.1f} GB ({peak.name}) | "
                      f"{plan.phase('steps').gb:.1f} GB | {gpu.memory_gb:g} GB | "
                      f"{f'<= {target:g} GB' if target else '-'} | {'yes' if ok else 'NO'} |", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=tuple(VARIANT))
    parser.add_argument("--calibrate", choices=("sd15", "sdxl", "flux", "process"))
    parser.add_argument("--presets", action="store_true")
    parser.add_argument("--root", type=Path, default=REPO / "bench" / "out" / "realsize")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--checkpointing", action="store_true", help="train with gradient checkpointing")
    parser.add_argument("--double", type=int, default=2, help="FLUX.1 double-stream blocks (the real one: 19)")
    parser.add_argument("--single", type=int, default=2, help="FLUX.1 single-stream blocks (the real one: 38)")
    parser.add_argument("--t5-layers", type=int, default=2, help="T5-XXL layers (the real one: 24)")
    parser.add_argument("--build", choices=tuple(VARIANT), help=argparse.SUPPRESS)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build:
        args.part = args.build
        build(args.root / args.build / "model", args)
    elif args.child:
        child(args.child, args.root)
    elif args.calibrate:
        done = subprocess.run(["nice", "-n", "5", sys.executable, str(REPO / "bench" / "realsize_calibrate.py"),
                               args.calibrate], env={**os.environ, **ENV})
        return done.returncode
    elif args.presets:
        presets()
    elif args.part:
        part(args)
    else:
        parser.error("give --part, --calibrate or --presets")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
