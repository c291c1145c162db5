"""Benchmark: FLUX.1's frozen transformer stored as the LoRA presets store it, against bf16.

    .venv/bin/python bench/flux.py [--double 1] [--single 1] [--steps 3] [--device cpu]

Each variant runs in its own process (so peak RSS is its own): it builds FLUX.1's transformer at its real widths
(hidden 3072 = 24 heads x 128, T5 4096, CLIP 768, 64 packed latent channels) with `--double` double-stream and
`--single` single-stream blocks from the config (random weights, no download), stores it as the training loop does
(`ModelLoading.store_frozen`: bf16; fp8 or int8 weight-only through torchao), adds the studio's FLUX LoRA
(rank 16 on every linear layer of every block, as the flux-* presets) and runs LoRA training steps (forward,
backward, AdamW) on a 512 px picture's worth of packed tokens (1024) and 128 T5 tokens.

It prints, for each variant: the bytes of the stored weights, the process's peak RSS during the steps (reset after
the model is built and stored: Linux's clear_refs), seconds per step, and each
as a ratio to bf16 measured in the same command. The real FLUX.1 has 19 + 38 blocks; the stored-bytes ratio
carries over (the blocks are nearly all of it), the absolute figures are for this cut-down transformer. fp8
weight-only on a CPU depends on what torchao supports there: a variant that the library cannot run says so.
On a GPU (--device cuda) the peak is torch.cuda.max_memory_allocated instead of RSS.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
VARIANTS = ("bf16", "int8", "fp8")


def one_variant(precision: str, double: int, single: int, steps: int, device: str) -> dict:
    import gc

    import torch
    from diffusers import FluxTransformer2DModel
    from peft import LoraConfig

    from studio.cache import module_bytes
    from studio.models.loaders import ModelLoading
    from studio.train.methods import FLUX_LORA_TARGETS

    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)  # built as a bf16 checkpoint loads: no float32 copy to leave pages behind
    model = FluxTransformer2DModel(num_layers=double, num_single_layers=single, guidance_embeds=True).to(device)
    torch.set_default_dtype(torch.float32)
    model.requires_grad_(False)
    ModelLoading.store_frozen(model, precision, device)
    stored = module_bytes(model)
    gc.collect()
    _reset_peak(device)  # the peak from here on: what training holds, not the float32 build before storing
    model.add_adapter(LoraConfig(r=16, lora_alpha=16, init_lora_weights="gaussian",
                                 target_modules=FLUX_LORA_TARGETS["transformer"]))
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=1e-4)
    tokens, text = 1024, 128  # 512 px: 64 x 64 latents packed 2 x 2; T5 prompt length
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
    return {"precision": precision, "stored_bytes": stored, "peak_bytes": _peak(device),
            "params": sum(p.numel() for p in model.parameters() if not p.requires_grad),
            "lora_params": sum(p.numel() for p in trained), "loss": float(loss),
            # the first step warms up (allocations, kernel choice): the others are what a run sees
            "s_per_step": sum(seconds[1:]) / max(1, len(seconds) - 1)}


def _reset_peak(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: VmHWM (peak RSS) starts again from the current RSS


def _peak(device: str) -> int:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated()
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--double", type=int, default=1)
    parser.add_argument("--single", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(one_variant(args.variant, args.double, args.single, args.steps, args.device)))
        return

    results = {}
    for variant in VARIANTS:
        cmd = [sys.executable, __file__, "--variant", variant, "--double", str(args.double), "--single",
               str(args.single), "--steps", str(args.steps), "--device", args.device]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
            print(f"{variant}: could not run here: {last[:200]}")
            continue
        results[variant] = json.loads(done.stdout.strip().splitlines()[-1])
    base = results.get("bf16")
    if base is None:
        print("bf16 did not run: no baseline to compare with")
        return
    print(f"FLUX.1 transformer at real widths, {args.double} double + {args.single} single blocks: "
          f"{base['params'] / 1e6:.0f} M frozen parameters, {base['lora_params'] / 1e6:.1f} M LoRA parameters "
          f"(rank 16, every linear layer), 1024 image + 128 text tokens, {args.device}")
    print(f"{'stored as':10} {'weights MB':>11} {'ratio':>6} {'peak MB':>9} {'ratio':>6} {'s/step':>8} {'ratio':>6}")
    for variant, r in results.items():
        print(f"{variant:10} {r['stored_bytes'] / 2**20:11.0f} {r['stored_bytes'] / base['stored_bytes']:6.2f} "
              f"{r['peak_bytes'] / 2**20:9.0f} {r['peak_bytes'] / base['peak_bytes']:6.2f} "
              f"{r['s_per_step']:8.2f} {r['s_per_step'] / base['s_per_step']:6.2f}")


if __name__ == "__main__":
    main()
