"""`python -m studio users`: the accounts of a studio served to several people (add, list, remove). Each account
logs in to a workspace of its own (workspace/users/NAME/, models/users/NAME/); the admin (the machine's owner on the
command line, or an account marked admin) adds and removes them."""

from __future__ import annotations

import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("users", help="accounts of a studio of several people: add, list, remove")
    actions = p.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="add an account (or give it a new password): the password is read from "
                                         "standard input, and its scrypt hash written to the auth file")
    add.add_argument("name", help="the user's name: 1-64 letters, digits, '_', '-' or '.'")
    add.add_argument("--auth-file", type=Path, required=True, help="the accounts file `serve --auth-file` reads")
    add.add_argument("--admin", action="store_true", help="may remove users and sees every job in the queue")
    listing = actions.add_parser("list", help="the users: accounts and workspaces")
    listing.add_argument("--auth-file", type=Path, default=None)
    remove = actions.add_parser("remove", help="remove a user with everything of theirs (datasets, runs, models, "
                                               "pictures, jobs waiting, the web's copies) and their account")
    remove.add_argument("name")
    remove.add_argument("--auth-file", type=Path, default=None, help="take their account out of this file too")
    remove.add_argument("--yes", action="store_true", help="remove; without it, only say what would go")
    p.set_defaults(run=run)


def run(args, studio) -> int:
    from studio import accounts
    from studio.users import check_user, list_users, remove_user

    settings = studio.settings
    if not settings.is_admin:
        raise ValueError("accounts are the admin's: run `users` without --user, as the studio's owner")
    if args.action == "add":
        password = _password()
        replaced = accounts.add_account(args.auth_file, args.name, password, admin=args.admin)
        settings.for_user(args.name).workspace_dir.mkdir(parents=True, exist_ok=True)
        role = " (admin)" if args.admin else ""
        print(f"{'changed' if replaced else 'added'} user {args.name!r}{role} in {args.auth_file}; their workspace: "
              f"{settings.for_user(args.name).workspace_dir}")
        return 0
    if args.action == "list":
        found = accounts.read_logins(args.auth_file).accounts if args.auth_file else {}
        for name in sorted(set(found) | set(list_users(settings))):
            account = found.get(name)
            role = "admin" if account and account.admin else "user"
            where = "" if name in list_users(settings) else " (no workspace yet)"
            print(f"{name:24} {role if account or not args.auth_file else 'no account'}{where}")
        return 0
    name = check_user(settings.with_(auth_file=args.auth_file), args.name)
    mine = settings.for_user(name)
    if not args.yes:
        print(f"would remove user {name!r}: {mine.workspace_dir}, {mine.own_models_dir}, their waiting jobs, the web's "
              f"copies of their files" + (f" and their account in {args.auth_file}" if args.auth_file else ""))
        print("nothing was removed: add --yes to remove them")
        return 1
    print(remove_user(studio, name, args.auth_file).line())
    if args.auth_file is None:
        print(f"an account of {name!r} in an auth file is left as it is: give --auth-file to remove it too")
    return 0


def _password() -> str:
    """The password: the first line of standard input (typed, without showing it, at a terminal)."""
    if sys.stdin.isatty():
        import getpass

        first, again = getpass.getpass("password: "), getpass.getpass("again: ")
        if first != again:
            raise ValueError("the two passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")
