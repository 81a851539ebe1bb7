"""The monthly report (``/bao-cao``): airtime minutes per ward/commune or per station, by
tier and content category, with a chart and downloads (XLSX, CSV) from the JSON API.
Minutes are what was heard; minutes reported during a speaker or amplifier fault are
shown apart.  By ward/commune, the units of today or those of each play's time.

The figures come from `broadcaster.dispatch.reports.broadcast_minutes` (the same
function as ``GET /api/v1/reports/minutes`` and its exports)."""

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse

from broadcaster.dispatch import reports
from broadcaster.dispatch.schemas import MinutesRow
from broadcaster.reorg import service as reorg
from broadcaster.web.pages.labels import UNIT_LABELS
from broadcaster.web.pages.shared import SignedIn, area_options, page_tz, render, templates
from kernel.db import utcnow
from kernel.dependencies import SessionDep
from kernel.tiers import Tier

router = APIRouter(include_in_schema=False)

#: Chart colours of the tiers (the dashboard's tier badge colours).
TIER_COLOURS = {
    Tier.EMERGENCY: "#b3261e",
    Tier.LIVE: "#7b3fa0",
    Tier.PRIORITY: "#b45309",
    Tier.NORMAL: "#1d6fa5",
    Tier.FILLER: "#6b7280",
}
#: Chart colour of the minutes not heard (a fault, not a tier).
NOT_HEARD_COLOUR = "#9ca3af"


def vi_number(value: float, digits: int = 1) -> str:
    """A number as Vietnamese write it: ``.`` between thousands, the decimal comma."""
    text = f"{value:,.{digits}f}"
    return text.replace(",", " ").replace(".", ",").replace(" ", ".")


templates.env.filters["vi_number"] = vi_number


def _month(value: str | None, today: dt.date) -> dt.date:
    try:
        return dt.date.fromisoformat(f"{value}-01") if value else today.replace(day=1)
    except ValueError:
        return today.replace(day=1)


def summary(rows: list[MinutesRow]) -> tuple[list[Tier], list[dict[str, object]]]:
    """Per key: name, total minutes (heard), plays, minutes not heard and minutes per
    tier; the tiers with data."""
    units: dict[str, dict[str, object]] = {}
    tiers: set[Tier] = set()
    for r in rows:
        unit = units.setdefault(
            r.key,
            {
                "key": r.key,
                "name": r.name,
                "minutes": 0.0,
                "plays": 0,
                "not_heard": 0.0,
                "tiers": {},
            },
        )
        unit["minutes"] = float(unit["minutes"]) + r.minutes  # type: ignore[arg-type]
        unit["not_heard"] = float(unit["not_heard"]) + r.not_heard_minutes  # type: ignore[arg-type]
        unit["plays"] = int(unit["plays"]) + r.plays  # type: ignore[call-overload]
        by_tier: dict[Tier, float] = unit["tiers"]  # type: ignore[assignment]
        tier = Tier(r.tier)
        by_tier[tier] = by_tier.get(tier, 0.0) + r.minutes
        tiers.add(tier)
    order = sorted(tiers, key=lambda t: -t.priority)
    return order, sorted(units.values(), key=lambda u: str(u["name"]))


def by_category(rows: list[MinutesRow]) -> list[tuple[str, float, int]]:
    minutes: dict[str, float] = defaultdict(float)
    plays: dict[str, int] = defaultdict(int)
    for r in rows:
        minutes[r.category_name] += r.minutes
        plays[r.category_name] += r.plays
    return sorted(((k, minutes[k], plays[k]) for k in minutes), key=lambda x: -x[1])


def month_choices(today: dt.date, chosen: dt.date, count: int = 24) -> list[tuple[str, str]]:
    """The last ``count`` months (newest first) as ``(YYYY-MM, "Tháng MM/YYYY")``, plus the
    chosen month when it lies further back: a select in Vietnamese, where the browser's own
    month input would name the month in the browser's language ("December 2026")."""
    months: list[dt.date] = []
    year, month = today.year, today.month
    for _ in range(count):
        months.append(dt.date(year, month, 1))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    if chosen.replace(day=1) not in months:
        months.append(chosen.replace(day=1))
    return [(f"{m:%Y-%m}", f"Tháng {m:%m/%Y}") for m in months]


