"""The site's local time zone: Tân An's and Tây Ninh province's, Vietnam (UTC+7 all
year, no daylight saving).  Every package takes this one default unless the service's
settings (``BROADCASTER_TIMEZONE``, `broadcaster.settings.Settings.timezone`) say
otherwise."""

from __future__ import annotations

from zoneinfo import ZoneInfo

__all__ = ["SITE_TIMEZONE", "SITE_ZONE"]

#: the IANA name of the site's time zone (the settings' default)
SITE_TIMEZONE = "Asia/Ho_Chi_Minh"
#: the same zone, for code that works without the settings (seeds, defaults)
SITE_ZONE = ZoneInfo(SITE_TIMEZONE)
