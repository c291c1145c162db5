"""The memory plan of a training run: what the device holds at the peak of each phase (load, caching, steps,
validation, export) for its model, method and knobs, counted from the real config's parameters (on the meta
device: studio/models/config_sizes.py) by dtype, the trained parameters with their gradients and optimizer states,
the activations (the family's measured figures) and the CUDA context. studio/train/fit.py says whether it fits and
what would.

The plan describes the load path as the studio runs it: frozen parts in the dtype they are kept in (never float32
first), a staged family's text encoders gone before its denoiser arrives, swapped blocks on the CPU."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field

from studio.train.config import RunConfig

GiB = 2**30
PHASES = ("load", "caching", "steps", "validation", "export")
# What a CUDA process holds on its card before any tensor: the context, cuBLAS's workspace, the caching allocator's
# first blocks (~0.3-0.5 GB as nvidia-smi shows it on recent cards and drivers).
CUDA_CONTEXT = int(0.45 * GiB)
# A training child on the CPU before any model (python, torch, diffusers, transformers, peft, the studio): what the
# plan adds in place of the CUDA context when the device is the CPU (measured: bench/realsize_calibrate.py process).
CPU_PROCESS = int(0.77 * GiB)
# Bytes per activation element. Under fp16/bf16 autocast, matmul and convolution outputs are half but norms, softmax
# statistics and losses stay float32: about 60% of float32's bytes (assumed from autocast's op lists, not measured:
# this CPU emulates bf16; bench/realsize.py's figures are float32).
ACTIVATION_BYTES = {"no": 4.0, "fp16": 2.4, "bf16": 2.4}
# Bytes per parameter of a frozen denoiser's linear weights stored small (the rest stays bf16): torchao's fp8 and
# int8 weight-only (a scale per row), bitsandbytes' nf4 (4 bits and a float32 absmax per 64).
STORED_BYTES = {"fp8": 1.0, "int8": 1.0, "nf4": 0.5625}
IN_FLIGHT_BLOCKS = 2  # a block swap moves the next block in while one computes


@dataclass
class Phase:
    """One phase's peak: what the device holds then, item by item (what, bytes)."""

    name: str
    items: list[tuple[str, int]] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(b for _, b in self.items)

    @property
    def gb(self) -> float:
        return self.bytes / GiB

    def line(self) -> str:
        parts = ", ".join(f"{what} {b / GiB:.2f}" for what, b in self.items if abs(b) >= 0.005 * GiB)
        return f"  {self.name:<11}{self.gb:6.1f} GB   {parts}"


@dataclass
class MemoryPlan:
    """The plan of one run on one kind of device ("cuda" or "cpu")."""

    model: str
    label: str  # the family's
    device_kind: str
    config: RunConfig
    phases: list[Phase]
    notes: list[str] = field(default_factory=list)
    text_on_cpu: bool = False  # a staged family's text encoders encode on the CPU (they do not fit the device)

    @property
    def peak(self) -> Phase:
        return max(self.phases, key=lambda p: p.bytes)

    def phase(self, name: str) -> Phase:
        return next(p for p in self.phases if p.name == name)

    def summary(self) -> str:
        c = self.config
        what = {"lora": f"a rank-{c.rank} LoRA ({c.lora_layers})", "dreambooth": "DreamBooth",
                "finetune": "a full fine-tune", "textual-inversion": "a textual inversion"}[c.method]
        knobs = [f"{c.resolution} px", f"batch {c.batch_size}", f"mixed precision {c.mixed_precision}",
                 f"checkpointing {c.gradient_checkpointing}", c.optimizer]
        if c.base_precision != "auto":
            knobs.append(f"base {c.base_precision}")
        if c.blocks_to_swap:
            knobs.append(f"{c.blocks_to_swap} blocks swapped")
        on = "the CPU (its RAM)" if self.device_kind == "cpu" else "a CUDA GPU"
        return f"memory plan of {what} on {self.model} ({self.label}), {', '.join(knobs)}, on {on}:"

    def lines(self) -> list[str]:
        return [self.summary(), *[p.line() for p in self.phases], *[f"  ({n})" for n in self.notes]]


def has_bitsandbytes() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


