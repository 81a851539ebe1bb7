"""Partial updates (``PATCH``): what a request body sets, and which fields may not be
set to ``null``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from kernel.errors import InvalidInput

__all__ = ["patch_changes"]


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
