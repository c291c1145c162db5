"""What a family tells the memory plan (studio/train/plan.py, studio/train/fit.py): its parameter counts, the
variant a hub id is planned with, its GPU-tier presets and the measured activation figures; a mixin of
ModelFamily (base.py), each family overriding what it measured."""

from __future__ import annotations

from pathlib import Path


class MemoryFacts:
    """The memory plan's facts and figures of a model family (ModelFamily mixes them in)."""

    # What a memory plan needs, measured on the meta device from the carried configs of each variant's real repo
    # (studio/models/configs/<variant>/): variant -> component -> parameter count.
    parameter_counts: dict = {}
    # The carried configs (studio/models/configs/<variant>/) a hub id not downloaded yet is planned with.
    default_variant: str = ""
    # The GPU-tier presets made for the family (studio/train/presets.py), smallest GPU first: what a run that does
    # not fit is pointed to.
    gpu_presets: tuple[str, ...] = ()
    # The VAE's working set, in float32 elements per picture pixel per channel of its widest level (128 for SD's and
    # FLUX.1's VAE), no gradients: measured on SD 1.5's VAE at 512 px (bench/realsize_calibrate.py sd15: encoding
    # 0.63 GB, decoding 0.95 GB). Decoding keeps more: its widest level runs at full size with more layers.
    vae_encode_elements: float = 5.0
    vae_decode_elements: float = 7.6

    def planned_variant(self, repo_id: str) -> str:
        """Which carried configs a hub id not downloaded yet is planned with."""
        return self.default_variant

    def gpu_presets_for(self, denoiser_config: dict) -> tuple[str, ...]:
        """The GPU-tier presets made for a model of this family with this denoiser (a family of several sizes
        names each size's own)."""
        return self.gpu_presets

    def activation_elements(self, denoiser_config: dict, *, side: int, text_tokens: int,
                            checkpointing: bool) -> float:
        """Elements (float32 ones; the plan scales them for mixed precision) one picture of `side` px adds at the
        peak of a training step: what the forward pass keeps for the backward pass, and the backward pass's own
        working set. Measured at real sizes on the CPU (bench/realsize.py --calibrate)."""
        raise NotImplementedError

    def inference_elements(self, denoiser_config: dict, *, side: int, text_tokens: int) -> float:
        """Elements one picture of `side` px holds while the denoiser runs without gradients (validation, class
        images): its working set."""
        raise NotImplementedError

    def vae_elements(self, vae_config: dict, *, side: int, decode: bool) -> float:
        """Elements the VAE holds encoding (or decoding) one picture of `side` px."""
        widths = vae_config.get("block_out_channels") or [vae_config.get("base_dim", 128)]
        per = self.vae_decode_elements if decode else self.vae_encode_elements
        return per * widths[0] * side * side

    def text_tokens(self, config) -> int:
        """Text tokens per caption the denoiser attends to in a run of `config` (77 for CLIP's)."""
        return 77


def count_parameters(folder: Path) -> dict[str, int]:
    """Parameter counts of a diffusers pipeline folder's weighted components, built from their configs on the meta
    device (no memory, no weights): component -> count. Checks ModelFamily.parameter_counts against the carried
    configs of each family's real repos."""
    import json

    import diffusers
    import torch
    import transformers

    index = json.loads((Path(folder) / "model_index.json").read_text())
    counts = {}
    for component, spec in index.items():
        if not isinstance(spec, list) or spec[0] not in ("diffusers", "transformers"):
            continue
        library, class_name = spec
        cls = getattr(diffusers if library == "diffusers" else transformers, class_name)
        if not issubclass(cls, torch.nn.Module):
            continue  # a scheduler or tokenizer: no weights
        with torch.device("meta"):
            if library == "diffusers":
                model = cls.from_config(cls.load_config(str(folder), subfolder=component))
            else:
                config = transformers.AutoConfig.from_pretrained(str(folder), subfolder=component)
                model = cls._from_config(config)
        counts[component] = sum(p.numel() for p in model.parameters())
    return counts
