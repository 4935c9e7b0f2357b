"""The frontend's own API (`/ui/api/...`): what the page reads, and the one way it changes anything.

Every change is a request verb sent through the bridge's request API (`POST /ui/api/request/<verb>`
→ `ExtensionContext.request`, the same handler, inbox, checks and answer as
`<base>/bridge/request/<verb>` on MQTT), or the MQTT message a voice satellite sends (a sentence
on `<base>/assist/utterance`, its answer from `<base>/assist/response`). Nothing here
changes state itself, so the page can do nothing a request cannot.

Guards, for every route: the session (session.py); on a loopback bind the Host header must name
a loopback host (a page on a rebound DNS name cannot reach us); for every POST, a JSON body, an
Origin (when the browser sends one) that is this server, and the session's CSRF token.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
from typing import Any, Awaitable, Callable

import orjson
import segno
from aiohttp import web

from bridge import privacy
from bridge.http import session as sessions
from bridge.http import views
from bridge.http.session import COOKIE, CSRF_HEADER, Sessions
from bridge.homekit import pairing
from bridge.plugins.manifest import load_manifest

Route = Callable[[web.Request], Awaitable[web.StreamResponse]]
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}
MAX_SENTENCE = 1000  # characters the assist console sends


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(status: int, error: str) -> web.Response:
    return _json({"error": error, "status": status}, status)


# what Restricted withholds, in words (privacy.RESTRICTED_FIELDS; tests/http/test_frontend.py keeps them in step)
WITHHELD_WORDS = {"breathing_bpm": "breathing", "breathing_valid": "breathing", "heart_bpm": "heart rate",
                  "heart_valid": "heart rate", "anomaly": "anomaly scores", "anomaly_score": "anomaly scores",
                  "env_shift": "environment shift", "env_shift_score": "environment shift",
                  "coherence": "coherence", "node_coherence": "coherence"}


def class_explanations() -> list[dict[str, Any]]:
    """What each privacy class lets out, from the privacy module's own rules."""
    withheld = list(dict.fromkeys([WITHHELD_WORDS[f] for f in WITHHELD_WORDS if f in privacy.RESTRICTED_FIELDS]
                                  + sorted(f for f in privacy.RESTRICTED_FIELDS if f not in WITHHELD_WORDS)))
    out = []
    for cls in privacy.PrivacyClass:
        refusal = privacy.export_refusal(cls)
        if refusal:
            lets_out = "nothing: only anonymous and restricted nodes may leave this host (privacy rule 2)"
        elif cls is privacy.PrivacyClass.RESTRICTED:
            lets_out = (f"presence, occupancy, motion, falls, person count and events; never {', '.join(withheld)} "
                        "(privacy rule 3)")
        else:
            lets_out = "presence, occupancy, motion, falls, person count, breathing and heart rate, events"
        out.append({"class": cls.label, "level": int(cls), "exportable": refusal is None, "lets_out": lets_out})
    return out


