"""What bench/realsize.py --calibrate measures: the activation memory of one training step, one inference step and
the VAE, on the real configs with random weights in float32, each operation measured alone in this process (the peak
resident set reset through /proc/self/clear_refs before it, the resident set before it subtracted). The constants the
family modules carry (ModelFamily.activations and friends) are these figures divided by what they scale with.

    .venv/bin/python bench/realsize_calibrate.py sd15|sdxl|flux|process     (bench/realsize.py runs it as a child)

Prints one JSON line per measurement: what, the picture side, the bytes above what the process held before.
"""

from __future__ import annotations

import ctypes
import gc
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

_LIBC = ctypes.CDLL("libc.so.6")


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def settled() -> int:
    """Bytes resident once the garbage is collected and glibc gave back what it keeps."""
    gc.collect()
    _LIBC.malloc_trim(0)
    return _status_kb("VmRSS:") * 1024


def measured(what: str, side: int, fn, **facts) -> int:
    """Run `fn` and print the peak bytes it added above what was resident before it."""
    before = settled()
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM starts again from the current resident set
    started = time.perf_counter()
    fn()
    added = _status_kb("VmHWM:") * 1024 - before
    print(json.dumps({"what": what, "side": side, "added_bytes": added, "added_gb": round(added / 2**30, 3),
                      "s": round(time.perf_counter() - started, 1), **facts}), flush=True)
    settled()
    return added


def random_module(cls, config: dict):
    """A module of `cls` from `config` with random float32 weights, made without a float32 init pass (built on the
    meta device, then filled with small normal values: no denormals to slow the CPU down)."""
    import torch

    with torch.device("meta"):
        module = cls.from_config(config)
    module = module.to_empty(device="cpu")
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, 0.02)
        for b in module.buffers():
            if b.is_floating_point():
                b.normal_(0.0, 0.02)
    return module.requires_grad_(False)


def with_lora(module, family, layers: str = "attention"):
    from peft import LoraConfig

    module.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian",
                                  target_modules=family.lora_targets(layers).denoiser))
    return module


def train_step(module, call):
    """One forward and backward of `call(module)` (its output's mean square as the loss)."""
    def run():
        module.train()
        out = call(module)
        out.float().pow(2).mean().backward()
        for p in module.parameters():
            p.grad = None
    return run


def infer(module, call):
    import torch

    def run():
        module.eval()
        with torch.no_grad():
            call(module)
    return run


# ---- the parts ----------------------------------------------------------------------------------------------------

def unet(variant: str, family_name: str, sides: list[int]) -> None:
    import torch
    from diffusers import UNet2DConditionModel

    from studio.models import families
    from studio.models.configs import variant_folder

    family = families.get(family_name)
    config = UNet2DConditionModel.load_config(str(variant_folder(variant)), subfolder="unet")
    model = with_lora(random_module(UNet2DConditionModel, config), family)
    c0, width = config["block_out_channels"][0], config["cross_attention_dim"]

    def call_at(side: int, batch: int = 1):
        g = torch.Generator().manual_seed(0)
        kwargs = dict(sample=torch.randn(batch, 4, side // 8, side // 8, generator=g),
                      timestep=torch.tensor([500] * batch),
                      encoder_hidden_states=torch.randn(batch, 77, width, generator=g))
        if config.get("addition_embed_type") == "text_time":
            kwargs["added_cond_kwargs"] = {"text_embeds": torch.randn(batch, 1280, generator=g),
                                           "time_ids": torch.tensor([[side, side, 0, 0, side, side]] * batch,
                                                                    dtype=torch.float32)}
        return lambda m: m(**kwargs).sample

    facts = dict(part=variant, c0=c0)
    for side in sides:
        model.disable_gradient_checkpointing()
        measured("train", side, train_step(model, call_at(side)), **facts)
        model.enable_gradient_checkpointing()
        measured("train-checkpointed", side, train_step(model, call_at(side)), **facts)
    measured("inference-batch2", sides[-1], infer(model, call_at(sides[-1], 2)), **facts)


def vae(variant: str, side: int) -> None:
    import torch
    from diffusers import AutoencoderKL

    from studio.models.configs import variant_folder

    config = AutoencoderKL.load_config(str(variant_folder(variant)), subfolder="vae")
    model = random_module(AutoencoderKL, config)
    pixels = torch.randn(1, 3, side, side)
    latents = torch.randn(1, config["latent_channels"], side // 8, side // 8)
    facts = dict(part=f"{variant} vae", c0=config["block_out_channels"][0])
    measured("vae-encode", side, infer(model, lambda m: m.encode(pixels).latent_dist.mean), **facts)
    measured("vae-decode", side, infer(model, lambda m: m.decode(latents).sample), **facts)


def flux(side: int, text: int) -> None:
    import torch
    from diffusers import FluxTransformer2DModel

    from studio.models import families
    from studio.models.configs import variant_folder

    family = families.get("flux")
    base = dict(FluxTransformer2DModel.load_config(str(variant_folder("flux1-dev")), subfolder="transformer"))
    tokens = (side // 16) ** 2
    g = torch.Generator().manual_seed(0)
    inputs = dict(hidden_states=torch.randn(1, tokens, 64, generator=g),
                  encoder_hidden_states=torch.randn(1, text, 4096, generator=g),
                  pooled_projections=torch.randn(1, 768, generator=g), timestep=torch.tensor([0.5]),
                  guidance=torch.tensor([1.0]), img_ids=torch.zeros(tokens, 3), txt_ids=torch.zeros(text, 3))

    def call(m):
        return m(**inputs, return_dict=False)[0]

    for double, single, checkpointing in ((1, 1, False), (2, 1, False), (1, 2, False), (1, 1, True), (2, 2, True)):
        model = with_lora(random_module(FluxTransformer2DModel, {**base, "num_layers": double,
                                                                 "num_single_layers": single}), family)
        if checkpointing:
            model.enable_gradient_checkpointing()
        measured("train-checkpointed" if checkpointing else "train", side, train_step(model, call), part="flux1-dev",
                 double=double, single=single, tokens=tokens + text, width=3072)
        if (double, single, checkpointing) == (1, 1, False):
            measured("inference-batch1", side, infer(model, call), part="flux1-dev", double=double, single=single,
                     tokens=tokens + text, width=3072)
        del model
        settled()


def process() -> None:
    """What a training child holds before any model: python, torch, diffusers, transformers, peft, the studio."""
    import diffusers  # noqa: F401
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401

    from studio.train import loop  # noqa: F401

    print(json.dumps({"what": "process", "side": 0, "added_bytes": settled(), "added_gb": round(settled() / 2**30, 3)}),
          flush=True)


def main() -> int:
    import torch

    torch.set_num_threads(2)
    part = sys.argv[1]
    if part == "process":
        process()
    elif part == "sd15":
        unet("sd15", "sd1", [256, 512])
        vae("sd15", 512)
    elif part == "sdxl":
        unet("sdxl-base", "sdxl", [256, 512])
    elif part == "flux":
        flux(512, 512)
    else:
        raise SystemExit(f"unknown part {part!r}: sd15, sdxl, flux or process")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
