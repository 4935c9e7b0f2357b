"""`ruview-bridge plugin search | install | update` against a registry served over HTTPS (a private
CA made here) on loopback: a good package installs and loads; a wrong hash, a bad signature, an
untrusted key, a too-new min_homecore_version and an oversize download are each refused with one
clear line, and nothing is written into plugins.dirs."""

from __future__ import annotations

import base64
import http.server
import shutil
import ssl
import subprocess
import tempfile
import threading
from pathlib import Path

import orjson
import pytest
import yaml

from bridge.cli import main
from bridge.plugins import registry
from bridge.plugins.manifest import load_manifest
from tests.plugins.helpers import PLUGINS, Publisher
from tests.plugins.test_lifecycle import ENTRY, status
from tests.plugins.test_plugins_e2e import plugin_bridge  # noqa: F401 (fixture)

COG = "ruview.threshold-alert-rust"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki():
    d = Path(tempfile.mkdtemp(prefix="ruview-registry-pki-"))
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", "2", "-subj", "/CN=ruview registry test CA", cwd=d)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=localhost", cwd=d)
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.pem", "-days", "2", "-extfile", "san.ext", cwd=d)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other.key", "-out", "other-ca.pem",
             "-days", "2", "-subj", "/CN=someone else", cwd=d)
    yield d
    shutil.rmtree(d, ignore_errors=True)


class Site:
    """A registry: packages under `root`, an index.json naming them, served over HTTPS."""

    def __init__(self, root: Path, publisher: Publisher) -> None:
        self.root, self.publisher, self.cogs = root, publisher, []
        self.url = ""

    def publish(self, cog_id: str = COG, version: str = "1.0.0", *, signer: Publisher | None = None,
                index: dict | None = None, manifest: dict | None = None, module: bytes | None = None) -> dict:
        """A package signed by `signer` (the site's publisher), with changes to its index entry."""
        package = self.root / f"{cog_id}-{version}-{len(self.cogs)}"
        shutil.copytree(PLUGINS / "threshold-alert-rust", package)
        raw = orjson.loads((package / "manifest.json").read_bytes())
        raw.update(cog_id=cog_id, version=version, **(manifest or {}))
        if module is not None:
            (package / "plugin.wasm").write_bytes(module)
        (package / "manifest.json").write_bytes(orjson.dumps(raw))
        (signer or self.publisher).sign(package)
        signed = orjson.loads((package / "manifest.json").read_bytes())
        entry = {"id": cog_id, "name": "Threshold alert", "category": "automation", "version": version,
                 "description": "a binary sensor on while a sensor is high", "difficulty": "beginner",
                 "size_kb": 50, "binary_size": (package / "plugin.wasm").stat().st_size, "config": [],
                 "wasm_module": f"{package.name}/plugin.wasm",
                 **{k: signed[k] for k in ("wasm_module_hash", "wasm_module_sig", "publisher_key",
                                           "min_homecore_version")}, **(index or {})}
        self.cogs.append(entry)
        self.write()
        return entry

    def write(self) -> None:
        (self.root / "index.json").write_bytes(orjson.dumps({"version": "2.1.0", "cogs": self.cogs}))


@pytest.fixture
def site(tmp_path, pki):
    root = tmp_path / "site"
    root.mkdir()
    made = Site(root, Publisher(tmp_path))

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args) -> None:
            pass

    class QuietServer(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address) -> None:
            pass  # a client that stops reading (an oversize download refused) is expected here, not news

    server = QuietServer(("127.0.0.1", 0), Quiet)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki / "server.pem", pki / "server.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    serving = threading.Thread(target=server.serve_forever, name="registry-site", daemon=True)
    serving.start()
    made.url = f"https://127.0.0.1:{server.server_address[1]}/index.json"
    yield made
    server.shutdown()
    server.server_close()
    serving.join(5)