def plan_run(sizes, family, config: RunConfig, *, device_kind: str = "cuda", model: str = "",
             text_on_cpu: bool = False) -> MemoryPlan:
    """The memory plan of `config` (its auto values decided: fit.decide_defaults) for a model of `sizes`
    (studio.models.config_sizes) and `family`, on a "cuda" device or the "cpu". `text_on_cpu`: a staged family's
    text encoders encode on the CPU, off the device."""
    c = config
    side = c.resolution or family.native_resolution
    mixed = c.mixed_precision if c.mixed_precision in ("fp16", "bf16") else "no"
    half = 2 if mixed != "no" else 4
    act_bytes = ACTIVATION_BYTES[mixed]
    overhead = ("CUDA context", CUDA_CONTEXT) if device_kind == "cuda" else ("the process", CPU_PROCESS)
    staged = family.staged_training(c)
    whole = c.method in ("dreambooth", "finetune")
    notes = []

    # 1. What stays on the device: the frozen parts as they are kept (text encoders in half precision under mixed
    #    precision, a staged family's in bf16 on a GPU: they only encode; the VAE in half where the family allows
    #    it), a whole model's float32 weights, and what the optimizer adds to the trained parameters
    all_bf16 = c.base_precision == "bf16"  # every frozen part in bf16 (studio/train/parts.py: part_dtypes)
    text_bytes = 2 if mixed != "no" or all_bf16 or (staged and device_kind == "cuda") else 4
    if whole and c.text_encoder_lr:
        texts = []  # trained: counted with the trained weights
    else:  # textual inversion keeps its text encoders in float32 (their token tables train)
        texts = [(n, sizes.params(n) * (4 if c.method == "textual-inversion" else text_bytes))
                 for n in sizes.text_encoders]
    vae_bytes = (2 if all_bf16 else half) if family.vae_in_half() else 4
    vae = ("vae", sizes.params("vae") * vae_bytes)
    denoiser = _denoiser_items(sizes, family, c, half, notes)
    trained = _trained_items(sizes, c, device_kind, half, whole, notes)
    weights = [item for item in trained if item[0].startswith("weights")]
    states = [item for item in trained if item[0].startswith(("AdamW", "8-bit", "EMA"))]
    in_steps = [item for item in trained if item[0].startswith(("gradients", "autocast"))]
    resident = [*denoiser, *(weights if whole else []), *([] if staged else texts), vae, overhead]

    # 2. What each phase adds: the VAE encoding the pictures (caching), the activations (steps), sampling and
    #    decoding the validation prompts (`validation_batch` together), a copy of the trained weights (export)
    text_tokens = family.text_tokens(c)
    encode = ("VAE encoding", int(family.vae_elements(sizes.vae_config, side=side, decode=False) * vae_bytes))
    activations = c.batch_size * family.activation_elements(sizes.denoiser_config, side=side, text_tokens=text_tokens,
                                                            checkpointing=c.gradient_checkpointing == "on")
    if c.method == "dreambooth" and c.prior_preservation:
        activations *= 2  # the class images' forward pass is kept beside the subject's until the backward pass
    guided = 2 if family.guidance == "cfg" and (c.validation_cfg or family.default_cfg) > 1 else 1
    one_picture = guided * act_bytes * family.inference_elements(sizes.denoiser_config, side=side,
                                                                 text_tokens=text_tokens)
    prompts = len(c.prompts()) if c.validation_every else 0
    together = min(prompts, c.validation_batch or prompts)
    sampling = (f"sampling {together} prompt{'s' * (together != 1)}", int(together * one_picture))
    # validation decodes its pictures one at a time (parts.validation_pipeline)
    decode = ("VAE decoding", int(family.vae_elements(sizes.vae_config, side=side, decode=True) * vae_bytes))

    phases = []
    if staged:  # the text encoders first, then (once every caption is encoded) the denoiser
        encoders = [] if text_on_cpu else texts
        phases.append(Phase("load", max([*encoders, vae, overhead], resident, key=_total)))
        phases.append(Phase("caching", [*encoders, vae, encode, overhead]))
        if text_on_cpu:
            notes.append(f"the text encoders ({_total(texts) / GiB:.1f} GB) encode the captions on the CPU: they do "
                         f"not fit the device beside the rest")
    else:
        phases.append(Phase("load", resident))
        caching = [*resident, encode]
        if c.method == "dreambooth" and c.prior_preservation:  # the class images are drawn by the base first
            caching = max(caching, [*resident, ("drawing class images", int(one_picture))], key=_total)
        phases.append(Phase("caching", caching))
    lora_weights = [] if whole else weights
    phases.append(Phase("steps", [*resident, *lora_weights, *states, *in_steps,
                                  ("activations", int(activations * act_bytes))]))
    kept = [*resident, *lora_weights, *states]
    if prompts:
        phases.append(Phase("validation", [*kept, max(sampling, decode, key=lambda x: x[1])]))
    phases.append(Phase("export", [*kept, ("copy of the trained weights", _total(weights) + _total(
        [s for s in states if s[0].startswith("EMA")]))]))
    return MemoryPlan(model, family.label, device_kind, c, phases, notes, text_on_cpu)


