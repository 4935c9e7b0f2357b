"""The docs' commands, run as written.

A fenced block in README.md or docs/*.md whose line before is `<!-- runnable -->` is run here,
in order with the other marked blocks of its document, the way a user would run it: in a fresh
copy of the repository (its tracked and untracked files, with `.venv` the project's virtual
environment), from the copy's root, in a shell whose PATH has only the system's directories
(the docs name every program by its path in `.venv/bin/`; a bare `ruview-bridge` fails here as
it fails for a user who has not activated the environment), HOME a new empty directory.

- ```sh blocks run as one `bash -e` script. Comment lines after its first command are the
  output it is shown to print: each must match a line of its output (stdout and stderr), in
  order; `...` or `…` stands for anything, runs of blanks count as one. Comment lines before the
  first command are notes.
- ```console blocks: `$ ` lines (and their `\\` continuation lines) are the commands, run as one
  `bash -e` script; the other lines are their output, matched the same way.

Options after `runnable:` say what a block needs besides the shell:
- `netns`: a private network namespace with only loopback (it binds the fixed port 5005);
- `bridge`: that, and a bridge started as the README starts it (`.venv/bin/ruview-bridge run`
  with the copy's config.yaml: the embedded broker on 1883, nodes on UDP 5005), stopped with
  Ctrl-C afterwards;
- `mqtt`: the block's expected lines are MQTT messages as `mosquitto_sub -v -t '#'` prints them,
  from a subscriber that is in place before the block runs;
- `release`: a folder `c6-onboarding/` laid out like RuView's C6 release folder (the four images
  and SHA256SUMS.txt), with synthetic but valid images (tests/tools/images.py) standing in for
  the real ones, which cannot be downloaded here.

The README's own first command (install and run) and its examples are tests/test_readme.py's.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
USER_PATH = "/usr/local/bin:/usr/bin:/bin"
BLOCK_TIMEOUT = 240
NAMESPACED = {"netns", "bridge"}
OPTIONS = NAMESPACED | {"mqtt", "release"}

_MARK = re.compile(r"^<!--\s*runnable(?::\s*(?P<options>[^>]*?))?\s*-->$")
_FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w-]*)\s*$")


@dataclass
class Block:
    doc: str          # relative to the repository root
    line: int         # of the opening fence, 1-based
    lang: str
    text: str
    options: set[str] = field(default_factory=set)

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def doc_blocks(doc: Path) -> list[tuple[Block, bool]]:
    """Every fenced block of a document, and whether it is marked runnable."""
    lines = doc.read_text().splitlines()
    found, i = [], 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        indent = len(opening["indent"])
        text = "\n".join(line[indent:] for line in lines[i + 1:end]) + "\n"
        mark = _MARK.match(lines[i - 1].strip()) if i else None
        options = {o.strip() for o in (mark["options"] or "").split(",") if o.strip()} if mark else set()
        found.append((Block(str(doc.relative_to(ROOT)), i + 1, opening["lang"], text, options), bool(mark)))
        i = end + 1
    return found


def runnable_blocks(doc: Path) -> list[Block]:
    return [block for block, marked in doc_blocks(doc) if marked]


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def script_and_expected(block: Block) -> tuple[str, list[str]]:
    """The shell script a block runs, and the lines it is shown to print."""
    lines = block.text.splitlines()
    if block.lang == "console":
        commands, expected, continued = [], [], False
        for line in lines:
            if line.startswith("$ ") or continued:
                commands.append(line[2:] if line.startswith("$ ") and not continued else line)
                continued = line.rstrip().endswith("\\")
            elif line.strip():
                expected.append(line)
        return "\n".join(commands) + "\n", expected
    first = next((n for n, line in enumerate(lines) if line.strip() and not _is_comment(line)), len(lines))
    expected = [re.sub(r"^\s*# ?", "", line) for line in lines[first:] if _is_comment(line)]
    return block.text, expected


def line_pattern(shown: str) -> re.Pattern[str] | None:
    """A shown output line as a pattern: `...`/`…` for anything, blanks collapsed; None for a bare `...`."""
    text = " ".join(shown.split())
    if text in ("", "...", "…"):
        return None
    return re.compile(".*".join(re.escape(part) for part in re.split(r"\.\.\.|…", text)))


def unmatched(expected: list[str], output: list[str], *, ordered: bool = True) -> list[str]:
    """The expected lines that no output line matches (in order, when `ordered`)."""
    lines = [" ".join(line.split()) for line in output]
    missing, at = [], 0
    for shown in expected:
        pattern = line_pattern(shown)
        if pattern is None:
            continue
        hit = next((n for n in range(at if ordered else 0, len(lines)) if pattern.fullmatch(lines[n])), None)
        if hit is None:
            missing.append(shown)
        elif ordered:
            at = hit + 1
    return missing


# ------------------------------------------------------------------ where the blocks run

def _copy_repository(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.split(b"\0")
    for name in filter(None, (f.decode() for f in files)):
        src = ROOT / name
        if src.is_file() and not src.is_symlink():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    (dest / ".venv").symlink_to(ROOT / ".venv")


def _stand_in_release(dest: Path) -> None:
    """RuView's C6 release folder layout, with synthetic images that pass every check."""
    from tests.tools.images import release_files

    dest.mkdir()
    sums = []
    for name, data in sorted((Path(n).name, d) for n, d in release_files().items()):
        (dest / name).write_bytes(data)
        sums.append(f"{hashlib.sha256(data).hexdigest()}  {name}\n")
    (dest / "SHA256SUMS.txt").write_text("".join(sums))


