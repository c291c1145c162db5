"""Runs a GenerationRequest: txt2img, img2img, ControlNet or inpainting on a borrowed pipeline, hires fix after,
then saves PNGs with parameters."""

from __future__ import annotations

import datetime as dt
import random
import time
from contextlib import contextmanager
from dataclasses import replace

from studio import __version__
from studio.generate.hires import hires_fields, hires_schedule, hires_size
from studio.generate.inpaint import paste_back, plan_inpaint
from studio.generate.parameters import format_control_unit, format_parameters, save_png, split_lora_tags
from studio.generate.preview import PREVIEW_EVERY, Preview, preview_picture
from studio.generate.request import GeneratedImage, GenerationRequest, GenerationResult, LoraChoice
from studio.generate.samplers import check_sampler, make_scheduler
from studio.generate.styles import apply_styles
from studio.models import families
from studio.models.placement import vae_tiling
from studio.progress import Cancelled, ProgressFn, StopFn, never_stop, no_progress


def effective_loras(request: GenerationRequest) -> tuple[str, list[LoraChoice]]:
    """The prompt without `<lora:...>` tags and the LoRAs to apply: the request's own, then tags not already chosen."""
    prompt, tagged = split_lora_tags(request.prompt)
    chosen = {lc.name for lc in request.loras}
    return prompt, list(request.loras) + [t for t in tagged if t.name not in chosen]


