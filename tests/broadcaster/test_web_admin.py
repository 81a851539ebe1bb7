"""Administration pages (``/quan-tri/...``): accounts, integration tokens, audit log."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from kernel.security import Role
from tests.api import PASSWORD
from tests.broadcaster.test_web_pages import ORIGIN, login, user

pytestmark = pytest.mark.usefixtures("tan_an")

ADMIN_PAGES = ["/quan-tri", "/quan-tri/tai-khoan", "/quan-tri/ma-tich-hop", "/quan-tri/nhat-ky"]


def test_non_administrators_get_the_403_page(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    user(session_factory, "lbn", Role.OPERATOR, ["xa-loi-binh-nhon"])
    login(client, "lbn")
    assert "/quan-tri" not in client.get("/").text  # no menu item
    for path in [*ADMIN_PAGES, "/quan-tri/tai-khoan/1"]:
        response = client.get(path)
        assert response.status_code == 403, path
        assert "Chỉ quản trị thành phố" in response.text
    refused = client.post(
        "/quan-tri/tai-khoan",
        data={"username": "moi", "password": "x" * 12, "role": "admin"},
        headers=ORIGIN,
    )
    assert refused.status_code == 403


def test_admin_creates_edits_resets_and_disables_an_account(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    user(session_factory, "quantri", Role.ADMIN, [])
    login(client, "quantri")
    assert client.get("/quan-tri", follow_redirects=False).headers["location"] == (
        "/quan-tri/tai-khoan"
    )
    page = client.get("/quan-tri/tai-khoan")
    assert page.status_code == 200
    assert 'value="xa-loi-binh-nhon"' in page.text

    bad = client.post(
        "/quan-tri/tai-khoan",
        data={"username": "a", "password": "ngan", "role": "operator"},
        headers=ORIGIN,
    )
    assert bad.status_code == 422
    assert "Tên đăng nhập" in bad.text
    assert "Mật khẩu" in bad.text
    foreign = client.post(
        "/quan-tri/tai-khoan",
        data={"username": "lbn2", "password": PASSWORD, "role": "operator"},
        headers={"Origin": "http://evil.example"},
    )
    assert foreign.status_code == 403

    created = client.post(
        "/quan-tri/tai-khoan",
        data={
            "username": "lbn2",
            "full_name": "Cán bộ xã",
            "password": PASSWORD,
            "role": "operator",
            "areas": ["xa-loi-binh-nhon"],
            "can_emergency": "1",
        },
        headers=ORIGIN,
    )
    assert created.status_code == 200, created.text
    assert "Đã lưu tài khoản lbn2" in created.text
    user_id = re.search(r'href="/quan-tri/tai-khoan/(\d+)">lbn2<', created.text)
    assert user_id
    again = client.post(
        "/quan-tri/tai-khoan",
        data={"username": "lbn2", "password": PASSWORD, "role": "operator"},
        headers=ORIGIN,
    )
    assert again.status_code == 422
    assert "đã tồn tại" in again.text

    detail = f"/quan-tri/tai-khoan/{user_id.group(1)}"
    assert client.get("/quan-tri/tai-khoan/999999").status_code == 404
    assert client.get("/quan-tri/tai-khoan/abc").status_code == 404
    viewer_emergency = client.post(
        detail,
        data={"action": "save", "role": "viewer", "can_emergency": "1"},
        headers=ORIGIN,
    )
    assert viewer_emergency.status_code == 422
    assert "Chỉ cán bộ vận hành và quản trị thành phố được cấp quyền phát khẩn cấp" in (
        viewer_emergency.text
    )
    reset = client.post(
        detail, data={"action": "password", "password": "mat-khau-moi-123"}, headers=ORIGIN
    )
    assert reset.status_code == 200
    assert "Đã lưu thay đổi" in reset.text
    refused = client.post(
        detail, data={"action": "disable"}, headers={"Origin": "http://evil.example"}
    )
    assert refused.status_code == 403
    disabled = client.post(detail, data={"action": "disable"}, headers=ORIGIN)
    assert "Đã khóa" in disabled.text

    other = TestClient(client.app)
    response = other.post(
        "/dang-nhap",
        data={"username": "lbn2", "password": "mat-khau-moi-123", "next": "/"},
        headers=ORIGIN,
        follow_redirects=False,
    )
    assert response.status_code == 401  # disabled

    audit = client.get("/quan-tri/nhat-ky?nguoi=quantri&hanh_dong=user.update")
    assert audit.status_code == 200
    assert audit.text.count("Sửa tài khoản") >= 3  # the filter option and two rows
    assert "Tài khoản: lbn2" in audit.text
    assert "user.update" not in re.sub(r'value="[^"]*"', "", audit.text)
    lenient = client.get("/quan-tri/nhat-ky?tu=khong-phai-ngay&hanh_dong=xyz&trang=-4")
    assert lenient.status_code == 200


def test_admin_issues_and_revokes_an_integration_token(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    user(session_factory, "quantri", Role.ADMIN, [])
    login(client, "quantri")
    page = client.get("/quan-tri/ma-tich-hop")
    owner = re.search(r'<option value="(\d+)" selected>quantri<', page.text)
    assert owner
    created = client.post(
        "/quan-tri/ma-tich-hop",
        data={"name": "Hệ thống tin tỉnh", "user_id": owner.group(1), "expires_in_days": "30"},
        headers=ORIGIN,
    )
    assert created.status_code == 201
    token = re.search(r'id="token-value">(bct_[^<]+)<', created.text)
    assert token
    api = TestClient(client.app)
    headers = {"Authorization": f"Bearer {token.group(1)}"}
    assert api.get("/api/v1/auth/me", headers=headers).status_code == 200
    assert token.group(1) not in client.get("/quan-tri/ma-tich-hop").text  # shown once

    token_id = re.search(r"/quan-tri/ma-tich-hop/(\d+)/thu-hoi", created.text)
    assert token_id
    revoked = client.post(f"/quan-tri/ma-tich-hop/{token_id.group(1)}/thu-hoi", headers=ORIGIN)
    assert "Đã thu hồi mã" in revoked.text
    assert api.get("/api/v1/auth/me", headers=headers).status_code == 401
    assert client.post("/quan-tri/ma-tich-hop/99999/thu-hoi", headers=ORIGIN).status_code == 404
    foreign = {"Origin": "http://evil.example"}
    assert (
        client.post(
            f"/quan-tri/ma-tich-hop/{token_id.group(1)}/thu-hoi", headers=foreign
        ).status_code
        == 403
    )
    audit = client.get("/quan-tri/nhat-ky?hanh_dong=auth.token_revoke")
    assert "Thu hồi mã tích hợp" in audit.text
