"""Every GPU-size training preset at its real size on a lent GPU, printed as one table: peak VRAM (torch's allocator
and nvidia-smi) and it/s of a few LoRA steps. Run by bench/gpu.sh (which installs the carried wheels first).

Each preset's denoiser is built from its variant's carried config (studio/models/configs/<variant>/) with random
weights straight on the GPU (FLUX.1's 12 B in seconds: no download, no file), in the dtype the training load reads it
in (studio.train.parts.part_dtypes), stored as the preset says (ModelLoading.store_frozen: bf16, fp8 or int8 through
torchao; nf4 through bitsandbytes, as its loader quantizes), with the preset's LoRA (rank, layers), gradient
checkpointing, block swapping (studio.train.swap) and optimizer (8-bit AdamW through studio.train.setup), and trained
for a few steps of the family's own objective on random latents and text states of the real shapes at the preset's
resolution. The text encoders are not built: a staged run encodes the captions and lets them go before the denoiser
loads, so the steps' peak is the denoiser's (the load's and the encoding's peaks are the memory plan's, bench/
realsize.py). Quantizing happens on the GPU here (the studio does it on the CPU before placing: same bytes after).

    python bench/gpu_presets.py [--dry] [--steps N] [--presets a,b,...] [--budget-s S]

--dry (on the CPU): every preset's real-size denoiser on the meta device (no memory, no time for weights): its
config, the LoRA on its targets, a forward and backward of the family's objective at the real shapes. What needs
the GPU (weights, quantization, block swapping, the optimizer's step, the measurements) is left out and said.
A preset not defined (yet) is skipped with a line saying so; past --budget-s the rest are skipped, and said, so the
table always prints within the lease.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# The presets by GPU size, in the order they are measured (the issue's nine, then the 2026 families').
PRESETS = ("sd15-8gb", "sd15-12gb", "sdxl-12gb", "sdxl-16gb", "sdxl-24gb", "flux-8gb", "flux-12gb", "flux-16gb",
           "flux-24gb", "zimage-12gb", "zimage-16gb", "zimage-24gb", "flux2-klein-10gb", "flux2-klein-16gb",
           "flux2-klein9b-16gb", "flux2-klein9b-24gb", "qwenimage-24gb", "qwenimage-48gb")
# The carried variant a preset trains on (by its name without the GPU size), and what a step feeds its denoiser at
# real size: latent channels, text tokens and width (the text encoders' states as the family stacks them: SDXL's two
# CLIPs side by side, FLUX.2's three Qwen3 layers), the pooled text vector's width.
VARIANTS = {"sd15": "sd15", "sdxl": "sdxl-base", "flux": "flux1-dev", "zimage": "zimage-base",
            "flux2-klein": "flux2-klein-4b", "flux2-klein9b": "flux2-klein-9b", "qwenimage": "qwen-image"}
STEP_SHAPES = {"sd15": (4, 77, 768, None), "sdxl-base": (4, 77, 2048, 1280), "flux1-dev": (16, 512, 4096, 768),
               "zimage-base": (16, 128, 2560, None), "flux2-klein-4b": (32, 512, 7680, None),
               "flux2-klein-9b": (32, 512, 12288, None), "qwen-image": (16, 128, 3584, None)}
GB = 10**9


@dataclass
class Row:
    preset: str
    variant: str = ""
    resolution: int = 0
    stored: str = ""
    swapped: int = 0
    optimizer: str = ""
    held_gb: float | None = None  # what the GPU holds between steps (weights, LoRA, optimizer state)
    peak_gb: float | None = None  # torch.cuda.max_memory_allocated during the steps
    smi_gb: float | None = None  # nvidia-smi's memory.used at its highest during the steps (context and cache too)
    it_s: float | None = None
    note: str = ""


class _Log:
    """What the studio's loop would put in the run log, printed (8-bit AdamW's fallback, say)."""

    def __init__(self, row: Row):
        self.row = row

    def event(self, kind: str, **fields) -> None:
        self.row.note = "; ".join(filter(None, [self.row.note, fields.get("text", "")]))


def main() -> int:
    args = _arguments()
    device = "meta" if args.dry else "cuda"
    started = time.monotonic()
    rows = []
    for name in args.presets.split(","):
        if time.monotonic() - started > args.budget_s:
            rows.append(Row(name, note=f"skipped: past the {args.budget_s:.0f} s budget"))
            continue
        row = Row(name)
        rows.append(row)
        try:
            measure(name, row, device, args.steps)
        except _Skip as e:
            row.note = str(e)
        finally:
            _free()
        print(f"[{time.monotonic() - started:5.0f} s] {_line(row)}", flush=True)
    print()
    print(_table(rows, device))
    return 0


class _Skip(Exception):
    pass


def measure(name: str, row: Row, device: str, steps: int) -> None:
    """One preset: build, store, LoRA, swap, optimizer; `steps` timed steps after one to warm up (the GPU's)."""
    import torch

    from studio.models import families
    from studio.models.configs import variant_folder
    from studio.train.config import RunConfig
    from studio.train.config_checks import family_defaults
    from studio.train.parts import part_dtypes
    from studio.train import presets as table

    # 1. The preset and the model it trains (a preset not defined yet is said, not failed)
    if name not in table.PRESETS:
        raise _Skip(f"skipped: no preset {name!r} in studio/train/presets.py")
    variant = VARIANTS[name.rsplit("-", 1)[0]]
    folder = variant_folder(variant)
    index = json.loads((folder / "model_index.json").read_text())
    family = families.from_index(index, folder)
    config = family_defaults(table.apply_preset(RunConfig(name="bench", dataset="bench"), name), family)
    swap = getattr(config, "blocks_to_swap", 0)
    row.variant, row.resolution, row.stored, row.swapped = variant, config.resolution, config.base_precision, swap
    row.optimizer = config.optimizer
    # (on the meta device in float32: shapes do not depend on it, and there is no autocast to mix dtypes there)
    dtype = part_dtypes(config, family, device).denoiser if device != "meta" else torch.float32

    # 2. The denoiser at its real config, random weights made where it runs, stored as the preset says
    _reset(device)
    model = _build(index, folder, family.denoiser_name, dtype, device)
    if device != "meta":
        _finite(model)
        _store(model, family, config.base_precision, device)

    # 3. What the training loop does (loop.py step 4): the LoRA in float32, checkpointing, block swapping
    from diffusers.training_utils import cast_training_params
    from peft import LoraConfig

    torch.manual_seed(0)
    model.add_adapter(LoraConfig(r=config.rank, lora_alpha=config.alpha, init_lora_weights="gaussian",
                                 target_modules=family.lora_targets(config.lora_layers).denoiser))
    cast_training_params(model, torch.float32)
    if config.gradient_checkpointing == "on":
        model.enable_gradient_checkpointing()
    if swap and device != "meta":
        from studio.models.loaders import last_blocks
        from studio.train.swap import BlockSwap

        BlockSwap(last_blocks(family, model, swap), device)
    model.train()
    trained = [p for p in model.parameters() if p.requires_grad]

    # 4. The optimizer (8-bit AdamW where bitsandbytes is here), the objective and one step's inputs
    from studio.train.parts import Parts
    from studio.train.setup import make_optimizer

    optimizer = None if device == "meta" else make_optimizer([{"params": trained, "lr": 1e-4}], config, device,
                                                             _Log(row))
    parts = Parts("bench", family, _pipe(index, folder, family, model))
    objective = family.objective(parts, config)
    batch = _inputs(variant, config, device)
    half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.mixed_precision)

    def autocast():
        return torch.autocast("cuda", dtype=half) if half is not None and device != "meta" else nullcontext()

    def step(i: int) -> None:
        generator = torch.Generator().manual_seed(i)
        error, weight = objective.loss_map(model, batch.latents, batch.cond, batch.sizes, batch.target, generator,
                                           autocast)
        (error.mean(dim=(1, 2, 3)) * weight).mean().backward()
        if optimizer is not None:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    if device == "meta":
        step(0)
        row.note = "; ".join(filter(None, [row.note, f"shapes checked on the meta device ({len(trained):,} LoRA "
                                                     f"tensors); weights, storing, swapping and timing need the GPU"]))
        return

    # 5. Measured: one step to warm up, then `steps`, with nvidia-smi read beside them
    step(0)
    torch.cuda.synchronize()
    row.held_gb = torch.cuda.memory_allocated() / GB
    torch.cuda.reset_peak_memory_stats()
    smi = _SmiPeak()
    begun = time.perf_counter()
    for i in range(1, steps + 1):
        step(i)
    torch.cuda.synchronize()
    row.it_s = steps / (time.perf_counter() - begun)
    row.peak_gb = torch.cuda.max_memory_allocated() / GB
    row.smi_gb = smi.stop() / GB


