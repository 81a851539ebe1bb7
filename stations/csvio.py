"""CSV import and export of the station registry.

Import validates every row before writing anything: each problem is reported with its
line number (1 = the header) and field; only a file without errors is written, all rows
in one transaction (rows whose `sid` exists are updated, others created).  UTF-8 with or
without a BOM (Excel's "CSV UTF-8") is accepted; the delimiter may be a comma, a
semicolon (Excel with a Vietnamese locale) or a tab.  Export writes Vietnamese headers
(`HEADERS_VI`; import also takes the older English field names) in UTF-8 with a BOM so
Excel shows the diacritics, and a text cell that a spreadsheet would run as a formula
(starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) is written with a
leading apostrophe, which import removes again (OWASP "CSV injection").

Every import that writes goes through the change helper (`kernel.changes`) with
`import_summary`, whatever the path (API or CLI):
the audit entry and the plan signal, on which the worker rebuilds the plans and
reconciles the broker accounts, so a station the file disables loses its broker access.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Collection, Iterable
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from kernel.text import fold
from stations.models import Area, Station
from stations.schemas import ImportError_, ImportReport, StationCreate
from stations.service import STATION_FIELDS

#: The registry's station fields, with the area by its code.
COLUMNS = tuple("area_code" if name == "area_id" else name for name in STATION_FIELDS)
REQUIRED = ("sid", "name", "kind", "area_code")
#: The Vietnamese header of each column, as the export writes it.  Import reads these and,
#: for files made before them, the English field names (any case, diacritics optional).
HEADERS_VI = {
    "sid": "Mã trạm",
    "name": "Tên trạm",
    "kind": "Loại trạm",
    "area_code": "Mã khu vực",
    "latitude": "Vĩ độ",
    "longitude": "Kinh độ",
    "address": "Địa chỉ",
    "controller_model": "Mẫu bộ điều khiển",
    "firmware": "Phiên bản phần mềm",
    "capabilities": "Khả năng",
    "default_volume": "Âm lượng mặc định",
    "enabled": "Đang hoạt động",
    "sim_iccid": "Số ICCID của SIM",
    "phone": "Số điện thoại",
    "notes": "Ghi chú",
}
_BY_HEADER = {fold(h): c for c, h in HEADERS_VI.items()} | {c: c for c in COLUMNS}
_TRUE = {"1", "true", "yes", "y", "co", "x", "on"}
_FALSE = {"0", "false", "no", "n", "khong", "off"}


def _decode(content: bytes) -> tuple[str | None, list[ImportError_]]:
    if content.startswith(b"\xef\xbb\xbf"):
        content = content[3:]
    try:
        return content.decode("utf-8"), []
    except UnicodeDecodeError:
        pass
    errors = []
    for number, raw in enumerate(content.split(b"\n"), start=1):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            errors.append(
                ImportError_(
                    line=number,
                    field=None,
                    message="not UTF-8 text; save the file as 'CSV UTF-8' "
                    "(Không phải mã UTF-8, hãy lưu tệp dạng CSV UTF-8)",
                )
            )
    return None, errors


def _row_values(row: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for column in COLUMNS:
        raw = (row.get(column) or "").strip()
        if raw == "":
            continue
        if column == "capabilities":
            values[column] = [c.strip() for c in raw.replace(",", ";").split(";") if c.strip()]
        elif column == "enabled":
            folded = fold(raw)
            if folded in _TRUE:
                values[column] = True
            elif folded in _FALSE:
                values[column] = False
            else:
                values[column] = raw  # let validation report it
        else:
            values[column] = _unguard(raw)
    return values


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _guard(text: str) -> str:
    """A text cell a spreadsheet must show, not evaluate."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def _unguard(text: str) -> str:
    return text[1:] if text.startswith("'") and text[1:].startswith(_FORMULA_START) else text


def _column(header: str) -> str:
    """The field a header names: its Vietnamese header or (older files) the field name."""
    name = header.strip()
    return _BY_HEADER.get(fold(name), _BY_HEADER.get(name.lower(), name))


