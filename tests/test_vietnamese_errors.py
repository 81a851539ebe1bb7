"""Every error a person can read carries Vietnamese (issue 11, item 7).

Read from the source (AST): a direct ``raise`` of the generic domain errors
(``InvalidInput``, ``NotFoundError``, ``ConflictError``, ``PermissionDeniedError``,
``Unauthenticated``) passes ``message_vi``; the specific ones (``StationNotFound``...)
write theirs in their constructor.  The problem handler also falls back to a Vietnamese
text by status, checked through the API below.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from broadcaster.web.errors import HTTP_MESSAGES_VI

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("broadcaster", "stations", "schedules", "audio_library", "kernel")
GENERIC = {
    "InvalidInput",
    "NotFoundError",
    "ConflictError",
    "PermissionDeniedError",
    "Unauthenticated",
}


def raises_without_vietnamese(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)):
            continue
        func = node.exc.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        keywords = {k.arg for k in node.exc.keywords}
        if name in GENERIC and "message_vi" not in keywords and None not in keywords:
            where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
            found.append(f"{where}:{node.lineno} {name}")
    return found


def test_generic_domain_errors_are_raised_with_a_vietnamese_message() -> None:
    found = [
        hit
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        for hit in raises_without_vietnamese(path)
    ]
    assert found == []


def test_the_scan_sees_a_missing_message(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        'raise InvalidInput("x", field="y")\nraise InvalidInput("x", message_vi="Sai")\n',
        encoding="utf-8",
    )
    assert raises_without_vietnamese(sample) == ["sample.py:1 InvalidInput"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", "/api/v1/broadcasts/987654", 404),
        ("get", "/api/v1/playlog?from=2026-12-02&to=2026-12-01", 422),
        ("post", "/api/v1/broadcasts/987654/stop", 404),
    ],
)
def test_problems_carry_vietnamese(
    client: TestClient, admin: dict[str, str], method: str, path: str, status: int
) -> None:
    response = getattr(client, method)(path, headers=admin)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["message_vi"], body
    assert body["message_vi"] != HTTP_MESSAGES_VI.get(status), "a specific text, not the net"


def audit_actions(path: Path) -> set[str]:
    """The audit actions written in `path`: the first argument, a dotted string, of a
    ``commit_change(...)`` or ``.record(...)`` call that also names the object kind."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        if name not in ("commit_change", "record"):
            continue
        strings = [
            a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)
        ]
        if len(strings) >= 2 and "." in strings[0] and strings[0].replace(".", "_").isidentifier():
            found.add(strings[0])
    return found


def test_every_audit_action_has_a_vietnamese_label() -> None:
    from broadcaster.web.pages.labels import ACTION_LABELS

    actions = {
        action
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        for action in audit_actions(path)
    }
    assert len(actions) > 30  # the scan finds them
    assert sorted(actions - ACTION_LABELS.keys()) == []