def _total(items) -> int:
    return sum(b for _, b in items)


def _denoiser_items(sizes, family, c: RunConfig, half: int, notes: list) -> list[tuple[str, int]]:
    """The frozen denoiser's weights on the device (LoRA, textual inversion) as `base_precision` keeps them, less
    the blocks a block swap keeps on the CPU; none for a whole model (counted with the trained weights)."""
    name = sizes.denoiser
    params = sizes.params(name)
    if c.method in ("dreambooth", "finetune"):
        return []
    linear = sizes.components[name].linear
    if c.base_precision in STORED_BYTES:
        per_linear, label = STORED_BYTES[c.base_precision], c.base_precision
        stored = linear * per_linear + (params - linear) * 2
    else:
        bytes_each = 2 if c.base_precision == "bf16" else half
        per_linear = bytes_each
        label = "float32" if bytes_each == 4 else "bf16" if c.base_precision == "bf16" else c.mixed_precision
        stored = params * bytes_each
    items = [(f"{name} ({label})", int(stored))]
    if c.blocks_to_swap:
        if not sizes.blocks:
            notes.append(f"blocks_to_swap {c.blocks_to_swap}: {family.label} has no blocks to swap")
            return items
        n = min(c.blocks_to_swap, len(sizes.blocks))
        swapped = sizes.blocks[-n:]  # the last blocks, as block swapping keeps them (ModelFamily.blocks)
        away = sum(swapped) * per_linear
        moving = sum(sorted(swapped)[-IN_FLIGHT_BLOCKS:]) * per_linear
        items += [(f"{n} blocks on the CPU", -int(away)), ("blocks in flight", int(moving))]
        notes.append(f"the last {n} of the transformer's {len(sizes.blocks)} blocks stay on the CPU: "
                     f"{away / GiB:.1f} GB of the computer's memory, brought in as each runs")
    return items


def _trained_items(sizes, c: RunConfig, device_kind: str, half: int, whole: bool,
                   notes: list) -> list[tuple[str, int]]:
    """The trained parameters in float32, their gradients and the optimizer's states (AdamW: two float32 moments;
    8-bit AdamW: two bytes), and for a whole model its EMA average and autocast's half copies of its weights."""
    eight_bit = c.optimizer == "adamw8bit" and device_kind == "cuda" and has_bitsandbytes()
    if c.optimizer == "adamw8bit" and not eight_bit:
        why = "bitsandbytes is not installed" if device_kind == "cuda" else "the CPU has no 8-bit AdamW"
        notes.append(f"optimizer adamw8bit: {why}, so AdamW's float32 states are planned")
    states = 2 if eight_bit else 8
    if c.method == "lora":
        count = sizes.lora_per_rank[c.lora_layers] * c.rank
        if c.text_encoder_lr:
            count += sizes.text_lora_per_rank[c.lora_layers] * c.rank
        what = "LoRA"
    elif c.method == "textual-inversion":  # the token tables train whole (the other rows are put back)
        count = sum(rows * width for rows, width in sizes.embedding_rows.values())
        what = "token tables"
    else:
        count = sizes.params(sizes.denoiser) + (sum(sizes.params(n) for n in sizes.text_encoders)
                                                if c.text_encoder_lr else 0)
        what = sizes.denoiser + (" and text encoders" if c.text_encoder_lr else "")
    items = [(f"weights of the {what} (float32)", count * 4)] if c.method != "textual-inversion" else []
    items += [(f"gradients of the {what}", count * 4), ("8-bit AdamW states" if eight_bit else "AdamW states",
                                                       count * states)]
    if whole:
        if c.ema_device == "":
            items.append(("EMA average", count * 4))
        elif c.ema_device == "cpu":
            notes.append(f"the EMA average is kept in the computer's memory ({count * 4 / GiB:.1f} GB), its weights "
                         f"copied over at every step")
        if half == 2:
            items.append(("autocast's half copies", count * 2))
    return items
