"""The audio library and the approval queue in a real headless Chromium (issue 11,
items 1 and 2), at desktop width and at 390 px.

The operator of Lợi Bình Nhơn uploads an MP3 (made with ffmpeg here) with a progress bar
and sees its loudness, records a clip with Chromium's fake microphone (level meter,
re-record), composes a text-to-speech bulletin and listens to it with the normalised
text, plays an item with its waveform; an approver of the commune approves one item and
rejects another with a reason; the author sees the reason.  An asset of another ward
answers the 404 page.  Every page: a screenshot and the axe-core check.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from audio_library.models import AssetSource, AssetStatus, MediaAsset
from kernel.approval import Approval
from kernel.security import Role
from kernel.text import fold
from stations import service as stations_service
from tests.api import make_user
from tests.support import audio
from tests.support.browser import (
    BROWSER_MARKS,
    DESKTOP,
    PHONE,
    Site,
    check_accessibility,
    chromium,
    horizontal_overflow,
    log_in,
    screenshot,
    site_fixture,
    wait,
)

pytestmark = BROWSER_MARKS

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.webdriver.chrome.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

OTHER_WARD_TITLE = "Tin riêng của Phường 2"


def _seed(factory: Any) -> None:
    make_user(factory, "vanhanh", Role.OPERATOR, ["xa-loi-binh-nhon"])
    make_user(factory, "duyettin", Role.APPROVER, ["xa-loi-binh-nhon"])
    with factory() as session:
        ward = stations_service.get_area(session, "phuong-2")
        session.add(
            MediaAsset(
                title=OTHER_WARD_TITLE,
                title_folded=fold(OTHER_WARD_TITLE),
                category="tin-tuc",
                tags=[],
                source=AssetSource.UPLOAD,
                status=AssetStatus.READY,
                approval=Approval.DRAFT,
                owner_area_id=ward.id,
                created_by="phuong2",
            )
        )
        session.commit()


site = site_fixture("web-library", simulate=None, seed=_seed)


def _mp3(folder: Path, seed: int) -> Path:
    """A 5 s speech-like MP3 at −28 LUFS (each seed its own content: the library keeps
    one asset per identical upload)."""
    signal = audio.scale_to_lufs(audio.speech_like(5.0, seed=seed), -28.0)
    wav = audio.write_wav(folder / "hop-dan.wav", signal)
    return audio.convert(wav, folder / "hop-dan.mp3", "-b:a", "128k")


def _text(driver: WebDriver, element_id: str) -> str:
    return str(driver.find_element(By.ID, element_id).text)


def _check_page(driver: WebDriver, name: str, width: str) -> None:
    screenshot(driver, f"{name}-{width}")
    check_accessibility(driver)
    assert horizontal_overflow(driver) == 0, f"{name} scrolls sideways at {width}"


def _saved(driver: WebDriver, result_id: str) -> str:
    wait(
        driver,
        lambda d: "LUFS" in _text(d, result_id) or "bad-text" in _attr(d, result_id, "class"),
        timeout_s=60,
        what=f"{result_id}: the saved file",
    )
    text = _text(driver, result_id)
    assert "LUFS" in text, text
    return text


def _attr(driver: WebDriver, element_id: str, name: str) -> str:
    return str(driver.find_element(By.ID, element_id).get_attribute(name) or "")


def _open(driver: WebDriver, site: Site, username: str, link: str, title: str) -> None:
    """Sign in as `username`, then follow the menu `link` to the page titled `title`."""
    log_in(driver, site, username)
    wait(driver, lambda d: d.title.startswith("Tổng quan"), what="the overview")
    driver.find_element(By.LINK_TEXT, link).click()
    wait(driver, lambda d: d.title.startswith(title), what=title)
    assert OTHER_WARD_TITLE not in driver.page_source


def _media(driver: WebDriver, element_id: str, prop: str) -> float:
    """A property of an <audio> element (0 while it is unknown)."""
    script = f"return document.getElementById('{element_id}').{prop} || 0"
    return float(driver.execute_script(script))


def _review(driver: WebDriver, title: str) -> Any:
    return driver.find_element(
        By.XPATH, f"//article[contains(@class,'lib-review')][.//h3[normalize-space()='{title}']]"
    )


@pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_library_and_approval_journey(site: Site, size: tuple[int, int], tmp_path: Path) -> None:
    width = "desktop" if size == DESKTOP else "phone"
    upload_title = f"Họp dân ấp Cầu Tre ({width})"
    record_title = f"Ghi âm thông báo ({width})"
    tts_title = f"Bản tin tiêm chủng ({width})"
    mp3 = _mp3(tmp_path, seed=size[0])
    with chromium(tmp_path / "profile", size) as driver:
        _open(driver, site, "vanhanh", "Thư viện", "Thư viện âm thanh")
        _check_page(driver, "thu-vien", width)

        # upload an MP3, with its progress and the loudness found
        driver.find_element(By.ID, "up-file").send_keys(str(mp3))
        title = driver.find_element(By.ID, "up-title")
        title.clear()
        title.send_keys(upload_title)
        Select(driver.find_element(By.ID, "up-category")).select_by_visible_text("Tin tức")
        driver.find_element(By.ID, "up-submit").click()
        result = _saved(driver, "up-result")
        # measured before (the file is made at −28 LUFS) and after (the target, −16)
        assert re.search(r"độ lớn −2[789],\d LUFS → −1[56],\d LUFS", result), result
        assert _attr(driver, "up-progress", "value") == "100"

        # record with the fake microphone: the meter moves; record again, then save
        for _attempt in range(2):
            driver.find_element(By.ID, "rec-start").click()
            wait(
                driver,
                lambda d: float(_attr(d, "rec-level", "data-peak") or 0) > 0.01,
                what="the level meter moving",
            )
            time.sleep(1.5)  # a clip long enough to keep (not an assertion)
            driver.find_element(By.ID, "rec-stop").click()
            wait(driver, lambda d: d.find_element(By.ID, "rec-audio").is_displayed())
        assert driver.find_element(By.ID, "rec-start").text == "Ghi lại"
        wait(
            driver,
            lambda d: _media(d, "rec-audio", "readyState") >= 1,
            what="the recorded clip loaded",
        )  # the clip plays back in the page before it is saved
        driver.find_element(By.ID, "rec-title-input").send_keys(record_title)
        driver.find_element(By.ID, "rec-save").click()
        _saved(driver, "rec-result")

        # text to speech: listen first (the normalised text shown), then save
        driver.find_element(By.ID, "tts-text").send_keys(
            "Ngày 5/12/2026, lúc 7 giờ 30, UBND xã tổ chức tiêm chủng tại ấp Cầu Tre."
        )
        Select(driver.find_element(By.ID, "tts-voice")).select_by_value("north")
        driver.find_element(By.ID, "tts-title-input").send_keys(tts_title)
        driver.find_element(By.ID, "tts-listen").click()
        wait(
            driver,
            lambda d: d.find_element(By.ID, "tts-preview").is_displayed(),
            timeout_s=60,
            what="the spoken preview",
        )
        normalized = _text(driver, "tts-normalized")
        assert "mùng năm tháng mười hai" in normalized, normalized
        assert "Ủy ban nhân dân" in normalized, normalized
        assert _attr(driver, "tts-audio", "src").startswith("data:audio/mpeg;base64,")
        wait(
            driver,
            lambda d: _media(d, "tts-audio", "duration") > 2,
            what="the preview audio loaded",
        )
        driver.find_element(By.ID, "tts-save").click()
        _saved(driver, "tts-result")
        _check_page(driver, "thu-vien-them", width)

        # the list: search without diacritics, play with the waveform
        driver.get(site.base_url + "/thu-vien?q=hop+dan+ap+cau+tre")
        row = driver.find_element(By.XPATH, f"//tr[.//a[normalize-space()='{upload_title}']]")
        assert "Chờ duyệt" in row.text
        assert (
            re.search(r"−1[56],\d", row.text) or size == PHONE
        )  # the loudness column is hidden on phones
        row.find_element(By.CSS_SELECTOR, "button.lib-play").click()
        wait(driver, lambda d: int(_attr(d, "player-wave", "data-drawn") or 0) > 0, what="wave")
        wait(
            driver, lambda d: _media(d, "player-audio", "readyState") >= 2, what="the audio playing"
        )
        _check_page(driver, "thu-vien-nghe", width)

        # an asset of another ward does not exist for this account
        driver.get(site.base_url + "/thu-vien?q=phuong+2")
        assert OTHER_WARD_TITLE not in driver.page_source
        with site.sessions()() as session:
            other = session.query(MediaAsset).filter_by(title=OTHER_WARD_TITLE).one().id
        driver.get(site.base_url + f"/thu-vien/{other}")
        assert "Không tìm thấy tệp âm thanh này" in driver.page_source
        assert OTHER_WARD_TITLE not in driver.page_source
        driver.get_log("browser")  # drop the expected 404

        # the approver: approve the upload, reject the bulletin with a reason
        _open(driver, site, "duyettin", "Duyệt", "Duyệt nội dung")
        _check_page(driver, "duyet", width)
        upload = _review(driver, upload_title)
        assert upload.find_elements(By.TAG_NAME, "audio")
        upload.find_element(By.CSS_SELECTOR, "button[data-decision=approve]").click()
        wait(driver, lambda d: "Đã duyệt." in _review(d, upload_title).text, what="approved")
        bulletin = _review(driver, tts_title)
        assert "UBND xã tổ chức tiêm chủng" in bulletin.text  # the approver reads the text
        bulletin.find_element(By.CSS_SELECTOR, "button[data-decision=reject]").click()
        wait(driver, lambda d: "Hãy ghi lý do" in _review(d, tts_title).text, what="reason asked")
        bulletin.find_element(By.NAME, "note").send_keys("Ghi rõ giờ kết thúc")
        bulletin.find_element(By.CSS_SELECTOR, "button[data-decision=reject]").click()
        wait(driver, lambda d: "Đã từ chối" in _review(d, tts_title).text, what="rejected")

        # the author sees the reason
        log_in(driver, site, "vanhanh")
        wait(driver, lambda d: d.title.startswith("Tổng quan"), what="the overview")
        driver.get(site.base_url + "/thu-vien")
        row = driver.find_element(By.XPATH, f"//tr[.//a[normalize-space()='{tts_title}']]")
        assert "Bị từ chối" in row.text
        assert "Lý do từ chối: Ghi rõ giờ kết thúc" in row.text
        approved = driver.find_element(By.XPATH, f"//tr[.//a[normalize-space()='{upload_title}']]")
        assert "Đã duyệt" in approved.text
        row.find_element(By.LINK_TEXT, tts_title).click()
        wait(driver, lambda d: "Ghi rõ giờ kết thúc" in _text(d, "asset-reason"), what="reason")
        assert "duyettin" in _text(driver, "asset-reason")
        _check_page(driver, "thu-vien-tep", width)

        # edit the recording's title, then delete it (no schedule uses it)
        driver.get(site.base_url + "/thu-vien")
        driver.find_element(By.LINK_TEXT, record_title).click()
        wait(driver, lambda d: d.find_elements(By.ID, "edit-form"), what="the edit form")
        renamed = f"Thông báo đã sửa ({width})"
        field = driver.find_element(By.ID, "ed-title")
        field.clear()
        field.send_keys(renamed)
        Select(driver.find_element(By.ID, "ed-category")).select_by_visible_text("Y tế")
        driver.find_element(By.ID, "ed-save").click()
        wait(driver, lambda d: _text(d, "ed-result") == "Đã lưu thay đổi.", what="saved")
        assert _text(driver, "asset-title") == renamed
        driver.find_element(By.ID, "ed-delete").click()
        wait(driver, lambda d: d.find_element(By.ID, "confirm-ok").is_displayed(), what="dialog")
        driver.find_element(By.ID, "confirm-ok").click()
        wait(driver, lambda d: d.current_url.endswith("/thu-vien"), what="back to the library")
        assert renamed not in driver.page_source
        assert record_title not in driver.page_source
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors


def _signed_in(driver: WebDriver, site: Site, username: str) -> None:
    log_in(driver, site, username)
    wait(driver, lambda d: d.title.startswith("Tổng quan"), what="the overview")


def test_draft_saved_then_submitted(site: Site, tmp_path: Path) -> None:
    """The "Lưu nháp" button keeps a spoken bulletin as the author's draft ("Nháp", out
    of the approval queue); "Gửi duyệt" in the list sends it, then the approver sees it."""
    title = "Bản nháp thông báo họp dân"
    with chromium(tmp_path / "profile", DESKTOP) as driver:
        _open(driver, site, "vanhanh", "Thư viện", "Thư viện âm thanh")
        driver.find_element(By.ID, "tts-text").send_keys("Ấp Cầu Tre họp dân lúc 8 giờ sáng.")
        driver.find_element(By.ID, "tts-title-input").send_keys(title)
        driver.find_element(By.ID, "tts-keep").click()
        _saved(driver, "tts-result")
        assert "Đã lưu nháp" in _text(driver, "tts-result")
        driver.get(site.base_url + "/thu-vien?state=unsubmitted")
        row = driver.find_element(By.XPATH, f"//tr[.//a[normalize-space()='{title}']]")
        assert "Nháp" in row.text
        _check_page(driver, "thu-vien-nhap", "desktop")
        _signed_in(driver, site, "duyettin")
        driver.get(site.base_url + "/duyet")
        assert title not in driver.page_source

        _signed_in(driver, site, "vanhanh")
        driver.get(site.base_url + "/thu-vien?state=unsubmitted")
        row = driver.find_element(By.XPATH, f"//tr[.//a[normalize-space()='{title}']]")
        row.find_element(By.CSS_SELECTOR, "button.lib-submit").click()
        wait(driver, lambda d: "Đã gửi duyệt." in row.text, what="submitted")
        assert "Chờ duyệt" in row.text
        _signed_in(driver, site, "duyettin")
        driver.get(site.base_url + "/duyet")
        assert title in driver.page_source
