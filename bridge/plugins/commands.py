"""`ruview-bridge plugin keygen | sign | verify | hash | new | list | audit | search | install | update`:
a publisher's tools, and installing from a registry (registry.py).

    ruview-bridge plugin keygen ~/.config/ruview/publisher.key   # prints the public key to trust
    ruview-bridge plugin sign plugins/presence-lights --key ~/.config/ruview/publisher.key
    ruview-bridge plugin verify plugins/presence-lights --trust ed25519:...

The private key lives in a 0600 file and is read from there: never printed, never on a command
line (`ps` would show it).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from pathlib import Path

import orjson

from bridge.plugins import audit, registry, trust
from bridge.plugins.manifest import DOMAIN_RULE, MANIFEST, ManifestError, is_domain, load_manifest

TEMPLATE = Path(__file__).resolve().parent / "template"


def _say(message: str) -> None:
    print(f"ruview-bridge plugin: {message}", file=sys.stderr)


def _write_manifest(directory: Path, data: dict) -> None:
    (directory / MANIFEST).write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")


def cmd_keygen(args: argparse.Namespace) -> int:
    path = Path(args.key_file).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        public = trust.generate_key(path)
    except FileExistsError:
        _say(f"{path} exists; not overwriting a key (choose another file)")
        return 1
    print(public)
    _say(f"private key written to {path} (mode 0600); add the public key above to plugins.trusted_keys")
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    try:
        key = trust.read_private_key(Path(args.key).expanduser())
    except (OSError, ValueError) as exc:
        _say(f"cannot read the key: {getattr(exc, 'strerror', None) or exc}")
        return 1
    for directory in map(Path, args.plugins):
        try:
            manifest = load_manifest(directory)
            raw = orjson.loads((directory / MANIFEST).read_bytes())
            module = (directory / manifest.wasm_module).read_bytes()
        except (ManifestError, OSError) as exc:
            _say(str(exc))
            return 1
        _write_manifest(directory, trust.sign(raw, manifest, module, key))
        print(f"signed {directory} ({manifest.domain} {manifest.version}, {trust.digest(module)[:19]}...)")
    return 0


def cmd_hash(args: argparse.Namespace) -> int:
    """Write each module's sha256 into its manifest (after a build; the signature is cleared)."""
    for directory in map(Path, args.plugins):
        try:
            manifest = load_manifest(directory)
            raw = orjson.loads((directory / MANIFEST).read_bytes())
            digest = trust.digest((directory / manifest.wasm_module).read_bytes())
        except (ManifestError, OSError) as exc:
            _say(str(exc))
            return 1
        if raw.get("wasm_module_hash") != digest:
            raw.update(wasm_module_hash=digest, wasm_module_sig="", publisher_key="")
            _write_manifest(directory, raw)
        print(f"{directory}: {digest}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    failed = 0
    for directory in map(Path, args.plugins):
        try:
            manifest = load_manifest(directory)
            module = (directory / manifest.wasm_module).read_bytes()
            verdict = trust.verify(manifest, module, str(directory / MANIFEST), trusted_keys=args.trust or
                                   [manifest.publisher_key], allow_hash_only=args.allow_hash_only)
            note = "" if args.trust else " (by its own publisher_key: pass --trust to check against yours)"
            print(f"{directory}: {verdict.how}{note}")
        except (ManifestError, trust.TrustError, OSError) as exc:
            print(f"{directory}: REFUSED: {exc}")
            failed += 1
    return 1 if failed else 0


# what `plugin new --lang` writes: template files (with __DOMAIN__/__NAME__ filled in) and the PDK, copied as is
LANGUAGES: dict[str, tuple[Path, tuple[str, ...], tuple[str, ...], str]] = {
    "c": (TEMPLATE, ("plugin.c", "manifest.json", "build.sh"), ("ruview_plugin.h",), "plugin.c"),
    "rust": (TEMPLATE / "rust", ("plugin.rs", "manifest.json", "build.sh"),
             ("ruview_plugin/lib.rs", "ruview_plugin/json.rs"), "plugin.rs"),
    "assemblyscript": (TEMPLATE / "assemblyscript", ("plugin.ts", "manifest.json", "build.sh", "package.json"),
                       ("ruview_plugin.ts",), "plugin.ts"),
}


def cmd_new(args: argparse.Namespace) -> int:
    directory = Path(args.directory)
    domain = args.domain or re.sub(r"[^a-z0-9_]+", "_", directory.name.lower()).strip("_")
    if not is_domain(domain):
        _say(f"{domain!r} is not a plugin domain ({DOMAIN_RULE}); pass --domain")
        return 2
    if directory.exists() and any(directory.iterdir()):
        _say(f"{directory} exists and is not empty")
        return 1
    source, filled, copied, main = LANGUAGES[args.lang]
    directory.mkdir(parents=True, exist_ok=True)
    for name in filled:
        text = (source / name).read_text().replace("__DOMAIN__", domain).replace("__NAME__", directory.name)
        (directory / name).write_text(text)
    os.chmod(directory / "build.sh", 0o755)
    for name in copied:
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source / name, directory / name)
    print(f"created {directory}: edit {main}, then ./build.sh and `ruview-bridge plugin sign {directory} --key ...`")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    for root in map(Path, args.dirs):
        candidates = [root] if (root / MANIFEST).is_file() else sorted(p for p in root.iterdir()
                                                                       if (p / MANIFEST).is_file())
        for directory in candidates:
            try:
                m = load_manifest(directory)
                signed = "signed" if m.wasm_module_sig else "unsigned"
                print(f"{m.domain:24s} {m.version:10s} {signed:9s} {directory}")
            except ManifestError as exc:
                print(f"{'?':24s} {'':10s} {'invalid':9s} {directory}: {str(exc).splitlines()[0]}")
    return 0