def _build(index: dict, folder: Path, name: str, dtype, device: str):
    """The pipeline part `name` built from its config on `device` in `dtype`, its random init done there."""
    import diffusers
    import torch

    cls = getattr(diffusers, index[name][1])
    config = cls.load_config(str(folder), subfolder=name)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # made in the dtype it is read in: no float32 copy on the way
    try:
        with torch.device(device):
            return cls.from_config(config).eval()
    finally:
        torch.set_default_dtype(default)


def _finite(model) -> None:
    """Weights a module leaves as torch.empty (pad tokens) drawn instead: memory's leftovers may be NaN."""
    import torch

    with torch.no_grad():
        for p in model.parameters():
            if not torch.isfinite(p).all():
                p.normal_(0.0, 0.02)


def _store(model, family, precision: str, device: str) -> None:
    """bf16, fp8, int8 as the studio's store stores a frozen denoiser; nf4 as diffusers' bitsandbytes loader does
    (every Linear of the blocks as a 4-bit NormalFloat Linear4bit computing in bf16)."""
    from studio.models.loaders import ModelLoading

    if precision != "nf4":
        ModelLoading.store_frozen(model, precision, device)
        return
    try:
        import bitsandbytes as bnb
    except ImportError as e:
        raise _Skip("skipped: nf4 needs bitsandbytes, not installed on this machine (carry its wheel: "
                    "bench/gpu_wheels.sh --with-bitsandbytes)") from e
    import torch

    for block in family.blocks(model):
        for parent in list(block.modules()):
            for child_name, child in list(parent.named_children()):
                if type(child) is torch.nn.Linear:
                    small = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                              compute_dtype=torch.bfloat16, quant_type="nf4", device="meta")
                    small.weight = bnb.nn.Params4bit(child.weight.data, requires_grad=False,
                                                     quant_type="nf4").to(device)
                    if child.bias is not None:
                        small.bias = torch.nn.Parameter(child.bias.data, requires_grad=False)
                    setattr(parent, child_name, small)
    model.studio_precision = "nf4"