class Frontend:
    """The `/ui/api` routes; `source` is the HTTP extension (what the bridge holds, and its requests)."""

    def __init__(self, source: Any, sessions: Sessions, bind: str) -> None:
        self.source, self.sessions = source, sessions
        self.loopback = ipaddress.ip_address(bind).is_loopback
        self.refused_host = 0

    def add_routes(self, router: web.UrlDispatcher) -> None:
        get, post = router.add_get, router.add_post
        get("/ui/api/session", self._guard(self.session, login=False))
        post("/ui/api/login", self._guard(self.login, login=False, csrf=False))
        post("/ui/api/logout", self._guard(self.logout, login=False))
        get("/ui/api/overview", self._guard(self.overview))
        get("/ui/api/node/{node}", self._guard(self.node))
        post("/ui/api/request/{verb:[a-z_]+(?:/[a-z_]+)?}", self._guard(self.request))
        post("/ui/api/assist", self._guard(self.assist))
        get("/ui/api/plugins", self._guard(self.plugins))
        get("/ui/api/homekit", self._guard(self.homekit))
        get("/ui/api/homekit/qr.svg", self._guard(self.homekit_qr))
        get("/ui/api/logs", self._guard(self.logs))

    # ------------------------------------------------------------ guards

    def _guard(self, route: Route, *, login: bool = True, csrf: bool = True) -> Route:
        async def guarded(request: web.Request) -> web.StreamResponse:
            if self.loopback and (request.host.rsplit(":", 1)[0] if not request.host.endswith("]")
                                  else request.host) not in LOOPBACK_NAMES:
                self.refused_host += 1
                return _error(403, "this page answers on a loopback name only (127.0.0.1, localhost, [::1])")
            session = self.session_of(request)
            if login and session is None:
                return _error(401, "log in first")
            if request.method == "POST":
                if request.content_type != "application/json":
                    return _error(415, "send JSON (Content-Type: application/json)")
                origin = request.headers.get("Origin")
                if origin is not None and origin != f"{request.scheme}://{request.host}":
                    self.sessions.csrf_refused += 1
                    return _error(403, "a change must come from this page (the Origin is another site)")
                if csrf and not self.sessions.csrf_ok(session, request.headers.get(CSRF_HEADER)):
                    return _error(403, f"a change needs this session's CSRF token in {CSRF_HEADER}: reload the page")
            return await route(request)

        return guarded

    def session_of(self, request: web.Request) -> sessions.Session | None:
        try:
            sid = request.cookies.get(COOKIE)
        except Exception:  # a Cookie header no parser makes sense of is no session
            return None
        session = self.sessions.get(sid)
        if session is not None and self.sessions.login_required and not session.logged_in:
            return None
        return session

    def _set_cookie(self, response: web.Response, sid: str) -> None:
        response.set_cookie(COOKIE, sid, httponly=True, samesite="Strict", path="/",
                            max_age=int(self.sessions.lifetime), secure=False)

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = orjson.loads(await request.read() or b"{}")
        except orjson.JSONDecodeError:
            raise web.HTTPBadRequest(reason="the body is not JSON") from None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(reason="the body must be a JSON object")
        return body

    async def _blocking(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    # ------------------------------------------------------------ sessions

    async def session(self, request: web.Request) -> web.Response:
        session = self.session_of(request)
        if session is not None:
            return _json({"login_required": self.sessions.login_required, "logged_in": True, "csrf": session.csrf})
        if self.sessions.login_required:
            return _json({"login_required": True, "logged_in": False, "csrf": None})
        sid, session = self.sessions.new(logged_in=False)  # loopback: a session without a login
        response = _json({"login_required": False, "logged_in": True, "csrf": session.csrf})
        self._set_cookie(response, sid)
        return response

    async def login(self, request: web.Request) -> web.Response:
        client = request.remote or "?"
        if not self.sessions.may_try(client):
            return _error(429, "too many failed logins from this address: wait a minute")
        secret = (await self._body(request)).get("secret")
        if not isinstance(secret, str) or not secret or len(secret) > 1024 \
                or not self.sessions.check_secret(client, secret):
            return _error(401, "that is not this bridge's API token or password")
        sid, session = self.sessions.new(logged_in=True)
        response = _json({"login_required": self.sessions.login_required, "logged_in": True, "csrf": session.csrf})
        self._set_cookie(response, sid)
        return response

    async def logout(self, request: web.Request) -> web.Response:
        try:
            self.sessions.end(request.cookies.get(COOKIE))
        except Exception:
            pass
        response = _json({"logged_in": False})
        response.del_cookie(COOKIE, path="/")
        return response

    # ------------------------------------------------------------ reading

    async def overview(self, request: web.Request) -> web.Response:
        nodes = self.source.nodes()
        health = self.source.bridge_health()
        features = {name: e.get("state") for name, e in (health.get("extensions") or {}).items()}
        return _json({"health": views.health(health, nodes), "features": features,
                      "nodes": [self.source.node_row(n) for n in nodes], "events": self.source.recent_events(),
                      "samples": self.source.history.samples()})

    async def node(self, request: web.Request) -> web.Response:
        node = views.resolve(self.source.directory, request.match_info["node"], None)
        return _json({"node": self.source.node_row(node), "classes": class_explanations()})

    async def plugins(self, request: web.Request) -> web.Response:
        listed = await self._blocking(self.source.request, "plugin/list", {})
        if listed["status"] != "ok":
            return _json({"enabled": False, "error": listed.get("error")})
        audit = await self._blocking(self.source.audit)
        plugins = [{**p, "permissions": await self._blocking(permissions_of, p.get("directory"))}
                   for p in listed["data"].get("plugins", [])]
        return _json({"enabled": True, **listed["data"], "plugins": plugins, "audit": audit})

    async def homekit(self, request: web.Request) -> web.Response:
        return _json(await self._blocking(self.source.homekit_pairing))

    async def homekit_qr(self, request: web.Request) -> web.Response:
        info = await self._blocking(self.source.homekit_pairing)
        if not info.get("uri"):
            raise web.HTTPNotFound(reason="HomeKit is not running")
        out = io.BytesIO()
        segno.make(info["uri"], error="m").save(out, kind="svg", scale=6, border=2, title="HomeKit setup code")
        return web.Response(body=out.getvalue(), content_type="image/svg+xml")

    async def logs(self, request: web.Request) -> web.Response:
        return _json({"lines": self.source.history.logs()})

    # ------------------------------------------------------------ changing (requests and MQTT only)

    async def request(self, request: web.Request) -> web.Response:
        """A request verb, answered exactly as on `<base>/bridge/response/<verb>`."""
        body = await self._body(request)
        return _json(await self._blocking(self.source.request, request.match_info["verb"], body))

    async def assist(self, request: web.Request) -> web.Response:
        """A sentence on `<base>/assist/utterance`, and the answer from `<base>/assist/response`."""
        body = await self._body(request)
        text = body.get("text")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_SENTENCE:
            return _json({"status": "error", "data": {}, "error": f"type a sentence (at most {MAX_SENTENCE} characters)"})
        language = body.get("language") if isinstance(body.get("language"), str) else None
        return _json(await self._blocking(self.source.assist, text, language, body.get("dry_run") is True))


def permissions_of(directory: Any) -> list[str] | None:
    """The permissions a loaded plugin's manifest claims (read as the loader reads it: bounded, checked)."""
    if not isinstance(directory, str):
        return None
    try:
        return list(load_manifest(directory).homecore_permissions)
    except Exception:  # a manifest changed or removed since it loaded: nothing to show
        return None


def pairing_info(state_dir: Any, running: bool) -> dict[str, Any]:
    """What the HomeKit page shows, read from the files `ruview-bridge homekit pair-info` reads (never
    made here: without a running HomeKit feature there is no code to show)."""
    files = pairing.PairingFiles(state_dir)
    if not running:
        return {"running": False}
    try:
        data = orjson.loads(files.setup_file.read_bytes())
        setup = pairing.Setup(data["pincode"], data["setup_id"])
    except (OSError, ValueError, KeyError, TypeError):
        return {"running": True, "error": f"cannot read {files.setup_file}"}
    try:
        state = orjson.loads(files.state.read_bytes())
    except (OSError, ValueError):
        state = {}
    props = state.get("client_properties") or {}
    controllers = [{"id": cid, "admin": bool((props.get(cid) or {}).get("permissions"))}
                   for cid in sorted(state.get("paired_clients") or {})]
    return {"running": True, "pincode": setup.pincode, "setup_id": setup.setup_id,
            "uri": pairing.setup_uri(setup), "paired": bool(controllers), "controllers": controllers,
            "unpair_verb": "homekit/unpair"}
