"""The frontend's Home page (once the status page) in a real headless browser (Debian's chromium, driven by playwright-core): it shows
the nodes of a replayed recording, updates live, and loads nothing from outside the host."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from itertools import cycle, takewhile
from pathlib import Path

from tests.http.test_http_api import http_bridge, recording  # noqa: F401  (fixtures)
from tests.nodes.test_replay_e2e import send_all
from tests.polling import wait_until

SCRIPT = Path(__file__).resolve().parents[1] / "js" / "status_page.mjs"


def test_the_status_page_renders_the_replayed_nodes_and_updates_live(mosquitto, http_bridge, recording,  # noqa: F811
                                                                      tmp_path):
    assert shutil.which("chromium") or os.path.exists("/usr/bin/chromium"), "run ./tests/run.sh: it installs chromium"
    bridge, base, udp = http_bridge(mosquitto, nodes={"devices": {1: {"name": "living_room", "room": "Living room"},
                                                                  2: {"name": "bedroom", "room": "Bedroom",
                                                                      "privacy_class": "restricted"}}})
    nodes = bridge.extension("nodes")
    send_all(udp, recording[:1500])  # both nodes are known before the page opens
    assert wait_until(lambda: len(nodes.registry) == 2 and nodes.udp.processed >= 1500, 10)
    # then live for as long as the page watches (one pass of the rest is ~10 s, and chromium can take
    # most of that to start on a loaded machine); passes after the first look like node reboots
    watching = threading.Event()
    live = takewhile(lambda _: not watching.is_set(), cycle(recording[1500:]))
    rest = threading.Thread(target=send_all, args=(udp, live, 1), daemon=True)
    rest.start()
    # RUVIEW_SCREENSHOT=/tmp/home.png keeps a picture of the Home page once most of the replay is in
    shot = Path(os.environ.get("RUVIEW_SCREENSHOT") or tmp_path / "status-page.png")
    settle = "7000" if os.environ.get("RUVIEW_SCREENSHOT") else "0"
    out = subprocess.run(["node", str(SCRIPT), f"{base}/", "2", str(shot), settle], capture_output=True,
                         text=True, timeout=90, cwd=SCRIPT.parent)
    watching.set()
    rest.join(30)
    page = json.loads(out.stdout.strip().splitlines()[-1]) if out.stdout.strip() else {}
    assert out.returncode == 0, (page.get("failure"), out.stderr[-2000:])
    assert page["errors"] == [] and page["requests_off_host"] == []
    names = [card["name"] for card in page["first"]]
    assert names == ["bedroom", "living_room"]  # the Home page groups nodes by room, rooms in order
    later = {card["name"]: card["text"] for card in page["later"]}
    living, bedroom = later["living_room"], later["bedroom"]
    assert "Living room" in living and "anonymous" in living and "breathing" in living
    assert "Bedroom" in bedroom and "restricted" in bedroom and "withheld (restricted)" in bedroom
    assert "br/min" not in bedroom and "bpm" not in bedroom  # no vitals cross for a Restricted node
    assert [c["text"] for c in page["first"]] != [c["text"] for c in page["later"]], "the page did not update"
    assert "MQTT connected" in page["health"] and "2/2 nodes online" in page["health"]
    assert shot.stat().st_size > 20_000  # a real screenshot
