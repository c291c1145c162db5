"""Who may open the studio: the user:password check, with a growing delay after failed logins (so a password
cannot be guessed at network speed), and where the password comes from without showing in `ps`."""

from __future__ import annotations

import asyncio
import hmac
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

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


def read_auth_file(path: Path) -> str:
    """The first line of an --auth-file (user:password)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ValueError(f"`--auth-file` {path} cannot be read: {e.strerror or e}") from e
    return lines[0].strip() if lines else ""


def auth_from(flag: str | None, auth_file: Path | None) -> str | None:
    """The user:password to require: --auth-file, else $STUDIO_AUTH, else --auth (which `ps` shows), else none."""
    if auth_file is not None:
        text, source = read_auth_file(auth_file), f"the first line of {auth_file}"
    elif os.environ.get(AUTH_ENV):
        text, source = os.environ[AUTH_ENV], f"${AUTH_ENV}"
    elif flag is not None:
        text, source = flag, "`--auth`"
    else:
        return None
    parse_auth(text, source)
    return text.strip()


class PasswordCheck:
    """gradio's auth is `PasswordCheck(...).login` (a coroutine function: gradio awaits only those, and would take a
    callable object's coroutine for a yes): right credentials open the studio; each wrong guess in a row waits
    longer (0.5 s, 1 s, 2 s ... up to 30 s), and guesses queue behind one another, so 40 guesses take minutes.

    All of it is per client address and user name: a guesser waits and queues alone, never delaying the owner's
    login from elsewhere, and the owner's success resets only the owner's count. `client()` is the address of the
    request being served (studio.ui.gate sets it)."""

    def __init__(self, auth: str, sleep=asyncio.sleep, client=None):
        from studio.ui.gate import CLIENT

        self.user, self.password = parse_auth(auth, "`auth`")
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
            ok = hmac.compare_digest(user.encode(), self.user.encode()) & hmac.compare_digest(
                password.encode(), self.password.encode())
            if ok:
                tries.failures = 0
                return True
            tries.failures += 1
            await self._sleep(self.delay(tries.failures))
            return False

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
