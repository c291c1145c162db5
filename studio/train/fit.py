"""Whether a run fits its device: its memory plan (studio/train/plan.py) for the model it names, against the GPU's
memory; when it does not, the preset or the settings that would; and the defaults that depend on the device (mixed
precision, gradient checkpointing), decided when the run is launched and said in its log.

The one check every way of starting a run goes through (studio.train.jobs.start_run, so the Train tab, the command
line and the API alike): a run that does not fit is refused before it is queued, unless it is forced."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from studio.devices import DeviceFacts
from studio.train.config import RunConfig
from studio.train.config_checks import family_defaults
from studio.train.plan import GiB, MemoryPlan, has_bitsandbytes, plan_run
from studio.train.presets import PRESETS


class NotPlanned(ValueError):
    """A model whose memory cannot be planned before it is downloaded (an SD hub id: its name does not tell its
    family): a dry run says so, a run starts without a plan."""


@dataclass
class Model:
    """What the plan needs of a model id: its family and its parts' sizes (from the configs it would load with)."""

    id: str
    family: object
    sizes: object
    planned_as: str = ""  # the carried configs a hub id not downloaded yet is planned with, said in the plan


@dataclass
class Verdict:
    plan: MemoryPlan
    device: DeviceFacts
    decided: list[str] = field(default_factory=list)  # the defaults decided for the device, in words
    advice: list[str] = field(default_factory=list)  # what would fit, when the run does not

    @property
    def fits(self) -> bool | None:
        """Whether the peak fits the device's memory; None where there is none to compare with (the CPU)."""
        if self.device.memory_gb is None:
            return None
        return self.plan.peak.gb <= self.device.memory_gb

    def lines(self) -> list[str]:
        """The plan phase by phase, the verdict, what would fit, and last `peak <N> GB in <phase>`."""
        out = [*self.plan.lines(), *[f"  ({d})" for d in self.decided]]
        peak = self.plan.peak
        if self.fits is None:
            out.append(f"{self.device.name} has no GPU memory to check this against: give --vram-gb N to plan it "
                       f"for a GPU of N GB" if self.device.kind == "cpu" else
                       f"the memory of {self.device.name} is not known (nvidia-smi did not say): give --vram-gb N")
        elif self.fits:
            out.append(f"fits {self.device.name}: about {peak.gb:.1f} of its {self.device.memory_gb:g} GB")
        else:
            out.append(f"does not fit {self.device.name}: about {peak.gb:.1f} GB at the peak ({peak.name}), more "
                       f"than its {self.device.memory_gb:g} GB")
            out += [f"  {a}" for a in self.advice] or ["  nothing the studio can set makes it fit"]
        out.append(f"peak {peak.gb:.1f} GB in {peak.name}")
        return out

    def short(self) -> str:
        """One line for the Train tab: "about 10.8 of your 16 GB"."""
        peak = self.plan.peak
        if self.fits is None and self.device.kind == "cpu":
            return (f"Memory plan: about {peak.gb:.1f} GB of the computer's memory at the peak ({peak.name}): this "
                    f"studio trains on the CPU (`train --dry-run --vram-gb N` plans it for a GPU of N GB)")
        if self.fits is None:
            return (f"Memory plan: about {peak.gb:.1f} GB at the peak ({peak.name}); the memory of "
                    f"{self.device.name} is not known")
        if self.fits:
            return f"Memory plan: about {peak.gb:.1f} of your {self.device.memory_gb:g} GB (peak in {peak.name})"
        return (f"Memory plan: about {peak.gb:.1f} GB (peak in {peak.name}), more than your "
                f"{self.device.memory_gb:g} GB; {'; '.join(self.advice) or 'nothing the studio can set fits it'}")

    def refusal(self) -> str:
        peak = self.plan.peak
        return (f"this run needs about {peak.gb:.1f} GB at its peak ({peak.name}) but {self.device.name} has "
                f"{self.device.memory_gb:g} GB; {'; '.join(self.advice) or 'nothing the studio can set makes it fit'}"
                f" (force it to try anyway)")


# ---- the model -------------------------------------------------------------------------------------------------

