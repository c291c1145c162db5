"""Makes small real LoRA, textual-inversion and upscaler files for tests (random but seeded weights)."""

from __future__ import annotations

from pathlib import Path


def make_lora(studio, model_id: str, out: Path, seed: int, rank: int = 4) -> Path:
    """A diffusers-format LoRA on the UNet's attention layers of `model_id`, with seeded non-zero weights."""
    import torch
    from peft import LoraConfig, get_peft_model_state_dict

    ref = studio.store.resolve(model_id)
    pipe = studio.store.load_base(ref, dtype=torch.float32, device="cpu")
    pipe.unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in pipe.unet.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    out.parent.mkdir(parents=True, exist_ok=True)
    type(pipe).save_lora_weights(str(out.parent), unet_lora_layers=get_peft_model_state_dict(pipe.unet),
                                 weight_name=out.name, safe_serialization=True)
    return out


def make_embedding(out: Path, width: int, vectors: int = 1, seed: int = 0, sdxl_width2: int | None = None) -> Path:
    """An A1111-format embedding: `emb_params` (vectors, width); for SDXL `clip_l` and `clip_g`."""
    import torch
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(seed)
    if sdxl_width2 is None:
        state = {"emb_params": torch.randn(vectors, width, generator=gen)}
    else:
        state = {"clip_l": torch.randn(vectors, width, generator=gen),
                 "clip_g": torch.randn(vectors, sdxl_width2, generator=gen)}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out))
    return out


def make_upscaler(path: Path, kind: str = "compact", scale: int = 4, seed: int = 0):
    """A tiny random-weight upscaler spandrel recognises, saved as safetensors: Real-ESRGAN Compact (keys body.N,
    8 features, 20 kB) or ESRGAN/RRDBNet (keys model.N). Returns (path, the torch module)."""
    import torch
    from safetensors.torch import save_file
    from spandrel.architectures.Compact import Compact
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(seed)
    net = (Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=scale) if kind == "compact"
           else ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=scale))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path, net