class Parsed:
    """Rows that validated (with their line numbers), every error, and the row count."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, StationCreate]] = []
        self.errors: list[ImportError_] = []
        self.count = 0


def parse(content: bytes) -> Parsed:
    parsed = Parsed()
    text, parsed.errors = _decode(content)
    errors = parsed.errors
    if text is None:
        return parsed
    if not text.strip():
        errors.append(ImportError_(line=1, field=None, message="the file is empty"))
        return parsed
    sample = text[:4096]
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=",;\t").delimiter
    except csv.Error:
        delimiter = ","
    # only the delimiter is guessed: the quote is always '"' (a sniffer fooled by the
    # apostrophes of formula-guarded cells split rows into too many columns)
    reader = csv.DictReader(io.StringIO(text, newline=""), dialect=csv.excel, delimiter=delimiter)
    header = [_column(h) for h in reader.fieldnames or []]
    reader.fieldnames = header
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        errors.extend(
            ImportError_(
                line=1,
                field=c,
                message=f"missing column {c!r} (thiếu cột “{HEADERS_VI[c]}”)",
            )
            for c in missing
        )
        return parsed
    rows = parsed.rows
    seen: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue
        parsed.count += 1
        if None in row:
            errors.append(ImportError_(line=line, field=None, message="too many columns"))
            continue
        values = _row_values(row)
        try:
            station = StationCreate.model_validate(values)
        except ValidationError as exc:
            for err in exc.errors():
                field = ".".join(str(p) for p in err["loc"]) or None
                errors.append(ImportError_(line=line, field=field, message=err["msg"]))
            continue
        if station.sid in seen:
            errors.append(
                ImportError_(
                    line=line,
                    field="sid",
                    message=f"duplicate sid {station.sid!r} (first on line {seen[station.sid]})",
                )
            )
            continue
        seen[station.sid] = line
        rows.append((line, station))
    return parsed


def import_stations(
    session: Session,
    content: bytes,
    *,
    dry_run: bool,
    scope: Collection[int] | None = None,
) -> ImportReport:
    """Validate the whole file, then (unless `dry_run` or errors) upsert every row."""
    parsed = parse(content)
    rows, errors = parsed.rows, parsed.errors
    areas = {a.code: a for a in session.scalars(select(Area))}
    existing = {s.sid: s for s in session.scalars(select(Station))}
    for line, row in rows:
        area = areas.get(row.area_code)
        if area is None:
            errors.append(
                ImportError_(
                    line=line, field="area_code", message=f"unknown area {row.area_code!r}"
                )
            )
        elif scope is not None and area.id not in scope:
            errors.append(
                ImportError_(
                    line=line, field="area_code", message="area outside your assigned areas"
                )
            )
        current = existing.get(row.sid)
        if current is not None and scope is not None and current.area_id not in scope:
            errors.append(
                ImportError_(line=line, field="sid", message=f"station {row.sid!r} is not yours")
            )
    errors.sort(key=lambda e: (e.line, e.field or ""))
    if errors:  # refused: nothing is (or would be) written
        return ImportReport(dry_run=dry_run, rows=parsed.count, created=0, updated=0, errors=errors)
    created = sum(1 for _, r in rows if r.sid not in existing)
    disabled = sorted(
        r.sid for _, r in rows if not r.enabled and r.sid in existing and existing[r.sid].enabled
    )
    report = ImportReport(
        dry_run=dry_run,
        rows=parsed.count,
        created=created,
        updated=len(rows) - created,
        disabled=disabled,
        errors=errors,
    )
    if dry_run:
        return report
    for _, row in rows:
        fields = row.model_dump(exclude={"area_code"})
        fields["area_id"] = areas[row.area_code].id
        fields["name_folded"] = fold(row.name)
        station = existing.get(row.sid)
        if station is None:
            session.add(Station(**fields))
        else:
            for name, value in fields.items():
                setattr(station, name, value)
    session.flush()
    return report


def import_summary(report: ImportReport, filename: str | None) -> dict[str, Any]:
    """The audit entry's ``after`` of an import that wrote.  Every such import goes
    through the change helper with it (audit entry + plan signal: the worker rebuilds
    the plans and syncs broker accounts, so stations the file disabled lose their
    access, as with ``PATCH /stations/{sid}``)."""
    return {
        "created": report.created,
        "updated": report.updated,
        "disabled": report.disabled,
        "file": filename,
    }


def export_stations(stations: Iterable[Station]) -> str:
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([HEADERS_VI[c] for c in COLUMNS])
    for s in stations:
        writer.writerow(
            [
                s.sid,
                _guard(s.name),
                s.kind.value,
                s.area.code,
                "" if s.latitude is None else f"{s.latitude:.6f}",
                "" if s.longitude is None else f"{s.longitude:.6f}",
                _guard(s.address or ""),
                _guard(s.controller_model or ""),
                _guard(s.firmware or ""),
                ";".join(s.capabilities),
                s.default_volume,
                "có" if s.enabled else "không",
                s.sim_iccid or "",
                s.phone or "",
                _guard(s.notes or ""),
            ]
        )
    return out.getvalue()
