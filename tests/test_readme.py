"""The README, run as written, as a new user on a fresh Debian would.

A clean copy of the checkout; Debian's system `python3` (PEP 668, externally managed) first on
PATH; no broker on port 1883 — in a private network namespace, which has only loopback, so the
README's first command starts the embedded broker. The namespace cannot reach PyPI, so the
install reads the same packages from a wheelhouse built beforehand (PIP_NO_INDEX and
PIP_FIND_LINKS; the command itself is the README's, character for character). Then the README's
examples run as printed and their output is compared with what the README says they print.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = "/usr/bin/python3"


def readme_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def _clean_copy(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.split(b"\0")
    for name in filter(None, files):
        src = ROOT / name.decode()
        if src.is_file():
            (dest / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name.decode())


DRIVER = r'''
import json, os, re, signal, socket, subprocess, sys, time
clone, blocks = sys.argv[1], json.loads(sys.argv[2])
sys.path.insert(0, clone)
from tests.mosquitto_sub import MosquittoSub  # ended by SIGKILL: a signalled mosquitto_sub can hang

subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
subscribers = []


def subscriber(command, confirm=False):
    # a client running beside the user's commands; never outlives this script
    sub = MosquittoSub(command, confirm=confirm)
    subscribers.append(sub)
    return sub


def bridge_says(*wanted):
    # every wanted line, or a line that starts with it, has been printed
    return lambda lines: all(any(line == w or line.startswith(w + " ") for line in lines) for w in wanted)


ONLINE, OFFLINE = 'ruview/bridge/state {"state":"online"}', 'ruview/bridge/state {"state":"offline"}'
result = {}
log = open(os.path.join(clone, "bridge.log"), "w")
run = subprocess.Popen(["sh", "-c", blocks["run"]], cwd=clone, stdout=log, stderr=subprocess.STDOUT,
                       start_new_session=True)
try:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and run.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", 1883), timeout=1).close()
            break
        except OSError:
            time.sleep(0.5)
    result["listening"] = run.poll() is None
    watch = subscriber(blocks["watch"])  # the README's command, as printed
    watch.wait_for(bridge_says(ONLINE, "ruview/bridge/info", "ruview/bridge/health"), 60)
    result["watch"] = watch.kill()
    answers = subscriber("mosquitto_sub -v -t 'ruview/bridge/response/#' -C 1", confirm=True)
    result["answers_subscribed"] = answers.subscribed(30)
    subprocess.run(blocks["ask"], shell=True, timeout=10)
    answers.wait_exit(15)
    result["answer"] = answers.kill()
    nodes = subscriber("mosquitto_sub -v -t 'ruview/node/#'", confirm=True)
    result["nodes_subscribed"] = nodes.subscribed(30)
    sim = subprocess.run(blocks["simulate"], shell=True, cwd=clone, capture_output=True, text=True, timeout=120)
    result["simulate_exit"], result["simulate_said"] = sim.returncode, sim.stderr.splitlines()
    expected = [re.compile(pattern) for pattern in blocks["node_lines"]]
    nodes.wait_for(lambda lines: all(any(p.fullmatch(line) for line in lines) for p in expected), 15)
    result["nodes"] = nodes.kill()
    state = subscriber("mosquitto_sub -v -t ruview/bridge/state")
    state.wait_for(bridge_says(ONLINE), 30)  # its retained state: the subscription is in place
    os.killpg(run.pid, signal.SIGINT)  # Ctrl-C in the terminal: the whole foreground process group
    result["run_exit"] = run.wait(30)
    state.wait_for(bridge_says(OFFLINE), 30)
    result["state"] = state.kill()
finally:
    for sub in subscribers:
        sub.kill()
    try:
        os.killpg(run.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    log.close()
    result["log"] = open(os.path.join(clone, "bridge.log")).read()[-4000:]
    print(json.dumps(result))
'''


@pytest.mark.timeout(1500)  # a fresh install of every dependency, then a 30 s simulation
@pytest.mark.skipif(os.geteuid() != 0 or not Path(SYSTEM_PYTHON).exists(),
                    reason="needs root for a private network namespace, and Debian's /usr/bin/python3")
@pytest.mark.slow
def test_the_readmes_first_command_and_examples_behave_as_printed(tmp_path):
    blocks = readme_blocks()
    assert blocks[0].strip() == "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/ruview-bridge run"
    assert blocks[1].strip() == "./tests/run.sh"
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("exec ./tests/run.sh")
    watch = next(b for b in blocks if b.startswith("mosquitto_sub")).strip()
    ask_cmd, ask_says = next(b for b in blocks if b.startswith("mosquitto_pub")).strip().splitlines()
    sim_block = next(b for b in blocks if "ruview-node simulate" in b).strip().splitlines()
    node_lines = [".*".join(re.escape(part) for part in comment.removeprefix("# ").split("..."))
                  for comment in sim_block[1:]]

    clone = tmp_path / "ruview-bridge"
    _clean_copy(clone)
    wheels = tmp_path / "wheels"
    for args in (["wheel", "--wheel-dir", str(wheels), str(clone)],
                 ["download", "--dest", str(wheels), "setuptools>=68", "wheel"]):
        out = subprocess.run([sys.executable, "-m", "pip", *args, "-q", "--disable-pip-version-check"],
                             capture_output=True, text=True, timeout=900)
        assert out.returncode == 0, out.stderr[-2000:]
    for leftover in ("build", "ruview_bridge.egg-info"):  # what building the wheel left in the copy
        shutil.rmtree(clone / leftover, ignore_errors=True)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    assert subprocess.run(["sh", "-c", "command -v python3"], env=env, capture_output=True,
                          text=True).stdout.strip() == SYSTEM_PYTHON
    commands = {"run": blocks[0].strip(), "watch": watch, "ask": ask_cmd, "simulate": sim_block[0],
                "node_lines": node_lines}
    out = subprocess.run(["unshare", "-n", SYSTEM_PYTHON, "-c", DRIVER, str(clone), json.dumps(commands)],
                         env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["listening"], r["log"]
    assert "started the embedded broker" in r["log"]

    # mosquitto_sub -v -t 'ruview/#': the bridge's state, info and health, and nothing else's
    assert 'ruview/bridge/state {"state":"online"}' in r["watch"], r["watch"]
    topics = [line.split(" ", 1)[0] for line in r["watch"]]
    assert {"ruview/bridge/info", "ruview/bridge/health"} <= set(topics)
    assert all(t.startswith("ruview/") for t in topics), topics
    # the request is answered exactly as the README prints it
    assert r["answers_subscribed"], "mosquitto_sub saw no SUBACK for ruview/bridge/response/#"
    assert r["answer"] == [ask_says.removeprefix("# ")], r["answer"]
    # the simulation: the node states and events the README shows
    assert r["simulate_exit"] == 0, r["simulate_said"]
    assert any("a person walks in" in line for line in r["simulate_said"])
    assert r["nodes_subscribed"], "mosquitto_sub saw no SUBACK for ruview/node/#"
    for comment, pattern in zip(sim_block[1:], node_lines):
        assert any(re.fullmatch(pattern, line) for line in r["nodes"]), (comment, r["nodes"][-5:])
    # Ctrl-C: a clean stop that says offline
    assert r["run_exit"] in (0, -2, 130), r["log"]
    assert r["state"][-1] == 'ruview/bridge/state {"state":"offline"}', r["state"]


def test_no_document_points_outside_the_repository():
    """Everything the docs name is in the repo (a clone has no ../shared beside it)."""
    documents = [ROOT / "README.md", ROOT / "config.yaml", *sorted((ROOT / "docs").glob("*.md")),
                 *sorted((ROOT / "bench").glob("*.md")), ROOT / "tests" / "data" / "README.md"]
    for doc in documents:
        text = doc.read_text()
        assert "../shared" not in text and "RUVIEW_SHARED" not in text, doc
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):  # relative markdown links
            assert (doc.parent / target).exists(), f"{doc.name} links to {target}, which is not there"
    assert not re.search(r"\(issue \d+\)|issue \d+\b", (ROOT / "README.md").read_text(), re.I)
