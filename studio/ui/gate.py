"""What every request meets before gradio: where a browser request comes from (only the studio's own page, and the
origins `--allow-origin` names, may call it with the user's login), who the client is (the login's back-off is per
client, studio.ui.access), and room for an upload among the web's copies (studio.copies keeps them under a size);
and the schedule that cleans those copies while the studio serves.

On a studio of several users, the web's copies are their users' (studio.ui.serving notes whose each is): an upload is
noted as its sender's, a file URL of another user's copy is answered as gradio answers one that does not exist, and
a call that names another user's copy as its input is refused alike.

gradio's own CORS rule lets any page on localhost (another port) or, behind another host name, any page at all call
the studio with the user's cookie; the gate stands outside it (the outermost layer of the app) and answers such
requests itself, with 403.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
from contextvars import ContextVar
from pathlib import Path
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import cookie_parser
from starlette.responses import JSONResponse, PlainTextResponse

from studio.copies import clean_copies
from studio.ui.serving import handed_to, note_upload

CLIENT: ContextVar[str] = ContextVar("client", default="")  # the address of the request being served
UPLOAD_PATH = "/gradio_api/upload"
FILE_ROUTE = "/file="
_CALLS = re.compile(r"/(queue/join|call/[^/]+|run/[^/]+|api/[^/]+)/?$")  # requests that carry an event's inputs
_PREFLIGHT = {"Access-Control-Allow-Methods": "GET, POST, OPTIONS", "Access-Control-Allow-Credentials": "true",
              "Access-Control-Max-Age": "600", "Vary": "Origin"}


def own_origin(origin: str, headers: Headers) -> bool:
    """Whether `origin` is the studio's own page: the host it was asked for (or, behind a proxy that says so, the
    host the proxy was asked for)."""
    netloc = urlsplit(origin).netloc.lower()
    hosts = {h.strip().lower() for h in (headers.get("host"), headers.get("x-forwarded-host")) if h}
    return bool(netloc) and netloc in hosts


class Gate:
    """The outermost layer of the web app (ASGI)."""

    def __init__(self, app, settings, logins=None):
        """`logins`: gradio's App (its cookie name and tokens tell who a request is logged in as)."""
        self.app, self.settings, self.logins = app, settings, logins
        self.allowed = {o.lower() for o in settings.allow_origins}

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        token = CLIENT.set((scope.get("client") or ("", 0))[0] or "")
        try:
            await self._serve(scope, receive, send)
        finally:
            CLIENT.reset(token)

    async def _serve(self, scope, receive, send):
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        foreign = origin is not None and not own_origin(origin, headers)
        if foreign and origin.rstrip("/").lower() not in self.allowed:
            if scope["type"] == "websocket":
                return await send({"type": "websocket.close", "code": 1008})
            refused = PlainTextResponse(f"requests from {origin} are not allowed: the studio answers its own page "
                                        f"(start it with --allow-origin {origin} to allow that one)", 403)
            return await refused(scope, receive, send)
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].endswith(UPLOAD_PATH):
            too_big = await self._make_room(headers)
            if too_big is not None:
                return await too_big(scope, receive, send)
        if self.settings.several_users and scope["type"] == "http":
            refused, receive, send = await self._copies_of_users(scope, headers, receive, send)
            if refused is not None:
                return await refused(scope, receive, send)
        if not foreign:
            return await self.app(scope, receive, send)
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:  # an allowed origin's preflight
            answer = {**_PREFLIGHT, "Access-Control-Allow-Origin": origin,
                      "Access-Control-Allow-Headers": headers.get("access-control-request-headers", "")}
            return await PlainTextResponse("OK", headers=answer)(scope, receive, send)

        async def send_allowed(message):
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                out["Access-Control-Allow-Origin"] = origin
                out["Access-Control-Allow-Credentials"] = "true"
                out.add_vary_header("Origin")
            await send(message)

        await self.app(scope, receive, send_allowed)

    def _user(self, headers: Headers) -> str | None:
        """Who the request is logged in as (gradio's login cookie), None when no one."""
        if self.logins is None:
            return None
        cookies = cookie_parser(headers.get("cookie", ""))
        token = cookies.get(f"access-token-{self.logins.cookie_id}") or cookies.get(
            f"access-token-unsecure-{self.logins.cookie_id}")
        return self.logins.tokens.get(token) if token else None

    def _owners(self, path: str) -> tuple[str, set[str]] | None:
        """(gradio's copy folder, whom it was handed to) of a path among the web's copies; None elsewhere."""
        absolute = Path(os.path.abspath(path))
        cache = Path(os.path.abspath(self.settings.gradio_dir))
        if absolute == cache or not absolute.is_relative_to(cache):
            return None
        folder = absolute.relative_to(cache).parts[0]
        return folder, handed_to(folder)

    async def _copies_of_users(self, scope, headers: Headers, receive, send):
        """(a refusal or None, receive, send): a file URL or an event's input naming another user's copy is refused;
        an upload's answer is read to note whose its files are."""
        user, path, method = self._user(headers), scope["path"], scope["method"]
        if method in ("GET", "HEAD") and FILE_ROUTE in path:
            asked = path.split(FILE_ROUTE, 1)[1]
            found = self._owners(asked)
            if found is not None and found[1] and user not in found[1]:
                return JSONResponse({"detail": f"File not allowed: {asked}."}, status_code=403), receive, send
            return None, receive, send
        if method == "POST" and path.endswith(UPLOAD_PATH) and user is not None:
            return None, receive, self._noting_uploads(send, user)
        if method == "POST" and _CALLS.search(path):
            body, receive = await _read_body(receive)
            cache = re.escape(os.path.abspath(self.settings.gradio_dir))
            for named in re.findall(cache.encode() + rb"/[^\"/]+", body):
                found = self._owners(named.decode(errors="replace"))
                # (a folder that is not there is answered alike: the answer tells nothing of others' copies)
                if found is not None and ((found[1] and user not in found[1]) or not os.path.isdir(named)):
                    return JSONResponse({"detail": f"File not allowed: {named.decode(errors='replace')}."},
                                        status_code=403), receive, send
        return None, receive, send

    def _noting_uploads(self, send, user: str):
        """`send` that reads the upload's answer (the paths of gradio's copies) and notes them as `user`'s."""
        parts: list[bytes] = []

        async def noting(message):
            if message["type"] == "http.response.body":
                parts.append(message.get("body", b""))
                if not message.get("more_body"):
                    try:
                        paths = json.loads(b"".join(parts))
                    except ValueError:  # an error's text, not a list of files
                        paths = []
                    for p in paths if isinstance(paths, list) else []:
                        found = self._owners(str(p))
                        if found is not None:
                            note_upload(found[0], user)
            await send(message)

        return noting

    async def _make_room(self, headers: Headers):
        """Clean the web's copies to fit an upload of the request's size; a 413 answer when even that cannot."""
        try:
            size = int(headers.get("content-length") or 0)
        except ValueError:
            size = 0
        cleaned = await asyncio.to_thread(clean_copies, self.settings, room=size)
        if cleaned.kept_bytes + size > self.settings.web_copies_mb * 1024**2:
            return PlainTextResponse(f"an upload of {size / 1024**2:.1f} MB does not fit the "
                                     f"{self.settings.web_copies_mb} MB the studio keeps for uploads", 413)
        return None


