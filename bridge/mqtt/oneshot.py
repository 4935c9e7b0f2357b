"""One request to a running bridge from the command line, and its answer.

`ruview-bridge say` and `ruview-node provision --register` both connect to the bridge's broker
for a moment, subscribe to where the answer comes, publish one request and wait for the answer
that carries the request's id. They do it here, with the bridge's own connection settings: the
same TLS (its CA, client certificate and `verify`), the same username and password, so a tool
reaches every broker the bridge reaches, and no tool has a second copy of how to connect.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import orjson
import paho.mqtt.client as paho

from bridge.mqtt.settings import ConnectionSettings


class OneShotError(Exception):
    """Why no answer came: str() says what to check (the broker, the bridge, its config)."""

    def __init__(self, message: str, *, reached: bool = False) -> None:
        super().__init__(message)
        self.reached = reached  # the broker answered: it is the bridge that did not


def client_for(settings: ConnectionSettings, client_id: str) -> paho.Client:
    """A paho client set up as the bridge's own connection is: credentials and TLS."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id)
    if settings.username:
        client.username_pw_set(settings.username, settings.password)
    if settings.tls:
        client.tls_set(ca_certs=settings.ca, certfile=settings.cert, keyfile=settings.key)
        client.tls_insecure_set(not settings.verify)
    return client


def ask(settings: ConnectionSettings, *, topic: str, body: dict[str, Any], answer_topic: str,
        is_answer: Callable[[dict[str, Any]], bool], timeout: float, client_id: str,
        no_answer: str = "is the bridge running?") -> dict[str, Any]:
    """Publish `body` on `topic` once subscribed to `answer_topic`; the first JSON object there that
    `is_answer` accepts. OneShotError when the broker cannot be reached or refuses us, or no answer
    comes within `timeout` seconds (`no_answer` says what to check then)."""
    got: dict[str, Any] = {}
    done, subscribed = threading.Event(), threading.Event()
    client = client_for(settings, client_id)

    def on_connect(c: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            got["error"] = f"the broker at {settings.url} refused the connection: {reason} (check mqtt.username " \
                           "and mqtt.password in the config)"
            done.set()
            return
        c.subscribe(answer_topic, qos=1)

    def on_subscribe(c: paho.Client, *_: Any) -> None:
        c.publish(topic, orjson.dumps(body), qos=1)
        subscribed.set()

    def on_message(_c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        try:
            answer = orjson.loads(msg.payload)
        except orjson.JSONDecodeError:
            return
        if isinstance(answer, dict) and is_answer(answer):
            got["answer"] = answer
            done.set()

    client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
    try:
        client.connect(settings.host, settings.port, keepalive=30)
    except OSError as exc:  # refused, unreachable, or a TLS certificate we do not trust
        raise OneShotError(f"cannot reach the broker at {settings.url}: {exc} (see mqtt.url and mqtt.tls "
                           "in the config)") from None
    client.loop_start()
    try:
        if not done.wait(timeout):
            if not subscribed.is_set():
                raise OneShotError(f"no answer from the broker at {settings.url} within {timeout:g} s")
            raise OneShotError(f"no answer on {answer_topic} within {timeout:g} s ({no_answer})", reached=True)
    finally:
        client.loop_stop()
        client.disconnect()
    if "error" in got:
        raise OneShotError(got["error"])
    return got["answer"]
