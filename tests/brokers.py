"""Real brokers for tests: Mosquitto and the bridge's embedded broker, as processes.

Each runs on a free loopback port and can be killed and restarted on the
same port, which the fault tests need.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_udp() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class BrokerProcess:
    kind = "?"
    supports_v5 = False

    def __init__(self, port: int | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.workdir = Path(tempfile.mkdtemp(prefix=f"ruview-{self.kind}-"))

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> "BrokerProcess":
        log = open(self.workdir / "broker.log", "ab")
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                     cwd=self.workdir)
        wait_port(self.port)
        return self

    def kill(self) -> None:
        """SIGKILL: no goodbye to clients, no state saved."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()

    def cleanup(self) -> None:
        self.kill()  # teardown needs no goodbye
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __repr__(self) -> str:
        return f"<{self.kind} on {self.port}>"


class Mosquitto(BrokerProcess):
    kind = "mosquitto"
    supports_v5 = True

    def __init__(self, port: int | None = None, extra_conf: str = "") -> None:
        super().__init__(port)
        self.extra_conf = extra_conf

    def command(self) -> list[str]:
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                        "persistence false\nmax_queued_messages 100000\n" + self.extra_conf)
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        return [binary, "-c", str(conf)]


class Embedded(BrokerProcess):
    """The bridge's own embedded broker, as a process (so it can be killed like Mosquitto)."""

    kind = "embedded"
    supports_v5 = True

    def __init__(self, port: int | None = None, mqtt3_only: bool = False) -> None:
        super().__init__(port)
        self.mqtt3_only = mqtt3_only
        self.supports_v5 = not mqtt3_only

    def command(self) -> list[str]:
        return [sys.executable, "-m", "bridge.mqtt.embedded", "--port", str(self.port),
                *(["--mqtt3-only"] if self.mqtt3_only else [])]


def mosquitto_available() -> bool:
    return bool(shutil.which("mosquitto") or os.path.exists("/usr/sbin/mosquitto"))


class Nats(BrokerProcess):
    """NATS with its MQTT gateway (3.1.1 only, on JetStream): the server people run as a cluster.

    It has no shared subscriptions: it grants `$share/...` and matches the filter literally."""

    kind = "nats"
    supports_v5 = False

    def __init__(self, port: int | None = None) -> None:
        super().__init__(port)
        self.client_port = free_port()

    def command(self) -> list[str]:
        conf = self.workdir / "nats.conf"
        conf.write_text(f'listen: "127.0.0.1:{self.client_port}"\nserver_name: "ruview-test-{self.port}"\n'
                        f'jetstream {{ store_dir: "{self.workdir / "js"}" }}\n'
                        f'mqtt {{ listen: "127.0.0.1:{self.port}" }}\n')
        return [nats_server(), "-c", str(conf)]


def nats_server() -> str:
    return shutil.which("nats-server") or "/usr/sbin/nats-server"


def nats_available() -> bool:
    return os.path.exists(nats_server())
