"""Tables for spreadsheet users: CSV as Vietnamese Excel opens it, and XLSX (openpyxl).

CSV: UTF-8 with a BOM, CRLF, ``;`` between fields and the decimal comma (the list
separator and decimal mark of Windows' Vietnamese regional settings, so a double click
opens it in columns with numbers as numbers).  XLSX: one sheet, a bold title and header
row, numbers as numbers with their display format, an optional bold total row.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence

__all__ = ["UNIT_HEADERS", "Cell", "excel_csv", "xlsx"]

Cell = str | int | float | None

#: What a report's rows are, as its header says (per station, or per ward/commune).
UNIT_HEADERS = {
    "area": "Phường/xã",
    "station": "Trạm",
}


def _csv_cell(value: Cell, decimals: int | None) -> str | int:
    if isinstance(value, float):
        return f"{value:.{decimals if decimals is not None else 2}f}".replace(".", ",")
    if value is None:
        return ""
    return value


def excel_csv(
    headers: Sequence[str],
    rows: Sequence[Sequence[Cell]],
    *,
    decimals: Mapping[int, int] | None = None,
) -> str:
    """The table as CSV for Vietnamese Excel; ``decimals`` gives the decimal places of
    float columns by index (default 2)."""
    places = decimals or {}
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(headers)
    for row in rows:
        writer.writerow([_csv_cell(v, places.get(i)) for i, v in enumerate(row)])
    return out.getvalue()


def xlsx(
    *,
    title: str,
    sheet: str,
    headers: Sequence[str],
    rows: Sequence[Sequence[Cell]],
    formats: Mapping[int, str] | None = None,
    widths: Sequence[float] = (),
    total: Sequence[Cell] | None = None,
    lead: Sequence[Sequence[Cell]] = (),
) -> bytes:
    """The table as an Excel workbook; ``formats`` maps a column index to its number
    format (``"0.00"``, ``"0.0%"``), ``total`` is a last bold row, ``lead`` lines
    (label, value...) go between the title and the header row."""
    from openpyxl import Workbook
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    book = Workbook()
    page = book.active
    assert page is not None
    page.title = sheet[:31]
    page.append([title])
    page["A1"].font = Font(bold=True)
    for line in lead:
        page.append(list(line))
    page.append(list(headers))
    for cell in page[page.max_row]:
        cell.font = Font(bold=True)
    lines = [*rows, *([total] if total is not None else [])]
    for line in lines:
        page.append(list(line))
        for index, number_format in (formats or {}).items():
            page.cell(row=page.max_row, column=index + 1).number_format = number_format
    if total is not None:
        for cell in page[page.max_row]:
            cell.font = Font(bold=True)
    for index, width in enumerate(widths):
        page.column_dimensions[get_column_letter(index + 1)].width = width
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
