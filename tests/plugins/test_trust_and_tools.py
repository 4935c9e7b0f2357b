"""Manifests, signatures, the audit chain and the publisher's commands, as a plugin author uses them."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from bridge.plugins import audit, trust
from bridge.plugins.extension import _dependency_order
from bridge.plugins.manifest import ManifestError, load_manifest, parse_manifest
from bridge.plugins.permissions import Permissions, filter_within
from tests.plugins.helpers import PLUGINS, Publisher

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bridge", "plugin", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_every_committed_plugin_is_rebuilt_from_source_byte_for_byte(tmp_path):
    built = subprocess.run([str(PLUGINS / "build.sh"), str(tmp_path)], capture_output=True, text=True,
                           env={**os.environ, "PYTHON": sys.executable})
    assert built.returncode == 0, built.stderr
    wasm = sorted(p.relative_to(PLUGINS) for p in PLUGINS.rglob("plugin.wasm"))
    assert len(wasm) == 11  # presence-lights, threshold-alert in C, Rust and AssemblyScript, 7 hostile
    for path in wasm:
        assert (tmp_path / path).read_bytes() == (PLUGINS / path).read_bytes(), f"{path} differs from its source"
        manifest = load_manifest(PLUGINS / path.parent)
        assert manifest.wasm_module_hash == trust.digest((PLUGINS / path).read_bytes()), path


def test_a_manifest_error_names_the_file_and_every_field():
    raw = orjson.loads((PLUGINS / "presence-lights" / "manifest.json").read_bytes())
    raw.update(domain="Presence Lights", homecore_permissions=["state:read:*", "root:everything"],
               host_imports_required=["hc_log", "system"], limits={"memory_mb": 0}, colour="red")
    with pytest.raises(ManifestError) as err:
        parse_manifest(orjson.dumps(raw), "plugins/x/manifest.json")
    text = str(err.value)
    for field in ("domain", "homecore_permissions", "host_imports_required", "limits.memory_mb", "colour"):
        assert f"plugins/x/manifest.json: {field}:" in text, text
    assert "'root:everything' is not a permission" in text and "unknown field" in text


def test_keygen_sign_verify_from_the_command_line_never_shows_the_private_key(tmp_path):
    key = tmp_path / "publisher.key"
    made = cli("keygen", str(key))
    assert made.returncode == 0, made.stderr
    public = made.stdout.strip()
    assert public.startswith("ed25519:") and stat.S_IMODE(key.stat().st_mode) == 0o600
    secret = key.read_text().strip().split(":", 1)[1]
    assert cli("keygen", str(key)).returncode == 1  # never overwrites a key
    plugin = tmp_path / "presence-lights"
    shutil.copytree(PLUGINS / "presence-lights", plugin)
    signed = cli("sign", str(plugin), "--key", str(key))
    assert signed.returncode == 0, signed.stderr
    manifest = load_manifest(plugin)
    assert manifest.publisher_key == public and manifest.wasm_module_sig
    ok = cli("verify", str(plugin), "--trust", public)
    assert ok.returncode == 0 and f"{plugin}: signed" in ok.stdout
    other = cli("verify", str(plugin), "--trust", trust.public_key_text(trust.SigningKey.generate().verify_key))
    assert other.returncode == 1 and "is not in plugins.trusted_keys" in other.stdout
    for result in (made, signed, ok, other):
        assert secret not in result.stdout + result.stderr


def test_the_signature_covers_permissions_and_hash_only_needs_the_switch(tmp_path):
    publisher = Publisher(tmp_path)
    plugin = publisher.install("threshold-alert", tmp_path / "p")
    module = (plugin / "plugin.wasm").read_bytes()
    manifest = load_manifest(plugin)
    keys = [publisher.public]
    assert trust.verify(manifest, module, "m", trusted_keys=keys).how == "signed"
    for change in ({"limits": {**manifest.limits.model_dump(), "fuel_per_call": 10**9}},
                   {"subscriptions": ["#"]}, {"version": "9.9.9"}, {"registered_services": ["threshold_alert.x"]}):
        widened = manifest.model_copy(update=change)
        with pytest.raises(trust.TrustError, match="signature does not verify"):
            trust.verify(widened, module, "m", trusted_keys=keys)
    # the seed's signature: the module hash alone
    seed_style = manifest.model_copy(update={"wasm_module_sig": "ed25519:" + base64.b64encode(
        publisher.key.sign(bytes.fromhex(trust.digest(module)[7:])).signature).decode()})
    with pytest.raises(trust.TrustError):
        trust.verify(seed_style, module, "m", trusted_keys=keys)
    verdict = trust.verify(seed_style, module, "m", trusted_keys=keys, allow_hash_only=True)
    assert verdict.how == "signed (hash only)" and "permissions are not covered" in verdict.warning
    unsigned = manifest.model_copy(update={"wasm_module_sig": "", "publisher_key": ""})
    with pytest.raises(trust.TrustError, match="not signed"):
        trust.verify(unsigned, module, "m", trusted_keys=keys)
    assert "UNSIGNED" in trust.verify(unsigned, module, "m", trusted_keys=[], allow_unsigned=True).warning


def test_the_audit_chain_breaks_where_a_record_was_changed_or_removed(tmp_path):
    log = audit.AuditLog(tmp_path / "audit.jsonl")
    for i in range(5):
        log.record("p", "deny", subject=f"lock.door_{i}")
    assert audit.verify(tmp_path / "audit.jsonl") == (5, None)
    assert stat.S_IMODE((tmp_path / "audit.jsonl").stat().st_mode) == 0o600
    lines = (tmp_path / "audit.jsonl").read_bytes().splitlines()
    edited = lines[:]
    edited[1] = edited[1].replace(b"door_1", b"door_9")
    (tmp_path / "edited.jsonl").write_bytes(b"\n".join(edited) + b"\n")
    count, problem = audit.verify(tmp_path / "edited.jsonl")
    assert count == 2 and ":3:" in problem
    (tmp_path / "cut.jsonl").write_bytes(b"\n".join(lines[:2] + lines[3:]) + b"\n")
    assert audit.verify(tmp_path / "cut.jsonl")[0] == 2
    again = audit.AuditLog(tmp_path / "audit.jsonl")  # a restart continues the chain
    again.record("p", "load")
    assert audit.verify(tmp_path / "audit.jsonl") == (6, None)
    result = cli("audit", "--verify", "--file", str(tmp_path / "edited.jsonl"))
    assert result.returncode == 1 and "the chain breaks here" in result.stdout


def test_permissions_match_globs_and_mqtt_filters_no_wider_than_granted():
    p = Permissions(["state:read:sensor.*", "mqtt:subscribe:zigbee2mqtt/+/availability",
                     "mqtt:publish:ruview/plugin/x/#", "service:call:light.turn_*"])
    assert p.allows("state:read", "sensor.hall_temperature") and not p.allows("state:read", "lock.door")
    assert not p.allows("state:write", "sensor.hall_temperature")
    assert p.allows("service:call", "light.turn_on") and not p.allows("service:call", "lock.unlock")
    assert p.allows("mqtt:publish", "ruview/plugin/x/a/b") and not p.allows("mqtt:publish", "ruview/state/x")
    assert p.allows("mqtt:subscribe", "zigbee2mqtt/lamp/availability")
    assert not p.allows("mqtt:subscribe", "zigbee2mqtt/#") and not p.allows("mqtt:subscribe", "zigbee2mqtt/+/+")
    assert filter_within("a/b", "a/#") and filter_within("a", "a/#") and not filter_within("a/#", "a/+")
    assert not Permissions([]).allows("entity:register", "binary_sensor.x")


def test_dependencies_load_first_and_a_missing_one_is_refused():
    def m(domain, *deps):
        raw = orjson.loads((PLUGINS / "presence-lights" / "manifest.json").read_bytes())
        return Path(domain), parse_manifest(orjson.dumps({**raw, "domain": domain, "dependencies": list(deps)}), domain)

    refused = []
    order = _dependency_order({"c": m("c", "b"), "b": m("b", "a"), "a": m("a"), "d": m("d", "nowhere"),
                               "e": m("e", "f"), "f": m("f", "e")}, set(),
                              lambda domain, d, man, why: refused.append((domain, why)))
    assert order == ["a", "b", "c"]
    why = dict(refused)
    assert why["d"] == "needs plugin nowhere, which is not installed"
    assert "dependency cycle" in why["e"] or "dependency cycle" in why["f"]


def test_new_scaffolds_a_plugin_that_builds_and_hashes(tmp_path):
    made = cli("new", str(tmp_path / "hall-motion"))
    assert made.returncode == 0, made.stderr
    plugin = tmp_path / "hall-motion"
    assert {p.name for p in plugin.iterdir()} == {"plugin.c", "manifest.json", "build.sh", "ruview_plugin.h"}
    assert load_manifest(plugin).domain == "hall_motion"
    built = subprocess.run([sys.executable, "-m", "ziglang", "cc", "--target=wasm32-freestanding", "-O2",
                            "-nostdlib", "-Wl,--no-entry", "-Wl,--strip-all", "-Wl,-z,stack-size=65536",
                            f"-I{plugin}", "-o", str(plugin / "plugin.wasm"), str(plugin / "plugin.c")],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    assert cli("hash", str(plugin)).returncode == 0
    assert load_manifest(plugin).wasm_module_hash == trust.digest((plugin / "plugin.wasm").read_bytes())
    listed = cli("list", str(tmp_path))
    assert "hall_motion" in listed.stdout and "unsigned" in listed.stdout
    assert cli("new", str(plugin)).returncode == 1  # not over an existing plugin
    assert json.loads((plugin / "manifest.json").read_text())["wasm_module_sig"] == ""
