"""Signed, expiring media URLs for stations (HMAC-SHA256).

A station gets ``{base}/media/{sha256}.{ext}?exp=<unix seconds>&sig=<hex>``; the
signature covers the path (``/media/<sha>.<ext>``, not the host or any proxy prefix,
so the same link verifies behind a reverse proxy) and the expiry::

    sig = HMAC-SHA256(secret, "GET\\n" + path + "\\n" + exp)

`verify` checks the signature first (constant-time `hmac.compare_digest`) and only
then the expiry, so a link whose ``exp`` was edited is reported as tampered
(`MediaSignatureInvalid`), and a genuine link used too late as `MediaLinkExpired`.
Both are `PermissionDeniedError`s (403); the distinction is for logs and for the
station, which re-fetches its desired state when a link has expired.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from dataclasses import dataclass

from audio_library.exceptions import MediaLinkExpired, MediaSignatureInvalid

MIN_SECRET_BYTES = 16
_PATH = re.compile(r"^/media/(?P<sha>[0-9a-f]{64})\.(?P<ext>[a-z0-9]{1,8})$")
_SIG = re.compile(r"^[0-9a-f]{64}$")
_EXP = re.compile(r"^[0-9]{1,12}$")


@dataclass(frozen=True, slots=True)
class MediaRef:
    """What a verified link points at."""

    sha256: str
    ext: str
    expires_at: int


def _key(secret: str | bytes) -> bytes:
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError(f"the media URL secret must be at least {MIN_SECRET_BYTES} bytes")
    return key


def _unix(expires_at: dt.datetime | int) -> int:
    if isinstance(expires_at, dt.datetime):
        if expires_at.tzinfo is None:
            raise ValueError("expires_at must be timezone aware")
        return int(expires_at.timestamp())
    return int(expires_at)


def media_path(sha256: str, ext: str) -> str:
    """The signed part of a media URL."""
    path = f"/media/{sha256}.{ext}"
    if not _PATH.match(path):
        raise ValueError("sha256 must be 64 lowercase hex digits and ext 1-8 [a-z0-9]")
    return path


def signature(path: str, exp: int, secret: str | bytes) -> str:
    """Hex HMAC-SHA256 of the request line pieces."""
    message = f"GET\n{path}\n{exp}".encode()
    return hmac.new(_key(secret), message, hashlib.sha256).hexdigest()


def sign_media_url(
    base_url: str,
    sha256: str,
    ext: str,
    expires_at: dt.datetime | int,
    secret: str | bytes,
) -> str:
    """A station download URL valid until `expires_at` (aware datetime or unix seconds)."""
    path = media_path(sha256, ext)
    exp = _unix(expires_at)
    return f"{base_url.rstrip('/')}{path}?exp={exp}&sig={signature(path, exp, secret)}"


def verify(
    path: str,
    exp: str | int | None,
    sig: str | None,
    secret: str | bytes,
    now: dt.datetime | int,
) -> MediaRef:
    """Check a request for ``path?exp=..&sig=..``; return what it points at.

    Raises `MediaSignatureInvalid` for a malformed or forged link and `MediaLinkExpired`
    for a genuine one past its expiry.
    """
    key = _key(secret)
    match = _PATH.match(path)
    exp_text = str(exp) if exp is not None else ""
    if match is None or not _EXP.match(exp_text) or sig is None or not _SIG.match(sig):
        raise _invalid()
    expires = int(exp_text)
    if not hmac.compare_digest(signature(path, expires, key), sig):
        raise _invalid()
    if _unix(now) >= expires:
        raise MediaLinkExpired(
            "The media link has expired",
            message_vi="Liên kết tải tệp âm thanh đã hết hạn",
        )
    return MediaRef(sha256=match["sha"], ext=match["ext"], expires_at=expires)


def _invalid() -> MediaSignatureInvalid:
    return MediaSignatureInvalid(
        "The media link is not valid (bad or missing signature)",
        message_vi="Liên kết tải tệp âm thanh không hợp lệ",
    )
