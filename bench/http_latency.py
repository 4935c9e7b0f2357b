"""Latency of `GET /api/v1/vitals/<node>/latest` while 100 nodes stream at 10 Hz, vs a bare aiohttp handler.

The bridge runs as its own process (`ruview-bridge run`, Home Assistant discovery on, the HTTP API
on), on a real Mosquitto. A sender process streams feature state and vitals of `--nodes` nodes at
`--rate` Hz into its UDP port; a client process asks for a node's vitals `--qps` times a second
(round robin over the nodes, one keep-alive connection) and times each answer.

Baseline in the same run: the same client against a bare aiohttp server in its own process whose
handler returns a vitals-sized JSON, i.e. what the HTTP stack alone costs.

    python -m bench.http_latency [--seconds 20] [--qps 200] [--nodes 100] [--rate 10]

Target (the sensing API): p99 <= 5 ms at 200 requests/s. Exits 1 if a request failed, an answer
did not carry the node asked for, or the bridge was not decoding the nodes' frames meanwhile (the
work was not done).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
import urllib.request


from bench.harness import bridge_process, percentile, stop
from firmware_tools.simulate import generate, make_nodes, send_udp
from tests.brokers import Mosquitto, free_port, free_port_udp, wait_port

WARMUP = 2.0
BARE = r'''
import sys
from aiohttp import web
import orjson
BODY = orjson.dumps({"node_id": "1", "name": "node_1", "room": None, "timestamp_ms": 1796168423387, "presence": True,
                     "n_persons": 1, "confidence": 0.8, "breathing_rate_bpm": 14.2, "heartrate_bpm": 71.0,
                     "motion": True, "online": True, "privacy_class": "anonymous"})
async def vitals(request):
    return web.Response(body=BODY, content_type="application/json")
app = web.Application()
app.router.add_get("/api/v1/vitals/{node}/latest", vitals)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
'''


def client(port: int, qps: float, seconds: float, nodes: int, out) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    latencies, failures, wrong = [], 0, 0
    start = time.perf_counter()
    total = int(qps * seconds)
    for i in range(total):
        due = start + i / qps
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        node = 1 + i % nodes
        began = time.perf_counter()
        try:
            conn.request("GET", f"/api/v1/vitals/{node}/latest")
            response = conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException):
            failures += 1
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            continue
        took = (time.perf_counter() - began) * 1000
        if response.status != 200:
            failures += 1
            continue
        answer = json.loads(body)
        if answer.get("node_id") not in (str(node), "1") or "presence" not in answer:
            wrong += 1
        if began - start >= WARMUP:
            latencies.append(took)
    out.put((latencies, failures, wrong))


def measure(port: int, args) -> tuple[list[float], int, int]:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=client, args=(port, args.qps, args.seconds, args.nodes, out))
    proc.start()
    result = out.get(timeout=args.seconds + 60)
    proc.join()
    return result


def stream(udp: int, nodes: int, rate: float, seconds: float) -> None:
    send_udp(generate(make_nodes(nodes, "visit", seconds, rate=rate), seconds), "127.0.0.1", udp, speed=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--qps", type=float, default=200)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--rate", type=float, default=10)
    args = parser.parse_args()
    broker = Mosquitto().start()
    udp, http_port, bare_port = free_port_udp(), free_port(), free_port()
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        bridge = bridge_process({"mqtt": {"url": broker.url, "base_topic": "httpbench"},
                                 "nodes": {"udp": {"bind": "127.0.0.1", "port": udp}},
                                 "http": {"enabled": True, "port": http_port, "rate_limit": 10_000},
                                 "homeassistant": {"enabled": os.environ.get("BENCH_HA", "1") == "1"}}, tmp)
        bare = subprocess.Popen([sys.executable, "-c", BARE, str(bare_port)])
        try:
            wait_port(http_port, 20)
            wait_port(bare_port, 20)
            sender = ctx.Process(target=stream, args=(udp, args.nodes, args.rate, args.seconds + 10))
            sender.start()
            time.sleep(3)  # every node has spoken
            bridge_lat, bridge_fail, bridge_wrong = measure(http_port, args)
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/health", timeout=5) as r:
                fps = json.loads(r.read()).get("frames_per_second") or 0
            bare_lat, bare_fail, bare_wrong = measure(bare_port, args)
            sender.terminate()
        finally:
            stop(bridge, bare)
            broker.cleanup()
    print(f"GET /api/v1/vitals/<node>/latest at {args.qps:g} requests/s for {args.seconds:g} s "
          f"(first {WARMUP:g} s not timed), {args.nodes} nodes streaming at {args.rate:g} Hz into the bridge:")
    for label, lat, fail, wrong in (("bare aiohttp handler", bare_lat, bare_fail, bare_wrong),
                                    ("bridge", bridge_lat, bridge_fail, bridge_wrong)):
        print(f"  {label:22s} p50 {percentile(lat, 50):6.2f} ms   p99 {percentile(lat, 99):6.2f} ms   "
              f"max {max(lat):7.2f} ms   n={len(lat)}   failed {fail}   wrong answers {wrong}")
    print(f"  the bridge decoded {fps:,.0f} frames/s meanwhile (the senders: {args.nodes * args.rate:,.0f} "
          f"feature states/s plus vitals)")
    ratio = percentile(bridge_lat, 99) / percentile(bare_lat, 99)
    print(f"  ratio bridge/bare p99: {ratio:.2f}   (target: bridge p99 <= 5 ms)")
    streamed = fps >= 0.8 * args.nodes * args.rate
    if not streamed:
        print("  FAIL: the nodes were not streaming into the bridge while it answered")
    return 1 if bridge_fail or bridge_wrong or bare_fail or not bridge_lat or not streamed else 0


if __name__ == "__main__":
    sys.exit(main())
