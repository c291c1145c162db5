"""The model cache: the only holder of loaded weights. Callers borrow pipelines; it shares, switches and evicts."""

from __future__ import annotations

import contextvars
import copy
import gc
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from studio.models.adapters import check_lora_fits, embedding_token, lora_weights
from studio.models import families
from studio.models.placement import HEADROOM_BYTES, Placement, choose_placement, generation_dtype
from studio.models.refs import LoraChoice
from studio.models.sizes import module_bytes, modules_of, tensor_bytes  # noqa: F401 (benchmarks take them from here)
from studio.models.store import ModelStore
from studio.settings import Settings

TASKS = ("txt2img", "img2img", "inpaint")  # with controlnets given, txt2img and img2img use their ControlNet pipelines
# Weights besides base pipelines and ControlNets, each loaded by the store's loader of that name and borrowed with
# `cache.borrow(kind, id)`: they count in the same budget and are freed by release() like any model.
HELPER_LOADERS = {"clip": "load_clip", "captioner": "load_captioner", "checker": "load_checker",
                  "upscaler": "load_upscaler"}


@dataclass
class CachedModel:
    """One line of what the cache holds, for the Models tab."""

    kind: str  # "base" | "controlnet" | one of HELPER_LOADERS
    model_id: str
    device: str
    dtype: str
    nbytes: int
    in_use: bool
    last_used: float
    loras: list[str]
    pipelines: list[str]
    owner: str = ""  # a user's own model (their fine-tuned base): "" for everyone's
    lora_files: list[Path] = field(default_factory=list)  # the LoRAs' files, to show each user only theirs


@dataclass
class _Entry:
    kind: str
    model_id: str
    owner: str  # whose model the id names: a user's own (see ModelStore.owner_of), or "" for everyone's
    device: str
    dtype: object
    model: object  # the base txt2img pipeline, a ControlNetModel, or what a helper loader returns
    nbytes: int
    lock: threading.RLock = field(default_factory=threading.RLock)
    borrowers: int = 0
    last_used: float = field(default_factory=time.monotonic)
    derived: dict = field(default_factory=dict)  # (task, controlnet ids) -> pipeline sharing the base's modules
    adapters: dict = field(default_factory=dict)  # LoRA file -> adapter name, loaded once per base
    embeddings: dict = field(default_factory=dict)  # embedding file -> tokens added to the tokenizer(s)
    placement: Placement = field(default_factory=Placement)  # a base: on the device, or offloaded to the CPU
    hooked: object = None  # an offloaded base: the pipeline whose offload hooks its modules carry now


