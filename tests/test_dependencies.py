"""Every dependency the package declares is used by the package (an unused one is a supply
chain risk for nothing), and nothing it imports is left undeclared."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "reconciler"
# Distributions whose import name differs from their name, and database drivers, which are
# named in a database URL (``sqlite+aiosqlite://``) rather than imported.
IMPORT_NAMES = {"pydantic-settings": "pydantic_settings", "prometheus-client": "prometheus_client"}
DRIVERS = {"aiosqlite", "asyncpg"}


def declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {
        re.split(r"[\[<>=!~ ]", spec, maxsplit=1)[0].lower() for spec in project["dependencies"]
    }
    return names


def imported_top_level() -> set[str]:
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


def named_as_driver(driver: str) -> bool:
    return any(f"+{driver}" in p.read_text(encoding="utf-8") for p in PACKAGE.rglob("*.py"))


def test_every_declared_dependency_is_used() -> None:
    imported = imported_top_level()
    unused = [
        name
        for name in sorted(declared())
        if not (
            named_as_driver(name) if name in DRIVERS else IMPORT_NAMES.get(name, name) in imported
        )
    ]
    assert unused == []


def test_every_third_party_import_is_declared() -> None:
    provided = {IMPORT_NAMES.get(name, name) for name in declared()} | {"asyncpg"}
    provided |= {"yarl", "multidict", "markupsafe"}  # aiohttp's and jinja2's own types
    third_party = {
        name
        for name in imported_top_level()
        if name not in sys.stdlib_module_names and name != "reconciler"
    }
    assert sorted(third_party - provided) == []