def generate(studio, request: GenerationRequest, *, progress: ProgressFn = no_progress,
             should_stop: StopFn = never_stop, preview: Preview | None = None) -> GenerationResult:
    """Run `request`; `preview` (when given) receives the batch's approximate picture every few steps."""
    import torch

    started = time.perf_counter()
    # 1. Check inputs and resolve every name to a file before anything is loaded.
    request = replace(request, model=request.model or studio.store.default_model).check()
    if request.styles:  # the saved styles' pieces, in order: the prompts as if typed with them
        styled, negative = apply_styles(studio.settings, request.styles, request.prompt, request.negative_prompt)
        request = replace(request, prompt=styled, negative_prompt=negative)
    prompt, loras = effective_loras(request)
    ref = studio.store.resolve(request.model)
    lora_files = [(lc, studio.store.lora_file(lc.name)) for lc in loras]
    embedding_files = [studio.store.embedding_file(e) for e in request.embeddings]
    seed = request.seed if request.seed != -1 else random.randint(0, 2**32 - 1)
    seeds = [(seed + i) % 2**32 for i in range(request.batch_size)]  # A1111: seed, seed+1, ... across a batch
    task = "inpaint" if request.mask_image is not None else "img2img" if request.init_image is not None else "txt2img"
    pipe_loras = [LoraChoice(str(path), lc.weight) for lc, path in lora_files]
    hires = request.hires_scale > 1

    # 2. Borrow the pipeline with exactly these LoRAs active.
    with studio.cache.pipeline(
        request.model,
        task=task,
        loras=pipe_loras,
        embeddings=embedding_files,
        controlnets=[u.model for u in request.controls],
    ) as pipe:
        # 3. What the family takes: its sampler names, CFG default, size steps, guidance; the working size.
        family = families.of(pipe)
        native = family.native_size(pipe)
        plan = None
        if task == "inpaint":  # the working picture: all of it, or the masked region at the model's size
            size = (request.width, request.height) if request.width else None
            plan = plan_inpaint(request.init_image, request.mask_image, blur=request.mask_blur,
                                area=request.inpaint_area, padding=request.inpaint_padding, size=size, native=native)
            width, height = plan.size
        else:
            width, height = request.width or native, request.height or native
        request = replace(request, seed=seed, width=width, height=height,
                          sampler=request.sampler or family.default_sampler,
                          cfg=family.generation_defaults(studio.store, ref)["cfg"] if request.cfg is None
                          else request.cfg)
        check_sampler(request.sampler, family)
        if width % family.size_multiple or height % family.size_multiple:
            raise ValueError(f"`height` and `width` have to be divisible by {family.size_multiple} for {family.label} "
                             f"but are {height} and {width}")
        guidance, notes, distilled = family.guidance_kwargs(
            pipe, cfg=request.cfg, negative_prompt=request.negative_prompt, distilled_cfg=request.distilled_cfg,
            max_sequence_length=request.max_sequence_length)
        if pipe.studio_placement.note:  # the base did not fit the GPU (studio.models.placement)
            notes.append(pipe.studio_placement.note)
        request = replace(request, distilled_cfg=distilled)
        final_size = hires_size(width, height, request.hires_scale) if hires else None
        if final_size and max(final_size) > 4096:
            raise ValueError(f"`hires_scale` {request.hires_scale:g} makes the {width}x{height} picture "
                             f"{final_size[0]}x{final_size[1]}, over the 4096 px limit")
        first = int(request.steps * (request.strength if task != "txt2img" else 1)) or 1
        total = first + ((request.hires_steps or request.steps) if hires else 0)

        # 4. Arguments for this task; noise comes from CPU generators so a seed gives the same image on any device.
        kwargs = dict(prompt=prompt, num_inference_steps=request.steps, num_images_per_prompt=request.batch_size,
                      generator=[torch.Generator("cpu").manual_seed(s) for s in seeds],
                      callback_on_step_end=_on_step(progress, should_stop, 0, total,
                                                    _shown(preview, family, (width, height))), **guidance)
        if task == "img2img":
            kwargs.update(family.img2img_kwargs(request.init_image.convert("RGB").resize((width, height)),
                                                request.strength, (width, height)))
        else:
            if task == "inpaint":
                kwargs.update(image=plan.image, mask_image=plan.mask, strength=request.strength)
            kwargs.update(width=width, height=height)
        if request.controls:
            kwargs.update(_control_kwargs(request, task, width, height))

        # 5. Run with the request's sampler (the model's own scheduler is put back after).
        images = _sample(pipe, request, seed, kwargs, (width, height), notes)

    # 6. Hires fix: upscale, then a second pass over the big picture; an inpainted region goes back into the picture.
    if hires:
        images = _hires_pass(studio, request, prompt, pipe_loras, embedding_files, seeds, images, final_size,
                             guidance, notes, _on_step(progress, should_stop, first, total,
                                                       _shown(preview, family, final_size)), should_stop, family)
    if plan is not None:
        images = [paste_back(plan, image) for image in images]

    # 7. Parameters text (A1111's, with Forge's FLUX fields) and PNGs.
    model_hash = studio.store.model_hash(ref)
    lora_hashes = ", ".join(f"{path.stem}: {studio.store.hashes.lora_hash(path)}" for _, path in lora_files)
    tags = " ".join(f"<lora:{path.stem}:{lc.weight:g}>" for lc, path in lora_files)
    shown_prompt = f"{prompt} {tags}".strip()
    out_dir = studio.settings.outputs_dir / dt.date.today().isoformat()
    only_masked = task == "inpaint" and request.inpaint_area == "only masked"
    results = []
    for image, s in zip(images, seeds):
        fields = {
            "Steps": request.steps,
            "Sampler": family.parameters_sampler(request.sampler),
            "Schedule type": family.schedule_type(request.sampler),
            "CFG scale": float(request.cfg),
            "Distilled CFG Scale": None if request.distilled_cfg is None else float(request.distilled_cfg),
            "Seed": s,
            "Size": f"{width}x{height}",
            "Model hash": model_hash,
            "Model": ref.name,
            "Denoising strength": (float(request.strength) if task != "txt2img"
                                   else float(request.hires_strength) if hires else None),
        }
        if task == "inpaint":  # as A1111 writes them: blur when there is one, the padding only for "only masked"
            fields.update({"Mask blur": request.mask_blur or None,
                           "Inpaint area": "Only masked" if only_masked else None,
                           "Masked area padding": request.inpaint_padding if only_masked else None})
        if hires:
            fields.update(hires_fields(request.hires_scale, request.hires_steps, request.hires_upscaler))
        for i, unit in enumerate(request.controls):
            fields[f"ControlNet {i}"] = format_control_unit(unit, request.control_mode)
        fields["Lora hashes"] = lora_hashes
        fields["TI"] = ", ".join(p.stem for p in embedding_files)
        fields["Version"] = f"likeness-studio {__version__}"
        text = format_parameters(prompt=shown_prompt, negative_prompt=request.negative_prompt, fields=fields)
        path = save_png(image, text, out_dir, s) if request.save else None
        results.append(GeneratedImage(image=image, seed=s, parameters=text, path=path))
    return GenerationResult(images=results, request=request, seconds=time.perf_counter() - started, notes=notes)


def _shown(preview: Preview | None, family, size):
    """What a step callback does with the working latents: the preview of a `size` picture, to `preview`."""
    if preview is None:
        return None
    return lambda pipe, latents: preview(preview_picture(family, pipe, latents, size))


def _on_step(progress: ProgressFn, should_stop: StopFn, done: int, total: int, show=None):
    """The pipeline's step callback: progress over every pass (`done` steps ran before this one), the stop flag, and
    every PREVIEW_EVERY steps `show(pipe, latents)` (the live preview)."""

    def on_step(p, step, timestep, kwargs):
        progress((done + step + 1) / total, f"step {done + step + 1}/{total}")
        if show is not None and (done + step + 1) % PREVIEW_EVERY == 0 and "latents" in kwargs:
            show(p, kwargs["latents"])
        if should_stop():
            p._interrupt = True
        return kwargs

    return on_step


