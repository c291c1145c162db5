"""Who may open the studio: the user:password check, with a growing delay after failed logins (so a password
cannot be guessed at network speed), and where the password comes from without showing in `ps`."""

from __future__ import annotations

import asyncio
import hmac
import os
from pathlib import Path

from studio.settings import AUTH_ENV

MAX_DELAY_S = 30.0


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
    longer (0.5 s, 1 s, 2 s ... up to 30 s), and guesses queue behind one another, so 40 guesses take minutes."""

    def __init__(self, auth: str, sleep=asyncio.sleep):
        self.user, self.password = parse_auth(auth, "`auth`")
        self.failures = 0
        self._sleep = sleep
        self._lock: asyncio.Lock | None = None

    def delay(self) -> float:
        return min(MAX_DELAY_S, 0.5 * 2 ** (self.failures - 1)) if self.failures else 0.0

    async def login(self, user: str, password: str) -> bool:
        self._lock = self._lock or asyncio.Lock()
        async with self._lock:
            ok = hmac.compare_digest(user.encode(), self.user.encode()) & hmac.compare_digest(
                password.encode(), self.password.encode())
            if ok:
                self.failures = 0
                return True
            self.failures += 1
            await self._sleep(self.delay())
            return False


def _shown(text: str | None) -> str:
    """An auth value for an error message, its password hidden."""
    user, sep, password = (text or "").partition(":")
    return f"{user}{sep}{'*' * len(password)}"
