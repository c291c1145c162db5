"""`python -m studio --user NAME share LORA`: share one of your LoRAs with everyone on a studio of several people
(`--undo` takes it back)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("share", help="share a LoRA you trained with every user of the studio (--undo: stop sharing)")
    p.add_argument("lora", help="the LoRA's name (as Generate lists it)")
    p.add_argument("--undo", action="store_true", help="stop sharing it: yours alone again")
    p.set_defaults(run=run)


def run(args, studio) -> int:
    from studio.models.sharing import share_lora, unshare_lora

    where = (unshare_lora if args.undo else share_lora)(studio.store, args.lora)
    print(f"{args.lora}: {'yours alone again' if args.undo else 'shared with everyone'} ({where})")
    return 0
