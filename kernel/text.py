"""Vietnamese-aware text folding for search.

"loi binh nhon" must find "Lợi Bình Nhơn": fold both sides by removing diacritics
(NFD + dropping combining marks), mapping đ/Đ to d, lower-casing and collapsing spaces.
The folded form is stored beside the name (`name_folded` columns) so a plain `LIKE`
works on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from sqlalchemy import ColumnElement

_SPACES = re.compile(r"\s+")


def fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    stripped = stripped.replace("đ", "d").replace("Đ", "D")
    return _SPACES.sub(" ", stripped).strip().lower()


def like_pattern(query: str) -> str:
    """A LIKE pattern (escape char ``\\``) matching the folded query anywhere."""
    folded = fold(query)
    escaped = folded.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def contains(column: Any, query: str) -> ColumnElement[bool]:
    """SQL: `column` (a folded copy, or an id) contains the folded `query` anywhere."""
    result: ColumnElement[bool] = column.like(like_pattern(query), escape="\\")
    return result
