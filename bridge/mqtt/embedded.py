"""The embedded MQTT broker, for machines with no broker installed.

`mqtt.url: auto` probes the configured port on loopback; if nothing answers,
the bridge runs its own broker (bridge/mqtt/broker/) on an asyncio loop in a
thread of its own process. It speaks MQTT 3.1.1 and 5; see
docs/architecture.md ("Embedded broker") for why it is ours and not amqtt.

Credentials, when configured, are checked in memory: no password file is
written to disk.

`python -m bridge.mqtt.embedded --port N` runs the same broker as a process
(the test suite uses it to kill and restart a broker).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import socket
import threading
from typing import Any

from bridge.core.loop_thread import LoopThread
from bridge.mqtt.broker import Broker
from bridge.stop_signals import on_stop_signals

log = logging.getLogger(__name__)


def broker_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """True if something accepts TCP on host:port (cheap probe, no MQTT session)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _quiet_loop_errors(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """asyncio's own reports (a client vanishing mid-write ...) at debug level, never a console trace."""
    log.debug("embedded broker: %s", context.get("message"), exc_info=context.get("exception"))


class EmbeddedBroker:
    """Our broker on its own asyncio loop in a daemon thread."""

    def __init__(self, bind: str = "127.0.0.1", port: int = 1883, *,
                 username: str | None = None, password: str | None = None, max_level: int = 5) -> None:
        if not ipaddress.ip_address(bind).is_loopback and not (username and password):
            raise ValueError(f"embedded broker on {bind} needs a username and password")
        self.bind, self.port = bind, port
        self.broker = Broker(username=username, password=password, max_level=max_level)
        self._runner: LoopThread | None = None
        self._server: asyncio.base_events.Server | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.bind}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        self._runner = LoopThread("embedded-broker", exception_handler=_quiet_loop_errors)

        async def listen() -> None:
            self._server = await asyncio.start_server(self.broker.handle, self.bind, self.port, reuse_address=True)

        try:
            self._runner.start(listen, timeout)
        except Exception as exc:
            self._runner = None
            raise RuntimeError(f"embedded broker could not listen on {self.bind}:{self.port}: "
                               f"{getattr(exc, 'strerror', None) or exc}") from exc

    def stop(self, timeout: float = 2.0) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for session in list(self.broker.sessions.values()):
                session.reader.feed_eof()
            await asyncio.sleep(0.05)

        runner.stop(shutdown, timeout)
        self._server = None


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the bridge's embedded MQTT broker on its own.")
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--mqtt3-only", action="store_true",
                        help="refuse MQTT 5 CONNECTs, as a 3.1.1-only broker does (tests protocol fallback)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    broker = EmbeddedBroker(args.bind, args.port, username=os.environ.get("RUVIEW_MQTT_USERNAME"),
                            password=os.environ.get("RUVIEW_MQTT_PASSWORD"), max_level=4 if args.mqtt3_only else 5)
    broker.start()
    print(f"listening on {args.bind}:{args.port}", flush=True)
    stop = threading.Event()
    on_stop_signals(stop.set)
    stop.wait()
    broker.stop()


if __name__ == "__main__":
    main()