def _pipe(index: dict, folder: Path, family, model):
    """What the family's objective reads of a pipeline: its scheduler, its VAE's config, the denoiser."""
    import diffusers

    scheduler = getattr(diffusers, index["scheduler"][1]).from_pretrained(str(folder), subfolder="scheduler")
    vae = getattr(diffusers, index["vae"][1]).load_config(str(folder), subfolder="vae")
    return SimpleNamespace(scheduler=scheduler, vae=SimpleNamespace(config=SimpleNamespace(**vae)),
                           **{family.denoiser_name: model})


def _inputs(variant: str, config, device: str):
    """One micro-batch at the preset's resolution: latents (B, C, side/8, side/8) as the VAE makes them, the
    captions' states, SDXL's size conditioning."""
    import torch

    from studio.models.families.base import Conditioning

    channels, tokens, width, pooled = STEP_SHAPES[variant]
    b, side = config.batch_size, config.resolution // 8
    latents = torch.randn(b, channels, side, side).to(device)
    cond = Conditioning(torch.randn(b, tokens, width).to(device) * 0.1,
                        None if pooled is None else torch.randn(b, pooled).to(device) * 0.1)
    return SimpleNamespace(latents=latents, cond=cond, sizes=[(config.resolution,) * 2 + (0, 0)] * b,
                           target=(config.resolution, config.resolution))


class _SmiPeak:
    """nvidia-smi's memory.used, read every 0.2 s on a thread until stop(): its highest, in bytes."""

    def __init__(self):
        self.peak, self.running = 0, True
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while self.running:
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits",
                                      "--id=0"], capture_output=True, text=True, timeout=5).stdout
                self.peak = max(self.peak, int(out.strip().splitlines()[0]) * 2**20)
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                return  # no nvidia-smi: the column stays empty
            time.sleep(0.2)

    def stop(self) -> int:
        self.running = False
        self.thread.join()
        return self.peak


def _reset(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _free() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _line(row: Row) -> str:
    if row.peak_gb is None:
        return f"{row.preset}: {row.note}"
    return (f"{row.preset}: peak {row.peak_gb:.2f} GB allocated, {row.smi_gb or 0:.2f} GB nvidia-smi, "
            f"{row.it_s:.2f} it/s" + (f" ({row.note})" if row.note else ""))


def _table(rows: list[Row], device: str) -> str:
    """A markdown table, one row a preset (docs/ takes it as printed)."""
    import torch

    where = "the meta device (--dry)" if device == "meta" else torch.cuda.get_device_name(0)
    out = [f"On {where}, {time.strftime('%Y-%m-%d')}: LoRA steps at real size (weights random, made on the GPU).",
           "", "| preset | variant | px | base stored | blocks on CPU | optimizer | held between steps GB | peak GB "
               "(allocator) | peak GB (nvidia-smi) | it/s | note |", "|" + "---|" * 11]
    for r in rows:
        def number(x, fmt="{:.2f}"):
            return "" if x is None else fmt.format(x)

        out.append(f"| {r.preset} | {r.variant} | {r.resolution or ''} | {r.stored} | {r.swapped or ''} | "
                   f"{r.optimizer} | {number(r.held_gb)} | {number(r.peak_gb)} | {number(r.smi_gb)} | "
                   f"{number(r.it_s)} | {r.note} |")
    return "\n".join(out)


def _arguments():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry", action="store_true", help="on the CPU: shapes on the meta device, no GPU parts")
    parser.add_argument("--steps", type=int, default=2, help="timed steps a preset, after one to warm up")
    parser.add_argument("--presets", default=",".join(PRESETS), help="comma-separated preset names")
    parser.add_argument("--budget-s", type=float, default=420.0, help="skip the presets left after this long")
    args = parser.parse_args()
    if not args.dry:
        import torch

        if not torch.cuda.is_available():
            parser.error("no CUDA GPU here: run with --dry on the CPU")
    return args


if __name__ == "__main__":
    sys.exit(main())
