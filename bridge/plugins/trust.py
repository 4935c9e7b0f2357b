"""Whether a plugin may run: its module's hash, and its publisher's Ed25519 signature (PyNaCl).

Checked before anything is compiled. The signature covers

    b"ruview-plugin-v1\\0" + sha256(module) + sha256(canonical JSON of the security fields)

so a permission, a subscription, a limit or the version cannot change without re-signing. The
seed signed the module hash alone; such a signature is accepted only with
`plugins.allow_hash_only_signatures` (and a warning each time). Publisher keys are trusted
through `plugins.trusted_keys`; `plugins.allow_unsigned` is a development mode, said loudly.

Key files hold `ed25519-private:<base64 seed>` and are written 0600; the private key is never
printed, never passed on a command line.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from bridge.plugins.manifest import Manifest

DOMAIN_TAG = b"ruview-plugin-v1\0"
PRIVATE_PREFIX = "ed25519-private:"


class TrustError(Exception):
    """The plugin may not run; str() says why (hash, signature, key), naming the file."""


@dataclass(frozen=True)
class Verdict:
    trusted: bool  # signed by a trusted key
    how: str  # "signed", "signed (hash only)", "unsigned (allow_unsigned)"
    warning: str | None = None


def digest(module: bytes) -> str:
    return "sha256:" + hashlib.sha256(module).hexdigest()


def public_key_text(key: VerifyKey) -> str:
    return "ed25519:" + base64.b64encode(bytes(key)).decode()


def parse_public_key(text: str) -> VerifyKey:
    if not isinstance(text, str) or not text.startswith("ed25519:"):
        raise ValueError("expected ed25519:<base64 of a 32-byte public key>")
    try:
        raw = base64.b64decode(text[8:], validate=True)
    except ValueError:
        raise ValueError("expected ed25519:<base64 of a 32-byte public key>") from None
    if len(raw) != 32:
        raise ValueError("expected ed25519:<base64 of a 32-byte public key>")
    return VerifyKey(raw)


def signed_message(manifest: Manifest, module_digest: str) -> bytes:
    fields = orjson.dumps(manifest.security_fields(), option=orjson.OPT_SORT_KEYS)
    return DOMAIN_TAG + bytes.fromhex(module_digest[7:]) + hashlib.sha256(fields).digest()


def _signature(manifest: Manifest) -> bytes:
    return base64.b64decode(manifest.wasm_module_sig[8:])


def verify(manifest: Manifest, module: bytes, source: str, *, trusted_keys: list[str],
           allow_unsigned: bool = False, allow_hash_only: bool = False) -> Verdict:
    """Raise TrustError unless the module may be compiled; say how it was trusted."""
    actual = digest(module)
    if not manifest.wasm_module_hash:
        if not allow_unsigned:
            raise TrustError(f"{source}: wasm_module_hash is empty: run `ruview-bridge plugin sign` "
                             "(or set plugins.allow_unsigned for development)")
    elif manifest.wasm_module_hash != actual:
        raise TrustError(f"{source}: {manifest.wasm_module} does not match wasm_module_hash "
                         f"(the manifest says {manifest.wasm_module_hash[:19]}..., the file is {actual[:19]}...): "
                         "the module was changed after it was signed")
    if not manifest.wasm_module_sig:
        if allow_unsigned:
            return Verdict(False, "unsigned (allow_unsigned)",
                           f"{source}: running an UNSIGNED plugin because plugins.allow_unsigned is on")
        raise TrustError(f"{source}: not signed (wasm_module_sig is empty); sign it with a trusted key "
                         "(`ruview-bridge plugin sign`), or set plugins.allow_unsigned for development")
    if not manifest.publisher_key:
        raise TrustError(f"{source}: signed, but publisher_key is empty")
    if manifest.publisher_key not in trusted_keys:
        if allow_unsigned:
            return Verdict(False, "untrusted key (allow_unsigned)",
                           f"{source}: running a plugin signed by an UNTRUSTED key because plugins.allow_unsigned is on")
        raise TrustError(f"{source}: publisher_key {manifest.publisher_key[:20]}... is not in plugins.trusted_keys")
    key = parse_public_key(manifest.publisher_key)
    signature = _signature(manifest)
    try:
        key.verify(signed_message(manifest, actual), signature)
        return Verdict(True, "signed")
    except BadSignatureError:
        pass
    if allow_hash_only:
        try:
            key.verify(bytes.fromhex(actual[7:]), signature)
            return Verdict(True, "signed (hash only)",
                           f"{source}: accepted a signature over the module hash alone "
                           "(plugins.allow_hash_only_signatures): its permissions are not covered")
        except BadSignatureError:
            pass
    raise TrustError(f"{source}: the signature does not verify: the module or a security field "
                     f"({', '.join(sorted(manifest.security_fields()))}) changed after signing")


# ------------------------------------------------------------ keys and signing (the CLI)

def generate_key(path: str | Path) -> str:
    """A new key pair: the private key into `path` (0600, refusing to overwrite), the public key returned."""
    key = SigningKey.generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(PRIVATE_PREFIX + base64.b64encode(bytes(key)).decode() + "\n")
    return public_key_text(key.verify_key)


def read_private_key(path: str | Path) -> SigningKey:
    text = Path(path).read_text(encoding="utf-8").strip()
    if not text.startswith(PRIVATE_PREFIX):
        raise ValueError(f"{path}: not a key file written by `ruview-bridge plugin keygen`")
    try:
        seed = base64.b64decode(text[len(PRIVATE_PREFIX):], validate=True)
    except ValueError:
        seed = b""
    if len(seed) != 32:
        raise ValueError(f"{path}: the key in it is damaged")
    return SigningKey(seed)


def sign(raw_manifest: dict[str, Any], manifest: Manifest, module: bytes, key: SigningKey) -> dict[str, Any]:
    """The manifest with hash, publisher key and signature filled in (the rest as it was)."""
    module_digest = digest(module)
    signed = manifest.model_copy(update={"wasm_module_hash": module_digest,
                                         "publisher_key": public_key_text(key.verify_key)})
    signature = key.sign(signed_message(signed, module_digest)).signature
    return {**raw_manifest, "wasm_module_hash": module_digest, "publisher_key": signed.publisher_key,
            "wasm_module_sig": "ed25519:" + base64.b64encode(signature).decode()}
