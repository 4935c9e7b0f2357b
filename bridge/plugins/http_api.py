"""Plugins managed over the sensing HTTP API (the seed's HOMECORE-API routes, ADR-128 P4/P5).

    GET    /api/homecore/plugins                   loaded and rejected plugins, with their config form
    POST   /api/homecore/plugins                   load: {"path": <directory>} or {"cog_id": <id>} (installed
                                                   from plugins.registry first, with every registry check)
    DELETE /api/homecore/plugins/<domain>          unload
    POST   /api/homecore/plugins/<domain>/reload   reload from its files
    GET    /api/homecore/plugins/<domain>/audit    its audit records, paged (?offset=&limit=), and whether
                                                   the whole chain verifies
    POST   /api/homecore/plugins/<domain>/validate entry data checked against its config_schema

List, load, unload and reload are the MQTT request verbs (`plugin/list`, `plugin/load` ...) run
through the bridge's request API: the same handler on the plugin host's inbox, the same checks and
answers. The routes sit under /api/, so the HTTP API's token rules apply (a logged-in page may read).
Everything that blocks runs on a worker thread, never on the server's event loop.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Callable, Protocol

import orjson
from aiohttp import web

from bridge.plugins import audit, registry, schema
from bridge.plugins.manifest import ManifestError, load_manifest

PREFIX = "/api/homecore/plugins"
PAGE_MAX = 500  # audit records in one answer


class Source(Protocol):
    def request(self, verb: str, body: dict[str, Any]) -> dict[str, Any]: ...


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(status: int, error: str) -> web.Response:
    return _json({"error": error, "status": status}, status)


def _answer(answer: dict[str, Any]) -> web.Response:
    """A request verb's answer: its data, or its error as 404 (no such plugin) or 400."""
    if answer.get("status") == "ok":
        return _json(answer.get("data") or {})
    error = str(answer.get("error") or "refused")
    return _error(404 if error.startswith("no plugin ") else 400, error)


def _form_of(directory: str | None) -> dict[str, Any]:
    if not directory:
        return {}
    try:
        manifest = load_manifest(Path(directory))
    except ManifestError:
        return {}
    return {"config_schema": manifest.config_schema, "config_form": schema.form(manifest.config_schema)}


class PluginsHttp:
    """The routes; `source` runs request verbs as MQTT would (HttpExtension.request)."""

    def __init__(self, source: Source) -> None:
        self.source = source

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get(PREFIX, self.list_plugins)
        router.add_post(PREFIX, self.load_plugin)
        router.add_delete(PREFIX + "/{domain}", self.unload_plugin)
        router.add_post(PREFIX + "/{domain}/reload", self.reload_plugin)
        router.add_get(PREFIX + "/{domain}/audit", self.audit_records)
        router.add_post(PREFIX + "/{domain}/validate", self.validate_entry)

    async def _blocking(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    async def _request(self, verb: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._blocking(self.source.request, verb, body)

    async def _config(self) -> dict[str, Any]:
        """The plugins section as the bridge runs with it (from the `info` verb)."""
        info = await self._request("info", {})
        return ((info.get("data") or {}).get("config") or {}).get("plugins") or {}

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        try:
            body = orjson.loads(await request.read() or b"{}")  # capped at http.max_body
        except orjson.JSONDecodeError:
            raise web.HTTPBadRequest(reason="the body is not JSON") from None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(reason="the body must be a JSON object")
        return body

    async def list_plugins(self, request: web.Request) -> web.Response:
        answer = await self._request("plugin/list", {})
        if answer.get("status") != "ok":
            return _answer(answer)
        data = answer.get("data") or {}
        plugins = [{**p, **await self._blocking(_form_of, p.get("directory"))} for p in data.get("plugins", [])]
        return _json({**data, "plugins": plugins})

    async def load_plugin(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if "path" in body:
            return _answer(await self._request("plugin/load", {"path": body["path"]}))
        cog_id = body.get("cog_id")
        if not isinstance(cog_id, str) or not cog_id:
            return _error(400, 'give {"path": "<plugin directory>"} or {"cog_id": "<id in plugins.registry>"}')
        config = await self._config()
        try:
            directory = await self._blocking(self._install, cog_id, config)
        except (registry.RegistryError, OSError) as exc:
            return _error(400, f"install {cog_id[:200]}: refused: {exc}")
        return _answer(await self._request("plugin/load", {"path": str(directory)}))

    @staticmethod
    def _install(cog_id: str, config: dict[str, Any]) -> Path:
        dirs = [str(d) for d in config.get("dirs") or []]
        cog = registry.find(registry.load_index(str(config.get("registry") or ""),
                                                ca_file=str(config.get("registry_ca") or "")), cog_id)
        have = registry.installed(dirs)
        if cog.id in have:
            return have[cog.id][0]  # installed already: load what is there
        if not dirs:
            raise registry.RegistryError("plugins.dirs is empty: nowhere to install")
        return registry.install(cog, Path(dirs[0]).expanduser(), trusted_keys=list(config.get("trusted_keys") or []),
                                ca_file=str(config.get("registry_ca") or ""))

    async def unload_plugin(self, request: web.Request) -> web.Response:
        return _answer(await self._request("plugin/unload", {"domain": request.match_info["domain"]}))

    async def reload_plugin(self, request: web.Request) -> web.Response:
        return _answer(await self._request("plugin/reload", {"domain": request.match_info["domain"]}))

    async def audit_records(self, request: web.Request) -> web.Response:
        domain = request.match_info["domain"]
        try:
            offset = int(request.query.get("offset", "0"))
            limit = int(request.query.get("limit", "100"))
        except ValueError:
            return _error(400, "offset and limit must be whole numbers")
        if offset < 0 or not 1 <= limit <= PAGE_MAX:
            return _error(400, f"offset must be >= 0 and limit 1..{PAGE_MAX}")
        path = (await self._config()).get("audit_log")
        if not path:
            return _error(404, "no audit log configured (plugins.audit_log)")
        return _json(await self._blocking(_audit_page, Path(str(path)).expanduser(), domain, offset, limit))

    async def validate_entry(self, request: web.Request) -> web.Response:
        domain = request.match_info["domain"]
        data = await self._body(request)
        answer = await self._request("plugin/list", {})
        found = [p for p in (answer.get("data") or {}).get("plugins", []) if p.get("domain") == domain]
        if not found:
            return _error(404, f"no plugin {domain[:64]!r} is loaded")
        form = await self._blocking(_form_of, found[0].get("directory"))
        problems = schema.validate(data, form["config_schema"], f"plugins.entries.{domain}") \
            if form.get("config_schema") else []
        return _json({"valid": not problems, "problems": problems})


def _audit_page(path: Path, domain: str, offset: int, limit: int) -> dict[str, Any]:
    """The domain's records (oldest first) from offset, and the whole chain's verdict."""
    count, problem = audit.verify(path)
    records: list[dict[str, Any]] = []
    try:
        with open(path, "rb") as f:
            for line in f:
                try:
                    entry = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(entry, dict) and entry.get("plugin") == domain:
                    records.append(entry)
    except FileNotFoundError:
        pass
    return {"domain": domain, "total": len(records), "offset": offset, "limit": limit,
            "records": records[offset:offset + limit],
            "chain": {"intact": problem is None, "records": count, "problem": problem}}
