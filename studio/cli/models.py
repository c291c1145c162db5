"""`python -m studio models`: what the model store holds (base models, LoRAs, embeddings, ControlNets, upscalers)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("models", help="list the model store")
    p.set_defaults(run=run)


def run(args, studio) -> int:
    listing = studio.store.list_models()
    print(f"models folder: {studio.settings.models_dir}")
    print(f"default base: {studio.store.default_model}")
    for title, items in (("base", listing.base), ("lora", listing.lora), ("embeddings", listing.embeddings),
                         ("controlnet", listing.controlnet), ("upscale", listing.upscale)):
        print(f"{title}:")
        for item in items:
            print(f"  {item}")
        if not items:
            print("  (none)")
    return 0
