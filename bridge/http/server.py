"""The HTTP server: aiohttp on its own asyncio loop in its own thread.

Handlers only read the node directory (already gated) and answer; nothing
here can block MQTT or the node pipeline. Middlewares, in order: the edge's
mark that a request's headers are in, security headers, errors as JSON, the
rate cap per client address, the bearer token (header, or a cookie the status
page sets from the URL fragment, so the token never travels in a URL a log
could keep), then the body, read whole within `http.body_timeout`.

The edge (issue 34). Every connection is counted, per client address and in
all, the moment it is accepted; one over `http.max_connections_per_client` or
`http.max_connections` is answered 503 and closed at once, so no number of
clients can take the open files the bridge needs to reach its broker. Headers
must be in within `http.header_timeout` of a request's first byte and a body
within `http.body_timeout` (408, closed); an idle connection goes after
`http.keepalive_timeout`. A request that is not HTTP gets a 4xx in JSON, and
every such event is logged one line per kind per `http.log_interval`, with a
count, never a traceback and never a byte of what the client sent.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import resource
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from bridge.core.loop_thread import LoopThread
from bridge.core.rate import TokenBucket
from bridge.http import views
from bridge.http.config import HttpConfig
from bridge.http.session import Sessions
from bridge.http.stream import Stream
from bridge.http.ui import Frontend
from bridge.ota import http_api as firmware_http
from bridge.plugins.http_api import PluginsHttp

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
OPEN_PATHS = {"/"}  # the page shell and /static/* (its code); its data needs the token or a session
OPEN_PATHS |= firmware_http.PATHS  # the nodes' pull client sends no token (bridge/ota/http_api.py)
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
TOKEN_COOKIE = "ruview_token"
OPEN_FILES_RESERVE = 256  # files the bridge keeps besides HTTP connections: MQTT, UDP, serial, plugins, HomeKit
OPEN_FILES_CEILING = 65_536  # the soft limit is raised no further: nothing here needs more
_SAFE_REASON = re.compile(r"(?:[A-Za-z0-9 ,.()_-]|(?<=n)'(?=t\b))*")  # words, and the ' of "can't"


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _canned(status: int, reason: str, error: str) -> bytes:
    """A whole answer as bytes, for a connection that has no request object to answer (yet)."""
    body = orjson.dumps({"error": error, "status": status})
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\nRetry-After: 5\r\nCache-Control: no-store\r\n\r\n")
    return head.encode() + body


def _what_was_wrong(exc: BaseException | None) -> str:
    """aiohttp's reason for refusing a request, cut before any of the client's bytes it quotes."""
    message = getattr(exc, "message", None) or type(exc).__name__
    match = _SAFE_REASON.match(str(message).split("\n", 1)[0])
    return (match.group(0).strip() if match else "") or type(exc).__name__


def raise_open_files_limit(max_connections: int) -> None:
    """Raise the soft open files limit toward the hard one, and say so when it stays too low.

    The default soft limit (1,024) is below what a bridge with `max_connections` clients and its
    own sockets may need; running out means the next MQTT reconnect fails with "Too many open
    files". The connection caps are the defence and this is the headroom behind them; they also
    keep descriptor numbers low, which paho's select() needs (it cannot watch one past 1023).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    infinite = resource.RLIM_INFINITY
    target = OPEN_FILES_CEILING if hard == infinite else min(hard, OPEN_FILES_CEILING)
    if soft != infinite and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.debug("http: cannot raise the open files limit to %d: %s", target, exc)
    need = max_connections + OPEN_FILES_RESERVE
    if soft != infinite and soft < need:
        log.warning("http: the open files limit is %d%s: below http.max_connections (%d) plus the %d the bridge "
                    "keeps for MQTT, nodes and plugins; once it runs out the bridge cannot reconnect to its broker. "
                    "Raise it (LimitNOFILE= in the service unit, ulimit -n) or lower http.max_connections",
                    soft, " (the hard limit)" if soft == hard else f" (hard limit {hard})", max_connections,
                    OPEN_FILES_RESERVE)


