"""The embedded broker against Mosquitto (and amqtt, when it is installed), in the same run.

One paho publisher sends N QoS 1 messages of ~300 bytes (a node state's size)
to a broker process; one paho subscriber counts them. The clock stops when
the subscriber has every message. Each broker is a process of its own on a
free port, as the bridge's embedded broker runs in a process of its own.

Baseline: Mosquitto (Debian's), in the same run. Also checked each round: no
message lost or duplicated, order kept. Exits non-zero if any round lost one.

    python -m bench.broker_throughput [--messages 20000] [--rounds 3] [--with-amqtt]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time

import paho.mqtt.client as paho

from tests.brokers import Embedded, Mosquitto, free_port, wait_port

PAYLOAD = b'{"node_id":1,"name":"node_1","presence":true,"occupancy":true,"presence_score":8.1,' \
          b'"baseline":1.02,"motion":true,"persons":1,"breathing_bpm":14.2,"heart_bpm":71.0,"rssi":-55,' \
          b'"last_seen":"2026-12-01T03:10:00.123+00:00","frames":{"feature_state":600,"vitals":120},' \
          b'"packet_loss":0.0,"thresholds":{"enter_ratio":3.0,"exit_ratio":1.8,"hold":5.0},"pad":"' + \
          b"x" * 20 + b'"}'


class AmqttProcess(Embedded):
    kind = "amqtt"

    def command(self) -> list[str]:
        code = ("import asyncio,sys\nfrom amqtt.broker import Broker\n"
                f"cfg={{'listeners':{{'default':{{'type':'tcp','bind':'127.0.0.1:{self.port}'}}}},"
                "'plugins':{'amqtt.plugins.authentication.AnonymousAuthPlugin':{'allow_anonymous':True}}}\n"
                "async def main():\n b=Broker(cfg); await b.start(); await asyncio.Event().wait()\n"
                "asyncio.run(main())\n")
        return [sys.executable, "-c", code]


def one_round(port: int, n: int, v5: bool) -> tuple[float, int, bool]:
    protocol = paho.MQTTv5 if v5 else paho.MQTTv311
    got: list[int] = []
    done = threading.Event()

    def on_message(client, userdata, msg):
        got.append(int(msg.payload[-4:].decode()))
        if len(got) >= n:
            done.set()

    sub = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=protocol)
    sub.on_message = on_message
    subscribed = threading.Event()
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    sub.subscribe("bench/state", 1)
    subscribed.wait(10)
    pub = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=protocol)
    pub.max_inflight_messages_set(20)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    began = time.perf_counter()
    for i in range(n):
        pub.publish("bench/state", PAYLOAD + b"%04d" % (i % 10000), 1)
    done.wait(120)
    elapsed = time.perf_counter() - began
    for c in (pub, sub):
        c.disconnect()
        c.loop_stop()
    expected = [i % 10000 for i in range(n)]
    return n / elapsed, n - len(got), got == expected


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--with-amqtt", action="store_true", help="also amqtt (pip install amqtt==0.12.1)")
    args = parser.parse_args()
    kinds = [("mosquitto", Mosquitto, True), ("embedded", Embedded, True), ("embedded 3.1.1", Embedded, False)]
    if args.with_amqtt:
        kinds.append(("amqtt 3.1.1", AmqttProcess, False))
    results: dict[str, list[float]] = {}
    failed = False
    for round_no in range(args.rounds):
        for name, cls, v5 in kinds:
            broker = cls(free_port())
            broker.start()
            try:
                wait_port(broker.port)
                rate, lost, in_order = one_round(broker.port, args.messages, v5)
            finally:
                broker.cleanup()
            results.setdefault(name, []).append(rate)
            if lost or not in_order:
                failed = True
                print(f"round {round_no + 1}: {name} lost {lost} message(s), in order: {in_order}")
    base = statistics.median(results["mosquitto"])
    print(f"{args.messages} QoS 1 messages of {len(PAYLOAD) + 4} bytes, one publisher, one subscriber, "
          f"median of {args.rounds} rounds")
    for name, rates in results.items():
        med = statistics.median(rates)
        print(f"  {name:16s} {med:9,.0f} msg/s   ratio to Mosquitto {med / base:5.2f}   "
              f"(rounds {min(rates):,.0f}-{max(rates):,.0f})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
