"""HMAC-signed media URLs: round trip, tampering, expiry."""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qs, urlsplit

import pytest

from audio_library.exceptions import MediaLinkExpired, MediaLinkRejected, MediaSignatureInvalid
from audio_library.signing import sign_media_url, verify

SECRET = "a-test-secret-of-enough-length"
SHA = "ab" * 32
NOW = dt.datetime(2026, 11, 26, 5, 0, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(hours=1)


def _split(url: str) -> tuple[str, str, str]:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    return parts.path, query["exp"][0], query["sig"][0]


def test_round_trip() -> None:
    url = sign_media_url("https://radio.example/", SHA, "mp3", LATER, SECRET)
    assert url.startswith(
        f"https://radio.example/media/{SHA}.mp3?exp={int(LATER.timestamp())}&sig="
    )
    path, exp, sig = _split(url)
    ref = verify(path, exp, sig, SECRET, NOW)
    assert (ref.sha256, ref.ext, ref.expires_at) == (SHA, "mp3", int(LATER.timestamp()))


def test_accepts_unix_seconds() -> None:
    exp = int(LATER.timestamp())
    path, exp_s, sig = _split(sign_media_url("http://h", SHA, "mp3", exp, SECRET.encode()))
    assert verify(path, int(exp_s), sig, SECRET, int(NOW.timestamp())).sha256 == SHA


def test_expired_link() -> None:
    path, exp, sig = _split(sign_media_url("http://h", SHA, "mp3", LATER, SECRET))
    with pytest.raises(MediaLinkExpired) as info:
        verify(path, exp, sig, SECRET, LATER)
    assert isinstance(info.value, MediaLinkRejected)
    assert info.value.message_vi


@pytest.mark.parametrize(
    "tamper",
    [
        lambda p, e, s: (p.replace(SHA, "cd" * 32), e, s),  # other file
        lambda p, e, s: (p.replace(".mp3", ".wav"), e, s),  # other extension
        lambda p, e, s: (p, str(int(e) + 3600), s),  # extended expiry
        lambda p, e, s: (p, str(int(e) - 7200), s),  # expiry moved into the past
        lambda p, e, s: (p, e, s[:-1] + ("0" if s[-1] != "0" else "1")),  # flipped digit
        lambda p, e, s: (p, e, s.upper()),
        lambda p, e, s: (p, e, None),
        lambda p, e, s: (p, None, s),
        lambda p, e, s: (p, "12abc", s),
        lambda p, e, s: ("/media/../etc/passwd", e, s),
        lambda p, e, s: ("/other" + p, e, s),
    ],
)
def test_tampering_is_detected(tamper) -> None:  # type: ignore[no-untyped-def]
    path, exp, sig = tamper(*_split(sign_media_url("http://h", SHA, "mp3", LATER, SECRET)))
    with pytest.raises(MediaSignatureInvalid):
        verify(path, exp, sig, SECRET, NOW)


def test_other_secret_is_rejected() -> None:
    path, exp, sig = _split(sign_media_url("http://h", SHA, "mp3", LATER, SECRET))
    with pytest.raises(MediaSignatureInvalid):
        verify(path, exp, sig, SECRET + "x", NOW)


def test_weak_secret_and_naive_time_are_refused() -> None:
    with pytest.raises(ValueError, match="at least"):
        sign_media_url("http://h", SHA, "mp3", LATER, "short")
    with pytest.raises(ValueError, match="timezone"):
        sign_media_url("http://h", SHA, "mp3", dt.datetime(2026, 1, 1), SECRET)
    with pytest.raises(ValueError, match="sha256"):
        sign_media_url("http://h", "../../x", "mp3", LATER, SECRET)
