"""What a model's parts weigh, told from their configs on the meta device (no weights, no memory, about a second for
a 12 B transformer): parameters per component, how many of them sit in linear layers (what fp8, int8 and nf4 store
small), a LoRA's parameters per unit of rank for each choice of layers, and the sizes of the denoiser's blocks a block
swap moves. The memory plan (studio/train/plan.py) is made from these."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

LORA_LAYER_CHOICES = ("attention", "transformer", "all")  # RunConfig.lora_layers (studio.train.choices)


@dataclass(frozen=True)
class ComponentSize:
    params: int
    linear: int  # parameters of nn.Linear weights: what a weight-only quantization stores small
    largest: int = 0  # the largest single tensor's parameters (a transient copy while it moves or casts)


@dataclass(frozen=True)
class ModelSizes:
    """A pipeline's parts by the pipeline attribute that holds them."""

    folder: str
    components: dict[str, ComponentSize]
    denoiser: str  # the attribute of the denoiser (unet, transformer)
    text_encoders: tuple[str, ...]
    denoiser_config: dict
    vae_config: dict
    lora_per_rank: dict[str, int]  # lora_layers -> the denoiser LoRA's parameters per unit of rank
    text_lora_per_rank: dict[str, int]  # lora_layers -> the text encoders' LoRA parameters per unit of rank
    blocks: tuple[int, ...] = ()  # parameters of each block a block swap may keep on the CPU, in order
    embedding_rows: dict[str, tuple[int, int]] = field(default_factory=dict)  # text encoder -> its token table

    def params(self, name: str) -> int:
        return self.components[name].params if name in self.components else 0


def model_sizes(folder: Path, family) -> ModelSizes:
    """The sizes of the diffusers pipeline (or weightless config folder) at `folder`, for `family`; cached per folder
    and its model_index.json's time."""
    index = Path(folder) / "model_index.json"
    return _sizes(str(Path(folder).resolve()), index.stat().st_mtime_ns, family)


@lru_cache(maxsize=16)
def _sizes(folder: str, _mtime: int, family) -> ModelSizes:
    import torch

    index = json.loads((Path(folder) / "model_index.json").read_text())
    components, modules, configs = {}, {}, {}
    for name, spec in index.items():
        if not isinstance(spec, list) or spec[0] not in ("diffusers", "transformers"):
            continue
        module, config = _on_meta(Path(folder), name, *spec)
        if module is None:
            continue  # a scheduler or tokenizer: no weights
        modules[name], configs[name] = module, config
        tensors = [p.numel() for p in module.parameters()]
        linear = sum(m.weight.numel() for m in module.modules() if isinstance(m, torch.nn.Linear))
        components[name] = ComponentSize(sum(tensors), linear, max(tensors, default=0))
    denoiser = family.denoiser_name
    texts = tuple(n for n in family.text_encoder_names if n in modules)
    lora = {layers: _lora_per_rank(modules[denoiser], family.lora_targets(layers).denoiser)
            for layers in LORA_LAYER_CHOICES} if denoiser in modules else {}
    text_lora = {}
    for layers in LORA_LAYER_CHOICES:
        target = family.lora_targets(layers).text
        text_lora[layers] = sum(_lora_per_rank(modules[n], target) for n in texts) if target is not None else 0
    blocks = tuple(sum(p.numel() for p in block.parameters())
                   for name in family.block_lists for block in getattr(modules.get(denoiser), name, ()))
    tables = {}
    for n in texts:
        embeddings = modules[n].get_input_embeddings()
        tables[n] = tuple(embeddings.weight.shape)
    return ModelSizes(folder, components, denoiser, texts, dict(configs.get(denoiser) or {}),
                      dict(configs.get("vae") or {}), lora, text_lora, blocks, tables)


def _on_meta(folder: Path, name: str, library: str, class_name: str):
    """Component `name` built from its config on the meta device (None when the class holds no weights), and its
    config as a dict."""
    import diffusers
    import torch
    import transformers

    cls = getattr(diffusers if library == "diffusers" else transformers, class_name, None)
    if cls is None or not isinstance(cls, type) or not issubclass(cls, torch.nn.Module):
        return None, None
    with torch.device("meta"):
        if library == "diffusers":
            config = cls.load_config(str(folder), subfolder=name)
            return cls.from_config(config), dict(config)
        config = transformers.AutoConfig.from_pretrained(str(folder), subfolder=name)
        return cls._from_config(config), config.to_dict()


def _lora_per_rank(module, target) -> int:
    """Parameters a LoRA of rank 1 adds on `module`'s layers that `target` names (peft's rule: a regex matched
    against the whole module name, or a list of name endings): (in + out) per linear layer, (in x kernel + out) per
    convolution."""
    import torch

    if target is None:
        return 0
    total = 0
    for name, layer in module.named_modules():
        if isinstance(target, str):
            hit = re.fullmatch(target, name) is not None
        else:
            hit = any(name == t or name.endswith("." + t) for t in target)
        if not hit:
            continue
        if isinstance(layer, torch.nn.Linear):
            total += layer.in_features + layer.out_features
        elif isinstance(layer, torch.nn.Conv2d):
            kh, kw = layer.kernel_size
            total += layer.in_channels * kh * kw + layer.out_channels
    return total
