"""Media library API end to end: upload, TTS, compose, approval, signed downloads."""

from __future__ import annotations

import re
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from audio_library.settings import AudioSettings
from broadcaster.app import create_app
from broadcaster.runtime import Role as ProcessRole
from broadcaster.settings import Settings
from kernel.security import Role
from tests.api import make_user, ok

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200


@pytest.fixture
def speech(audio, tmp_path: Path) -> bytes:  # type: ignore[no-untyped-def]
    wav = audio.write_wav(
        tmp_path / "speech.wav", audio.scale_to_lufs(audio.speech_like(4.0), -30.0)
    )
    return wav.read_bytes()


def _upload(
    client: TestClient, headers: dict[str, str], data: bytes, name: str = "a.wav", **form: str
):  # type: ignore[no-untyped-def]
    fields = {"title": "Bản tin việc làm", "category": "viec-lam", **form}
    return client.post("/api/v1/media", files={"file": (name, data)}, data=fields, headers=headers)


def _stored_files(settings: Settings) -> list[Path]:
    root = settings.media_dir
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_upload_normalises_and_dedupes(
    client: TestClient, admin: dict[str, str], speech: bytes, settings: Settings
) -> None:
    asset = ok(_upload(client, admin, speech, tags="viec-lam, tuyen-dung"), 201)
    assert asset["status"] == "ready"
    assert asset["approval"] == "draft"
    assert asset["playable"] is False
    assert asset["source"] == "upload"
    assert asset["tags"] == ["tuyen-dung", "viec-lam"]
    assert abs(asset["loudness_after"] - (-16.0)) <= 1.0
    assert asset["loudness_before"] < -25
    assert re.fullmatch(r"[0-9a-f]{64}", asset["sha256"])
    assert asset["mime"] == "audio/mpeg"
    assert 3900 <= asset["duration_ms"] <= 4100
    again = ok(_upload(client, admin, speech, name="copy.wav"), 200)
    assert again["id"] == asset["id"]
    listed = ok(client.get("/api/v1/media?q=viec lam", headers=admin))
    assert listed["total"] == 1
    # the preview link downloads the rendition
    body = client.get(asset["preview_url"])
    assert body.status_code == 200
    assert len(body.content) == asset["bytes"]
    assert body.headers["content-type"] == "audio/mpeg"


def test_bad_uploads_leave_nothing(
    client: TestClient, admin: dict[str, str], audio, tmp_path: Path, settings: Settings
) -> None:  # type: ignore[no-untyped-def]
    silence = audio.write_wav(tmp_path / "silence.wav", audio.sine(3.0, 440.0) * 0.0).read_bytes()
    random = bytes(range(256)) * 64
    cases = {"png.mp3": PNG, "random.wav": random, "empty.wav": b"", "silence.wav": silence}
    for name, data in cases.items():
        response = _upload(client, admin, data, name=name)
        assert response.status_code == 422, (name, response.text)
        assert response.json()["message_vi"], name
    assert ok(client.get("/api/v1/media", headers=admin))["total"] == 0
    assert _stored_files(settings) == []
    bad_category = _upload(client, admin, PNG, category="gossip")
    assert bad_category.status_code == 422


def test_upload_size_limit(
    settings: Settings, session_factory: sessionmaker[Session], speech: bytes
) -> None:
    app = create_app(
        settings, audio_settings=AudioSettings(max_upload_bytes=10_000), role=ProcessRole.API
    )
    with TestClient(app) as client:
        headers = make_user(session_factory, "admin2", Role.ADMIN)
        response = _upload(client, headers, speech)
        assert response.status_code == 413
        assert ok(client.get("/api/v1/media", headers=headers))["total"] == 0
    assert _stored_files(settings) == []


@pytest.mark.usefixtures("tan_an")
def test_tts_compose_and_approval(
    client: TestClient, admin: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    text = "UBND xã Lợi Bình Nhơn thông báo: ngày 26/11/2026, lúc 7 giờ 30 tổ chức tiêm chủng tại trạm y tế."
    spoken = ok(
        client.post(
            "/api/v1/media/tts",
            json={"text": text, "voice": "south", "title": "Thông báo tiêm chủng"},
            headers=admin,
        ),
        201,
    )
    assert spoken["source"] == "tts"
    assert spoken["status"] == "ready"
    assert spoken["duration_ms"] > 3000
    assert abs(spoken["loudness_after"] + 16) <= 1
    assert spoken["recipe"]["voice"] == "south"
    assert client.post("/api/v1/media/tts", json={"text": "   "}, headers=admin).status_code == 422
    assert (
        client.post(
            "/api/v1/media/tts", json={"text": "xin chào", "voice": "klingon"}, headers=admin
        ).status_code
        == 422
    )
    jingle = ok(
        client.post(
            "/api/v1/media/tts",
            json={"text": "Đài truyền thanh xã xin thông báo", "category": "jingle"},
            headers=admin,
        ),
        201,
    )
    joined = ok(
        client.post(
            "/api/v1/media/compose",
            json={
                "title": "Bản tin có nhạc hiệu",
                "parts": [jingle["id"], spoken["id"]],
                "gap_ms": 500,
            },
            headers=admin,
        ),
        201,
    )
    assert joined["source"] == "composed"
    assert joined["duration_ms"] >= jingle["duration_ms"] + spoken["duration_ms"] + 400
    bad = client.post(
        "/api/v1/media/compose", json={"title": "x", "parts": [jingle["id"], 9999]}, headers=admin
    )
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "parts", 1]
    # the author cannot approve their own bulletin; another approver can
    assert client.post(f"/api/v1/media/{spoken['id']}/approve", headers=admin).status_code == 403
    commune_approver = make_user(session_factory, "duyet-xa", Role.APPROVER, ["xa-loi-binh-nhon"])
    city_approver = make_user(session_factory, "duyet-tp", Role.APPROVER, ["tan-an"])
    assert (
        client.post(f"/api/v1/media/{spoken['id']}/approve", headers=commune_approver).status_code
        == 403
    )
    approved = ok(
        client.post(
            f"/api/v1/media/{spoken['id']}/approve", json={"note": "Đồng ý"}, headers=city_approver
        )
    )
    assert approved["approval"] == "approved"
    assert approved["approved_by"] == "duyet-tp"
    assert approved["playable"]
    peaks = ok(client.get(f"/api/v1/media/{spoken['id']}/peaks?buckets=100", headers=admin))
    assert len(peaks["peaks"]) == 100
    assert 0 < max(peaks["peaks"]) <= 1.0


