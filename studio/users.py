"""The users of a studio of several people: who has a workspace, and removing one with everything of theirs.

A user's things are two folders, workspace/users/<user>/ (datasets, runs, sweeps, mining jobs, evaluations,
outputs, exports, caches) and models/users/<user>/ (what they trained, and shared), so removing a user is removing
those (no link followed), their waiting jobs, the web's copies of their files (studio.copies, found by content, the
uploads their datasets were prepared from included) and their account (studio.accounts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from studio import accounts, claims, queue
from studio.names import check_name


def list_users(settings) -> list[str]:
    """The users with a workspace (workspace/users/<name>/), by name."""
    folder = settings.users_dir
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")) if (
        folder.is_dir()) else []


def check_user(settings, name: str) -> str:
    """`name` when it is a user of this studio (a workspace of theirs, or an account in the auth file); a ValueError
    saying how to add one otherwise, so a misspelt --user never makes a new empty workspace unnoticed."""
    name = check_name(name, "user")
    known = set(list_users(settings))
    if settings.auth_file is not None and settings.auth_file.is_file():
        known |= set(accounts.read_logins(settings.auth_file).accounts)
    if name not in known:
        raise ValueError(f"`user` {name!r} is not a user of this studio (users: {', '.join(sorted(known)) or 'none'}); "
                         f"add one with `python -m studio users add {name} --auth-file FILE`")
    return name


@dataclass
class RemovedUser:
    name: str
    removed: list[Path] = field(default_factory=list)  # their folders
    jobs: list[str] = field(default_factory=list)  # their waiting entries taken out of the queue
    copies: int = 0  # the web's copies of their files removed
    account: bool = False  # their line taken out of the auth file

    def line(self) -> str:
        folders = ", ".join(str(p) for p in self.removed) or "no folders"
        jobs = f", {len(self.jobs)} waiting job(s)" if self.jobs else ""
        account = ", their account" if self.account else ""
        return f"removed user {self.name!r}: {folders}{jobs}, {self.copies} web copies{account}"


def remove_user(studio, name: str, auth_file: Path | None = None) -> RemovedUser:
    """Remove user `name` and everything of theirs (an admin's act); refused while one of their jobs runs (cancel
    it first). `auth_file`: where their account is (the studio's own by default)."""
    from studio.copies import remove_copies
    from studio.delete_subject import copied, remove_item

    settings = studio.settings
    if not settings.is_admin:
        raise ValueError("only an admin may remove a user")
    name = check_user(settings, name)
    if name == settings.user:
        raise ValueError("an admin cannot remove their own account while logged in to it")
    folder = claims.queue_dir(settings)
    lineup = queue.lineup(folder)
    running = [e.id for e in lineup.running if e.owner == name]
    if running:
        raise ValueError(f"{running[0]} of user {name!r} is running: cancel it first, then remove the user")
    done = RemovedUser(name)
    for entry in [e for e in lineup.waiting if e.owner == name and not e.event]:
        queue.remove(folder, entry.id)
        done.jobs.append(entry.id)
    mine = settings.for_user(name)
    folders = [p for p in (mine.workspace_dir, mine.own_models_dir) if p.exists() or p.is_symlink()]
    datasets = [p for p in sorted(mine.datasets_dir.glob("*")) if p.is_dir() and not p.is_symlink()]
    sources, hashes = copied(settings, folders, datasets)  # read before the files go
    for path in folders:
        remove_item(path)
        done.removed.append(path)
    done.copies = len(remove_copies(settings, sources, hashes))
    for held in studio.cache.holdings():  # their LoRAs leave the memory too
        for path in held.lora_files:
            if path.is_relative_to(mine.own_models_dir):
                studio.cache.unload_lora(held.model_id, path)
    auth_file = auth_file or settings.auth_file
    if auth_file is not None and Path(auth_file).is_file():
        done.account = accounts.remove_account(auth_file, name)
    return done