@dataclass
class ReportFilters:
    """Kept evaluated (no postponed annotations here): FastAPI 0.116 reads the fields.

    ``thang`` (YYYY-MM), ``theo`` (``area`` or ``station``), ``dia_ban`` (area code),
    ``don_vi`` (``today`` or ``then``: the units a report by ward/commune reads)."""

    thang: str | None = None
    theo: str | None = None
    dia_ban: str | None = None
    don_vi: str | None = None


@router.get("/bao-cao", response_class=HTMLResponse)
def reports_page(
    request: Request,
    session: SessionDep,
    account: SignedIn,
    asked: Annotated[ReportFilters, Depends()],
) -> Response:
    """Filters read leniently (a value that does not fit falls back to the default)."""
    thang, theo, dia_ban = asked.thang, asked.theo, asked.dia_ban
    tz = page_tz(request)
    today = utcnow().astimezone(tz).date()
    month = _month(thang, today)
    since, until = reports.month_window(month, tz)
    options = area_options(session, account.principal)
    area_code = dia_ban if dia_ban in {o.code for o in options} else None
    by: Literal["station", "area"] = "station" if theo == "station" else "area"
    unit_choice = reorg.unit_choice(asked.don_vi)
    query = reports.play_query(
        session, account.principal.scope, area=area_code, since=since, until=until
    )
    rows = reports.broadcast_minutes(session, query, by=by, units=unit_choice, tz=tz)
    tiers, units = summary(rows)
    last_day = until.date() - dt.timedelta(days=1)
    export = {"from": month.isoformat(), "to": last_day.isoformat(), "by": by}
    if area_code:
        export["area"] = area_code
    if by == "area" and unit_choice != "today":
        export["units"] = unit_choice
    not_heard = sum(r.not_heard_minutes for r in rows)
    chart = {
        "labels": [u["name"] for u in units],
        "datasets": [
            {
                "label": tier.label_vi,
                "backgroundColor": TIER_COLOURS[tier],
                "data": [
                    round(u["tiers"].get(tier, 0.0), 2)  # type: ignore[attr-defined]
                    for u in units
                ],
            }
            for tier in tiers
        ]
        + (
            [
                {
                    "label": reports.NOT_HEARD_MINUTES,
                    "backgroundColor": NOT_HEARD_COLOUR,
                    "data": [round(float(u["not_heard"]), 2) for u in units],  # type: ignore[arg-type]
                }
            ]
            if not_heard
            else []
        ),
        "axis": "Số phút phát",
    }
    return render(
        request,
        "reports.html",
        {
            "account": account,
            "active": "reports",
            "options": options,
            "filters": {
                "thang": f"{month:%Y-%m}",
                "theo": by,
                "dia_ban": area_code or "",
                "don_vi": unit_choice,
            },
            "unit_choices": UNIT_LABELS.items(),
            "months": month_choices(today, month),
            "month": month,
            "last_day": last_day,
            "by": by,
            "rows": rows,
            "tiers": tiers,
            "units": units,
            "unit_columns": [
                "Trạm" if by == "station" else "Phường/xã",
                ("Tổng số phút", "num"),
                *[(tier.label_vi, "num hide-sm") for tier in tiers],
                ("Lượt phát", "num"),
                (reports.NOT_HEARD_MINUTES, "num"),
            ],
            "categories": by_category(rows),
            "total_minutes": sum(r.minutes for r in rows),
            "total_plays": sum(r.plays for r in rows),
            "total_not_heard": not_heard,
            "not_heard_header": reports.NOT_HEARD_MINUTES,
            "chart": chart,
            "xlsx": "/api/v1/reports/minutes?" + urlencode({**export, "format": "xlsx"}),
            "csv": "/api/v1/reports/minutes?" + urlencode({**export, "format": "csv"}),
        },
    )