def _sample(pipe, request: GenerationRequest, seed: int, kwargs: dict, size: tuple[int, int],
            notes: list[str]) -> list:
    """Call `pipe` with the request's sampler, its VAE in tiles for a picture of `size` above
    placement.TILE_ABOVE_PIXELS (said in `notes`), then put the model's own scheduler back for the next borrower."""
    original_scheduler = pipe.scheduler
    pipe.scheduler = make_scheduler(request.sampler, families.of(pipe), original_scheduler.config, seed=seed)
    tiled = vae_tiling(*size)
    if tiled:
        pipe.vae.enable_tiling()
        notes.append(tiled)
    try:
        with _prompt_first(pipe, request):
            images = pipe(**kwargs).images
    finally:
        pipe.scheduler = original_scheduler
        if tiled:
            pipe.vae.disable_tiling()  # the cached pipeline draws small pictures whole again
    if getattr(pipe, "_interrupt", False):
        pipe._interrupt = False
        raise Cancelled("generation cancelled")
    return images


def _hires_pass(studio, request: GenerationRequest, prompt: str, loras: list[LoraChoice], embeddings: list,
                seeds: list[int], images: list, size: tuple[int, int], guidance: dict, notes: list[str], on_step,
                should_stop: StopFn, family) -> list:
    """A1111's hires fix after the first pass: each picture upscaled to `size`, then img2img over it at
    hires_strength for exactly hires_steps (or steps) steps, with fresh noise from the same seeds."""
    import torch

    from studio.generate.upscale import upscale_to

    upscaled = []
    for image in images:
        big, info = upscale_to(studio, image, request.hires_upscaler, size, should_stop=should_stop)
        upscaled.append(big)
    notes += info.notes
    if info.tile:
        notes.append(f"hires upscale: {info.upscaler} ran in tiles of {info.tile} px")
    steps = request.hires_steps or request.steps
    kwargs = dict(
        prompt=prompt,
        num_inference_steps=hires_schedule(steps, request.hires_strength),
        num_images_per_prompt=len(upscaled),
        generator=[torch.Generator("cpu").manual_seed(s) for s in seeds],
        callback_on_step_end=on_step,
        **family.img2img_kwargs(upscaled, request.hires_strength, size),
        **guidance,  # the first pass's guidance: CFG and negative prompt, or FLUX's distilled guidance
    )
    with studio.cache.pipeline(request.model, task="img2img", loras=loras, embeddings=embeddings) as pipe:
        return _sample(pipe, request, request.seed, kwargs, size, notes)


def _control_kwargs(request: GenerationRequest, task: str, width: int, height: int) -> dict:
    """The pipeline arguments of the request's ControlNets: images at the output size, weights, guidance window, mode.

    A1111's control modes in diffusers' terms. Balanced: every residual at the unit's weight, on both the
    conditional and unconditional passes. "ControlNet is more important": soft weights (below) on the conditional
    pass only, which is exactly diffusers' guess mode. "My prompt is more important": soft weights on both passes,
    which `_prompt_first` arranges around the call.
    """
    units = request.controls
    images = [u.image.convert("RGB").resize((width, height)) for u in units]
    one = len(units) == 1
    kwargs = dict(
        controlnet_conditioning_scale=float(units[0].weight) if one else [float(u.weight) for u in units],
        control_guidance_start=float(units[0].guidance_start) if one else [float(u.guidance_start) for u in units],
        control_guidance_end=float(units[0].guidance_end) if one else [float(u.guidance_end) for u in units],
        guess_mode=request.control_mode == "ControlNet is more important",
    )
    kwargs["control_image" if task == "img2img" else "image"] = images[0] if one else images
    return kwargs


@contextmanager
def _prompt_first(pipe, request: GenerationRequest):
    """For "My prompt is more important", scale each ControlNet's residuals by A1111's soft weights while the pipeline
    still runs the ControlNet on both classifier-free-guidance passes.

    A1111 multiplies the 13 residuals of an SD 1.x ControlNet by 0.825**(12 - i) (0.1 for the shallowest to 1 for the
    middle block). A ControlNet called with guess_mode=True scales them by logspace(-1, 0): the same numbers to
    0.1%. So a pre-forward hook turns that on inside the ControlNet, while the pipeline, called without guess mode,
    keeps feeding it the unconditional pass as well.
    """
    if not request.controls or request.control_mode != "My prompt is more important":
        yield
        return
    controlnet = pipe.controlnet
    nets = list(getattr(controlnet, "nets", [controlnet]))
    handles = [net.register_forward_pre_hook(_soft_weights_hook, with_kwargs=True) for net in nets]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _soft_weights_hook(module, args, kwargs):
    return args, {**kwargs, "guess_mode": True}