def model_for(store, model_id: str) -> Model:
    """The family and sizes of `model_id` (the studio's default when empty), from the configs it loads with: its
    folder's, a single file's carried variant, or (a hub id not downloaded yet) the family's usual variant."""
    from studio.models.configs import variant_folder
    from studio.models.config_sizes import model_sizes

    model_id = model_id or store.default_model
    ref = store.resolve(model_id)
    if ref.family is None:
        raise NotPlanned(f"`model` {model_id!r}: its family is not known until it is downloaded, so its memory "
                         f"cannot be planned yet")
    planned_as = ""
    if ref.kind == "file":
        folder = store.single_file_config(ref)
    elif ref.path is not None:
        folder = ref.path
    else:
        planned_as = ref.family.planned_variant(ref.id)
        folder = variant_folder(planned_as)
    return Model(model_id, ref.family, model_sizes(folder, ref.family), planned_as)


# ---- the defaults that depend on the device ----------------------------------------------------------------------

def decide_in_child(store, config: RunConfig, device: str) -> tuple[RunConfig, list[str]]:
    """What a run's child decides that its launch left to "auto" (a run started outside the queue: a sweep's, a
    test's), for `device`, and what it decided, in words. Nothing to decide costs nothing."""
    from studio.devices import device_facts

    if "auto" not in (config.mixed_precision, config.gradient_checkpointing):
        return config, []
    facts = device_facts(device)
    if facts.kind != "cuda":
        return decide_defaults(None, config, facts)
    try:
        model = model_for(store, config.model)
    except NotPlanned:
        return decide_defaults(None, config, facts)
    return decide_defaults(model, family_defaults(replace(config, model=model.id), model.family), facts)


def text_on_cpu(store, config: RunConfig, device: str) -> bool:
    """Whether a staged run's text encoders encode its captions on the CPU: on a GPU where the plan's caching phase
    does not fit with them on it (T5-XXL's 8.9 GB on an 8 GB card). `config`: its defaults decided."""
    from studio.devices import device_facts

    facts = device_facts(device)
    if facts.kind != "cuda" or facts.memory_gb is None:
        return False
    try:
        model = model_for(store, config.model)
    except NotPlanned:
        return False
    config = family_defaults(replace(config, model=model.id), model.family)
    return model.family.staged_training(config) and _plan(model, config, facts).text_on_cpu


def decide_defaults(model: Model | None, config: RunConfig, device: DeviceFacts) -> tuple[RunConfig, list[str]]:
    """`config` with its device-dependent defaults decided (mixed precision: bf16 on a CUDA GPU, fp16 on one
    without bf16, none elsewhere; gradient checkpointing: on where the plan does not fit the GPU without it), and
    what was decided, in words for the run's log. `model` None: nothing to plan with (off a GPU, or not planned yet)."""
    said = []
    if config.mixed_precision == "auto":
        value = ("bf16" if device.bf16 else "fp16") if device.kind == "cuda" else "no"
        why = {"bf16": f"{device.name} computes in bf16", "fp16": f"{device.name} has no bf16",
               "no": f"the default on {device.name}"}[value]
        config = replace(config, mixed_precision=value)
        said.append(f"mixed precision {value}: {why}")
    if config.gradient_checkpointing == "auto":
        if config.blocks_to_swap:  # a swapped block's weights come back for its recomputation only
            config = replace(config, gradient_checkpointing="on")
            said.append("gradient checkpointing on: block swapping needs it")
        elif device.kind != "cuda":
            config = replace(config, gradient_checkpointing="off")
            said.append(f"gradient checkpointing off: the default on {device.name}")
        elif device.memory_gb is None or model is None:
            config = replace(config, gradient_checkpointing="on")
            unknown = f"the memory of {device.name}" if device.memory_gb is None else "what the model needs"
            said.append(f"gradient checkpointing on: {unknown} is not known")
        else:
            without = _plan(model, replace(config, gradient_checkpointing="off"), device)
            on = without.peak.gb > device.memory_gb
            config = replace(config, gradient_checkpointing="on" if on else "off")
            said.append(f"gradient checkpointing {'on' if on else 'off'}: without it the plan peaks at about "
                        f"{without.peak.gb:.1f} GB (the device has {device.memory_gb:g} GB)")
    return config, said


