"""ADR-133's agent runner: what no recognizer understood goes to an agent, over MQTT or stdio.

The agent gets the utterance and the home's names (`Home.context`: entities, areas, rooms —
never a node's measurements) and answers `{"id", "intent": {"name", "slots"}}` or
`{"id", "intent": null}`. Over MQTT the request goes to `assist.agent.topic` and the answer
comes back on `<topic>/response`; as a subprocess (`assist.agent.command`) it is one JSON
line each way, the process kept running, restarted with a growing pause when it dies, and
killed when the bridge stops. Waiting is bounded by the extension (`assist.agent.timeout`);
what the agent says is validated against the home like any other intent before anything acts.
"""

from __future__ import annotations

import logging
import subprocess
import threading
from typing import Any, Callable

import orjson

from bridge.assist.config import AgentConfig

log = logging.getLogger(__name__)

Answer = Callable[[dict[str, Any]], None]
MAX_LINE = 64 * 1024


class AgentRunner:
    def __init__(self, ctx, cfg: AgentConfig, on_answer: Answer) -> None:
        self.ctx, self.cfg, self._on_answer = ctx, cfg, on_answer
        self._proc: subprocess.Popen | None = None
        self._write = threading.Lock()
        self.restarts = 0
        self.transport = "mqtt" if cfg.topic else "command" if cfg.command else None

    @property
    def configured(self) -> bool:
        return self.transport is not None

    def start(self) -> None:
        if self.transport == "mqtt":
            self.ctx.mqtt.subscribe(f"{self.cfg.topic}/response", self._on_message, accept_retained=False)
        elif self.transport == "command":
            self.ctx.spawn("agent", self._run)

    def ask(self, request: dict[str, Any]) -> bool:
        line = orjson.dumps(request)
        if self.transport == "mqtt":
            self.ctx.mqtt.publish(self.cfg.topic, line, qos=1)
            return True
        proc = self._proc
        if proc is None or proc.poll() is not None or proc.stdin is None:
            return False
        try:
            with self._write:
                proc.stdin.write(line + b"\n")
                proc.stdin.flush()
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)

    # ------------------------------------------------------------ answers

    def _on_message(self, msg) -> None:
        self._answer(msg.payload)

    def _answer(self, raw: bytes) -> None:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            log.warning("assist agent: an answer that is not JSON was ignored")
            return
        if isinstance(body, dict):
            self._on_answer(body)

    # ------------------------------------------------------------ the subprocess

    def _run(self) -> None:
        """Keep the agent process running until the extension stops (a supervised loop)."""
        delay = 0.5
        while not self.ctx.stopping.is_set():
            command = self.cfg.command
            assert command is not None  # set: this runs for the "command" transport only
            try:
                proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            except OSError as exc:
                log.error("assist agent: cannot start %s: %s (fix assist.agent.command)", command[0], exc)
                self.ctx.stopping.wait(delay)
                delay = min(delay * 2, 30)
                continue
            self._proc = proc
            log.info("assist agent: started %s (pid %d)", command[0], proc.pid)
            stdout = proc.stdout
            assert stdout is not None  # opened with stdout=PIPE
            for line in iter(lambda: stdout.readline(MAX_LINE), b""):
                if line.strip():
                    self.ctx.inbox.put(self._answer, line)
                delay = 0.5
            code = proc.wait()
            if self.ctx.stopping.is_set():
                return
            self.restarts += 1
            log.warning("assist agent: %s exited with %s; starting it again in %.1f s",
                        command[0], code, delay)
            self.ctx.stopping.wait(delay)
            delay = min(delay * 2, 30)