class ModelCache:
    def __init__(self, store: ModelStore, settings: Settings):
        self.store = store
        self.settings = settings
        self._entries: dict[tuple, _Entry] = {}
        self._lock = threading.RLock()  # guards _entries; held while loading, never while a pipeline runs
        # where this thread's borrows load, when not the settings' device (the CPU while a job holds the GPU)
        self._device_now = contextvars.ContextVar(f"device_now_{id(self)}", default="")

    def for_store(self, store: ModelStore) -> "ModelCache":
        """This cache (one table, one lock, one budget) as one user uses it: names resolved through `store` (the
        user's models first), a model of the user's own kept apart from an equal name of another's."""
        view = copy.copy(self)
        view.store, view.settings = store, store.settings
        return view

    @contextmanager
    def on_device(self, device: str):
        """Within the block, this thread's borrows load on (and find copies on) `device`."""
        token = self._device_now.set(device)
        try:
            yield
        finally:
            self._device_now.reset(token)

    def _device(self) -> str:
        return self._device_now.get() or self.settings.resolve_device()

    # ---- borrowing -----------------------------------------------------------------------------------------

    @contextmanager
    def pipeline(self, model_id: str, *, task: str = "txt2img", loras: list[LoraChoice] = (),
                 embeddings: list[Path] = (), controlnets: list[str] = ()):
        """Borrow a pipeline of `model_id` for `task`, with exactly the given LoRAs active at their weights.

        The pipeline is the caller's alone until the block ends (two callers of one base take turns). A dedicated
        inpainting checkpoint (a UNet that takes 9 input channels: latents, mask, masked picture) is a base of its own
        and serves task "inpaint" only.
        """
        if task not in TASKS:
            raise ValueError(f"`task` must be one of {', '.join(TASKS)} but is {task!r}")
        if task == "inpaint" and controlnets:
            raise ValueError("inpainting with ControlNets is not supported: leave `controlnets` empty to inpaint")
        device = self._device()
        # 1. Find or load the base (in its family's dtype, offloaded to the CPU when it does not fit the GPU) and any
        #    ControlNets (in the base's dtype), and mark them borrowed so eviction passes them over.
        with self._lock:
            base = self._get("base", model_id, device, None)
            family = families.of(base.model)
            dtype = base.dtype
            if controlnets and not family.controlnet:
                raise ValueError(f"base {model_id!r} is {family.label}: the studio's ControlNets (SD 1.x, SD 2.x and "
                                 f"SDXL ones) do not fit it; use img2img without a ControlNet")
            nets = [self._get("controlnet", cn, device, dtype) for cn in controlnets]
            for e in (base, *nets):
                e.borrowers += 1
        try:
            with base.lock:
                # 2. The task's pipeline, made once from the base's modules (no copy of the weights).
                if task != "inpaint" and family.is_inpainting(base.model):
                    raise ValueError(f"model {model_id!r} is an inpainting checkpoint (its UNet takes 9 input "
                                     f"channels: latents, mask and masked picture); use it to inpaint or fix faces, "
                                     f"and a regular base for {task}")
                pipe = self._derived(base, task, nets)
                # 3. LoRAs and embeddings are loaded once per base; then only their weights switch.
                self._apply_loras(base, pipe, loras)
                for path in embeddings:
                    self._load_embedding(base, Path(path))
                self._hook(base, pipe)
                yield pipe
        finally:
            with self._lock:
                now = time.monotonic()
                for e in (base, *nets):
                    e.borrowers -= 1
                    e.last_used = now

    @contextmanager
    def borrow(self, kind: str, model_id: str):
        """Borrow a helper model (`kind` one of HELPER_LOADERS: "clip", "captioner", "checker", "upscaler"), loading
        it once.
        Two callers of one helper take turns, as for pipelines."""
        if kind not in HELPER_LOADERS:
            raise ValueError(f"`kind` must be one of {', '.join(HELPER_LOADERS)} but is {kind!r}")
        device = self._device()
        with self._lock:
            entry = self._get(kind, model_id, device, None)
            entry.borrowers += 1
        try:
            with entry.lock:
                yield entry.model
        finally:
            with self._lock:
                entry.borrowers -= 1
                entry.last_used = time.monotonic()

    def _get(self, kind: str, model_id: str, device: str, dtype) -> _Entry:
        """A loaded model, loading it when not held. A base's dtype is its family's (placement.generation_dtype),
        decided from the settings' dtype once it is resolved: its key holds the settings' own (`dtype` None)."""
        owner = self.store.owner_of(model_id, "controlnet" if kind == "controlnet" else "base") if kind in (
            "base", "controlnet") else ""
        key = (kind, owner, model_id, device, self.settings.dtype if kind == "base" else str(dtype))
        entry = self._entries.get(key)
        placement = Placement()
        if entry is None:
            if kind == "base":
                ref = self.store.resolve(model_id)
                dtype = generation_dtype(ref.family, device, self.settings.dtype)
                model, placement = self._load_base(ref, device, dtype)
            elif kind == "controlnet":
                ref = self.store.resolve(model_id, subfolder="controlnet")
                model = self.store.load_controlnet(ref, dtype=dtype, device=device)
            else:
                model = getattr(self.store, HELPER_LOADERS[kind])(model_id, device=device)
                dtype = next((p.dtype for m in modules_of(model) for p in m.parameters()), None)
            entry = _Entry(kind, model_id, owner, device, dtype, model, module_bytes(model), placement=placement,
                           hooked=model)
            self._entries[key] = entry
            self._evict_to_budget(keep=entry)
        entry.last_used = time.monotonic()
        return entry

    def _load_base(self, ref, device: str, dtype):
        """A base pipeline on `device`, or offloaded to the CPU as Settings.offload and the GPU's free memory decide
        (placement.choose_placement); its placement is also on the pipeline (`studio_placement`), for what the
        generator says."""
        import torch

        asked = self.settings.offload
        if not device.startswith("cuda") and asked in ("auto", "none"):
            pipe = self.store.load_base(ref, dtype=dtype, device=device)
            pipe.studio_placement = Placement()
            return pipe, pipe.studio_placement
        pipe = self.store.load_base(ref, dtype=dtype, device="cpu")
        parts = modules_of(pipe)
        needed, largest = module_bytes(pipe), max(module_bytes(m) for m in parts)
        free = None
        if device.startswith("cuda"):
            free = torch.cuda.mem_get_info(torch.device(device))[0]
            if needed + HEADROOM_BYTES > free:  # what the cache holds idle on the GPU goes first
                for e in [e for e in self._entries.values() if e.borrowers == 0 and e.device == device]:
                    self._drop(e)
                free = torch.cuda.mem_get_info(torch.device(device))[0]
        placement = choose_placement(asked, needed=needed, largest=largest, free=free,
                                     dtype_name=str(dtype).replace("torch.", ""))
        _offload(pipe, placement, device)
        pipe.studio_placement = placement
        return pipe, placement

    def _hook(self, base: _Entry, pipe) -> None:
        """An offloaded base's modules move in and out by hooks that one pipeline at a time holds (the txt2img one,
        or an img2img / inpaint / ControlNet one made from it): given to `pipe` when it is not the one holding them."""
        if base.placement.offload == "none" or base.hooked is pipe:
            return
        _offload(pipe, base.placement, base.device)
        base.hooked = pipe

    def _derived(self, base: _Entry, task: str, nets: list[_Entry]):
        if task == "txt2img" and not nets:
            return base.model
        key = (task, tuple(n.model_id for n in nets))
        if key not in base.derived:
            family = families.of(base.model)
            if nets:
                for n in nets:
                    why = family.controlnet_fits(base.model, n.model)
                    if why is not None:
                        raise ValueError(f"ControlNet {n.model_id!r} does not fit base {base.model_id!r}: {why}")
                extra = {"controlnet": nets[0].model if len(nets) == 1 else [n.model for n in nets]}
            else:
                extra = {}
            pipe = families.mark(family.task_pipeline(base.model, task, extra), family)
            pipe.studio_placement = base.placement
            pipe.set_progress_bar_config(disable=True)
            base.derived[key] = pipe
        return base.derived[key]

    # ---- LoRAs and embeddings -----------------------------------------------------------------------------

    def _apply_loras(self, base: _Entry, pipe, loras: list[LoraChoice]) -> None:
        paths = [self.store.lora_file(lc.name) for lc in loras]  # a name in models/lora/ or a path
        for path in paths:
            if path not in base.adapters:
                check_lora_fits(path, base.model, base.model_id)
                name = _adapter_name(path, base.adapters.values())
                with _quiet_diffusers():  # it warns for every LoRA that leaves the text encoder alone
                    base.model.load_lora_weights(lora_weights(path, base.model), adapter_name=name)
                base.adapters[path] = name
                base.hooked = base.model  # diffusers gives an offloaded base's hooks back to the pipeline it loads on
                base.nbytes = module_bytes(base.model)
        if not base.adapters:
            return
        if loras:
            pipe.enable_lora()
            pipe.set_adapters([base.adapters[path] for path in paths],
                              adapter_weights=[float(lc.weight) for lc in loras])
        else:
            pipe.disable_lora()

    def unload_lora(self, model_id: str, path: Path) -> bool:
        """Remove a LoRA from every cached copy of `model_id`; True if one was loaded."""
        path, removed = Path(path).resolve(), False
        for e in self._base_entries(model_id):
            with e.lock:
                name = e.adapters.pop(path, None)
                if name is not None:
                    e.model.delete_adapters(name)
                    e.nbytes = module_bytes(e.model)
                    removed = True
        return removed

    def _load_embedding(self, base: _Entry, path: Path) -> None:
        path = path.resolve()
        if path in base.embeddings:
            return
        pipe = base.model
        tokens = embedding_token(path, pipe, base.model_id)
        families.of(pipe).load_embedding(pipe, path, tokens)
        base.embeddings[path] = tokens

    # ---- memory ------------------------------------------------------------------------------------------

    def _base_entries(self, model_id: str) -> list[_Entry]:
        with self._lock:
            return [e for e in self._entries.values() if e.kind == "base" and e.model_id == model_id]

    def _evict_to_budget(self, keep: _Entry) -> None:
        """Drop least recently used, unborrowed models until the held bytes fit the budget."""
        budget = self.settings.resolve_cache_budget()
        while sum(e.nbytes for e in self._entries.values()) > budget:
            idle = [e for e in self._entries.values() if e is not keep and e.borrowers == 0]
            if not idle:
                break  # everything else is in use; the newly loaded model stays regardless
            self._drop(min(idle, key=lambda e: e.last_used))

    def _drop(self, entry: _Entry) -> None:
        for key in [k for k, e in self._entries.items() if e is entry]:  # in place: every user's view shares the table
            del self._entries[key]
        if entry.kind == "controlnet":  # pipelines built around it go too
            for e in self._entries.values():
                e.derived = {k: p for k, p in e.derived.items() if entry.model_id not in k[1]}
        entry.model = None
        entry.derived.clear()
        _free_memory()

    def release(self) -> int:
        """Free every model not in use (before a training job takes the GPU); returns how many stay in use."""
        with self._lock:
            for e in [e for e in self._entries.values() if e.borrowers == 0]:
                self._drop(e)
            return len(self._entries)

    def holdings(self) -> list[CachedModel]:
        with self._lock:
            entries = sorted(self._entries.values(), key=lambda e: -e.last_used)
            return [
                CachedModel(e.kind, e.model_id, e.device, str(e.dtype).replace("torch.", ""), e.nbytes, e.borrowers > 0,
                            e.last_used, [p.name for p in e.adapters],
                            [f"{t}{'+controlnet' if c else ''}" for t, c in e.derived], e.owner, list(e.adapters))
                for e in entries
            ]

    @property
    def held_bytes(self) -> int:
        with self._lock:
            return sum(e.nbytes for e in self._entries.values())


def _adapter_name(path: Path, taken) -> str:
    # peft adapter names become module attribute names: letters, digits and underscores only.
    stem = re.sub(r"\W", "_", path.stem) or "lora"
    name, n = stem, 1
    while name in set(taken):
        n += 1
        name = f"{stem}_{n}"
    return name


@contextmanager
def _quiet_diffusers():
    from diffusers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)


def _offload(pipe, placement: Placement, device: str) -> None:
    """`pipe` on `device` (no offload), or offloaded to the CPU with `device` as where each part runs."""
    if placement.offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif placement.offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe.to(device)


def _free_memory() -> None:
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
