"""`python -m studio serve` (and `python app.py`): start the web studio."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    from studio.settings import AUTH_ENV

    p = sub.add_parser("serve", help="start the web studio")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for all, which needs a login)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--model", default="", help="base model to start with (default: best builtin)")
    p.add_argument("--auth-file", type=Path, default=None,
                   help="the accounts (one `name:hash` a line, written by `python -m studio users add NAME`): each "
                        f"person logs in to a workspace of their own; or one line user:password, the single-user "
                        f"studio's login (or set ${AUTH_ENV})")
    p.add_argument("--auth", default=None, help="user:password on the command line (other users of this machine "
                                                "can read it in `ps`: prefer --auth-file)")
    p.add_argument("--no-auth", action="store_true",
                   help="serve beyond this machine (--host, --share) with no login: only on a network you trust")
    p.add_argument("--max-upload-mb", type=int, default=None, help="largest file one upload may be (default 1024)")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="a web page origin (scheme://host[:port]) that may call the studio from a browser with the "
                        "user's login, besides the studio's own page (repeatable; e.g. behind a proxy that rewrites "
                        "the Host header)")
    p.add_argument("--share", action="store_true", help="ask gradio for a public link")
    p.set_defaults(run=run, adjust_settings=adjust_settings)


def adjust_settings(args, settings):
    from studio.settings import LOGIN_HINT
    from studio.ui.access import auth_from

    if settings.user:
        raise ValueError("`serve` serves the studio to all its users (each logs in to their own): leave out --user")
    changes = dict(host=args.host, port=args.port, no_auth=args.no_auth,
                   default_model=args.model or settings.default_model, **auth_from(args.auth, args.auth_file))
    if args.max_upload_mb is not None:
        changes["max_upload_mb"] = args.max_upload_mb
    login = changes.get("auth") or changes.get("auth_file")
    if args.share and not login and not args.no_auth:  # a public link lets anyone in, whatever --host is
        raise ValueError(f"--share gives a public link, so the studio needs a login: {LOGIN_HINT}")
    if args.allow_origin:
        changes["allow_origins"] = tuple(args.allow_origin)
    return settings.with_(**changes)


def run(args, studio) -> int:
    from studio.ui import launch

    launch(studio, share=args.share)
    return 0