def _plan(model: Model, config: RunConfig, device: DeviceFacts) -> MemoryPlan:
    """The plan on `device`, a staged family's text encoders moved to the CPU when they do not fit beside the rest
    while captions are encoded."""
    kind = "cuda" if device.kind == "cuda" else "cpu"
    plan = plan_run(model.sizes, model.family, config, device_kind=kind, model=model.id)
    if (device.memory_gb is not None and model.family.staged_training(config)
            and plan.phase("caching").gb > device.memory_gb):
        plan = plan_run(model.sizes, model.family, config, device_kind=kind, model=model.id, text_on_cpu=True)
    if model.planned_as:
        plan.notes.append(f"{model.id} is not downloaded yet: planned as {model.planned_as}")
    return plan


# ---- the verdict -------------------------------------------------------------------------------------------------

def check(store, config: RunConfig, device: DeviceFacts) -> tuple[RunConfig, Verdict]:
    """`config` with its device defaults decided (and the family's: the native resolution), and its plan's
    verdict on `device`, with what would fit when it does not."""
    model = model_for(store, config.model)
    config = family_defaults(replace(config, model=model.id), model.family)
    config, decided = decide_defaults(model, config, device)
    verdict = Verdict(_plan(model, config, device), device, decided)
    if verdict.fits is False:
        verdict.advice = what_fits(model, config, device)
    return config, verdict


def what_fits(model: Model, config: RunConfig, device: DeviceFacts) -> list[str]:
    """What would make `config` fit `device`: the family's largest GPU-tier preset that fits (a LoRA, for a whole
    model too), and the fewest of the settings that save memory, cheapest first, that make it fit."""
    return [found for found in (_fitting_preset(model, config, device), _ladder(model, config, device)) if found]


def _tier(preset_key: str) -> float:
    found = re.search(r"-(\d+)gb$", preset_key)
    return float(found.group(1)) if found else 0.0


def _fitting_preset(model: Model, config: RunConfig, device: DeviceFacts) -> str:
    tiers = sorted((k for k in model.family.gpu_presets_for(model.sizes.denoiser_config)
                    if _tier(k) <= device.memory_gb), key=_tier, reverse=True)
    for key in tiers:
        settings = {k: v for k, v in PRESETS[key].items() if k != "model"}
        tried = _decided(model, replace(config, **settings), device)
        if tried is not None:
            plan = _plan(model, tried, device)
            if plan.peak.gb <= device.memory_gb:
                instead = f", a {tried.method} instead of a {config.method}" if tried.method != config.method else ""
                return f"the preset {key} fits: about {plan.peak.gb:.1f} GB (--preset {key}{instead})"
    return ""


def _decided(model: Model, config: RunConfig, device: DeviceFacts) -> RunConfig | None:
    """`config` with its defaults decided, or None when the family refuses it."""
    try:
        config = family_defaults(config, model.family)
    except ValueError:
        return None
    return decide_defaults(model, config, device)[0]


def _ladder(model: Model, config: RunConfig, device: DeviceFacts) -> str:
    """The settings that save memory, cheapest first, added one after another until the plan fits: "with
    gradient_checkpointing on, optimizer adamw8bit: about 11.2 GB"; "" when even all of them do not fit."""
    steps = [("validation_batch", 1), ("mixed_precision", "bf16" if device.bf16 else "fp16"),
             ("gradient_checkpointing", "on")]
    if device.kind == "cuda" and has_bitsandbytes():
        steps.append(("optimizer", "adamw8bit"))
    if config.method in ("dreambooth", "finetune"):
        steps.append(("ema", "cpu"))
    else:
        steps += [("base_precision", p) for p in ("bf16", "fp8", "int8", "nf4")]
    steps += [("batch_size", 1)]
    blocks = len(model.sizes.blocks)
    if config.method == "lora" and blocks:  # swapped blocks are fp8 or int8 (bitsandbytes puts nf4 on the GPU)
        steps += [("blocks_to_swap", n) for n in range(2, blocks + 1, 2)]
    changed: dict = {}
    for name, value in steps:
        if getattr(config, name) == value or (name == "ema" and config.ema_device != ""):
            continue
        change = {**changed, name: value}
        if name == "blocks_to_swap" and change.get("base_precision", config.base_precision) == "nf4":
            change["base_precision"] = "fp8"
        tried = _decided(model, replace(config, **change), device)
        if tried is None:
            continue
        changed = change
        if _fits(model, tried, device):
            changed = _fewest(model, config, changed, device)
            plan = _plan(model, _decided(model, replace(config, **changed), device), device)
            said = ", ".join(f"{k} {v}" for k, v in changed.items())
            return f"or with {said}: about {plan.peak.gb:.1f} GB"
    return ""