def _user_env(home: Path) -> dict[str, str]:
    env = {"HOME": str(home), "PATH": USER_PATH, "LANG": "C.UTF-8", "TERM": "dumb"}
    if "RUVIEW_CHECK_THREADS" in os.environ:        # tests/conftest.py: the inbox rule, in every bridge
        env["RUVIEW_CHECK_THREADS"] = os.environ["RUVIEW_CHECK_THREADS"]
    return env


DRIVER = r'''
import json, os, re, signal, socket, subprocess, sys, time
spec = json.load(open(sys.argv[1]))
sys.path.insert(0, spec["root"])
from tests.mosquitto_sub import MosquittoSub  # ended by SIGKILL: a signalled mosquitto_sub can hang

subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
ws, env, result, subscribers, bridge = spec["workspace"], spec["env"], {}, [], None
patterns = [re.compile(p) for p in spec["mqtt_patterns"]]
try:
    if spec["bridge"]:
        log = open(spec["bridge_log"], "w")
        bridge = subprocess.Popen([".venv/bin/ruview-bridge", "run", "--no-status"], cwd=ws, env=env,
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and bridge.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", 1883), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        state = MosquittoSub(["mosquitto_sub", "-v", "-t", "ruview/bridge/state"])
        subscribers.append(state)
        result["bridge_online"] = state.wait_for(
            lambda lines: 'ruview/bridge/state {"state":"online"}' in lines, 60)
        state.kill()
    if spec["mqtt"]:
        messages = MosquittoSub(["mosquitto_sub", "-v", "-t", "#"], confirm=True)
        subscribers.append(messages)
        result["subscribed"] = messages.subscribed(30)
    run = subprocess.run(["bash", "-e", "-c", spec["script"]], cwd=ws, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=spec["timeout"])
    result["exit"], result["output"] = run.returncode, run.stdout
    if spec["mqtt"]:
        seen = lambda lines: all(any(p.fullmatch(" ".join(l.split())) for l in lines) for p in patterns)
        messages.wait_for(seen, 15)
        result["messages"] = messages.kill()
    if bridge is not None:
        os.killpg(bridge.pid, signal.SIGINT)  # Ctrl-C in the bridge's terminal
        result["bridge_exit"] = bridge.wait(30)
finally:
    for sub in subscribers:
        sub.kill()
    if bridge is not None and bridge.poll() is None:
        os.killpg(bridge.pid, signal.SIGKILL)
        bridge.wait()
    print(json.dumps(result))
'''


def _run_plain(block: Block, script: str, workspace: Path, env: dict[str, str]) -> dict:
    run = subprocess.run(["bash", "-e", "-c", script], cwd=workspace, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=BLOCK_TIMEOUT)
    return {"exit": run.returncode, "output": run.stdout}


