"""What every request meets before gradio: where a browser request comes from (only the studio's own page, and the
origins `--allow-origin` names, may call it with the user's login), who the client is (the login's back-off is per
client, studio.ui.access), and room for an upload among the web's copies (studio.copies keeps them under a size);
and the schedule that cleans those copies while the studio serves.

gradio's own CORS rule lets any page on localhost (another port) or, behind another host name, any page at all call
the studio with the user's cookie; the gate stands outside it (the outermost layer of the app) and answers such
requests itself, with 403.
"""

from __future__ import annotations

import asyncio
import contextlib
from contextvars import ContextVar
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import PlainTextResponse

from studio.copies import clean_copies

CLIENT: ContextVar[str] = ContextVar("client", default="")  # the address of the request being served
UPLOAD_PATH = "/gradio_api/upload"
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

    def __init__(self, app, settings):
        self.app, self.settings = app, settings
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
            return Gate(super().build_middleware_stack(), settings)

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
