"""Text items are spoken with no transaction open and recorded in the caller's
transaction; a save that fails after speaking leaves no bulletin and no file behind
(but never removes a file another bulletin uses)."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from audio_library.models import MediaAsset
from audio_library.service import Author, MediaLibrary
from kernel.db import release
from schedules.schemas import ProgrammeCreate, TextItemIn
from schedules.service import programmes

FIRST = "Thông báo: sáng mai ấp Cầu Tre cắt điện từ bảy giờ đến mười giờ."
SECOND = "Mời bà con đến trạm y tế xã tiêm phòng vào thứ bảy tuần này."


def _renditions(library: MediaLibrary) -> set[str]:
    root = library.store.path_for("rendition", "0" * 64, "mp3").parent.parent
    return {path.name for path in root.rglob("*") if path.is_file()}


def _save(
    session: Session, library: MediaLibrary, texts: list[str], key: str
) -> programmes.Programme:
    data = ProgrammeCreate(
        title="Bản tin", items=[TextItemIn(kind="text", text=text) for text in texts]
    )
    drafts = programmes.check_items(session, data.items, scope=None)
    release(session)
    assert not session.in_transaction()  # nothing is held while the text is spoken
    programmes.speak(session, library, drafts)
    return programmes.create_programme(
        session, library, data, drafts, author=Author(name="test"), key=key
    )


@pytest.mark.usefixtures("tan_an")
def test_failed_save_after_speech_leaves_nothing_unused(
    app: FastAPI, session_factory: sessionmaker[Session]
) -> None:
    library: MediaLibrary = app.state.media_library
    with session_factory() as session:
        saved = _save(session, library, [FIRST], key="ban-tin")
        session.commit()
        kept = saved.items[0].asset_id
        assert kept is not None
        kept_asset = session.get(MediaAsset, kept)
        assert kept_asset is not None
        assert kept_asset.sha256
        assert kept_asset.ext
        kept_file = library.store.path_for("rendition", kept_asset.sha256, kept_asset.ext)
    assert kept_file.is_file()

    with session_factory() as session:
        before = _renditions(library)
        with pytest.raises(IntegrityError):  # the programme key is taken: the save fails
            _save(session, library, [FIRST, SECOND], key="ban-tin")
        # the caller's transaction is still usable, and holds no new bulletin
        assert session.scalar(select(func.count()).select_from(MediaAsset)) == 1
        session.rollback()
    assert kept_file.is_file()  # another bulletin uses it
    assert _renditions(library) == before  # the failed save's own rendition is gone
