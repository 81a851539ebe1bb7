"""Helpers for API tests: an app with a seeded registry and users of every role."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from broadcaster.auth import service as auth
from broadcaster.auth.models import TokenKind
from broadcaster.auth.schemas import UserCreate
from kernel.security import Role

PASSWORD = "correct horse battery"


def make_user(
    factory: sessionmaker[Session],
    username: str,
    role: Role,
    areas: Sequence[str] = (),
    *,
    can_emergency: bool = False,
) -> dict[str, str]:
    """Create a user and return Authorization headers for a fresh token."""
    with factory() as session:
        user = auth.create_user(
            session,
            UserCreate(
                username=username,
                password=PASSWORD,
                role=role,
                areas=list(areas),
                can_emergency=can_emergency,
            ),
        )
        token, _ = auth.issue_token(session, user, kind=TokenKind.SESSION)
        session.commit()
    return {"Authorization": f"Bearer {token}"}


def ok(response: Any, status: int = 200) -> Any:
    """The JSON body of `response`, after checking its status code."""
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    return response.json() if response.content else None


def created(
    client: TestClient, headers: dict[str, str], path: str, body: dict[str, Any], status: int = 201
) -> Any:
    """POST `body` as JSON to `path` with `headers`; the body of the answer, after checking
    its status code (201 Created unless told)."""
    return ok(client.post(path, json=body, headers=headers), status)


__all__ = ["PASSWORD", "TestClient", "created", "make_user", "ok"]
