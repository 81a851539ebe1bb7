"""Partial updates (``PATCH``): what a request body sets, and which fields may not be
set to ``null``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel
from sqlalchemy.orm import Session

from kernel.errors import InvalidInput
from kernel.text import fold

__all__ = ["apply_changes", "patch_changes"]


def patch_changes(data: BaseModel, *, required: Iterable[str]) -> dict[str, Any]:
    """The fields `data` sets (left-out fields are not changed); ``null`` for one of the
    `required` fields is an `InvalidInput` on that field."""
    changes = data.model_dump(exclude_unset=True)
    for name in required:
        if name in changes and changes[name] is None:
            raise InvalidInput(
                f"{name} cannot be null",
                field=name,
                message_vi=f"Trường {name} không được để trống",
            )
    return changes


def apply_changes(
    session: Session, row: object, changes: Mapping[str, Any], *, folded: str = "name"
) -> None:
    """Set `changes` on `row` (keeping its ``<folded>_folded`` search copy in step when
    `folded` changes), flush, and reload it (server-side values such as ``updated_at``)."""
    for name, value in changes.items():
        setattr(row, name, value)
    if folded in changes:
        setattr(row, f"{folded}_folded", fold(getattr(row, folded)))
    session.flush()
    session.refresh(row)
