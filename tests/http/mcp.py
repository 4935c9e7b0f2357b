"""The real @ruvnet/rvagent MCP server, spawned over stdio as an MCP client (Claude Code ...) runs it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

RVAGENT = Path(__file__).resolve().parents[1] / "js" / "node_modules" / "@ruvnet" / "rvagent" / "dist" / "index.js"


class McpClient:
    def __init__(self, sensing_url: str, token: str | None = None) -> None:
        if not RVAGENT.exists():
            raise AssertionError(f"{RVAGENT} is missing: run ./tests/run.sh, which installs tests/js")
        env = {**os.environ, "RUVIEW_SENSING_SERVER_URL": sensing_url}
        env.pop("RVAGENT_HTTP_PORT", None)
        if token:
            env["RUVIEW_API_TOKEN"] = token
        else:
            env.pop("RUVIEW_API_TOKEN", None)
        self.proc = subprocess.Popen(["node", str(RVAGENT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
        self._id = 0

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self._id += 1
        self._send({"jsonrpc": "2.0", "id": self._id, "method": method, "params": params or {}})
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError(f"rvagent exited: {self.proc.stderr.read()[-2000:]}")
            message = json.loads(line)
            if message.get("id") == self._id:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message["result"]

    def _send(self, message: dict[str, Any]) -> None:
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def initialize(self) -> dict[str, Any]:
        result = self.request("initialize", {"protocolVersion": "2024-11-05", "capabilities": {},
                                             "clientInfo": {"name": "ruview-bridge-tests", "version": "1"}})
        self._send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return result

    def call(self, tool: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        result = self.request("tools/call", {"name": tool, "arguments": arguments or {}})
        return json.loads(result["content"][0]["text"])

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
