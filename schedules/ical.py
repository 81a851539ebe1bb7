"""iCalendar (RFC 5545) export of planned items, for calendar programs to subscribe to.

One ``VEVENT`` per item: ``UID`` = ``{item_id}@broadcaster``, ``DTSTART``/``DTEND`` in UTC
(``...Z``, so no ``VTIMEZONE`` is needed; ``X-WR-TIMEZONE`` tells clients the zone to show),
``SUMMARY`` = the item title, ``DESCRIPTION`` in Vietnamese (rule, programme, tier,
occurrence), ``CATEGORIES`` = the priority tier and the item kind,
``PRIORITY`` mapped from the protocol's 0..9 (9 emergency) onto RFC 5545's 1..9 (1 highest),
and ``X-BROADCASTER-*`` properties with the raw numbers.  ``DTSTAMP`` (required) is the
``generated_at`` given, so the output is a pure function of its input.

A calendar for an area gathers the items of several stations: the same item on many
stations is one event.  Item ids do not depend on the station, but the same occurrence
may be placed at different times on stations with different rule sets; such placements
keep distinct UIDs (``{item_id}.{UTC start}@broadcaster``) so no UID is reused.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event

from kernel.local_time import SITE_TIMEZONE
from kernel.tiers import TIER_LABELS_VI, tier_of
from schedules.plans import PlannedItem

#: What a calendar application shows as the event's categories (Vietnamese, like the rest).
KIND_LABELS_VI = {"file": "Tệp âm thanh", "relay": "Tiếp sóng"}

PRODID = "-//broadcaster//loa v1 schedule//VI"
UID_DOMAIN = "broadcaster"


def ical_priority(priority: int) -> int:
    """Protocol priority 0..9 (9 = emergency) -> RFC 5545 PRIORITY 1..9 (1 = highest)."""
    return min(9, max(1, 10 - priority))


def _uid(item: PlannedItem, distinct: bool) -> str:
    if not distinct:
        return f"{item.item_id}@{UID_DOMAIN}"
    stamp = item.start_at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{item.item_id}.{stamp}@{UID_DOMAIN}"


def render_calendar(
    items: Iterable[PlannedItem],
    *,
    name: str,
    generated_at: datetime,
    timezone: str = SITE_TIMEZONE,
    description: str | None = None,
) -> bytes:
    """A ``VCALENDAR`` (bytes, CRLF line endings) with one ``VEVENT`` per distinct item.

    ``name`` becomes ``X-WR-CALNAME`` (e.g. the station or area name); events are sorted
    by start, then item id.
    """
    unique: dict[tuple[str, datetime, datetime], PlannedItem] = {}
    for item in items:
        key = (item.item_id, item.start_at.astimezone(UTC), item.end_at.astimezone(UTC))
        unique.setdefault(key, item)
    placements: dict[str, int] = {}
    for item_id, _, _ in unique:
        placements[item_id] = placements.get(item_id, 0) + 1

    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", "PUBLISH")
    calendar.add("x-wr-calname", name)
    calendar.add("x-wr-timezone", timezone)
    if description:
        calendar.add("x-wr-caldesc", description)
    stamp = generated_at.astimezone(UTC)
    zone = ZoneInfo(timezone)
    for key in sorted(unique, key=lambda k: (k[1], k[0])):
        item = unique[key]
        event = Event()
        event.add("uid", _uid(item, placements[item.item_id] > 1))
        event.add("dtstamp", stamp)
        event.add("dtstart", item.start_at.astimezone(UTC))
        event.add("dtend", item.end_at.astimezone(UTC))
        event.add("summary", item.title)
        event.add("categories", [TIER_LABELS_VI[tier_of(item.priority)], KIND_LABELS_VI[item.kind]])
        event.add("priority", ical_priority(item.priority))
        lines = [
            f"Lịch phát số {item.rule_id}, chương trình số {item.programme_id}",
            f"Mức: {TIER_LABELS_VI[tier_of(item.priority)]} (ưu tiên {item.priority})",
            "Lượt của lịch bắt đầu lúc "
            + item.occurrence_start.astimezone(zone).strftime("%H:%M ngày %d/%m/%Y"),
        ]
        if item.shifted:
            lines.append("Đã dời muộn hơn vì trùng giờ với nội dung khác")
        if item.stream is not None:
            lines.append(f"Tiếp sóng {item.stream.url}")
        if item.media is not None:
            lines.append(f"Tệp âm thanh {item.media.sha256}")
        event.add("description", "\n".join(lines))
        event.add("x-broadcaster-priority", str(item.priority))
        event.add("x-broadcaster-rule", str(item.rule_id))
        event.add("x-broadcaster-item", item.item_id)
        calendar.add_component(event)
    data: bytes = calendar.to_ical()
    return data
