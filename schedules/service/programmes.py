"""Programmes: ordered items (assets, jingles, relays, gaps, spoken text) played as one
block.

Saving a programme with text items is a boundary's three steps, so no transaction is
held while text is spoken (`kernel.db.release` between the first two):

1. `check_items` validates every item against the database (assets approved and
   ready, sources known, unchanged text keeps its spoken bulletin);
2. `speak` reads the new text items aloud (no database; the audio library stores the
   renditions);
3. `create_programme` / `update_programme` record the spoken bulletins as draft assets
   and the programme in the caller's transaction (a failed save leaves no bulletin
   behind, and no rendition nothing uses).

Editing the items of a programme sends every approved rule playing it back to draft.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from audio_library import service as media
from audio_library.exceptions import AudioToolError
from audio_library.service import MediaAsset, Rendition
from kernel.approval import Approval
from kernel.db import delete_unless_used, paginate, utcnow
from kernel.errors import InvalidInput
from kernel.text import contains, fold
from schedules.exceptions import InvalidRule, ProgrammeInUse, ProgrammeNotFound
from schedules.models import ItemKind, Programme, ProgrammeItem, ScheduleRule, StreamSource
from schedules.plans import MAX_PROGRAMME_MS
from schedules.schemas import ItemIn, ProgrammeCreate, ProgrammeUpdate, TextItemIn
from schedules.service.rules import reset_rules
from schedules.service.scope import in_scope, visible
from schedules.service.sources import sources_by_id

TTS_CATEGORY = "tin-tuc"
TTS_TAGS = ("lich-phat",)
DEFAULT_VOICE = "south"


def get_programme(session: Session, programme_id: int) -> Programme:
    programme = session.get(Programme, programme_id)
    if programme is None:
        raise ProgrammeNotFound(programme_id)
    return programme


def list_programmes(
    session: Session,
    *,
    scope: Collection[int] | None,
    q: str | None = None,
    owner_area_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Programme], int]:
    query = visible(select(Programme), Programme.owner_area_id, scope)
    if q:
        query = query.where(contains(Programme.title_folded, q))
    if owner_area_id is not None:
        query = query.where(Programme.owner_area_id == owner_area_id)
    return paginate(session, query.order_by(Programme.id), limit, offset)


@dataclass
class Draft:
    """One validated item of a programme being saved."""

    kind: ItemKind
    title: str | None
    asset: MediaAsset | None = None
    source: StreamSource | None = None
    duration_ms: int | None = None
    text: str | None = None
    voice: str | None = None
    rate: int | None = None
    #: the text read aloud by `speak`, not yet an asset
    speech: Rendition | None = None

    @property
    def to_speak(self) -> bool:
        return self.kind is ItemKind.TEXT and self.asset is None and self.speech is None


def check_items(
    session: Session,
    items: Sequence[ItemIn],
    *,
    scope: Collection[int] | None,
    previous: Sequence[ProgrammeItem] = (),
) -> list[Draft]:
    """Check every item (assets approved and ready, sources known) before any speech;
    a text item whose text, voice and rate are unchanged keeps its spoken bulletin."""
    reusable: dict[tuple[str, str, int], MediaAsset] = {}
    spoken = media.assets_by_id(
        session,
        {
            old.asset_id
            for old in previous
            if old.kind is ItemKind.TEXT and old.asset_id is not None and old.text is not None
        },
    )
    for old in previous:
        asset = spoken.get(old.asset_id) if old.asset_id is not None else None
        if asset is None or old.text is None:
            continue
        if asset.ready and asset.approval is not Approval.REJECTED:
            reusable[(old.text, old.voice or DEFAULT_VOICE, old.rate or 0)] = asset
    drafts: list[Draft] = []
    for index, item in enumerate(items):
        loc: tuple[str | int, ...] = ("items", index)
        if item.kind in ("asset", "jingle"):
            asset = media.require_playable(
                session, item.asset_id, field=(*loc, "asset_id"), scope=scope
            )
            kind = ItemKind(item.kind)
            drafts.append(Draft(kind, item.title, asset=asset, duration_ms=asset.duration_ms))
        elif item.kind == "relay":
            source = session.get(StreamSource, item.source_id)
            if source is None or not in_scope(source.owner_area_id, scope):
                raise InvalidInput(
                    f"unknown stream source {item.source_id}",
                    field=(*loc, "source_id"),
                    message_vi=f"Nguồn tiếp sóng {item.source_id} không tồn tại",
                )
            drafts.append(
                Draft(ItemKind.RELAY, item.title, source=source, duration_ms=item.duration_ms)
            )
        elif item.kind == "gap":
            drafts.append(Draft(ItemKind.GAP, None, duration_ms=item.duration_ms))
        else:
            assert isinstance(item, TextItemIn)
            found = reusable.get((item.text, item.voice, item.rate))
            drafts.append(
                Draft(
                    ItemKind.TEXT,
                    item.title,
                    asset=found,
                    duration_ms=found.duration_ms if found else None,
                    text=item.text,
                    voice=item.voice,
                    rate=item.rate,
                )
            )
    if all(d.kind is ItemKind.GAP for d in drafts):
        raise InvalidRule(
            "A programme needs something to play besides gaps",
            field="items",
            message_vi="Chương trình cần có nội dung phát, không chỉ khoảng lặng",
        )
    _check_length(drafts)
    return drafts


def speak(session: Session, library: media.MediaLibrary, drafts: Sequence[Draft]) -> None:
    """Read aloud the text items that have no bulletin yet: long work that uses no
    database (hold no transaction: `kernel.db.release`).  If one fails, the renditions
    of the others are removed again (a query in `session`) and the error names the item.
    """
    done: list[Rendition] = []
    try:
        for index, draft in enumerate(drafts):
            if not draft.to_speak:
                continue
            assert draft.text is not None
            try:
                draft.speech = media.speak(
                    library,
                    text=draft.text,
                    voice=draft.voice or DEFAULT_VOICE,
                    rate=draft.rate or 0,
                )
            except InvalidInput as exc:
                raise InvalidInput(
                    exc.message,
                    field=("items", index, *(exc.loc or ("text",))),
                    message_vi=exc.message_vi,
                ) from exc
            except AudioToolError as exc:
                raise AudioToolError(
                    f"text-to-speech of item {index} failed: {exc.message}",
                    message_vi="Không chuyển được văn bản thành giọng nói",
                ) from exc
            done.append(draft.speech)
            draft.duration_ms = draft.speech.result.duration_ms
        _check_length(drafts)
    except BaseException:
        media.discard(session, library, done)
        raise


def _check_length(drafts: Sequence[Draft]) -> None:
    total = sum(draft.duration_ms or 0 for draft in drafts)
    if total > MAX_PROGRAMME_MS:
        raise InvalidRule(
            f"The programme lasts {total / 3_600_000:.1f} h; at most 24 h",
            field="items",
            message_vi="Chương trình dài quá 24 giờ",
        )


def _record_speech(
    session: Session,
    library: media.MediaLibrary,
    drafts: Sequence[Draft],
    *,
    author: media.Author,
    programme_title: str,
) -> None:
    """The spoken bulletins as draft assets (approved with the first rule playing them)."""
    for index, draft in enumerate(drafts):
        if draft.speech is None or draft.asset is not None:
            continue
        assert draft.text is not None
        draft.asset = media.add_speech(
            session,
            library,
            draft.speech,
            text=draft.text,
            voice=draft.voice or DEFAULT_VOICE,
            rate=draft.rate or 0,
            title=(draft.title or f"{programme_title} – bản tin {index + 1}")[:300],
            category=TTS_CATEGORY,
            tags=TTS_TAGS,
            author=author,
        )


def _fill_items(programme: Programme, drafts: Sequence[Draft]) -> None:
    programme.items = [
        ProgrammeItem(
            position=position,
            kind=draft.kind,
            title=draft.title,
            asset_id=draft.asset.id if draft.asset is not None else None,
            source_id=draft.source.id if draft.source is not None else None,
            duration_ms=draft.duration_ms if draft.kind in (ItemKind.RELAY, ItemKind.GAP) else None,
            text=draft.text,
            voice=draft.voice,
            rate=draft.rate,
        )
        for position, draft in enumerate(drafts)
    ]


def _saving(
    session: Session, library: media.MediaLibrary, drafts: Sequence[Draft]
) -> AbstractContextManager[None]:
    spoken = [draft.speech for draft in drafts if draft.speech is not None]
    return media.saving_speech(session, library, spoken)


def create_programme(
    session: Session,
    library: media.MediaLibrary,
    data: ProgrammeCreate,
    drafts: Sequence[Draft],
    *,
    author: media.Author,
    key: str | None = None,
) -> Programme:
    """Save a programme from its checked (and spoken) items; flushes."""
    with _saving(session, library, drafts):
        _record_speech(session, library, drafts, author=author, programme_title=data.title)
        programme = Programme(
            key=key,
            title=data.title,
            title_folded=fold(data.title),
            owner_area_id=author.area_id,
            created_by=author.name,
            created_by_id=author.user_id,
        )
        _fill_items(programme, drafts)
        session.add(programme)
        session.flush()
    return programme


def update_programme(
    session: Session,
    library: media.MediaLibrary,
    programme: Programme,
    data: ProgrammeUpdate,
    drafts: Sequence[Draft] | None,
    *,
    author: media.Author,
) -> list[int]:
    """Apply the changes (``drafts``: the checked new items, if they change); return the
    ids of approved rules sent back to draft.  Flushes."""
    reset: list[int] = []
    with _saving(session, library, drafts or ()):
        if data.title is not None:
            programme.title = data.title
            programme.title_folded = fold(data.title)
        if drafts is not None:
            owner = media.Author(
                name=author.name, user_id=author.user_id, area_id=programme.owner_area_id
            )
            _record_speech(session, library, drafts, author=owner, programme_title=programme.title)
            if _item_signature(programme.items) != _draft_signature(drafts):
                programme.items = []
                session.flush()
                _fill_items(programme, drafts)
                reset = reset_rules(session, programme_ids=[programme.id])
        programme.updated_at = utcnow()
        session.flush()
    return reset


def _item_signature(items: Sequence[ProgrammeItem]) -> list[tuple[Any, ...]]:
    return [
        (i.kind, i.title, i.asset_id, i.source_id, i.duration_ms, i.text, i.voice, i.rate)
        for i in items
    ]


def _draft_signature(drafts: Sequence[Draft]) -> list[tuple[Any, ...]]:
    return [
        (
            d.kind,
            d.title,
            d.asset.id if d.asset else None,
            d.source.id if d.source else None,
            d.duration_ms if d.kind in (ItemKind.RELAY, ItemKind.GAP) else None,
            d.text,
            d.voice,
            d.rate,
        )
        for d in drafts
    ]


def delete_programme(session: Session, programme: Programme) -> None:
    delete_unless_used(
        session,
        programme,
        select(ScheduleRule.id, ScheduleRule.title)
        .where(ScheduleRule.programme_id == programme.id)
        .order_by(ScheduleRule.id),
        lambda names: ProgrammeInUse(
            f"programme {programme.id} is still played by rule(s) {names}",
            message_vi=f"Chương trình {programme.id} vẫn được dùng trong lịch phát {names}",
        ),
    )


@dataclass(frozen=True, slots=True)
class ItemState:
    """How a programme item stands now (for the API)."""

    duration_ms: int | None
    asset_title: str | None
    source_name: str | None
    problem: str | None


def item_states(session: Session, programmes: Iterable[Programme]) -> dict[int, ItemState]:
    """Per programme item id: duration, names and what (if anything) keeps it off air."""
    items = [item for programme in programmes for item in programme.items]
    assets = media.assets_by_id(session, {i.asset_id for i in items if i.asset_id is not None})
    sources = sources_by_id(session, {i.source_id for i in items if i.source_id is not None})
    states: dict[int, ItemState] = {}
    for item in items:
        asset = assets.get(item.asset_id) if item.asset_id is not None else None
        source = sources.get(item.source_id) if item.source_id is not None else None
        problem: str | None = None
        duration = item.duration_ms
        if item.kind in (ItemKind.ASSET, ItemKind.JINGLE, ItemKind.TEXT):
            duration = asset.duration_ms if asset is not None else None
            problem = media.unplayable_reason(asset)
            text = item.kind is ItemKind.TEXT
            if text and asset is not None and asset.ready and asset.spoken_draft:
                problem = "waiting for approval (with the rule)"
        elif item.kind is ItemKind.RELAY and source is not None and not source.enabled:
            problem = "the stream source is disabled (its fallback plays instead)"
        states[item.id] = ItemState(
            duration_ms=duration,
            asset_title=asset.title if asset is not None else None,
            source_name=source.name if source is not None else None,
            problem=problem,
        )
    return states


def programme_durations(session: Session, programmes: Iterable[Programme]) -> dict[int, int]:
    """Total duration of each programme as it stands (drafts and all)."""
    wanted = list(programmes)
    states = item_states(session, wanted)
    return {p.id: sum(states[i.id].duration_ms or 0 for i in p.items) for p in wanted}


def rule_counts(session: Session, programme_ids: Collection[int]) -> dict[int, int]:
    counts: dict[int, int] = defaultdict(int)
    if programme_ids:
        for pid in session.scalars(
            select(ScheduleRule.programme_id).where(ScheduleRule.programme_id.in_(programme_ids))
        ):
            counts[pid] += 1
    return counts
