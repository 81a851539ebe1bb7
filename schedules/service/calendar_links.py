"""Signed calendar links: feed URLs calendar programs can poll without logging in.

The signature (HMAC-SHA-256 over the method, path, day count and expiry) uses a key of
its own, derived from the media URL secret; anyone holding a link reads that calendar
until it expires.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re

from kernel.db import utcnow
from schedules.exceptions import CalendarLinkExpired, CalendarLinkInvalid

#: How long a signed calendar link stays valid by default.
CALENDAR_LINK_TTL = dt.timedelta(days=365)
_SIG = re.compile(r"^[0-9a-f]{64}$")
_EXP = re.compile(r"^[0-9]{1,12}$")


def calendar_key(media_url_secret: bytes) -> bytes:
    """A key for calendar links only, derived from the (service-derived) media secret."""
    return hmac.digest(media_url_secret, b"broadcaster/calendar-feed/v1", "sha256")


def calendar_signature(key: bytes, path: str, days: int, exp: int) -> str:
    message = f"GET\n{path}\n{days}\n{exp}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def sign_calendar_url(
    base_url: str, path: str, days: int, expires_at: dt.datetime, key: bytes
) -> str:
    """``{base}{path}?days=..&exp=..&sig=..``: a feed URL a calendar program can poll."""
    exp = int(expires_at.timestamp())
    sig = calendar_signature(key, path, days, exp)
    return f"{base_url.rstrip('/')}{path}?days={days}&exp={exp}&sig={sig}"


def verify_calendar(
    path: str, days: int, exp: str | None, sig: str | None, key: bytes, now: dt.datetime
) -> None:
    """Raise `CalendarLinkInvalid` (forged/altered) or `CalendarLinkExpired` (too late)."""
    if exp is None or sig is None or not _EXP.match(exp) or not _SIG.match(sig):
        raise CalendarLinkInvalid(
            "The calendar link is not valid (bad or missing signature)",
            message_vi="Liên kết lịch không hợp lệ",
        )
    expected = calendar_signature(key, path, days, int(exp))
    if not hmac.compare_digest(expected, sig):
        raise CalendarLinkInvalid(
            "The calendar link is not valid (bad or missing signature)",
            message_vi="Liên kết lịch không hợp lệ",
        )
    if now.timestamp() >= int(exp):
        raise CalendarLinkExpired(
            "The calendar link has expired; ask for a new one",
            message_vi="Liên kết lịch đã hết hạn",
        )


def station_feed_path(sid: str) -> str:
    return f"/api/v1/stations/{sid}/calendar.ics"


def area_feed_path(code: str) -> str:
    return f"/api/v1/areas/{code}/calendar.ics"


def signed_feed(
    media_url_secret: bytes,
    base_url: str,
    path: str,
    days: int = 7,
    valid: dt.timedelta = CALENDAR_LINK_TTL,
) -> tuple[str, dt.datetime]:
    """A signed feed URL of `path` (the API's calendar link; the dashboard's "Đăng ký
    lịch" button) and when it expires."""
    expires = utcnow().replace(microsecond=0) + valid
    url = sign_calendar_url(base_url, path, days, expires, calendar_key(media_url_secret))
    return url, expires