@pytest.fixture
def setup(tmp_path, site, pki):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"plugins": {
        "enabled": True, "dirs": [str(plugins)], "trusted_keys": [site.publisher.public],
        "registry": site.url, "registry_ca": str(pki / "ca.pem")}}))
    return plugins, config


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["plugin", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_good_package_installs_from_the_https_registry_and_the_bridge_loads_it(
        site, setup, capsys, mosquitto, plugin_bridge, make_probe):  # noqa: F811
    plugins, config = setup
    site.publish()
    probe = make_probe(mosquitto, "ruview/plugin/+/status")
    bridge, host, _ = plugin_bridge(mosquitto, {"dirs": [str(plugins)], "trusted_keys": [site.publisher.public],
                                                "entries": ENTRY, "watch": True})
    code, out, err = run(capsys, "search", "threshold", "-c", str(config))
    assert code == 0 and COG in out and "trusted" in out, out + err
    code, out, err = run(capsys, "install", COG, "-c", str(config))
    assert code == 0, err
    assert out.strip() == f"installed {COG} 1.0.0 into {plugins / COG} (signed by {site.publisher.public[:20]}...)"
    assert sorted(p.name for p in (plugins / COG).iterdir()) == ["manifest.json", "plugin.wasm"]
    assert [p.name for p in plugins.parent.iterdir() if "staging" in p.name] == []
    # the watcher sees it whole and runs it
    running = status(probe, "threshold_alert", lambda s: s["state"] == "running", 15)
    assert running["cog_id"] == COG and running["trust"] == "signed"
    code, out, _ = run(capsys, "search", "-c", str(config))
    assert "installed 1.0.0" in out
    code, _, err = run(capsys, "install", COG, "-c", str(config))
    assert code == 1 and "is installed already" in err


def _flip(signature: str) -> str:
    raw = bytearray(base64.b64decode(signature[8:]))
    raw[5] ^= 1
    return "ed25519:" + base64.b64encode(bytes(raw)).decode()


def test_each_bad_package_is_refused_with_one_clear_line_and_nothing_lands(site, setup, capsys, tmp_path):
    plugins, config = setup
    site.publish("good")
    site.publish("wrong-hash", index={"wasm_module_hash": "sha256:" + "0" * 64})
    site.publish("bad-sig")
    # a flipped bit in the signature, in the index and the manifest alike: only the signature is wrong
    package = site.root / Path(site.cogs[-1]["wasm_module"]).parent
    raw = orjson.loads((package / "manifest.json").read_bytes())
    site.cogs[-1]["wasm_module_sig"] = raw["wasm_module_sig"] = _flip(raw["wasm_module_sig"])
    (package / "manifest.json").write_bytes(orjson.dumps(raw))
    (tmp_path / "stranger").mkdir()
    untrusted = site.publish("untrusted", signer=Publisher(tmp_path / "stranger"))
    site.publish("too-new", manifest={"min_homecore_version": "99.0.0"})
    site.publish("oversize", index={"binary_size": 1000})
    expected = {
        "wrong-hash": "the module's sha256 is not the index's (the index says sha256:000000000000...",
        "bad-sig": "the signature does not verify",
        "untrusted": f"its publisher_key {untrusted['publisher_key'][:20]}... is not in plugins.trusted_keys",
        "too-new": "too-new 1.0.0 needs ruview-bridge 99.0.0 or newer (this is 0.1.0)",
        "oversize": "bytes, over the limit of 1000",
    }
    for cog_id, why in expected.items():
        code, out, err = run(capsys, "install", cog_id, "-c", str(config))
        lines = err.strip().splitlines()
        assert code == 1 and len(lines) == 1 and out == "", (cog_id, out, err)
        assert lines[0].startswith(f"ruview-bridge plugin: install {cog_id}: refused: ") and why in lines[0], lines
        assert list(plugins.iterdir()) == [], cog_id
        assert [p.name for p in plugins.parent.iterdir() if "staging" in p.name] == [], cog_id
    # the manifest served must be the one the index describes
    site.cogs[0]["wasm_module_sig"] = site.cogs[2]["wasm_module_sig"]
    site.write()
    code, _, err = run(capsys, "install", "good", "-c", str(config))
    assert code == 1 and "the manifest does not match the index (wasm_module_sig)" in err
    assert list(plugins.iterdir()) == []


def test_the_registry_must_be_https_and_its_certificate_must_verify(site, setup, capsys, pki, tmp_path):
    plugins, config = setup
    site.publish()
    code, _, err = run(capsys, "install", COG, "-c", str(config), "--index", "http://registry.example/index.json")
    assert code == 1 and "is plain HTTP: a registry must be HTTPS" in err
    other = tmp_path / "other.yaml"
    raw = yaml.safe_load(config.read_text())
    raw["plugins"]["registry_ca"] = str(pki / "other-ca.pem")
    other.write_text(yaml.safe_dump(raw))
    code, _, err = run(capsys, "search", "-c", str(other))
    assert code == 1 and "the server's certificate does not verify" in err
    assert list(plugins.iterdir()) == []
    # an index on the web names web locations only, never a file on this machine
    site.publish("local-file", index={"wasm_module": "file:///etc/hostname"})
    code, _, err = run(capsys, "install", "local-file", "-c", str(config))
    assert code == 1 and "cogs[1].wasm_module: missing or malformed" in err, err


def test_update_takes_a_newer_version_and_refuses_a_downgrade_unless_asked(site, setup, capsys):
    plugins, config = setup
    site.publish(version="1.0.0")
    assert run(capsys, "install", COG, "-c", str(config))[0] == 0
    site.publish(version="1.1.0")
    code, out, err = run(capsys, "update", COG, "-c", str(config))
    assert code == 0 and out.strip() == f"updated {COG} 1.0.0 -> 1.1.0 in {plugins / COG}", err
    assert load_manifest(plugins / COG).version == "1.1.0"
    assert run(capsys, "update", COG, "-c", str(config))[1].strip() == f"{COG} 1.1.0 is up to date"
    site.cogs = [c for c in site.cogs if c["version"] == "1.0.0"]
    site.write()
    code, _, err = run(capsys, "update", COG, "-c", str(config))
    assert code == 1 and "older than the installed 1.1.0: a downgrade is refused unless asked for" in err
    assert load_manifest(plugins / COG).version == "1.1.0"
    code, out, _ = run(capsys, "update", COG, "-c", str(config), "--allow-downgrade")
    assert code == 0 and load_manifest(plugins / COG).version == "1.0.0"
    # an update that fails its checks leaves the installed version as it was
    site.cogs = []
    site.publish(version="2.0.0", index={"wasm_module_hash": "sha256:" + "1" * 64})
    assert run(capsys, "update", COG, "-c", str(config))[0] == 1
    assert load_manifest(plugins / COG).version == "1.0.0" and [p.name for p in plugins.iterdir()] == [COG]


def test_versions_order_and_a_local_index_resolves_relative_paths(tmp_path):
    assert registry.version_key("1.2.3-rc1") < registry.version_key("1.2.3") < registry.version_key("1.10.0")
    (tmp_path / "index.json").write_bytes(orjson.dumps({"cogs": [
        {"id": "a", "version": "1.0.0", "wasm_module": "a/plugin.wasm", "wasm_module_hash": "sha256:" + "0" * 64,
         "wasm_module_sig": "ed25519:" + "A" * 86 + "==", "publisher_key": "ed25519:" + "A" * 43 + "="},
        {"id": "an-app-not-a-plugin", "version": "1.0.0"}]}))
    [cog] = registry.load_index(str(tmp_path / "index.json"))
    assert cog.wasm_module == str(tmp_path / "a" / "plugin.wasm") and cog.manifest == str(tmp_path / "a" / "manifest.json")
    (tmp_path / "bad.json").write_bytes(orjson.dumps({"cogs": [{"id": "b", "version": "one", "wasm_module": "x"}]}))
    with pytest.raises(registry.RegistryError, match=r"cogs\[0\]\.version: missing or malformed"):
        registry.load_index(str(tmp_path / "bad.json"))


def test_install_from_a_local_index_path(site, setup, capsys):
    plugins, config = setup
    site.publish()
    code, out, err = run(capsys, "install", COG, "-c", str(config), "--index", str(site.root / "index.json"))
    assert code == 0, err
    assert load_manifest(plugins / COG).cog_id == COG
    assert run(capsys, "verify", str(plugins / COG), "--trust", site.publisher.public)[0] == 0

