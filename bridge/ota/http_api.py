"""The nodes' pull client's two routes on the sensing HTTP API, in the firmware's format.

    GET /api/v1/firmware/latest     {"available":true,"version":"X.Y.Z","sha256":"<hex>","size":N}
    GET /api/v1/firmware/download   the image, with a Content-Length (never chunked)

The node reads the first answer with a plain string search and a Content-Length of at most 4096
bytes, so it is compact JSON with no spaces. The node sends no name and no token: it is known by
the address its frames come from (the bridge's `info`), which decides its pin (ota.pins). The
routes are open (OPEN_PATHS in bridge/http/server.py), like the firmware server they replace.
What a node gets, and the download count, come from the ota extension's `firmware/pull` verb.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

LATEST = "/api/v1/firmware/latest"
DOWNLOAD = "/api/v1/firmware/download"
PATHS = frozenset({LATEST, DOWNLOAD})
NONE = b'{"available":false}'


class Source(Protocol):
    def request(self, verb: str, body: dict[str, Any]) -> dict[str, Any]: ...


class FirmwareHttp:
    def __init__(self, source: Source) -> None:
        self.source = source

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get(LATEST, self.latest)
        router.add_get(DOWNLOAD, self.download)

    def _ask(self, client: str, download: bool) -> dict[str, Any] | None:
        nodes = (self.source.request("info", {}).get("data") or {}).get("nodes") or []
        node = next((n for n in nodes if isinstance(n, dict)
                     and str(n.get("address") or "").rsplit(":", 1)[0] == client), {})
        answer = self.source.request("firmware/pull", {"client": client, "node": node.get("name"),
                                                       "room": node.get("room"), "download": download})
        if answer.get("status") != "ok":
            return None                    # no ota feature: nothing on offer
        data: dict[str, Any] = answer.get("data") or {}
        return data if data.get("available") else None

    async def latest(self, request: web.Request) -> web.Response:
        found = await asyncio.to_thread(self._ask, request.remote or "", False)
        if found is None:
            return web.Response(body=NONE, content_type="application/json")
        body = (f'{{"available":true,"version":"{found["version"]}","sha256":"{found["sha256"]}",'
                f'"size":{int(found["size"])}}}').encode()
        return web.Response(body=body, content_type="application/json")

    async def download(self, request: web.Request) -> web.Response:
        found = await asyncio.to_thread(self._ask, request.remote or "", True)
        if found is None:
            return web.Response(status=404, body=b"no firmware on offer", content_type="text/plain")
        image = await asyncio.to_thread(Path(found["path"]).read_bytes)
        return web.Response(body=image, content_type="application/octet-stream")