def studio_app(settings):
    """gradio's app class with the gate outside everything it adds (its CORS rule included)."""
    from gradio.routes import App, ORJSONResponse  # gradio's own (it serializes gradio's JsonData), as gradio does

    class StudioApp(App):
        def build_middleware_stack(self):
            return Gate(super().build_middleware_stack(), settings, logins=self)

    app = StudioApp(default_response_class=ORJSONResponse)
    app.add_exception_handler(TypeError, _unknown_parameter)
    return app


async def _unknown_parameter(request, exc: TypeError):
    """A call by keyword (POST /gradio_api/call/v2/<endpoint>, as curl sends it) naming no parameter of the endpoint
    is the caller's mistake: 400 with gradio_client's own sentence, which names it, not a bare 500."""
    said = str(exc)
    if "/call/v2/" in request.url.path and said.startswith(("Parameter `", "No value provided")):
        return PlainTextResponse(said.split(" Please click")[0] + f" (the parameters: GET {_INFO})", 400)
    raise exc


_INFO = "/gradio_api/info"


async def _read_body(receive):
    """The whole body of a request, and a `receive` that gives it to the app again."""
    chunks, more = [], True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), _replay([message])
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body = b"".join(chunks)
    return body, _replay([{"type": "http.request", "body": body, "more_body": False}], then=receive)


def _replay(messages: list, then=None):
    async def receive():
        if messages:
            return messages.pop(0)
        return await then() if then is not None else {"type": "http.disconnect"}

    return receive


def cleaning(settings):
    """A lifespan for the app: the web's copies cleaned now and every few minutes while it serves."""
    every = max(1.0, min(300.0, settings.web_copies_max_age_s / 4))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        async def loop():
            while True:
                await asyncio.to_thread(clean_copies, settings)
                await asyncio.sleep(every)

        task = asyncio.create_task(loop())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return lifespan