def test_signed_download_range_etag_and_tampering(
    client: TestClient, admin: dict[str, str], speech: bytes, app
) -> None:  # type: ignore[no-untyped-def]
    asset = ok(_upload(client, admin, speech), 201)
    url = asset["preview_url"]
    full = client.get(url)
    assert full.status_code == 200
    assert full.headers["etag"] == f'"{asset["sha256"]}"'
    head = client.head(url)
    assert head.status_code == 200
    assert int(head.headers["content-length"]) == asset["bytes"]
    part = client.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.content == full.content[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{asset['bytes']}"
    assert client.get(url, headers={"If-None-Match": full.headers["etag"]}).status_code == 304
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    sig, exp = query["sig"][0], query["exp"][0]
    forged_sig = ("0" if sig[0] != "0" else "1") + sig[1:]
    assert client.get(f"{parts.path}?exp={exp}&sig={forged_sig}").status_code == 403
    assert client.get(f"{parts.path}?exp={int(exp) + 60}&sig={sig}").status_code == 403
    other = "f" * 64
    assert client.get(f"/media/{other}.mp3?exp={exp}&sig={sig}").status_code == 403
    assert client.get(parts.path).status_code == 403
    library = app.state.media_library
    expired = library.url(asset["sha256"], "mp3", int(time.time()) - 1)
    response = client.get(expired)
    assert response.status_code == 403
    assert "expired" in response.json()["detail"]
    unknown = library.url(other, "mp3", int(time.time()) + 60)
    assert client.get(unknown).status_code == 404


def test_area_scope_and_deletion(
    client: TestClient, admin: dict[str, str], speech: bytes, app, tan_an
) -> None:  # type: ignore[no-untyped-def]
    factory = app.state.sessionmaker
    lbn = make_user(factory, "op-lbn", Role.OPERATOR, ["xa-loi-binh-nhon"])
    p2 = make_user(factory, "op-p2", Role.OPERATOR, ["phuong-2"])
    mine = ok(_upload(client, lbn, speech), 201)
    assert mine["owner_area_code"] == "xa-loi-binh-nhon"
    assert client.get(f"/api/v1/media/{mine['id']}", headers=p2).status_code == 404
    assert ok(client.get("/api/v1/media", headers=p2))["total"] == 0
    assert client.delete(f"/api/v1/media/{mine['id']}", headers=p2).status_code == 404
    # a city-wide asset is visible to every commune, but only the city edits it
    city = ok(
        client.post("/api/v1/media/tts", json={"text": "Bản tin thành phố Tân An"}, headers=admin),
        201,
    )
    assert ok(client.get(f"/api/v1/media/{city['id']}", headers=p2))["id"] == city["id"]
    assert (
        client.patch(f"/api/v1/media/{city['id']}", json={"title": "x"}, headers=p2).status_code
        == 403
    )
    # deletion is refused while something still uses the asset
    app.state.asset_usage.append(
        lambda session, asset_id: ["lịch phát #7"] if asset_id == mine["id"] else []
    )
    blocked = client.delete(f"/api/v1/media/{mine['id']}", headers=lbn)
    assert blocked.status_code == 409
    assert "lịch phát #7" in blocked.json()["detail"]
    app.state.asset_usage.clear()
    assert client.delete(f"/api/v1/media/{mine['id']}", headers=lbn).status_code == 204
    assert client.get(mine["preview_url"]).status_code == 404


@pytest.mark.usefixtures("tan_an")
def test_tts_preview_reads_aloud_and_stores_nothing(
    client: TestClient, admin: dict[str, str], settings: Settings
) -> None:
    text = "Ngày 26/11/2026, lúc 7 giờ 30, UBND xã tổ chức tiêm chủng."
    before = _stored_files(settings)
    preview = ok(
        client.post(
            "/api/v1/media/tts/preview",
            json={"text": text, "voice": "north", "rate": 1},
            headers=admin,
        )
    )
    assert preview["audio_url"].startswith("data:audio/mpeg;base64,")
    assert preview["duration_ms"] > 2000
    assert "hai mươi sáu" in preview["normalized_text"]
    assert "26/11" not in preview["normalized_text"]
    assert _stored_files(settings) == before
    assert ok(client.get("/api/v1/media", headers=admin))["total"] == 0
    empty = client.post("/api/v1/media/tts/preview", json={"text": "  "}, headers=admin)
    assert empty.status_code == 422
    assert empty.json()["message_vi"]