def cmd_audit(args: argparse.Namespace, config) -> int:
    path = Path(args.file or config.plugins.audit_log).expanduser()
    count, problem = audit.verify(path)
    if problem:
        print(f"{problem} ({count} records before it verify)")
        return 1
    print(f"{path}: {count} records, the chain is intact")
    return 0


def _index(args: argparse.Namespace, config) -> list[registry.Cog]:
    return registry.load_index(args.index or config.plugins.registry, ca_file=config.plugins.registry_ca)


def cmd_search(args: argparse.Namespace, config) -> int:
    try:
        cogs = registry.search(_index(args, config), " ".join(args.words))
    except registry.RegistryError as exc:
        _say(str(exc))
        return 1
    have = registry.installed(config.plugins.dirs)
    trusted = set(config.plugins.trusted_keys)
    for cog in cogs:
        mark = f"installed {have[cog.id][1]}" if cog.id in have else \
            ("trusted" if cog.publisher_key in trusted else "untrusted publisher")
        print(f"{cog.id:32s} {cog.version:10s} {cog.category or '-':12s} {mark:20s} {cog.name}")
    if not cogs:
        print("no cogs match" if args.words else "the registry has no plugins")
    return 0


def _destination(args: argparse.Namespace, config) -> Path:
    root = Path(args.dir or (config.plugins.dirs or ["plugins"])[0]).expanduser()
    if (root / MANIFEST).is_file():
        raise registry.RegistryError(f"{root} is a plugin directory: install into a directory of plugins (--dir)")
    return root


def cmd_install(args: argparse.Namespace, config) -> int:
    try:
        cog = registry.find(_index(args, config), args.cog_id)
        if cog.id in registry.installed(config.plugins.dirs + ([args.dir] if args.dir else [])):
            raise registry.RegistryError(f"{cog.id} is installed already: `ruview-bridge plugin update {cog.id}`")
        target = registry.install(cog, _destination(args, config), trusted_keys=config.plugins.trusted_keys,
                                  ca_file=config.plugins.registry_ca)
    except (registry.RegistryError, OSError) as exc:
        _say(f"install {args.cog_id[:200]}: refused: {exc}")
        return 1
    print(f"installed {cog.id} {cog.version} into {target} (signed by {cog.publisher_key[:20]}...)")
    return 0


