"""Server-sent events: node events and node state changes, live, for agents, scripts and the page.

`curl -N http://127.0.0.1:3000/api/v1/events/stream` prints one `event:` /
`data:` pair per change. Every client has a bounded queue: a client that
reads too slowly loses its oldest items (counted), never the bridge's time.
The clients are capped too (`http.max_stream_clients`): a place is taken
before the first await, so concurrent requests cannot both get the last one.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

MAX_QUEUED = 1000
HEARTBEAT = 15.0  # seconds between keep-alive comments, so proxies keep the stream open


# a client's queue, the one node it follows (None: all), and whether it is the frontend (which also
# gets the bridge's log lines and the chart's points)
Client = tuple[asyncio.Queue, str | None, bool]


class Stream:
    """Lives on the HTTP server's loop; `publish` is called there (via call_soon_threadsafe)."""

    def __init__(self) -> None:
        self._clients: set[Client] = set()
        self.dropped = 0
        self.sent = 0

    @property
    def clients(self) -> int:
        return len(self._clients)

    def publish(self, kind: str, node_name: str, data: dict[str, Any], ui_only: bool = False) -> None:
        item = f"event: {kind}\ndata: {orjson.dumps(data).decode()}\n\n".encode()
        for queue, only, ui in list(self._clients):
            if (only is not None and only != node_name) or (ui_only and not ui):
                continue
            if queue.full():
                queue.get_nowait()
                self.dropped += 1
            queue.put_nowait(item)

    def join(self, node_filter: str | None, limit: int, ui: bool = False) -> Client | None:
        """A place for one more client, or None when `limit` are connected; `leave` gives it back."""
        if len(self._clients) >= limit:
            return None
        client: Client = (asyncio.Queue(MAX_QUEUED), node_filter, ui)
        self._clients.add(client)
        return client

    def leave(self, client: Client) -> None:
        self._clients.discard(client)

    async def serve(self, response, client: Client) -> None:
        """Write the stream to one client until it goes away (its handler is cancelled then)."""
        queue = client[0]
        try:
            await response.write(b": connected to ruview-bridge\n\n")
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), HEARTBEAT)
                except asyncio.TimeoutError:
                    item = b": keep-alive\n\n"
                await response.write(item)
                self.sent += 1
        except ConnectionError:
            pass
        finally:
            self.leave(client)
