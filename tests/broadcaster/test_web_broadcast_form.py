"""The broadcast form is safe for a commune operator: only the content the account may
use (its own areas' first, never another commune's emergency alert), and what the
confirmation counts (the stations each area and group reaches)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from audio_library.models import MediaAsset
from kernel.security import Role
from tests.broadcaster.test_web_pages import login, user
from tests.schedules.api_helpers import make_asset

pytestmark = pytest.mark.usefixtures("tan_an")


def _alert(factory: sessionmaker[Session], title: str, author: str) -> int:
    """A spoken emergency alert as an emergency broadcast saves it: city-wide, tagged."""
    asset_id = make_asset(factory, title, category="canh-bao")
    with factory() as session:
        asset = session.get(MediaAsset, asset_id)
        assert asset is not None
        asset.tags = ["khan-cap"]
        asset.created_by = author
        session.commit()
    return asset_id


def test_operator_sees_only_their_content_and_the_counts(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    alert = _alert(session_factory, "Cháy chợ Phường 2", "canbo-p2")
    shared = make_asset(session_factory, "Bản tin thành phố")
    other = make_asset(session_factory, "Tin Phường 2", owner_area="phuong-2")
    own = make_asset(session_factory, "Tin xã Lợi Bình Nhơn", owner_area="xa-loi-binh-nhon")
    user(session_factory, "lbn", Role.OPERATOR, ["xa-loi-binh-nhon"])
    login(client, "lbn")
    page = client.get("/phat-thanh").text
    select = page[
        page.index('<select id="asset"') : page.index("</select>", page.index('id="asset"'))
    ]
    options = re.findall(r'<option value="(\d*)"', select)
    assert options[0] == str(own)  # the default is the commune's own bulletin
    assert str(shared) in options  # the city's shared ones stay usable ...
    assert select.index("Dùng chung toàn thành phố") < select.index("Bản tin thành phố")
    assert str(other) not in options  # ... another commune's never
    assert str(alert) not in options  # nor another commune's emergency alert
    sids = re.search(r'value="xa-loi-binh-nhon" data-name="[^"]+" data-sids="([^"]*)"', page)
    assert sids
    assert sids.group(1).split()
    assert all(s.startswith("lbn-") for s in sids.group(1).split())


def test_no_own_content_means_no_default(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    make_asset(session_factory, "Bản tin thành phố")
    user(session_factory, "lbn", Role.OPERATOR, ["xa-loi-binh-nhon"])
    login(client, "lbn")
    page = client.get("/phat-thanh").text
    assert '<option value="" selected>— Chọn bản tin —</option>' in page


def test_the_administrator_sees_every_approved_asset(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    alert = _alert(session_factory, "Cháy chợ Phường 2", "canbo-p2")
    user(session_factory, "quantri", Role.ADMIN, [])
    login(client, "quantri")
    assert f'<option value="{alert}">' in client.get("/phat-thanh").text
