"""Embedded MQTT broker (amqtt) for machines with no broker installed.

`mqtt.url: auto` probes the configured port on loopback; if nothing answers,
the bridge runs amqtt in a thread of its own process. amqtt speaks MQTT 3.1.1
only, which is why everything in the bridge works without MQTT 5.

Credentials, when configured, are checked in memory by a tiny auth plugin:
no password file is written to disk.

`python -m bridge.mqtt.embedded --port N` runs the same broker as a process
(the test suite uses it to kill and restart a broker).
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import ipaddress
import logging
import os
import signal
import socket
import threading
from dataclasses import dataclass

from amqtt.broker import Broker
from amqtt.plugins.base import BaseAuthPlugin

log = logging.getLogger(__name__)


def broker_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """True if something accepts TCP on host:port (cheap probe, no MQTT session)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _plugins(username: str | None, password: str | None) -> dict:
    if username:
        return {f"{__name__}.CredentialsAuthPlugin": {"username": username, "password": password or ""}}
    return {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}


class CredentialsAuthPlugin(BaseAuthPlugin):
    """Accept exactly one username/password pair, compared in constant time."""

    async def authenticate(self, *, session) -> bool:
        cfg = self.context.config
        user_ok = hmac.compare_digest((session.username or "").encode(), cfg.username.encode())
        pass_ok = hmac.compare_digest((session.password or "").encode(), cfg.password.encode())
        return user_ok and pass_ok

    @dataclass
    class Config:
        username: str = ""
        password: str = ""


class EmbeddedBroker:
    """amqtt running on its own asyncio loop in a daemon thread."""

    def __init__(self, bind: str = "127.0.0.1", port: int = 1883, *,
                 username: str | None = None, password: str | None = None) -> None:
        if not ipaddress.ip_address(bind).is_loopback and not (username and password):
            raise ValueError(f"embedded broker on {bind} needs a username and password")
        self.bind, self.port = bind, port
        self._config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{bind}:{port}"}},
            "plugins": _plugins(username, password),
        }
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.bind}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        for noisy in ("amqtt", "transitions"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        self._loop = asyncio.new_event_loop()
        self._broker = Broker(self._config, loop=self._loop)
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._broker.start())
            except BaseException as exc:  # reported to start()'s caller
                failure.append(exc)
                started.set()
                return
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="embedded-broker", daemon=True)
        self._thread.start()
        if not started.wait(timeout):
            raise RuntimeError(f"embedded broker did not start on {self.bind}:{self.port}")
        if failure:
            raise RuntimeError(f"embedded broker could not listen on {self.bind}:{self.port}: "
                               f"{failure[0]}") from failure[0]

    def stop(self, timeout: float = 1.5) -> None:
        if self._loop is None or self._broker is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
        try:
            future.result(timeout)
        except Exception:  # amqtt's shutdown can stall on its broadcast loop; we stop it anyway
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout)
        self._loop = self._broker = self._thread = None


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the embedded amqtt broker on its own.")
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    broker = EmbeddedBroker(args.bind, args.port, username=os.environ.get("RUVIEW_MQTT_USERNAME"),
                            password=os.environ.get("RUVIEW_MQTT_PASSWORD"))
    broker.start()
    print(f"listening on {args.bind}:{args.port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    broker.stop()


if __name__ == "__main__":
    main()