def _fits(model: Model, config: RunConfig, device: DeviceFacts) -> bool:
    return _plan(model, config, device).peak.gb <= device.memory_gb


def _fewest(model: Model, config: RunConfig, changed: dict, device: DeviceFacts) -> dict:
    """`changed` without the changes it fits without (the ladder adds them cheapest first, not all are needed)."""
    for name in list(changed):
        fewer = {k: v for k, v in changed.items() if k != name}
        if fewer.get("blocks_to_swap", config.blocks_to_swap) and \
                fewer.get("base_precision", config.base_precision) == "nf4":
            continue  # bitsandbytes' nf4 weights cannot be swapped
        tried = _decided(model, replace(config, **fewer), device)
        if tried is not None and _fits(model, tried, device):
            changed = fewer
    return changed


def device_for(device: str, vram_gb: float | None = None) -> DeviceFacts:
    """The device a run plans for: `device` (auto, cpu, cuda:N), or with `vram_gb` a CUDA GPU of that many GB (the
    command line's --vram-gb: planning for a card this machine does not have)."""
    from studio.devices import device_facts, planned_gpu

    if vram_gb is not None:
        return planned_gpu(vram_gb)
    return device_facts(device)


def plan_for(studio, config: RunConfig, vram_gb: float | None = None) -> tuple[RunConfig, Verdict]:
    """`config` with its defaults decided, and its plan's verdict on its device (or a GPU of `vram_gb` GB): what
    `train --dry-run` prints and the Train tab shows before Start."""
    return check(studio.store, config, device_for(config.device or studio.settings.device, vram_gb))


def fit_or_refuse(store, config: RunConfig, device: DeviceFacts, *, force: bool = False) -> tuple[RunConfig, list[str]]:
    """The check before a run is queued: `config` with its device defaults decided and what was decided (for the
    run's log); a ValueError naming what would fit when it does not fit the device, unless `force`. Off a GPU
    (nothing to plan against) only the defaults are decided, with no model built."""
    if device.kind != "cuda":
        return decide_defaults(None, config, device)
    try:
        decided, verdict = check(store, config, device)
    except NotPlanned as e:  # the run loads it (downloads it) all the same
        config, said = decide_defaults(None, config, device)
        return config, [*said, f"no memory plan: {e}"]
    # only what was decided for the device goes into run.json (the rest the run fills in itself, as it always did)
    config = replace(config, mixed_precision=decided.mixed_precision,
                     gradient_checkpointing=decided.gradient_checkpointing)
    said = list(verdict.decided)
    if verdict.fits is False:
        if not force:
            raise ValueError(verdict.refusal())
        said.append(f"forced: the memory plan says about {verdict.plan.peak.gb:.1f} GB at the peak "
                    f"({verdict.plan.peak.name}), more than the {device.memory_gb:g} GB of {device.name}")
    elif verdict.fits:
        said.append(f"memory plan: about {verdict.plan.peak.gb:.1f} of the {device.memory_gb:g} GB of "
                    f"{device.name} (peak in {verdict.plan.peak.name})")
    return config, said


__all__ = ["Model", "NotPlanned", "Verdict", "check", "decide_defaults", "decide_in_child", "device_for", "fit_or_refuse",
           "model_for", "plan_for", "text_on_cpu", "what_fits"]
