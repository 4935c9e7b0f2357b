"""`ruview-bridge say "turn on the kitchen light" [--language de]`: ask the running bridge, print its answer.

It publishes on the utterance topic exactly as a voice satellite would (with its own id) and
waits for the response carrying that id, so it tests the whole path: broker, recognizers,
handlers, the device's command. Exit status: 0 answered, 1 answered with an error, 2 no answer.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid

from bridge.app import connection_settings
from bridge.mqtt.oneshot import OneShotError, ask
from bridge.topics import Topics


def cmd_say(args: argparse.Namespace, config) -> int:
    url = config.mqtt.url if config.mqtt.url != "auto" else f"mqtt://127.0.0.1:{config.mqtt.embedded.port}"
    settings = connection_settings(config, url)
    topics = Topics(config.mqtt.base_topic)
    request_id = uuid.uuid4().hex
    body = {"text": args.text, "id": request_id, "site_id": args.site_id}
    if args.language:
        body["language"] = args.language
    if args.conversation_id:
        body["conversation_id"] = args.conversation_id
    try:
        answer = ask(settings, topic=topics.assist_utterance, body=body, answer_topic=topics.assist_response,
                     is_answer=lambda a: a.get("id") == request_id, timeout=args.timeout,
                     client_id=f"ruview-say-{request_id[:8]}",
                     no_answer="is assist.enabled true in the bridge's config?")
    except OneShotError as exc:
        print(exc if exc.reached else f"{exc}; is the bridge running?", file=sys.stderr)
        return 2
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
