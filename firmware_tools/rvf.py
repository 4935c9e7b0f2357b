"""The firmware's RVF container for on-node WASM modules: built, signed, read back.

Layout (rvf_parser.h in the RuView firmware), little-endian and packed:
`[header 32][manifest 96][wasm N][signature 0|64][test vectors M]`. The manifest carries the
payload's SHA-256; the Ed25519 signature covers header + manifest + wasm and is made with the
same publisher key that signs the bridge's plugins (`ruview-bridge plugin keygen`). Some
firmware builds check a keyed SHA-256 instead (SHA-256(public key || signed bytes) in the first
32 bytes of the signature field): this module can make one only to probe for that variant,
never to sign a module, since anyone who knows the public key can forge it.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

MAGIC = 0x01465652           # "RVF\x01"
FORMAT_VERSION = 1
HEADER = struct.Struct("<IHHIIIIII")
MANIFEST = struct.Struct("<32sHIIHHH32sHH10s2s")
HEADER_SIZE, MANIFEST_SIZE, SIGNATURE_LEN = 32, 96, 64
FLAG_SIGNED, FLAG_TEST_VECTORS = 1, 2
WASM_MAGIC = b"\0asm"
MAX_WASM = 128 * 1024        # the parser's limit on the payload
HOST_API_V1 = 1

CAPS = {"read_phase": 1 << 0, "read_amplitude": 1 << 1, "read_variance": 1 << 2,
        "read_vitals": 1 << 3, "read_history": 1 << 4, "emit_events": 1 << 5, "log": 1 << 6}
CAPS_ALL = 0x7F

assert HEADER.size == HEADER_SIZE and MANIFEST.size == MANIFEST_SIZE


class RvfError(ValueError):
    """A module or container the node would refuse; the message says why."""


@dataclass(frozen=True)
class Manifest:
    name: str
    capabilities: int = CAPS_ALL
    max_frame_us: int = 0
    max_events_per_sec: int = 0
    memory_limit_kb: int = 0
    event_schema_version: int = 1
    min_subcarriers: int = 0
    max_subcarriers: int = 0
    author: str = ""
    required_host_api: int = HOST_API_V1
    build_hash: bytes = b""


@dataclass(frozen=True)
class Container:
    flags: int
    manifest: Manifest
    wasm: bytes
    signature: bytes | None
    signed_bytes: bytes          # header + manifest + wasm: what the signature covers


def parse_caps(text: str) -> int:
    """`all`, a number (0x7f) or names joined by commas (read_phase,emit_events)."""
    text = text.strip().lower()
    if text == "all":
        return CAPS_ALL
    try:
        value = int(text, 0)
    except ValueError:
        value = 0
        for name in filter(None, (part.strip() for part in text.split(","))):
            if name not in CAPS:
                raise RvfError(f"--caps: unknown capability {name!r}; known: {', '.join(CAPS)}, all") from None
            value |= CAPS[name]
    if not 0 <= value <= CAPS_ALL:
        raise RvfError(f"--caps {text}: the firmware knows bits 0..6 (0x7f)")
    return value


def _ascii(text: str, size: int, what: str) -> bytes:
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        raise RvfError(f"{what} {text!r}: ASCII only") from None
    if len(raw) >= size + (1 if what == "--author" else 0):
        raise RvfError(f"{what} {text!r}: at most {size - 1 if what != '--author' else size} characters")
    return raw.ljust(size, b"\0")


def pack(wasm: bytes, manifest: Manifest, key: SigningKey | None) -> bytes:
    """An RVF container for `wasm`, signed with `key` (Ed25519) when given."""
    if wasm[:4] != WASM_MAGIC:
        raise RvfError("not a WebAssembly module (it does not start with \\0asm)")
    if not 8 <= len(wasm) <= MAX_WASM:
        raise RvfError(f"the module has {len(wasm):,} bytes; the node takes 8 to {MAX_WASM:,}")
    name = manifest.name
    if not name:
        raise RvfError("--name: a module needs a name")
    body = MANIFEST.pack(_ascii(name, 32, "--name"), manifest.required_host_api, manifest.capabilities,
                         manifest.max_frame_us, manifest.max_events_per_sec, manifest.memory_limit_kb,
                         manifest.event_schema_version, hashlib.sha256(wasm).digest(),
                         manifest.min_subcarriers, manifest.max_subcarriers,
                         _ascii(manifest.author, 10, "--author"), b"\0\0")
    sig_len = SIGNATURE_LEN if key is not None else 0
    total = HEADER_SIZE + MANIFEST_SIZE + len(wasm) + sig_len
    header = HEADER.pack(MAGIC, FORMAT_VERSION, FLAG_SIGNED if key else 0, MANIFEST_SIZE, len(wasm),
                         sig_len, 0, total, 0)
    signed = header + body + wasm
    return signed + (key.sign(signed).signature if key is not None else b"")


def keyed_sha256_probe(public_key: bytes) -> bytes:
    """A container signed the keyed-SHA-256 way around a module no runtime loads.

    Sent after an Ed25519 signature was refused: a node of the keyed variant that holds this
    public key accepts the signature and then fails to load the module (500 "WASM load
    failed"); any other node refuses the signature again (403). Nothing is ever loaded.
    """
    wasm = WASM_MAGIC + b"\x01\0\0\0" + b"\x7f\x00"      # section id 127: not a valid module
    unsigned = pack(wasm + b"\0" * 6, Manifest("rvf-variant-probe", capabilities=0), None)
    header = HEADER.pack(MAGIC, FORMAT_VERSION, FLAG_SIGNED, MANIFEST_SIZE, len(wasm) + 6, SIGNATURE_LEN,
                         0, len(unsigned) + SIGNATURE_LEN, 0)
    signed = header + unsigned[HEADER_SIZE:]
    return signed + hashlib.sha256(public_key + signed).digest() + b"\0" * 32


def parse(data: bytes) -> Container:
    """Read a container as the node's rvf_parse does (same checks, same order)."""
    if len(data) < HEADER_SIZE + MANIFEST_SIZE + 8:
        raise RvfError(f"RVF too small: {len(data)} bytes")
    magic, version, flags, manifest_len, wasm_len, sig_len, tv_len, total, _ = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise RvfError(f"bad RVF magic 0x{magic:08x}")
    if version != FORMAT_VERSION:
        raise RvfError(f"unsupported RVF version {version}")
    if manifest_len != MANIFEST_SIZE:
        raise RvfError(f"bad manifest size {manifest_len}")
    if wasm_len == 0 or wasm_len > MAX_WASM:
        raise RvfError(f"bad WASM size {wasm_len}")
    if sig_len not in (0, SIGNATURE_LEN):
        raise RvfError(f"bad signature size {sig_len}")
    expected = HEADER_SIZE + MANIFEST_SIZE + wasm_len + sig_len + tv_len
    if total != expected:
        raise RvfError(f"RVF total_len mismatch: {total} != {expected}")
    if len(data) < expected:
        raise RvfError(f"RVF truncated: have {len(data)}, need {expected}")
    fields = MANIFEST.unpack_from(data, HEADER_SIZE)
    raw_name, host_api, caps, frame_us, events, memory, schema, build_hash, smin, smax, author, _ = fields
    start = HEADER_SIZE + MANIFEST_SIZE
    wasm = data[start:start + wasm_len]
    signature = data[start + wasm_len:start + wasm_len + sig_len] if sig_len else None
    if host_api > HOST_API_V1:
        raise RvfError(f"the module requires host API v{host_api}; the node has v{HOST_API_V1}")
    if raw_name[31] != 0:
        raise RvfError("module name not NUL-terminated")
    if hashlib.sha256(wasm).digest() != build_hash:
        raise RvfError("build hash mismatch: the WASM payload was changed after packing")
    if wasm[:4] != WASM_MAGIC:
        raise RvfError("the payload is not WebAssembly (bad magic)")
    manifest = Manifest(raw_name.split(b"\0")[0].decode("ascii", "replace"), caps, frame_us, events, memory,
                        schema, smin, smax, author.split(b"\0")[0].decode("ascii", "replace"), host_api,
                        build_hash)
    return Container(flags, manifest, wasm, signature, data[:start + wasm_len])


def verify_ed25519(container: Container, public_key: bytes) -> bool:
    if container.signature is None:
        return False
    try:
        VerifyKey(public_key).verify(container.signed_bytes, container.signature)
    except (BadSignatureError, ValueError):
        return False
    return True


def verify_keyed_sha256(container: Container, public_key: bytes) -> bool:
    if container.signature is None:
        return False
    return hashlib.sha256(public_key + container.signed_bytes).digest() == container.signature[:32]


def read_signing_key(path: Path) -> SigningKey:
    """The publisher key file `ruview-bridge plugin keygen` writes (0600, never on a command line)."""
    from bridge.plugins.trust import read_private_key

    try:
        return read_private_key(path)
    except FileNotFoundError:
        raise RvfError(f"{path}: no such key file (make one with `ruview-bridge plugin keygen`)") from None
    except (OSError, ValueError) as exc:
        raise RvfError(str(exc)) from None


def publisher_public_key(path: Path) -> bytes:
    """The 32-byte public key from a publisher key file, or from a file holding `ed25519:<base64>`."""
    from bridge.plugins.trust import parse_public_key

    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise RvfError(f"{path}: cannot read ({exc})") from None
    if text.startswith("ed25519:"):
        try:
            return bytes(parse_public_key(text))
        except ValueError as exc:
            raise RvfError(f"{path}: {exc}") from None
    return bytes(read_signing_key(path).verify_key)
