"""`python -m studio serve`: start the web studio."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("serve", help="start the web studio")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--model", default="", help="base model to start with (default: best builtin)")
    p.add_argument("--auth", default=None, help="user:password required to open the studio")
    p.add_argument("--share", action="store_true", help="ask gradio for a public link")
    p.set_defaults(run=run, adjust_settings=adjust_settings)


def adjust_settings(args, settings):
    if args.auth is not None and ":" not in args.auth:
        raise ValueError(f"`--auth` must be user:password but is {args.auth!r}")
    return settings.with_(host=args.host, port=args.port, auth=args.auth,
                          default_model=args.model or settings.default_model)


def run(args, studio) -> int:
    from studio.ui import launch

    launch(studio, share=args.share)
    return 0