class EdgeLog:
    """One log line per kind of event per interval: the first at once, then, an interval on, how many
    more there were. A client that sends a thousand bad requests costs the log two lines, and no
    line holds a byte the client sent (it may carry a token)."""

    def __init__(self, logger: logging.Logger, interval: float) -> None:
        self.logger, self.interval = logger, interval
        self._last: dict[str, float] = {}
        self._held: dict[str, tuple[int, int]] = {}  # kind -> (level, how many since the last line)

    def report(self, kind: str, level: int, message: str, *args: Any, exc_info: Any = None) -> None:
        """`kind` names the event in the plural, for the count line: "malformed requests"."""
        now = time.monotonic()
        last = self._last.get(kind)
        if last is None or now - last >= self.interval:
            self._last[kind] = now
            _, held = self._held.pop(kind, (level, 0))
            if held:  # not counted yet (no loop to time the count line): this line says how many
                message, args = message + " (and %d more %s before it)", (*args, held, kind)
            self.logger.log(level, message, *args, exc_info=exc_info)
            return
        _, held = self._held.get(kind, (level, 0))
        self._held[kind] = (level, held + 1)
        if not held:
            try:
                asyncio.get_running_loop().call_later(last + self.interval - now, self._count, kind)
            except RuntimeError:
                pass

    def _count(self, kind: str) -> None:
        level, held = self._held.pop(kind, (logging.INFO, 0))
        if held:
            self._last[kind] = time.monotonic()
            self.logger.log(level, "http: %d more %s in the last %g s", held, kind, self.interval)


class Edge:
    """The server's connections, counted per client address and in all, and what it refused or
    timed out. Lives on the server's loop; `stats()` may be read from any thread."""

    def __init__(self, cfg: HttpConfig) -> None:
        self.cfg = cfg
        self.log = EdgeLog(log, cfg.log_interval)
        self.per_client: dict[str, int] = {}
        self.open = 0
        self.refused_in_total = self.refused_per_client = self.stream_refused = 0
        self.header_timeouts = self.body_timeouts = self.malformed = self.internal_errors = 0

    def admit(self, client: str) -> bytes | None:
        """None: the connection is counted; otherwise the 503 to write before closing it."""
        cfg, held = self.cfg, self.per_client.get(client, 0)
        if self.open >= cfg.max_connections:
            self.refused_in_total += 1
            self.log.report("connections refused by http.max_connections", logging.WARNING,
                            "http: refused a connection from %s: %d are open, as many as http.max_connections "
                            "allows (raise it if these are real clients)", client, self.open)
            return _canned(503, "Service Unavailable", f"the bridge has {self.open} HTTP connections open, as many "
                           "as http.max_connections allows; try again shortly")
        if held >= cfg.max_connections_per_client:
            self.refused_per_client += 1
            self.log.report("connections refused by http.max_connections_per_client", logging.WARNING,
                            "http: refused a connection from %s: it has %d open, as many as "
                            "http.max_connections_per_client allows (a proxy in front of the bridge may need more)",
                            client, held)
            return _canned(503, "Service Unavailable", f"this address has {held} connections open, as many as "
                           "http.max_connections_per_client allows; close one")
        self.open += 1
        self.per_client[client] = held + 1
        return None

    def release(self, client: str) -> None:
        self.open -= 1
        left = self.per_client.pop(client, 1) - 1
        if left > 0:
            self.per_client[client] = left

    def timed_out(self, what: str, client: str | None) -> None:
        if what == "headers":
            self.header_timeouts += 1
        else:
            self.body_timeouts += 1
        timeout = self.cfg.header_timeout if what == "headers" else self.cfg.body_timeout
        self.log.report(f"requests whose {what} came too slowly", logging.WARNING,
                        "http: closed a connection from %s: its request's %s took longer than http.%s_timeout "
                        "(%g s)", client, what, "header" if what == "headers" else "body", timeout)

    def bad_request(self, client: str | None, status: int, exc: BaseException | None) -> None:
        self.malformed += 1
        self.log.report("malformed requests", logging.WARNING, "http: malformed request from %s, answered %d (%s)",
                        client, status, type(exc).__name__ if exc is not None else "?")

    def failed(self, what: str, exc: BaseException | None) -> None:
        self.internal_errors += 1
        self.log.report("internal errors", logging.ERROR, "http: %s failed: a bug, please report it with this "
                        "line", what, exc_info=exc)

    def stats(self) -> dict[str, int]:
        return {"connections": self.open, "clients": len(self.per_client), "refused_in_total": self.refused_in_total,
                "refused_per_client": self.refused_per_client, "header_timeouts": self.header_timeouts,
                "body_timeouts": self.body_timeouts, "malformed": self.malformed,
                "stream_refused": self.stream_refused, "internal_errors": self.internal_errors}


