"""docs/architecture.md's module map is the code's: every module under bridge/ is in it, and
everything in it exists, so the map a new person reads first cannot drift."""

from __future__ import annotations

import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _listed() -> set[str]:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    start = text.index("```\nbridge/") + 4
    block = text[start:text.index("```", start)]
    listed, folders = set(), []
    for line in block.splitlines():
        if not line.strip():
            continue
        depth = (len(line) - len(line.lstrip())) // 2
        name = line.split()[0]
        folders = folders[:depth]
        if name.endswith("/"):
            folders.append(name.rstrip("/"))
        elif name.endswith(".py"):
            listed.add("/".join([*folders, name]))
    return listed


def test_the_module_map_names_every_module_and_only_modules_that_exist():
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "bridge").rglob("*.py")
               if p.name not in ("__init__.py", "__main__.py") and "template" not in p.parts}
    listed = _listed()
    assert len(listed) > 50
    assert modules - listed == set(), "modules missing from docs/architecture.md"
    assert listed - modules == set(), "docs/architecture.md names modules that do not exist"
