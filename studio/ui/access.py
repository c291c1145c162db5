"""Who may open the studio: the password check (the single-user studio's one user:password, or the accounts of
studio.accounts), with a growing delay after failed logins (so a password cannot be guessed at network speed), where
the login comes from without showing in `ps`, and whose studio a logged-in session is (`session_user`)."""

from __future__ import annotations

import asyncio
import hmac
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from studio.accounts import AuthFile, read_logins
from studio.settings import AUTH_ENV

MAX_DELAY_S = 30.0
MAX_TRACKED = 10_000  # client and user name pairs whose wrong guesses are counted (the least recent are forgotten)
MAX_NAME = 256  # characters of a user name that tell two apart


def parse_auth(text: str, source: str) -> tuple[str, str]:
    """`user:password` -> (user, password); ValueError naming `source` when either part is empty."""
    user, sep, password = (text or "").strip().partition(":")
    if not sep or not user.strip() or not password:
        raise ValueError(f"{source} must be user:password with neither part empty, but is {_shown(text)!r}")
    return user.strip(), password


def auth_from(flag: str | None, auth_file: Path | None) -> dict:
    """The login to require, as Settings fields: `auth_file` for a file of accounts, else `auth` (user:password) from
    a file of that one line, $STUDIO_AUTH or --auth (which `ps` shows); {} for none."""
    if auth_file is not None:
        logins = read_logins(auth_file)
        if logins.one_login is None:
            return {"auth_file": Path(auth_file)}
        text, source = logins.one_login, f"the line of {auth_file}"
    elif os.environ.get(AUTH_ENV):
        text, source = os.environ[AUTH_ENV], f"${AUTH_ENV}"
    elif flag is not None:
        text, source = flag, "`--auth`"
    else:
        return {}
    parse_auth(text, source)
    return {"auth": text.strip()}


def session_user(settings, request) -> tuple[str, bool]:
    """(user, admin) of the session making `request`: with accounts, the logged-in account (a ValueError when it was
    removed meanwhile); else the studio's owner ("", an admin), logged in or on localhost."""
    if not settings.several_users:
        return "", True
    name = getattr(request, "username", None) if request is not None else None
    account = _auth_files(settings.auth_file).current().account(name)
    if account is None:
        raise ValueError("this session's account is not on the studio's list any more: log in again")
    return account.name, account.admin


_FILES: dict = {}


def _auth_files(path: Path) -> AuthFile:
    return _FILES.setdefault(Path(path), AuthFile(path))


class PasswordCheck:
    """gradio's auth is `PasswordCheck(...).login` (a coroutine function: gradio awaits only those, and would take a
    callable object's coroutine for a yes): right credentials open the studio; each wrong guess in a row waits
    longer (0.5 s, 1 s, 2 s ... up to 30 s), and guesses queue behind one another, so 40 guesses take minutes.

    All of it is per client address and user name: a guesser waits and queues alone, never delaying the owner's
    login from elsewhere, and the owner's success resets only the owner's count. `client()` is the address of the
    request being served (studio.ui.gate sets it)."""

    def __init__(self, auth: str | Path, sleep=asyncio.sleep, client=None):
        """`auth`: the one user:password, or the path of an auth file of accounts."""
        from studio.ui.gate import CLIENT

        if isinstance(auth, Path):
            self.accounts, self.user, self.password = _auth_files(auth), "", ""
        else:
            self.accounts, (self.user, self.password) = None, parse_auth(auth, "`auth`")
        self._sleep = sleep
        self._client = client or CLIENT.get
        self._tries: OrderedDict[tuple[str, str], _Tries] = OrderedDict()

    def failures(self, client: str, user: str) -> int:
        """Wrong guesses in a row from `client` for `user`."""
        tries = self._tries.get((client, user[:MAX_NAME]))
        return tries.failures if tries else 0

    @staticmethod
    def delay(failures: int) -> float:
        return min(MAX_DELAY_S, 0.5 * 2 ** (failures - 1)) if failures else 0.0

    async def login(self, user: str, password: str) -> bool:
        tries = self._of((self._client(), user[:MAX_NAME]))
        async with tries.lock:
            if await self._matches(user, password):
                tries.failures = 0
                return True
            tries.failures += 1
            await self._sleep(self.delay(tries.failures))
            return False

    async def _matches(self, user: str, password: str) -> bool:
        if self.accounts is None:
            return hmac.compare_digest(user.encode(), self.user.encode()) & hmac.compare_digest(
                password.encode(), self.password.encode())
        try:
            logins = self.accounts.current()
        except ValueError as e:  # the file was spoiled while serving: nobody gets in until it is right again
            print(f"login refused: {e}", flush=True)
            return False
        return await asyncio.to_thread(logins.check, user, password) is not None  # (scrypt takes ~0.1 s)

    def _of(self, key: tuple[str, str]) -> "_Tries":
        """The tries of `key`, kept among the most recent MAX_TRACKED (one not being waited on goes first)."""
        tries = self._tries.get(key)
        if tries is None:
            tries = self._tries[key] = _Tries(asyncio.Lock())
            if len(self._tries) > MAX_TRACKED:
                idle = [k for k, t in self._tries.items() if not t.lock.locked() and k != key]
                for old in idle[:len(self._tries) - MAX_TRACKED]:
                    del self._tries[old]
        self._tries.move_to_end(key)
        return tries


@dataclass
class _Tries:
    lock: asyncio.Lock
    failures: int = 0


def _shown(text: str | None) -> str:
    """An auth value for an error message, its password hidden."""
    user, sep, password = (text or "").partition(":")
    return f"{user}{sep}{'*' * len(password)}"