EDGE = web.AppKey("edge", Edge)


class _Connection(web.RequestHandler):
    """aiohttp's connection under the edge's rules: admitted or refused as it opens, its headers
    timed, what aiohttp cannot parse answered in JSON and logged through the edge's throttle."""

    def __init__(self, manager: web.Server, edge: Edge, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._edge = edge
        self._client: str | None = None  # set once admitted (and counted)
        self._headers_due: asyncio.TimerHandle | None = None
        self._busy = False
        self._close_after_answer = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        refusal = self._edge.admit(client)
        if refusal is not None:
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(refusal)
            transport.close()
            return
        self._client = client
        super().connection_made(transport)
        self.keep_alive(True)  # drops aiohttp's idle timer for the first request: the header timer bounds that wait
        self._time_headers()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._client is None:
            return  # refused: aiohttp never had it
        self._edge.release(self._client)
        self._client = None
        self._untime_headers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._client is None:
            return
        if data and not self._busy and self._headers_due is None:
            self._time_headers()  # the first byte of the next request on a kept-alive connection
        super().data_received(data)

    def started(self) -> None:
        """A request's headers are in and its handler runs (the first middleware says so)."""
        self._busy = True
        self._untime_headers()

    def finished(self) -> None:
        self._busy = False

    def close_after_answer(self) -> None:
        """Close once this answer is written, without reading (lingering over) the rest of a body."""
        self._close_after_answer = True

    async def finish_response(self, request: web.BaseRequest, resp: web.StreamResponse,
                              start_time: float | None) -> tuple[web.StreamResponse, bool]:
        answered = await super().finish_response(request, resp, start_time)
        if self._close_after_answer:
            self.force_close()
        return answered

    def _time_headers(self) -> None:
        self._untime_headers()
        self._headers_due = self._loop.call_later(self._edge.cfg.header_timeout, self._headers_late)

    def _untime_headers(self) -> None:
        if self._headers_due is not None:
            self._headers_due.cancel()
            self._headers_due = None

    def _headers_late(self) -> None:
        self._headers_due = None
        transport = self.transport
        if self._busy or not isinstance(transport, asyncio.WriteTransport) or transport.is_closing():
            return
        self._edge.timed_out("headers", self._client)
        transport.write(_canned(408, "Request Timeout", f"the request's headers took longer than "
                                f"http.header_timeout ({self._edge.cfg.header_timeout:g} s)"))
        self.force_close()

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status >= 500:
            self._edge.failed(f"answering {request.method} {request.path[:80]!r}", exc)
            error = "the bridge could not answer this request (its log says why)"
        else:
            self._edge.bad_request(request.remote, status, exc)
            error = f"not a request this server can read: {_what_was_wrong(exc)}"
        if request.writer.output_size > 0:
            raise ConnectionError("an answer was already under way; the connection is closed instead")
        response = _json({"error": error, "status": status}, status)
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kw: Any) -> None:
        exc = kw.get("exc_info")
        if isinstance(exc, (RequestPayloadError, HttpProcessingError)):  # the client's bytes, not our bug
            self._edge.bad_request(self._client, 400, exc)
            return
        what = (str(args[0]) % args[1:] if len(args) > 1 else str(args[0])) if args else "a request"
        self._edge.failed(what, exc)


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

    def __init__(self, source, cfg: HttpConfig, stream: Stream) -> None:
        self.source, self.cfg, self.stream = source, cfg, stream
        self.limiter = RateLimiter(cfg.rate_limit)
        self.token = cfg.token_value()
        self.unauthorized = 0
        self.edge = Edge(cfg)
        self.sessions = Sessions(login_required=cfg.login_required(), token=self.token,
                                 password_hash=cfg.password_hash, lifetime=cfg.session_hours * 3600)
        self.frontend = Frontend(source, self.sessions, cfg.bind)

    # ------------------------------------------------------------ the app

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.cfg.max_body,
                              middlewares=[self._started, self._headers, self._errors, self._limit, self._auth,
                                           self._body])
        app[EDGE] = self.edge
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
        r.add_get("/ui/api/stream", self.ui_stream)
        self.frontend.add_routes(r)
        PluginsHttp(self.source).add_routes(r)  # /api/homecore/plugins (bridge/plugins/http_api.py)
        firmware_http.FirmwareHttp(self.source).add_routes(r)  # /api/v1/firmware/* (bridge/ota/http_api.py)
        r.add_get("/", self.page)
        r.add_get("/static/{name}", self.static)
        return app

    @web.middleware
    async def _started(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        connection = request.protocol
        if isinstance(connection, _Connection):
            connection.started()
        try:
            return await handler(request)
        finally:
            if isinstance(connection, _Connection):
                connection.finished()

    @web.middleware
    async def _headers(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        response = await handler(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
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
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception as exc:
            self.edge.failed(f"answering {request.method} {request.path[:80]!r}", exc)
            return _json({"error": "the bridge could not answer this request (its log says why)", "status": 500}, 500)

    @web.middleware
    async def _limit(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        if not self.limiter.allow(request.remote or "?"):
            return _json({"error": f"more than {self.cfg.rate_limit} requests a second from this address",
                          "status": 429}, 429)
        return await handler(request)

    @web.middleware
    async def _auth(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        if self.token is None or request.path in OPEN_PATHS or request.path.startswith(("/static/", "/ui/")):
            return await handler(request)  # the frontend's routes check its session themselves (ui.py)
        if request.method == "GET" and self.frontend.session_of(request) is not None:
            return await handler(request)  # a logged-in page reads what an agent with the token reads
        given = request.headers.get("Authorization", "")
        if given.startswith("Bearer "):
            given = given[7:]
        else:
            try:
                given = request.cookies.get(TOKEN_COOKIE, "")
            except Exception:  # a Cookie header no parser makes sense of is no token
                given = ""
        # headers arrive as UTF-8 with undecodable bytes as lone surrogates: never equal to a real token
        if not hmac.compare_digest(given.encode("utf-8", "surrogatepass"), self.token.encode()):
            self.unauthorized += 1
            return _json({"error": "a valid bearer token is required (Authorization: Bearer $RUVIEW_API_TOKEN)",
                          "status": 401}, 401)
        return await handler(request)

    @web.middleware
    async def _body(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        """The whole body before the handler, within http.body_timeout (and http.max_body: 413)."""
        if request.can_read_body:
            try:
                await asyncio.wait_for(request.read(), self.cfg.body_timeout)
            except asyncio.TimeoutError:
                self.edge.timed_out("body", request.remote)
                if isinstance(request.protocol, _Connection):
                    request.protocol.close_after_answer()
                response = _json({"error": f"the request's body took longer than http.body_timeout "
                                           f"({self.cfg.body_timeout:g} s)", "status": 408}, 408)
                response.force_close()
                return response
            except (RequestPayloadError, HttpProcessingError) as exc:
                self.edge.bad_request(request.remote, 400, exc)
                if isinstance(request.protocol, _Connection):
                    request.protocol.close_after_answer()  # aiohttp would read the broken body again, and raise
                response = _json({"error": f"the request's body cannot be read: {_what_was_wrong(exc)}",
                                  "status": 400}, 400)
                response.force_close()
                return response
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

    async def ui_stream(self, request: web.Request) -> web.StreamResponse:
        """The event stream for the frontend: also its log lines and chart points (a session needed)."""
        if self.frontend.session_of(request) is None:
            return _json({"error": "log in first", "status": 401}, 401)
        return await self.events_stream(request, ui=True)

    async def events_stream(self, request: web.Request, ui: bool = False) -> web.StreamResponse:
        cap = self.cfg.max_stream_clients
        client = self.stream.join(request.query.get("node"), cap, ui)
        if client is None:
            self.edge.stream_refused += 1
            self.edge.log.report("event-stream clients refused", logging.WARNING,
                                 "http: refused an event-stream client from %s: %d are connected, as many as "
                                 "http.max_stream_clients allows", request.remote, cap)
            refused = _json({"error": f"{cap} event-stream clients are connected, as many as "
                                      "http.max_stream_clients allows: close one, or raise it", "status": 503}, 503)
            refused.headers["Retry-After"] = "5"
            return refused
        try:
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                                   "X-Accel-Buffering": "no"})
            await response.prepare(request)
            await self.stream.serve(response, client)
        finally:
            self.stream.leave(client)
        return response

    async def page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Content-Type": "text/html; charset=utf-8"})

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = STATIC / name
        if "/" in name or name.startswith(".") or not path.is_file():
            raise web.HTTPNotFound(reason=f"no such file: {name[:64]}")
        kind = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                ".svg": "image/svg+xml"}.get(path.suffix)
        return web.FileResponse(path, headers={"Content-Type": kind} if kind else None)


class HttpServer:
    """The app on a loop of its own, in a daemon thread, behind the edge the app carries (`EDGE`)."""

    def __init__(self, app: web.Application, bind: str, port: int, access_log: bool) -> None:
        self.app, self.bind, self.port, self.access_log = app, bind, port, access_log
        self.edge = app.get(EDGE) or Edge(HttpConfig())
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.AbstractServer | None = None
        self._thread = LoopThread("http", exception_handler=lambda loop, ctx: log.debug(
            "http: %s", ctx.get("message"), exc_info=ctx.get("exception")))

    def start(self, timeout: float = 10.0) -> None:
        cfg, edge = self.edge.cfg, self.edge
        raise_open_files_limit(cfg.max_connections)

        async def up() -> None:
            loop = asyncio.get_running_loop()
            # handler_cancellation: an event-stream client that goes away frees its place at once
            self._runner = web.AppRunner(self.app, handle_signals=False, handler_cancellation=True,
                                         shutdown_timeout=1.0)
            await self._runner.setup()
            server = self._runner.server
            assert server is not None
            options: dict[str, Any] = {
                "loop": loop, "keepalive_timeout": cfg.keepalive_timeout, "lingering_time": cfg.body_timeout,
                "logger": log, "access_log": log if self.access_log else None, "access_log_class": web.AccessLogger}
            self._listener = await loop.create_server(lambda: _Connection(server, edge, **options), self.bind,
                                                      self.port, reuse_address=True, backlog=128)
            self.port = self._listener.sockets[0].getsockname()[1]  # the port picked, when 0 was asked

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
            if self._listener is not None:
                self._listener.close()
            if self._runner is not None:
                await self._runner.cleanup()

        if not self._thread.stop(down, timeout):
            log.debug("http: stopping the server took too long")
