"""Vietnamese CAP 1.2 alerts for the tests and the benchmark, and the Tân An flood box."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path
from xml.sax.saxutils import escape

OASIS = Path(__file__).with_name("oasis")

# A rectangle over part of Tân An (Phường 3 and its neighbours), as (lat, lon) corners.
FLOOD_BOX = (10.525, 106.415, 10.540, 106.432)


def box_polygon(box: tuple[float, float, float, float] = FLOOD_BOX) -> str:
    s, w, n, e = box
    return f"{s},{w} {s},{e} {n},{e} {n},{w} {s},{w}"


def inside(box: tuple[float, float, float, float], lat: float, lon: float) -> bool:
    s, w, n, e = box
    return s <= lat <= n and w <= lon <= e


def _t(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone(dt.timedelta(hours=7))).replace(microsecond=0).isoformat()


def flood_alert(
    identifier: str,
    *,
    status: str = "Actual",
    msg_type: str = "Alert",
    references: str | None = None,
    polygon: str | None = None,
    circle: str | None = None,
    geocode: str | None = None,
    risk_level: int | None = 3,
    severity: str = "Severe",
    urgency: str = "Immediate",
    certainty: str = "Observed",
    expires: dt.datetime | None = None,
    sent: dt.datetime | None = None,
    with_info: bool = True,
    audio: bytes | None = None,
) -> bytes:
    """A flood warning from the provincial disaster prevention command (Long An)."""
    now = dt.datetime.now(dt.UTC)
    sent = sent or now
    expires = expires or now + dt.timedelta(hours=2)
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">',
        f"<identifier>{escape(identifier)}</identifier>",
        "<sender>pctt@longan.gov.vn</sender>",
        f"<sent>{_t(sent)}</sent>",
        f"<status>{status}</status>",
        f"<msgType>{msg_type}</msgType>",
        "<scope>Public</scope>",
    ]
    if references:
        parts.append(f"<references>{escape(references)}</references>")
    if with_info:
        parts += [
            "<info>",
            "<language>vi-VN</language>",
            "<category>Met</category>",
            "<event>Lũ lụt</event>",
            "<responseType>Evacuate</responseType>",
            f"<urgency>{urgency}</urgency>",
            f"<severity>{severity}</severity>",
            f"<certainty>{certainty}</certainty>",
            f"<expires>{_t(expires)}</expires>",
            "<senderName>Ban Chỉ huy Phòng chống thiên tai tỉnh Long An</senderName>",
            "<headline>Cảnh báo lũ trên sông Vàm Cỏ Tây</headline>",
            "<description>Mực nước sông Vàm Cỏ Tây vượt báo động 3.</description>",
            "<instruction>Người dân vùng trũng khẩn trương di chuyển đến nơi an toàn.</instruction>",
        ]
        if risk_level is not None:
            parts.append(
                "<parameter><valueName>capDoRuiRoThienTai</valueName>"
                f"<value>{risk_level}</value></parameter>"
            )
        if audio is not None:
            parts.append(
                "<resource><resourceDesc>Bản tin âm thanh</resourceDesc>"
                "<mimeType>audio/x-wav</mimeType>"
                f"<size>{len(audio)}</size>"
                f"<derefUri>{base64.b64encode(audio).decode()}</derefUri></resource>"
            )
        parts += ["<area>", "<areaDesc>Một phần thành phố Tân An</areaDesc>"]
        if polygon:
            parts.append(f"<polygon>{polygon}</polygon>")
        if circle:
            parts.append(f"<circle>{circle}</circle>")
        if geocode:
            parts.append(
                f"<geocode><valueName>MA_KHU_VUC</valueName><value>{geocode}</value></geocode>"
            )
        parts += ["</area>", "</info>"]
    parts.append("</alert>")
    return "\n".join(parts).encode()


def reference(identifier: str, sent: dt.datetime | None = None) -> str:
    return f"pctt@longan.gov.vn,{identifier},{_t(sent or dt.datetime.now(dt.UTC))}"
