"""The HTTP server: aiohttp on its own asyncio loop in its own thread.

Handlers only read the node directory (already gated) and answer; nothing
here can block MQTT or the node pipeline. Middlewares, in order: security
headers, errors as JSON, the rate cap per client address, then the bearer
token (header, or a cookie the status page sets from the URL fragment, so
the token never travels in a URL a log could keep).
"""

from __future__ import annotations

import hmac
import logging
import uuid
from pathlib import Path
from typing import Any, Callable

import orjson
from aiohttp import web

from bridge.core.loop_thread import LoopThread
from bridge.core.rate import TokenBucket
from bridge.http import views
from bridge.http.stream import Stream

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
OPEN_PATHS = {"/", "/static/style.css", "/static/app.js"}  # the page shell; its data needs the token
TOKEN_COOKIE = "ruview_token"


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


class RateLimiter:
    """A token bucket per client address: `rate` per second, bursts of twice that."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._buckets: dict[str, TokenBucket] = {}
        self.refused = 0

    def allow(self, client: str) -> bool:
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= 10_000:  # forget the oldest clients rather than grow
                for key in list(self._buckets)[:1000]:
                    del self._buckets[key]
            bucket = self._buckets[client] = TokenBucket(self.rate)
        if bucket.take():
            return True
        self.refused += 1
        return False


class Api:
    """What each route answers; `source` is the extension's read-only view of the bridge."""

    def __init__(self, source, cfg, stream: Stream) -> None:
        self.source, self.cfg, self.stream = source, cfg, stream
        self.limiter = RateLimiter(cfg.rate_limit)
        self.token = cfg.token_value()
        self.unauthorized = 0

    # ------------------------------------------------------------ the app

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.cfg.max_body,
                              middlewares=[self._headers, self._errors, self._limit, self._auth])
        r = app.router
        r.add_get("/health", self.health)
        r.add_get("/api/v1/sensing/latest", self.sensing_latest)
        r.add_get("/api/v1/edge/registry", self.registry)
        r.add_get("/api/v1/vitals/{node}/latest", self.vitals)
        r.add_get("/api/v1/bfld/{node}/last_scan", self.bfld_last_scan)
        r.add_route("GET", "/api/v1/bfld/{node}/subscribe", self.bfld_subscribe)
        r.add_route("POST", "/api/v1/bfld/{node}/subscribe", self.bfld_subscribe)
        r.add_get("/api/v1/semantic-events/{node}/latest", self.semantic_events)
        r.add_get("/api/v1/events/stream", self.events_stream)
        r.add_get("/api/v1/status", self.status)
        r.add_get("/", self.page)
        r.add_get("/static/{name}", self.static)
        return app

    @web.middleware
    async def _headers(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        response = await handler(request)
        response.headers.setdefault("Content-Security-Policy",
                                    "default-src 'self'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    @web.middleware
    async def _errors(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return _json({"error": exc.reason, "status": exc.status}, exc.status)
        except views.NodeNotFound as exc:
            return _json({"error": str(exc), "status": 404}, 404)

    @web.middleware
    async def _limit(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        if not self.limiter.allow(request.remote or "?"):
            return _json({"error": f"more than {self.cfg.rate_limit} requests a second from this address",
                          "status": 429}, 429)
        return await handler(request)

    @web.middleware
    async def _auth(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        if self.token is None or request.path in OPEN_PATHS:
            return await handler(request)
        given = request.headers.get("Authorization", "")
        given = given[7:] if given.startswith("Bearer ") else request.cookies.get(TOKEN_COOKIE, "")
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            self.unauthorized += 1
            return _json({"error": "a valid bearer token is required (Authorization: Bearer $RUVIEW_API_TOKEN)",
                          "status": 401}, 401)
        return await handler(request)

    # ------------------------------------------------------------ routes

    def _node(self, request: web.Request):
        return views.resolve(self.source.directory, request.match_info["node"], self.cfg.default_node)

    async def health(self, request: web.Request) -> web.Response:
        return _json(views.health(self.source.bridge_health(), self.source.nodes()))

    async def sensing_latest(self, request: web.Request) -> web.Response:
        return _json(views.sensing_latest(self.source.nodes()))

    async def registry(self, request: web.Request) -> web.Response:
        return _json(views.registry(self.source.modules(), self.source.nodes()))

    async def vitals(self, request: web.Request) -> web.Response:
        return _json(views.vitals(self._node(request)))

    async def bfld_last_scan(self, request: web.Request) -> web.Response:
        return _json(views.bfld_last_scan(self._node(request)))

    async def bfld_subscribe(self, request: web.Request) -> web.Response:
        node = self._node(request)
        body = await request.read() if request.method == "POST" else b""  # capped at http.max_body
        raw = request.query.get("duration_s")
        if raw is None and body.strip():
            try:
                raw = str(orjson.loads(body).get("duration_s"))
            except (orjson.JSONDecodeError, AttributeError):
                return _json({"error": "the body must be JSON like {\"duration_s\": 60}", "status": 400}, 400)
        raw = raw or "60"
        try:
            duration = float(raw)
        except ValueError:
            duration = -1.0
        if not 0 < duration <= 3600:
            return _json({"error": f"duration_s must be a number of seconds, 0 < duration_s <= 3600, "
                                   f"got {raw[:20]!r}", "status": 400}, 400)
        return _json(views.subscription(node, str(uuid.uuid4()), duration, self.source.topics))

    async def semantic_events(self, request: web.Request) -> web.Response:
        node = self._node(request)
        return _json(views.semantic_events(node, self.source.latest_events(node.node_id),
                                           self.source.schedule_aware(node.node_id)))

    async def status(self, request: web.Request) -> web.Response:
        nodes = self.source.nodes()
        return _json({"health": views.health(self.source.bridge_health(), nodes),
                      "nodes": [views.node_summary(n) for n in nodes],
                      "events": self.source.recent_events(), "plugins": self.source.modules(),
                      "assist": None})

    async def events_stream(self, request: web.Request) -> web.StreamResponse:
        node = request.query.get("node")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        await self.stream.serve(response, node)
        return response

    async def page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Content-Type": "text/html; charset=utf-8"})

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = STATIC / name
        if "/" in name or name.startswith(".") or not path.is_file():
            raise web.HTTPNotFound(reason=f"no such file: {name[:64]}")
        return web.FileResponse(path)


class HttpServer:
    """The app on a loop of its own, in a daemon thread."""

    def __init__(self, app: web.Application, bind: str, port: int, access_log: bool) -> None:
        self.app, self.bind, self.port, self.access_log = app, bind, port, access_log
        self._runner: web.AppRunner | None = None
        self._thread = LoopThread("http", exception_handler=lambda loop, ctx: log.debug(
            "http: %s", ctx.get("message"), exc_info=ctx.get("exception")))

    def start(self, timeout: float = 10.0) -> None:
        async def up() -> None:
            self._runner = web.AppRunner(self.app, access_log=log if self.access_log else None,
                                         handle_signals=False)
            await self._runner.setup()
            site = web.TCPSite(self._runner, self.bind, self.port, reuse_address=True)
            await site.start()
            self.port = self._runner.addresses[0][1]  # the port picked, when 0 was asked (its one site)

        try:
            self._thread.start(up, timeout)
        except Exception as exc:
            raise RuntimeError(f"cannot serve HTTP on {self.bind}:{self.port}: "
                               f"{getattr(exc, 'strerror', None) or exc} (set http.port)") from None

    def call(self, fn: Callable, *args: Any) -> None:
        """Run fn on the server's loop (from any thread)."""
        self._thread.call(fn, *args)

    def call_later(self, delay: float, fn: Callable, *args: Any) -> None:
        """Run fn on the server's loop `delay` seconds from now (from any thread)."""
        self._thread.call_later(delay, fn, *args)

    def stop(self, timeout: float = 5.0) -> None:
        async def down() -> None:
            if self._runner is not None:
                await self._runner.cleanup()

        if not self._thread.stop(down, timeout):
            log.debug("http: stopping the server took too long")