def cmd_update(args: argparse.Namespace, config) -> int:
    try:
        have = registry.installed(config.plugins.dirs + ([args.dir] if args.dir else []))
        if args.cog_id not in have:
            raise registry.RegistryError(f"{args.cog_id} is not installed: `ruview-bridge plugin install {args.cog_id}`")
        directory, version = have[args.cog_id]
        cog = registry.find(_index(args, config), args.cog_id)
        newer = registry.version_key(cog.version) > registry.version_key(version)
        if cog.version == version:
            print(f"{cog.id} {version} is up to date")
            return 0
        if not newer and not args.allow_downgrade:
            raise registry.RegistryError(f"the registry has {cog.version}, older than the installed {version}: "
                                         "a downgrade is refused unless asked for (--allow-downgrade)")
        registry.install(cog, directory.parent, trusted_keys=config.plugins.trusted_keys,
                         ca_file=config.plugins.registry_ca, replacing=directory)
    except (registry.RegistryError, OSError, ValueError) as exc:
        _say(f"update {args.cog_id[:200]}: refused: {exc}")
        return 1
    print(f"updated {cog.id} {version} -> {cog.version} in {directory}")
    return 0


def add_parsers(sub) -> None:
    plugin = sub.add_parser("plugin", help="make, sign and check WASM plugins")
    cmds = plugin.add_subparsers(dest="plugin_command", metavar="ACTION", required=True)
    p = cmds.add_parser("keygen", help="make a publisher key pair (private key file 0600; prints the public key)")
    p.add_argument("key_file")
    p.set_defaults(func=cmd_keygen)
    p = cmds.add_parser("sign", help="fill in hash, publisher key and signature of plugin manifests")
    p.add_argument("plugins", nargs="+", metavar="PLUGIN_DIR")
    p.add_argument("--key", required=True, help="the private key file from keygen")
    p.set_defaults(func=cmd_sign)
    p = cmds.add_parser("hash", help="write each module's sha256 into its manifest (clears the signature)")
    p.add_argument("plugins", nargs="+", metavar="PLUGIN_DIR")
    p.set_defaults(func=cmd_hash)
    p = cmds.add_parser("verify", help="check plugins' hash and signature as the bridge would")
    p.add_argument("plugins", nargs="+", metavar="PLUGIN_DIR")
    p.add_argument("--trust", action="append", metavar="ed25519:KEY", help="a trusted publisher key (repeatable)")
    p.add_argument("--allow-hash-only", action="store_true", help="accept the seed's hash-only signatures")
    p.set_defaults(func=cmd_verify)
    p = cmds.add_parser("new", help="scaffold a plugin that builds and loads as it stands (C, Rust or AssemblyScript)")
    p.add_argument("directory")
    p.add_argument("--lang", choices=sorted(LANGUAGES), default="c", help="the language (default: c)")
    p.add_argument("--domain", help="the plugin's domain (default: from the directory name)")
    p.set_defaults(func=cmd_new)
    p = cmds.add_parser("list", help="the plugins in directories, with version and signature")
    p.add_argument("dirs", nargs="*", default=["plugins"])
    p.set_defaults(func=cmd_list)
    p = cmds.add_parser("search", help="the plugins in the registry (plugins.registry), by words in them")
    p.add_argument("words", nargs="*")
    p.add_argument("--index", help="a registry index (an https:// URL or a path) instead of plugins.registry")
    p.add_argument("-c", "--config", help="configuration file (YAML)")
    p.set_defaults(func=cmd_search, needs_config=True)
    for name, func, text in (("install", cmd_install, "download a plugin from the registry, check it, put it in plugins.dirs"),
                             ("update", cmd_update, "replace an installed plugin with the registry's newer version")):
        p = cmds.add_parser(name, help=text)
        p.add_argument("cog_id")
        p.add_argument("--index", help="a registry index (an https:// URL or a path) instead of plugins.registry")
        p.add_argument("--dir", help="the directory of plugins to install into (default: the first of plugins.dirs)")
        p.add_argument("-c", "--config", help="configuration file (YAML)")
        if name == "update":
            p.add_argument("--allow-downgrade", action="store_true", help="accept an older version")
        p.set_defaults(func=func, needs_config=True)
    p = cmds.add_parser("audit", help="check the audit log's hash chain")
    p.add_argument("--verify", action="store_true", help="check the chain (the default action)")
    p.add_argument("--file", help="the audit log (default: plugins.audit_log)")
    p.add_argument("-c", "--config", help="configuration file (YAML)")
    p.set_defaults(func=cmd_audit, needs_config=True)
