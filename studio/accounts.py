"""Accounts: who may log in to a studio served to several people, and who of them is an admin.

The auth file (--auth-file) holds one account a line, `name:scrypt$15$8$1$<salt>$<hash>` and `:admin` after it for
an admin; blank lines and lines starting with # are left alone. Passwords are never stored: each is hashed with
scrypt (hashlib's, a salt of its own per account), and `python -m studio users add NAME` is how a line is written.
A plain `name:password` among accounts is refused with one line saying how to hash it (a file the studio would
rewrite on start-up could be a read-only secret, and a password left in plain text should not go unnoticed).

The single-user studio's login keeps its form: a file of exactly one `user:password` line (as before accounts
existed), $STUDIO_AUTH or --auth. That one person is the studio's owner: workspace/ and models/ as they always were.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from studio import fileio
from studio.names import check_name

SCHEME = "scrypt"
# scrypt's cost: 2^15 x 8 x 128 bytes = 32 MiB and about 0.1 s per check, so a stolen file costs a guesser that much
# per guess; stored in every hash, so a later change leaves older lines valid.
LOG2_N, R, P = 15, 8, 1
MIN_PASSWORD = 8
ADMIN = "admin"


@dataclass(frozen=True)
class Account:
    name: str
    password_hash: str
    admin: bool = False

    def line(self) -> str:
        return f"{self.name}:{self.password_hash}" + f":{ADMIN}" * self.admin


def hash_password(password: str) -> str:
    """`scrypt$<log2 N>$<r>$<p>$<salt>$<hash>` (salt and hash in base64) of `password`, with a new salt."""
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"a password must have at least {MIN_PASSWORD} characters, but this one has {len(password)}")
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, LOG2_N, R, P)
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    return f"{SCHEME}${LOG2_N}${R}${P}${b64(salt)}${b64(digest)}"


def _scrypt(password: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    n = 2 ** log2_n
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=2 * 128 * n * r * p, dklen=32)


def _parts(password_hash: str) -> tuple[int, int, int, bytes, bytes]:
    scheme, log2_n, r, p, salt, digest = password_hash.split("$")
    if scheme != SCHEME or not (10 <= int(log2_n) <= 20 and 1 <= int(r) <= 32 and 1 <= int(p) <= 16):
        raise ValueError(f"not a {SCHEME} hash the studio writes")
    return int(log2_n), int(r), int(p), base64.b64decode(salt, validate=True), base64.b64decode(digest, validate=True)


def password_matches(password_hash: str, password: str) -> bool:
    log2_n, r, p, salt, digest = _parts(password_hash)
    return hmac.compare_digest(_scrypt(password, salt, log2_n, r, p), digest)


_NOBODY = None  # a hash checked when a name is unknown, so an answer takes as long whether the name exists or not


def _nobody_hash() -> str:
    global _NOBODY
    if _NOBODY is None:
        _NOBODY = hash_password(secrets.token_hex(16))
    return _NOBODY


# ---- the file ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Logins:
    """What an auth file says: accounts by name, or (a file of one plain `user:password` line) the single-user
    studio's one login."""

    accounts: dict[str, Account]
    one_login: str | None = None

    def account(self, name: str | None) -> Account | None:
        return self.accounts.get(name or "")

    def check(self, name: str, password: str) -> Account | None:
        """The account `name` logs in to with `password`, or None (taking as long for an unknown name)."""
        found = self.accounts.get(name)
        ok = password_matches(found.password_hash if found else _nobody_hash(), password)
        return found if ok and found is not None else None


def read_logins(path: Path) -> Logins:
    """The auth file's accounts (or its one plain login); a ValueError naming the line when a line is wrong."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ValueError(f"`--auth-file` {path} cannot be read: {e.strerror or e}") from e
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1)
             if line.strip() and not line.strip().startswith("#")]
    if not lines:
        raise ValueError(f"`--auth-file` {path} has no accounts: add one with `python -m studio users add NAME "
                         f"--auth-file {path}`")
    if len(lines) == 1 and not _is_hashed(lines[0][1]):  # the single-user studio's user:password, as it always was
        return Logins({}, one_login=lines[0][1])
    accounts: dict[str, Account] = {}
    for n, line in lines:
        account = _account(line, f"line {n} of {path}", path)
        if account.name in accounts:
            raise ValueError(f"line {n} of {path}: user {account.name!r} has an account on an earlier line already")
        accounts[account.name] = account
    return Logins(accounts)


def _is_hashed(line: str) -> bool:
    return line.partition(":")[2].startswith(SCHEME + "$")


def _account(line: str, where: str, path: Path) -> Account:
    name, _, rest = line.partition(":")
    try:
        check_name(name, "user")
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    if not rest.startswith(SCHEME + "$"):
        raise ValueError(f"{where}: the password of {name!r} is in plain text; the studio takes only hashed ones: "
                         f"remove the line and add it with `python -m studio users add {name} --auth-file {path}` "
                         f"(the password read from standard input)")
    password_hash, *flags = rest.split(":")
    try:
        _parts(password_hash)
    except ValueError:
        raise ValueError(f"{where}: the password hash of {name!r} is damaged (not scrypt$N$r$p$salt$hash)") from None
    if any(flag != ADMIN for flag in flags):
        raise ValueError(f"{where}: after the hash only `:{ADMIN}` may follow, but there is {':'.join(flags)!r}")
    return Account(name, password_hash, admin=bool(flags))


_writing = threading.Lock()


def add_account(path: Path, name: str, password: str, *, admin: bool = False) -> bool:
    """Write `name`'s account (the password hashed) into the auth file at `path`, atomically, readable by its owner
    only; True when it replaced an account of that name (a new password or role)."""
    name = check_name(name, "user")
    account = Account(name, hash_password(password), admin)
    with _writing:
        kept, replaced = _other_lines(path, name)
        fileio.write_text(path, "\n".join([*kept, account.line()]) + "\n", mode=0o600)
    return replaced


def remove_account(path: Path, name: str) -> bool:
    """Take `name`'s line out of the auth file; False when it had none."""
    with _writing:
        kept, found = _other_lines(path, name)
        if found:
            fileio.write_text(path, "\n".join(kept) + "\n", mode=0o600)
    return found


def _other_lines(path: Path, name: str) -> tuple[list[str], bool]:
    """The auth file's lines but `name`'s (read and checked first), and whether it had one."""
    path = Path(path)
    if not path.exists():
        return [], False
    logins = read_logins(path)
    if logins.one_login is not None:
        raise ValueError(f"{path} holds the single-user studio's login (user:password on one line); accounts go in a "
                         f"file of their own: give another --auth-file")
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if line.strip().partition(":")[0] != name or line.strip().startswith("#")]
    return kept, len(kept) != len(lines)


class AuthFile:
    """An auth file as it is now: read again when it changes, so an account added or removed while the studio serves
    counts at once (a removed account's open session is refused at its next action)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._seen: tuple | None = None
        self._logins: Logins | None = None
        self._lock = threading.Lock()

    def current(self) -> Logins:
        try:
            stat = os.stat(self.path)
            seen = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        except OSError:
            seen = None
        with self._lock:
            if self._logins is None or seen != self._seen:
                self._logins, self._seen = read_logins(self.path), seen
            return self._logins
