"""`ruview-bridge say "turn on the kitchen light" [--language de]`: ask the running bridge, print its answer.

It publishes on the utterance topic exactly as a voice satellite would (with its own id) and
waits for the response carrying that id, so it tests the whole path: broker, recognizers,
handlers, the device's command. Exit status: 0 answered, 1 answered with an error, 2 no answer.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import uuid

import orjson
import paho.mqtt.client as paho

from bridge.app import connection_settings
from bridge.topics import Topics


def cmd_say(args: argparse.Namespace, config) -> int:
    url = config.mqtt.url if config.mqtt.url != "auto" else f"mqtt://127.0.0.1:{config.mqtt.embedded.port}"
    settings = connection_settings(config, url)
    topics = Topics(config.mqtt.base_topic)
    request_id = uuid.uuid4().hex
    got: dict = {}
    done, subscribed = threading.Event(), threading.Event()

    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"ruview-say-{request_id[:8]}")
    if settings.username:
        client.username_pw_set(settings.username, settings.password)
    if settings.tls:
        client.tls_set(ca_certs=settings.ca, certfile=settings.cert, keyfile=settings.key)
        client.tls_insecure_set(not settings.verify)

    def on_connect(c, _u, _f, reason, _p):
        if reason.is_failure:
            got["error"] = f"the broker at {url} refused the connection: {reason}"
            done.set()
            return
        c.subscribe(topics.assist_response, qos=1)

    def on_subscribe(c, *_):
        subscribed.set()

    def on_message(_c, _u, msg):
        try:
            body = orjson.loads(msg.payload)
        except orjson.JSONDecodeError:
            return
        if isinstance(body, dict) and body.get("id") == request_id:
            got["answer"] = body
            done.set()

    client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
    try:
        client.connect(settings.host, settings.port, keepalive=30)
    except OSError as exc:
        print(f"cannot reach the broker at {url}: {exc} (is the bridge running? see mqtt.url in the config)",
              file=sys.stderr)
        return 2
    client.loop_start()
    try:
        if not subscribed.wait(args.timeout) and not done.is_set():
            print(f"no answer from the broker at {url} within {args.timeout:g} s", file=sys.stderr)
            return 2
        if "error" not in got:
            body = {"text": args.text, "id": request_id, "site_id": args.site_id}
            if args.language:
                body["language"] = args.language
            if args.conversation_id:
                body["conversation_id"] = args.conversation_id
            client.publish(topics.assist_utterance, orjson.dumps(body), qos=1)
        if not done.wait(args.timeout):
            print(f"no answer on {topics.assist_response} within {args.timeout:g} s "
                  "(is assist.enabled true in the bridge's config?)", file=sys.stderr)
            return 2
    finally:
        client.loop_stop()
        client.disconnect()
    if "error" in got:
        print(got["error"], file=sys.stderr)
        return 2
    answer = got["answer"]
    if args.json:
        print(json.dumps(answer, ensure_ascii=False, indent=2))
    else:
        speech = ((answer.get("speech") or {}).get("plain") or {}).get("speech") or ""
        intent = answer.get("intent") or {}
        print(speech or answer.get("response_type"))
        if intent:
            print(f"  {intent.get('name')} {json.dumps(intent.get('slots'), ensure_ascii=False)} "
                  f"({intent.get('recognizer')}, {answer.get('elapsed_ms')} ms)", file=sys.stderr)
    return 1 if answer.get("response_type") == "error" else 0


def add_parsers(sub) -> None:
    say = sub.add_parser("say", help="send an utterance to the running bridge's assist and print the answer")
    say.add_argument("text", help='what to say, e.g. "turn on the kitchen light"')
    say.add_argument("--language", help="the utterance's language (default: assist.language)")
    say.add_argument("--site-id", default="cli", help="the satellite / room id to send (default: cli)")
    say.add_argument("--conversation-id", help="continue a conversation (for follow-ups like 'turn it off')")
    say.add_argument("--json", action="store_true", help="print the whole response")
    say.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the answer")
    say.add_argument("-c", "--config", help="configuration file (YAML)")
    say.set_defaults(func=cmd_say, needs_config=True)
