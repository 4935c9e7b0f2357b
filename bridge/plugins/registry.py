"""Plugins from a registry index: `ruview-bridge plugin search | install | update`.

The index is the seed's app-registry.json (ADR-102: `{"version", "cogs": [{"id", "name",
"category", "version", "description", "size_kb", "binary_size", "config", ...}]}`) with, per cog,
the plugin fields of its manifest: `wasm_module` (the module's URL, relative to the index), and
`wasm_module_hash`, `wasm_module_sig`, `publisher_key`, `min_homecore_version`; `manifest` is the
manifest's URL (default: manifest.json beside the module). It is read from a local path or an
HTTPS URL (plain HTTP only from this machine, for tests and local mirrors; no redirects, which
could lead elsewhere).

Nothing lands in `plugins.dirs` until everything is checked: the cog's publisher key is trusted,
its `min_homecore_version` is this bridge's or older, the download is no larger than the index
says (and never over the module limit), its sha256 is the index's and the manifest's, and the
signature verifies (trust.py) — all in a staging directory beside the plugins directory, which is
then renamed into place in one step, so the watcher never sees half a plugin.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import ssl
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bridge import __version__
from bridge.plugins import trust
from bridge.plugins.files import PluginFileError, read_bounded
from bridge.plugins.manifest import HASH, KEY, MANIFEST, MAX_MANIFEST_BYTES, SIG, VERSION, ManifestError, \
    load_manifest, parse_manifest

MAX_INDEX_BYTES = 8 * 1024 * 1024  # ADR-102's cap on app-registry.json
MAX_MODULE_BYTES = 16 * 1024 * 1024  # as extension.py: no module larger is ever loaded
TIMEOUT = 30.0  # seconds for each connection and read


class RegistryError(Exception):
    """An index, or a cog from it, that cannot be used; str() is one line saying why."""


@dataclass(frozen=True)
class Cog:
    id: str
    name: str
    version: str
    category: str
    description: str
    wasm_module: str  # URL (or path), resolved against the index
    manifest: str
    wasm_module_hash: str
    wasm_module_sig: str
    publisher_key: str
    min_homecore_version: str
    binary_size: int | None


def version_key(version: str) -> tuple[int, int, int, int, str]:
    """Order of versions like 1.2.3 and 1.2.3-rc1 (a pre-release before its release)."""
    match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)(?:([-+])(.*))?", version)
    if not match:
        raise ValueError(f"{version!r} is not a version like 1.2.3")
    major, minor, patch, sep, rest = match.groups()
    return int(major), int(minor), int(patch), 0 if sep == "-" else 1, rest if sep == "-" else ""


def _is_loopback(host: str | None) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def resolve(location: str, base: str | None) -> str:
    """`location` relative to the index it was named in (a URL or a path). An index on the web
    names only web locations: never a file on this machine."""
    scheme = urllib.parse.urlparse(location).scheme
    if base is not None and urllib.parse.urlparse(base).scheme in ("http", "https"):
        resolved = urllib.parse.urljoin(base, location)
        if urllib.parse.urlparse(resolved).scheme not in ("http", "https"):
            raise ValueError(location)
        return resolved
    if base is None or scheme in ("http", "https") or os.path.isabs(location):
        return location
    return str(Path(base).expanduser().parent / location)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        raise RegistryError(f"{req.full_url} answered a redirect ({code}) to {newurl[:200]}: name that URL instead")


def fetch(location: str, limit: int, what: str, *, ca_file: str = "") -> bytes:
    """The bytes at a path or URL, at most `limit` of them (RegistryError if there are more)."""
    url = urllib.parse.urlparse(location)
    if url.scheme in ("http", "https"):
        if url.scheme == "http" and not _is_loopback(url.hostname):
            raise RegistryError(f"{what}: {location[:200]} is plain HTTP: a registry must be HTTPS "
                                "(plain HTTP only from this machine)")
        handlers: list[Any] = [_NoRedirect()]
        if url.scheme == "https":
            context = ssl.create_default_context(cafile=ca_file or None)
            handlers.append(urllib.request.HTTPSHandler(context=context))
        if _is_loopback(url.hostname):
            handlers.append(urllib.request.ProxyHandler({}))
        opener = urllib.request.build_opener(*handlers)
        try:
            with opener.open(urllib.request.Request(location, headers={"User-Agent": f"ruview-bridge/{__version__}"}),
                             timeout=TIMEOUT) as answer:
                declared = answer.headers.get("Content-Length")
                if declared and declared.isdigit() and int(declared) > limit:
                    raise RegistryError(f"{what}: {location[:200]} is {int(declared)} bytes, over the limit of {limit}")
                data = answer.read(limit + 1)
        except urllib.error.HTTPError as exc:
            raise RegistryError(f"{what}: {location[:200]} answered HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, ssl.SSLCertVerificationError):
                reason = f"the server's certificate does not verify ({reason.verify_message})" + \
                    ("" if ca_file else "; for a private CA set plugins.registry_ca")
            raise RegistryError(f"{what}: cannot fetch {location[:200]}: {reason}") from None
        except (OSError, ValueError) as exc:
            raise RegistryError(f"{what}: cannot fetch {location[:200]}: {exc}") from None
    elif url.scheme in ("", "file"):
        path = Path(url.path if url.scheme == "file" else location).expanduser()
        try:
            data = read_bounded(path, limit)  # a regular file only: never a FIFO or device
        except PluginFileError as exc:
            raise RegistryError(f"{what}: {exc}") from None
    else:
        raise RegistryError(f"{what}: {location[:200]}: expected an https:// URL or a file path")
    if len(data) > limit:
        raise RegistryError(f"{what}: {location[:200]} is larger than its limit of {limit} bytes: refused")
    return data


def _text(entry: dict[str, Any], key: str, pattern: re.Pattern[str] | None = None, required: bool = True) -> str:
    value = entry.get(key, "")
    if not isinstance(value, str) or (required and not value) or (value and pattern and not pattern.fullmatch(value)):
        raise ValueError(key)
    return value


def _resolved(location: str, source: str, key: str) -> str:
    try:
        return resolve(location, source)
    except ValueError:
        raise ValueError(key) from None


def parse_index(data: bytes, source: str) -> list[Cog]:
    """The cogs of an index that can be installed as plugins (entries without a module are apps of
    other kinds, and are left out)."""
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise RegistryError(f"{source}: not JSON: {exc}") from None
    entries = raw.get("cogs", raw.get("apps")) if isinstance(raw, dict) else raw
    if not isinstance(entries, list):
        raise RegistryError(f'{source}: expected {{"cogs": [...]}}, the seed\'s app-registry format')
    cogs = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "wasm_module" not in entry:
            continue
        try:
            size = entry.get("binary_size")
            if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
                raise ValueError("binary_size")
            module = _text(entry, "wasm_module")
            module_url = _resolved(module, source, "wasm_module")
            manifest_url = _resolved(_text(entry, "manifest", required=False) or
                                     (module.rsplit("/", 1)[0] + "/" if "/" in module else "") + MANIFEST,
                                     source, "manifest")
            cogs.append(Cog(
                id=_text(entry, "id"), name=_text(entry, "name", required=False) or entry["id"],
                version=_text(entry, "version", VERSION), category=_text(entry, "category", required=False),
                description=_text(entry, "description", required=False)[:500], wasm_module=module_url,
                manifest=manifest_url,
                wasm_module_hash=_text(entry, "wasm_module_hash", HASH),
                wasm_module_sig=_text(entry, "wasm_module_sig", SIG),
                publisher_key=_text(entry, "publisher_key", KEY),
                min_homecore_version=_text(entry, "min_homecore_version", VERSION, required=False),
                binary_size=size))
        except (ValueError, KeyError) as exc:
            raise RegistryError(f"{source}: cogs[{i}].{exc.args[0] if exc.args else '?'}: missing or malformed") from None
    return cogs


def load_index(location: str, *, ca_file: str = "") -> list[Cog]:
    if not location:
        raise RegistryError("no registry: set plugins.registry (an https:// URL or a path), or pass --index")
    return parse_index(fetch(location, MAX_INDEX_BYTES, "the registry index", ca_file=ca_file), location)


def find(cogs: list[Cog], cog_id: str) -> Cog:
    matches = [c for c in cogs if c.id == cog_id]
    if not matches:
        raise RegistryError(f"no cog {cog_id[:200]!r} in the registry (`ruview-bridge plugin search` lists them)")
    return max(matches, key=lambda c: version_key(c.version))


def search(cogs: list[Cog], words: str = "") -> list[Cog]:
    wanted = words.lower().split()
    return sorted((c for c in cogs if all(w in f"{c.id} {c.name} {c.category} {c.description}".lower()
                                          for w in wanted)), key=lambda c: c.id)


def installed(dirs: list[str]) -> dict[str, tuple[Path, str]]:
    """cog id -> (directory, version) of the plugins in `dirs`."""
    found: dict[str, tuple[Path, str]] = {}
    for root in (Path(d).expanduser() for d in dirs):
        candidates = [root] if (root / MANIFEST).is_file() else \
            sorted(p for p in root.iterdir() if (p / MANIFEST).is_file()) if root.is_dir() else []
        for directory in candidates:
            try:
                manifest = load_manifest(directory)
            except ManifestError:
                continue
            found.setdefault(manifest.cog_id or manifest.domain, (directory, manifest.version))
    return found


def _check_before_download(cog: Cog, trusted_keys: list[str]) -> None:
    if cog.publisher_key not in trusted_keys:
        raise RegistryError(f"{cog.id} {cog.version}: its publisher_key {cog.publisher_key[:20]}... is not in "
                            "plugins.trusted_keys")
    _check_version(cog.id, cog.version, cog.min_homecore_version)
    if cog.binary_size is not None and cog.binary_size > MAX_MODULE_BYTES:
        raise RegistryError(f"{cog.id} {cog.version}: its module is {cog.binary_size} bytes, over the limit of "
                            f"{MAX_MODULE_BYTES}")


def _check_version(cog_id: str, version: str, min_version: str | None) -> None:
    if min_version and version_key(min_version) > version_key(__version__):
        raise RegistryError(f"{cog_id} {version} needs ruview-bridge {min_version} or newer (this is {__version__})")


def _directory_name(cog: Cog) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", cog.id).strip(".-")[:100] or "plugin"


def install(cog: Cog, root: Path, *, trusted_keys: list[str], ca_file: str = "",
            replacing: Path | None = None) -> Path:
    """Download, check and move the cog into `root` (a directory of plugins); `replacing`: the
    installed directory it takes the place of (an update). Nothing in `root` changes on error."""
    _check_before_download(cog, trusted_keys)
    root.mkdir(parents=True, exist_ok=True)
    target = replacing or root / _directory_name(cog)
    if replacing is None and target.exists():
        raise RegistryError(f"{target} exists: remove it, or use `ruview-bridge plugin update {cog.id}`")
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}-staging-", dir=root.parent))
    try:
        limit = MAX_MODULE_BYTES if cog.binary_size is None else cog.binary_size
        manifest_bytes = fetch(cog.manifest, MAX_MANIFEST_BYTES, f"{cog.id} manifest", ca_file=ca_file)
        module = fetch(cog.wasm_module, limit, f"{cog.id} module", ca_file=ca_file)
        actual = trust.digest(module)
        if actual != cog.wasm_module_hash:
            raise RegistryError(f"{cog.id} {cog.version}: the module's sha256 is not the index's "
                                f"(the index says {cog.wasm_module_hash[:19]}..., the download is {actual[:19]}...)")
        try:
            manifest = parse_manifest(manifest_bytes, f"{cog.id} manifest")
        except ManifestError as exc:
            raise RegistryError(str(exc).splitlines()[0]) from None
        differs = [k for k in ("wasm_module_hash", "wasm_module_sig", "publisher_key", "version")
                   if getattr(manifest, k) != getattr(cog, k)] + ([] if (manifest.cog_id or "") == cog.id else ["cog_id"])
        if differs:
            raise RegistryError(f"{cog.id} {cog.version}: the manifest does not match the index ({', '.join(differs)})")
        _check_version(cog.id, cog.version, manifest.min_homecore_version)
        try:
            trust.verify(manifest, module, f"{cog.id} {cog.version}", trusted_keys=trusted_keys)
        except trust.TrustError as exc:
            raise RegistryError(str(exc)) from None
        package = staging / target.name
        package.mkdir()
        (package / manifest.wasm_module).write_bytes(module)
        (package / MANIFEST).write_bytes(manifest_bytes)
        if replacing is not None:
            os.rename(replacing, staging / "replaced")
        try:
            os.rename(package, target)
        except OSError:
            if replacing is not None:  # put the old one back
                os.rename(staging / "replaced", replacing)
            raise
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)
