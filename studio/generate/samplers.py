"""Samplers by their A1111/Forge names: checked against a model family's table (ModelFamily.samplers) and built as a
fresh diffusers scheduler with the model's own noise schedule."""

from __future__ import annotations


def all_samplers() -> dict[str, tuple[str, dict]]:
    """Every registered family's samplers by name (a name shared by families, such as Euler, is listed once)."""
    from studio.models import families

    known: dict[str, tuple[str, dict]] = {}
    for family in reversed(families.all_families()):  # the oldest family's table first
        for name, impl in family.samplers.items():
            known.setdefault(name, impl)
    return known


def check_sampler(name: str, family=None) -> str:
    """`name` if it is a sampler of `family` (of any family when `family` is None)."""
    known = all_samplers() if family is None else family.samplers
    if name not in known:
        which = "" if family is None else f" for {family.label}"
        raise ValueError(f"`sampler` {name!r} is unknown{which}; valid samplers are: {', '.join(known)}")
    return name


def make_scheduler(name: str, family, base_config, seed: int | None = None):
    """A fresh scheduler for sampler `name` of `family` with the base model's noise schedule (betas, timestep
    spacing, shift...).

    `seed`: SDE samplers draw their Brownian noise from a generator of their own, which diffusers seeds at random
    unless told; A1111 seeds it from the image's seed, so a seed gives the same picture every time.
    """
    import inspect

    import diffusers

    class_name, extra = family.samplers[check_sampler(name, family)]
    cls = getattr(diffusers, class_name)
    config = {k: v for k, v in dict(base_config).items() if not k.startswith("_")}
    if seed is not None and "noise_sampler_seed" in inspect.signature(cls.__init__).parameters:
        extra = {**extra, "noise_sampler_seed": seed}
    return cls.from_config({**config, **extra})