def _run_namespaced(block: Block, script: str, expected: list[str], workspace: Path, env: dict[str, str],
                    tmp: Path) -> dict:
    spec = {"root": str(ROOT), "workspace": str(workspace), "env": env, "script": script,
            "timeout": BLOCK_TIMEOUT, "bridge": "bridge" in block.options, "mqtt": "mqtt" in block.options,
            "bridge_log": str(tmp / f"bridge-{block.line}.log"),
            "mqtt_patterns": [p.pattern for p in map(line_pattern, expected) if p is not None]
            if "mqtt" in block.options else []}
    spec_file = tmp / f"spec-{block.line}.json"
    spec_file.write_text(json.dumps(spec))
    out = subprocess.run(["unshare", "-n", sys.executable, "-c", DRIVER, str(spec_file)], capture_output=True,
                         text=True, timeout=BLOCK_TIMEOUT + 200)
    assert out.returncode == 0, f"{block.where}: the namespace driver failed:\n{out.stderr[-3000:]}"
    result = json.loads(out.stdout.strip().splitlines()[-1])
    log = Path(spec["bridge_log"])
    result["bridge_log"] = log.read_text()[-3000:] if log.exists() else ""
    return result


def _stop_mock_board(home: Path) -> None:
    """A mock board a failed block left running (its record is in the block's HOME)."""
    from firmware_tools import mock_node

    state = home / ".local" / "state" / "ruview" / "mock-board.json"
    if state.exists():
        mock_node.stop(state)


def _can_namespace() -> bool:
    return os.geteuid() == 0 and shutil.which("unshare") is not None and shutil.which("ip") is not None


RUN_DOCS = [doc for doc in DOCS if runnable_blocks(doc)]


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("doc", [pytest.param(d, marks=[pytest.mark.slow] if d.name == "nodes.md" else [])
                                 for d in RUN_DOCS], ids=[str(d.relative_to(ROOT)) for d in RUN_DOCS])
def test_the_runnable_blocks_run_as_written(doc, tmp_path):
    blocks = runnable_blocks(doc)
    for block in blocks:
        assert block.lang in ("sh", "console"), f"{block.where}: a runnable block is ```sh or ```console"
        # .venv is the project's own environment, linked: an install would repoint it for everyone
        assert not any(re.search(r"\bpip3?\s+install\b", line) for line in _command_lines(block)), \
            f"{block.where}: a runnable block must not install into the shared .venv"
        assert block.options <= OPTIONS, f"{block.where}: unknown options {block.options - OPTIONS}"
    if any(b.options & NAMESPACED for b in blocks) and not _can_namespace():
        pytest.skip("needs root, unshare and ip for a private network namespace (CI runs as root)")
    workspace, home = tmp_path / "ruview-bridge", tmp_path / "home"
    workspace.mkdir()
    home.mkdir()
    _copy_repository(workspace)
    env = _user_env(home)
    try:
        for block in blocks:
            if "release" in block.options and not (workspace / "c6-onboarding").exists():
                _stand_in_release(workspace / "c6-onboarding")
            script, expected = script_and_expected(block)
            if block.options & NAMESPACED:
                result = _run_namespaced(block, script, expected, workspace, env, tmp_path)
            else:
                result = _run_plain(block, script, workspace, env)
            said = result.get("output", "")
            context = f"{block.where}:\n{block.text}\n--- it printed:\n{said[-4000:]}"
            if "bridge" in block.options:
                assert result.get("bridge_online"), f"{context}\n--- the bridge:\n{result['bridge_log']}"
            if "mqtt" in block.options:
                assert result.get("subscribed"), f"{context}\n(no SUBACK for the subscriber)"
            assert result["exit"] == 0, context
            if "mqtt" in block.options:
                missing = unmatched(expected, result["messages"], ordered=False)
                assert not missing, f"{context}\n--- not published: {missing}\n--- seen: {result['messages'][-20:]}"
            else:
                missing = unmatched(expected, said.splitlines())
                assert not missing, f"{context}\n--- not printed (in this order): {missing}"
            if "bridge" in block.options:
                assert result.get("bridge_exit") in (0, -2, 130), f"{context}\n{result['bridge_log']}"
    finally:
        _stop_mock_board(home)


# ------------------------------------------------------------------ what is marked, and how it is written

# Every block that runs here without hardware, a network beyond loopback, or root on the host.
MUST_RUN = {
    "README.md": ["ruview-bridge check-config", "ruview/bridge/request/health_check"],
    "docs/nodes.md": ["ruview-bridge import-recording", "ruview-bridge replay", "ruview-bridge capture",
                      "ruview-node mock-board start", "ruview-node flash c6-onboarding --dry-run",
                      "ruview-node simulate"],
    "docs/plugins.md": ["ruview-bridge plugin new"],
    "docs/mqtt-api.md": ["ruview/bridge/request/health_check", "ruview/service/light/turn_on"],
}


