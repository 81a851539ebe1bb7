"""Routers and dashboard pages call service functions; they run no queries of their own.

Read from the source (AST): no router or page module imports query builders from
SQLAlchemy, and none calls ``session.execute/scalar/scalars/get/query`` (nor adds or
deletes rows through the session).  Committing (``session.commit()``) is the boundary's
job and stays allowed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOMAIN = ("broadcaster", "stations", "schedules", "audio_library", "kernel", "firmware_bridge")

QUERY_BUILDERS = {"select", "update", "delete", "insert", "func", "text", "Select"}
SESSION_QUERIES = {"execute", "scalar", "scalars", "get", "query", "add", "add_all", "delete"}


def boundary_modules() -> list[Path]:
    found: set[Path] = set()
    for package in DOMAIN:
        base = ROOT / package
        found.update(base.rglob("router.py"))
        found.update(base.rglob("*_router.py"))
    found.update((ROOT / "broadcaster" / "web" / "pages").rglob("*.py"))
    return sorted(p for p in found if ".venv" not in p.parts)


def _is_session(node: ast.expr) -> bool:
    """``session`` or ``<anything>.session``."""
    if isinstance(node, ast.Name):
        return node.id == "session"
    return isinstance(node, ast.Attribute) and node.attr == "session"


def violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
            names = {alias.name for alias in node.names}
            if node.module == "sqlalchemy" and names & QUERY_BUILDERS:
                found.append(f"{node.lineno}: from sqlalchemy import {sorted(names)}")
        elif isinstance(node, ast.Import):
            found.extend(
                f"{node.lineno}: import {alias.name}"
                for alias in node.names
                if alias.name == "sqlalchemy"
            )
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in SESSION_QUERIES
            and _is_session(node.func.value)
        ):
            found.append(f"{node.lineno}: session.{node.func.attr}(...)")
    return found


def test_the_scan_sees_the_routers_and_pages() -> None:
    names = {str(p.relative_to(ROOT)) for p in boundary_modules()}
    assert "broadcaster/dispatch/router.py" in names
    assert "stations/router.py" in names
    assert "broadcaster/web/pages/overview.py" in names


@pytest.mark.parametrize("path", boundary_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_routers_and_pages_run_no_queries(path: Path) -> None:
    assert violations(path) == [], f"{path.relative_to(ROOT)} queries the database itself"


def test_the_check_catches_a_query(tmp_path: Path) -> None:
    probe = tmp_path / "router.py"
    probe.write_text(
        "from sqlalchemy import select\n"
        "def page(session):\n"
        "    return session.scalars(select(X)).all(), request.state.session.get(X, 1)\n",
        encoding="utf-8",
    )
    assert len(violations(probe)) == 3
