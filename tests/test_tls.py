"""mqtts:// against a real Mosquitto TLS listener with a private CA made here."""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.polling import wait_until
from tests.brokers import Mosquitto


def _openssl(*args: str, cwd) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki():
    # not under pytest's tmp dir: its 0700 parents would hide the files from mosquitto
    d = Path(tempfile.mkdtemp(prefix="ruview-pki-"))
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", "2", "-subj", "/CN=ruview test CA", cwd=d)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=localhost", cwd=d)
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.ext", cwd=d)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other.key",
             "-out", "other-ca.pem", "-days", "2", "-subj", "/CN=someone else", cwd=d)
    # mosquitto started as root drops to its own user, which must read these throwaway files
    for path in [d, *d.iterdir()]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def tls_broker(pki):
    broker = Mosquitto(extra_conf=f"cafile {pki / 'ca.pem'}\ncertfile {pki / 'server.pem'}\n"
                                  f"keyfile {pki / 'server.key'}\n").start()
    yield broker
    broker.cleanup()


def test_mqtts_with_private_ca(tls_broker, pki, make_bridge):
    bridge = make_bridge(tls_broker, mqtt={"url": f"mqtts://localhost:{tls_broker.port}",
                                           "tls": {"ca": str(pki / "ca.pem")}})
    assert bridge.mqtt.connected and bridge.info()["broker"]["url"].startswith("mqtts://")


def test_untrusted_certificate_is_refused_with_a_clear_log(tls_broker, pki, make_bridge, caplog):
    caplog.set_level(logging.WARNING)
    bridge = make_bridge(tls_broker, start=False,
                         mqtt={"url": f"mqtts://localhost:{tls_broker.port}",
                               "tls": {"ca": str(pki / "other-ca.pem")}})
    bridge.start()
    assert wait_until(lambda: "certificate verify failed" in caplog.text, 10), caplog.text
    assert not bridge.mqtt.connected


def test_verify_off_connects_to_any_certificate(tls_broker, pki, make_bridge):
    bridge = make_bridge(tls_broker, mqtt={"url": f"mqtts://127.0.0.1:{tls_broker.port}",
                                           "tls": {"ca": str(pki / "other-ca.pem"), "verify": False}})
    assert bridge.mqtt.connected