def test_the_blocks_that_can_run_here_are_marked_runnable():
    marked = {str(doc.relative_to(ROOT)): [b.text for b in runnable_blocks(doc)] for doc in DOCS}
    for doc, commands in MUST_RUN.items():
        for command in commands:
            assert any(command in text for text in marked.get(doc, [])), \
                f"{doc}: no block running `{command}` is marked <!-- runnable -->"


_BARE = re.compile(r"(?:^|&&|\|\||;|\||\$\(|\()\s*(?:\w+=\S*\s+)*(ruview-bridge|ruview-node)\b")
# Lines other people's files still hold; allowed, not required (they are theirs to change).
NOT_MINE = [("docs/homekit.md", "ruview-bridge homekit"), ("docs/plugins.md", "ruview-bridge plugin audit")]


def _command_lines(block: Block) -> list[str]:
    if block.lang == "console":
        return [line[2:] for line in block.text.splitlines() if line.startswith("$ ")]
    return [re.sub(r"\s#.*$", "", line) for line in block.text.splitlines() if not _is_comment(line)]


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(ROOT)) for d in DOCS])
def test_every_command_names_its_program_in_the_venv(doc):
    """`.venv/bin/ruview-bridge`, never a bare `ruview-bridge` (command not found without activation)."""
    name = str(doc.relative_to(ROOT))
    for block, _ in doc_blocks(doc):
        if block.lang not in ("sh", "console", "bash", ""):
            continue
        for line in _command_lines(block):
            if any(name == d and text in line for d, text in NOT_MINE):
                continue
            assert not _BARE.search(line), f"{block.where}: `{line.strip()}` runs a bare program: " \
                                           "write .venv/bin/ruview-bridge / .venv/bin/ruview-node"
            if "my-plugin/build.sh" in line:
                assert ".venv/bin" in line, f"{block.where}: build.sh needs the venv's python3 on PATH"


def test_the_expected_output_matcher():
    assert unmatched(["a ... c", "...", "d"], ["x", "a  b   c", "d"]) == []
    assert unmatched(["d", "a ... c"], ["a b c", "d"]) == ["a ... c"]            # order counts
    assert unmatched(["d", "a … c"], ["a b c", "d"], ordered=False) == []
    block = Block("x.md", 1, "console", "$ one \\\n  --flag\n$ two\nout\n")
    assert script_and_expected(block) == ("one \\\n  --flag\ntwo\n", ["out"])
    block = Block("x.md", 1, "sh", "# a note\ncmd   # trailing\n# shown\n")
    assert script_and_expected(block)[1] == ["shown"]


# ------------------------------------------------------------------ homekit pair-info

def _pair_info(tmp_path: Path, config_text: str | None) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "bridge", "homekit", "pair-info"]
    if config_text is not None:
        (tmp_path / "my.yaml").write_text(config_text)
        args += ["-c", "my.yaml"]
    env = {**os.environ, "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    return subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("config_text", [None, "homekit:\n  enabled: false\n", "mqtt:\n  base_topic: home\n"])
def test_pair_info_says_homekit_is_disabled_and_how_to_enable_it(tmp_path, config_text):
    result = _pair_info(tmp_path, config_text)
    where = "the built-in defaults" if config_text is None else "my.yaml"
    assert result.returncode == 2, result
    assert f"HomeKit is disabled (homekit.enabled: false in {where}" in result.stderr
    assert "set `homekit.enabled: true` in" in result.stderr and "docs/homekit.md" in result.stderr
    assert "Setup code" not in result.stdout + result.stderr and result.stdout == ""
    assert not (tmp_path / ".local" / "state" / "ruview-bridge").exists(), "a disabled HomeKit made a code"


def test_pair_info_prints_the_code_when_homekit_is_enabled(tmp_path):
    state = tmp_path / "state"
    result = _pair_info(tmp_path, f"bridge:\n  state_dir: {state}\nhomekit:\n  enabled: true\n")
    assert result.returncode == 0, result.stderr
    assert "Setup code:" in result.stdout and "Paired controllers: 0" in result.stdout
