"""Schedule use cases, and the bridge from the database to the pure playlist builder.

Plain keyword-only functions over a `Session`; they `flush()`, the caller commits (the
one exception: text bulletins are spoken by the audio library, whose ingest commits its
own asset rows, see `create_programme`).

What the dispatcher calls:

- `station_plans(session, days, tz, station_ids=None) -> list[DayPlan]`: every station's
  built day (``schedules.builder.build_days``) for the given local days, from every
  approved, enabled rule;
- `plan_inputs(session) -> (rules, programmes)`: the builder's inputs, if it wants to
  build itself.

Targets are resolved for the whole fleet at once by `TargetResolver` (one query for the
stations, one for the areas, two for the groups; each group and area subtree resolved
once however many rules name it), so 10,000 stations and hundreds of rules cost a
handful of queries.  Only enabled stations are targeted.

Approval: every saved rule starts as a ``draft``; an approver who is not its author
approves it (and with it the text bulletins its programme generated, which the audio
library created as drafts).  Editing what an approved rule plays (its programme, its
times, its targets...) sends it back to ``draft``; renaming it or switching it on and
off does not.  Editing the items of a programme does the same to every approved rule
playing it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, tzinfo
from functools import lru_cache
from typing import Any, TypeVar

from pydantic import ValidationError
from sqlalchemy import Select, delete, insert, or_, select
from sqlalchemy.orm import Session

from audio_library import areas as area_codes
from audio_library import service as media
from audio_library.exceptions import AudioToolError
from audio_library.models import AssetSource, AssetStatus, MediaAsset
from kernel.approval import Approval
from kernel.db import paginate, utcnow
from kernel.errors import InvalidInput, PermissionDeniedError
from kernel.security import Permission, Principal
from kernel.text import fold, like_pattern
from kernel.tiers import Tier
from schedules.builder import (
    MAX_PREVIEW_DAYS,
    MAX_PROGRAMME_MS,
    Conflict,
    DayPlan,
    MediaRef,
    PlannedItem,
    ProgrammeItemSpec,
    ProgrammeSpec,
    RuleSpec,
    StreamRef,
    build_days,
    preview,
    validate_rule,
)
from schedules.exceptions import (
    CalendarLinkExpired,
    CalendarLinkInvalid,
    InvalidRule,
    ProgrammeInUse,
    ProgrammeNotFound,
    RuleNotFound,
    StreamSourceInUse,
    StreamSourceNotFound,
)
from schedules.models import (
    RULE_TIERS,
    ItemKind,
    Programme,
    ProgrammeItem,
    ScheduleRule,
    StreamSource,
    rule_areas,
    rule_groups,
    rule_stations,
)
from schedules.recurrence import Once, Recurrence, invalid_recurrence, localize, occurrences
from schedules.schemas import (
    ConflictGroup,
    ItemIn,
    PreviewPlacement,
    PreviewRead,
    ProgrammeCreate,
    ProgrammeUpdate,
    RuleCreate,
    RuleUpdate,
    SkippedRuleRead,
    StreamSourceCreate,
    StreamSourceUpdate,
    TargetsIn,
    TextItemIn,
)
from stations.models import ALL_GROUP, Area, Group, Station, group_areas, group_stations

Author = media.Author

SOURCE_FIELDS = ("name", "url", "kind", "fallback_asset_id", "owner_area_id", "enabled")
RULE_FIELDS = (
    "title",
    "programme_id",
    "tier",
    "priority",
    "order",
    "owner_area_id",
    "volume",
    "recurrence",
    "shift_tolerance_s",
    "slot_s",
    "enabled",
    "approval",
)
#: Rule fields whose change does not send an approved rule back to draft.
_HARMLESS_RULE_FIELDS = frozenset({"title", "enabled"})
#: How long a signed calendar link stays valid by default.
CALENDAR_LINK_TTL = dt.timedelta(days=365)
TTS_CATEGORY = "tin-tuc"
TTS_TAGS = ("lich-phat",)


K = TypeVar("K")
V = TypeVar("V")


def _pairs(session: Session, query: Select[K, V]) -> dict[K, V]:
    """A two-column query as a dict (``dict(result)`` would take a Result for a mapping)."""
    return {key: value for key, value in session.execute(query)}


# --- ownership and scope ---------------------------------------------------------------


def reaches_owner(principal: Principal, owner_area_id: int | None) -> bool:
    """Whether the caller may see an object: city-wide ones and those in their areas."""
    return owner_area_id is None or principal.reaches(owner_area_id)


def require_owner(principal: Principal, owner_area_id: int | None, permission: Permission) -> None:
    """Area-owned objects need `permission` in that area; city-wide ones a city account."""
    principal.require(permission)
    if owner_area_id is not None:
        principal.require_area(permission, owner_area_id)
    elif not principal.city_wide:
        raise PermissionDeniedError(
            "city-wide schedules are managed by the city",
            message_vi="Lịch phát dùng chung toàn thành phố do thành phố quản lý",
        )


def owner_area_for(
    session: Session, principal: Principal, code: str | None, permission: Permission
) -> int | None:
    """The owner area of a new object: the one named (in scope), else the caller's own
    area (city-wide for city accounts)."""
    if code is not None:
        area_id = area_codes.id_for(session, code)
        if area_id is None:
            raise InvalidInput(
                f"unknown area {code!r}",
                field="owner_area",
                message_vi=f"Địa bàn {code} không tồn tại",
            )
        principal.require_area(permission, area_id)
        return area_id
    if principal.city_wide or not principal.area_codes:
        require_owner(principal, None, permission)
        return None
    return area_codes.id_for(session, min(principal.area_codes))


def _visible(query: Select[Any], column: Any, scope: Collection[int] | None) -> Select[Any]:
    if scope is None:
        return query
    return query.where(or_(column.is_(None), column.in_(scope)))


def _in_scope(owner_area_id: int | None, scope: Collection[int] | None) -> bool:
    return scope is None or owner_area_id is None or owner_area_id in scope


# --- stream sources --------------------------------------------------------------------


def get_source(session: Session, source_id: int) -> StreamSource:
    source = session.get(StreamSource, source_id)
    if source is None:
        raise StreamSourceNotFound(source_id)
    return source


def list_sources(
    session: Session,
    *,
    scope: Collection[int] | None,
    kind: str | None = None,
    enabled: bool | None = None,
    q: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[StreamSource], int]:
    query = _visible(select(StreamSource), StreamSource.owner_area_id, scope)
    if kind is not None:
        query = query.where(StreamSource.kind == kind)
    if enabled is not None:
        query = query.where(StreamSource.enabled.is_(enabled))
    if q:
        query = query.where(StreamSource.name_folded.like(like_pattern(q), escape="\\"))
    return paginate(session, query.order_by(StreamSource.kind, StreamSource.id), limit, offset)


def _playable_asset(
    session: Session, asset_id: int, *, field: Sequence[str | int], scope: Collection[int] | None
) -> MediaAsset:
    asset = session.get(MediaAsset, asset_id)
    loc = tuple(field)
    if asset is None or not _in_scope(asset.owner_area_id, scope):
        raise InvalidInput(
            f"media asset {asset_id} does not exist",
            field=loc,
            message_vi=f"Tệp âm thanh {asset_id} không tồn tại",
        )
    return media.require_playable(session, asset_id, field=loc)


def create_source(
    session: Session,
    data: StreamSourceCreate,
    *,
    author: Author,
    scope: Collection[int] | None,
    key: str | None = None,
) -> StreamSource:
    if data.fallback_asset_id is not None:
        _playable_asset(session, data.fallback_asset_id, field=("fallback_asset_id",), scope=scope)
    source = StreamSource(
        key=key,
        name=data.name,
        name_folded=fold(data.name),
        url=data.url,
        kind=data.kind,
        fallback_asset_id=data.fallback_asset_id,
        owner_area_id=author.area_id,
        enabled=data.enabled,
        created_by=author.name,
        created_by_id=author.user_id,
    )
    session.add(source)
    session.flush()
    return source


def update_source(
    session: Session,
    source: StreamSource,
    data: StreamSourceUpdate,
    *,
    scope: Collection[int] | None,
) -> StreamSource:
    changes = data.model_dump(exclude_unset=True)
    for required in ("name", "url", "kind", "enabled"):
        if required in changes and changes[required] is None:
            raise InvalidInput(f"{required} cannot be null", field=required)
    if changes.get("fallback_asset_id") is not None:
        _playable_asset(
            session, changes["fallback_asset_id"], field=("fallback_asset_id",), scope=scope
        )
    for name, value in changes.items():
        setattr(source, name, value)
    if "name" in changes:
        source.name_folded = fold(source.name)
    session.flush()
    session.refresh(source)
    return source


def delete_source(session: Session, source: StreamSource) -> None:
    users = list(
        session.execute(
            select(Programme.id, Programme.title)
            .join(ProgrammeItem, ProgrammeItem.programme_id == Programme.id)
            .where(ProgrammeItem.source_id == source.id)
            .distinct()
            .order_by(Programme.id)
        )
    )
    if users:
        names = ", ".join(f"'{title}' (#{pid})" for pid, title in users[:5])
        raise StreamSourceInUse(
            f"stream source {source.id} is still relayed by programme(s) {names}",
            message_vi=f"Nguồn tiếp sóng {source.id} vẫn được dùng trong chương trình {names}",
        )
    session.delete(source)
    session.flush()


# --- programmes ------------------------------------------------------------------------


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
    query = _visible(select(Programme), Programme.owner_area_id, scope)
    if q:
        query = query.where(Programme.title_folded.like(like_pattern(q), escape="\\"))
    if owner_area_id is not None:
        query = query.where(Programme.owner_area_id == owner_area_id)
    return paginate(session, query.order_by(Programme.id), limit, offset)


@dataclass
class _Draft:
    """One validated item of a programme being saved (TTS not yet run)."""

    kind: ItemKind
    title: str | None
    asset: MediaAsset | None = None
    source: StreamSource | None = None
    duration_ms: int | None = None
    text: str | None = None
    voice: str | None = None
    rate: int | None = None


def _prepare_items(
    session: Session,
    items: Sequence[ItemIn],
    *,
    scope: Collection[int] | None,
    previous: Sequence[ProgrammeItem] = (),
) -> list[_Draft]:
    """Check every item (assets approved and ready, sources known) before any TTS."""
    reusable: dict[tuple[str, str, int], MediaAsset] = {}
    for old in previous:
        if old.kind is ItemKind.TEXT and old.asset_id is not None and old.text is not None:
            asset = session.get(MediaAsset, old.asset_id)
            if (
                asset is not None
                and asset.status is AssetStatus.READY
                and asset.approval is not Approval.REJECTED
            ):
                reusable[(old.text, old.voice or "south", old.rate or 0)] = asset
    drafts: list[_Draft] = []
    for index, item in enumerate(items):
        loc: tuple[str | int, ...] = ("items", index)
        if item.kind in ("asset", "jingle"):
            asset = _playable_asset(session, item.asset_id, field=(*loc, "asset_id"), scope=scope)
            drafts.append(
                _Draft(ItemKind(item.kind), item.title, asset=asset, duration_ms=asset.duration_ms)
            )
        elif item.kind == "relay":
            source = session.get(StreamSource, item.source_id)
            if source is None or not _in_scope(source.owner_area_id, scope):
                raise InvalidInput(
                    f"unknown stream source {item.source_id}",
                    field=(*loc, "source_id"),
                    message_vi=f"Nguồn tiếp sóng {item.source_id} không tồn tại",
                )
            drafts.append(
                _Draft(ItemKind.RELAY, item.title, source=source, duration_ms=item.duration_ms)
            )
        elif item.kind == "gap":
            drafts.append(_Draft(ItemKind.GAP, None, duration_ms=item.duration_ms))
        else:
            assert isinstance(item, TextItemIn)
            found = reusable.get((item.text, item.voice, item.rate))
            drafts.append(
                _Draft(
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
    return drafts


def _render_texts(
    session: Session,
    library: media.MediaLibrary,
    drafts: list[_Draft],
    *,
    author: Author,
    programme_title: str,
) -> list[MediaAsset]:
    """Speak the text items that have no asset yet; return the new assets."""
    created: list[MediaAsset] = []
    try:
        for index, draft in enumerate(drafts):
            if draft.kind is not ItemKind.TEXT or draft.asset is not None:
                continue
            assert draft.text is not None
            try:
                asset = media.create_tts_asset(
                    session,
                    library,
                    text=draft.text,
                    voice=draft.voice or "south",
                    rate=draft.rate or 0,
                    title=(draft.title or f"{programme_title} – bản tin {index + 1}")[:300],
                    category=TTS_CATEGORY,
                    tags=TTS_TAGS,
                    author=author,
                )
            except InvalidInput as exc:
                raise InvalidInput(
                    exc.message,
                    field=("items", index, *(exc.loc or ("text",))),
                    message_vi=exc.message_vi,
                ) from exc
            created.append(asset)
            if asset.status is not AssetStatus.READY:
                raise AudioToolError(
                    f"text-to-speech of item {index} failed: {asset.failure_reason}",
                    message_vi="Không chuyển được văn bản thành giọng nói",
                )
            draft.asset = asset
            draft.duration_ms = asset.duration_ms
    except BaseException:
        _discard_assets(session, library, created)
        raise
    return created


def _discard_assets(
    session: Session, library: media.MediaLibrary, assets: Iterable[MediaAsset]
) -> None:
    """Remove assets generated for a programme that was not saved after all."""
    assets = list(assets)
    if not assets:
        return
    session.rollback()
    for asset in assets:
        fresh = session.get(MediaAsset, asset.id)
        if fresh is not None:
            media.delete_asset(session, library, fresh, used_by=[])
    session.commit()


def _fill_items(programme: Programme, drafts: Sequence[_Draft]) -> None:
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


def _check_drafts_length(drafts: Sequence[_Draft]) -> None:
    total = sum(draft.duration_ms or 0 for draft in drafts)
    if total > MAX_PROGRAMME_MS:
        raise InvalidRule(
            f"The programme lasts {total / 3_600_000:.1f} h; at most 24 h",
            field="items",
            message_vi="Chương trình dài quá 24 giờ",
        )


def create_programme(
    session: Session,
    library: media.MediaLibrary,
    data: ProgrammeCreate,
    *,
    author: Author,
    scope: Collection[int] | None,
    key: str | None = None,
) -> Programme:
    """Save a programme; its text items are spoken first (each TTS asset is committed
    by the audio library as a draft, and removed again if the save fails)."""
    drafts = _prepare_items(session, data.items, scope=scope)
    _check_drafts_length(drafts)
    created = _render_texts(session, library, drafts, author=author, programme_title=data.title)
    try:
        _check_drafts_length(drafts)
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
    except BaseException:
        _discard_assets(session, library, created)
        raise
    return programme


def update_programme(
    session: Session,
    library: media.MediaLibrary,
    programme: Programme,
    data: ProgrammeUpdate,
    *,
    author: Author,
    scope: Collection[int] | None,
) -> list[int]:
    """Apply the changes; return the ids of approved rules sent back to draft.

    Text items whose text, voice and rate did not change keep their spoken asset.
    """
    reset: list[int] = []
    drafts: list[_Draft] | None = None
    created: list[MediaAsset] = []
    if data.items is not None:
        # validate and speak before touching the programme (TTS commits its assets)
        drafts = _prepare_items(session, data.items, scope=scope, previous=programme.items)
        _check_drafts_length(drafts)
        owner = Author(name=author.name, user_id=author.user_id, area_id=programme.owner_area_id)
        created = _render_texts(
            session, library, drafts, author=owner, programme_title=data.title or programme.title
        )
    try:
        if data.title is not None:
            programme.title = data.title
            programme.title_folded = fold(data.title)
        if drafts is not None:
            _check_drafts_length(drafts)
            if _item_signature(programme.items) != _draft_signature(drafts):
                programme.items = []
                session.flush()
                _fill_items(programme, drafts)
                reset = _reset_rules(session, programme_ids=[programme.id])
        programme.updated_at = utcnow()
        session.flush()
    except BaseException:
        _discard_assets(session, library, created)
        raise
    return reset


def _item_signature(items: Sequence[ProgrammeItem]) -> list[tuple[Any, ...]]:
    return [
        (i.kind, i.title, i.asset_id, i.source_id, i.duration_ms, i.text, i.voice, i.rate)
        for i in items
    ]


def _draft_signature(drafts: Sequence[_Draft]) -> list[tuple[Any, ...]]:
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


def _reset_rules(session: Session, *, programme_ids: Collection[int]) -> list[int]:
    rules = list(
        session.scalars(
            select(ScheduleRule).where(
                ScheduleRule.programme_id.in_(programme_ids),
                ScheduleRule.approval == Approval.APPROVED,
            )
        )
    )
    for rule in rules:
        _to_draft(rule)
    return [rule.id for rule in rules]


def _to_draft(rule: ScheduleRule) -> None:
    rule.approval = Approval.DRAFT
    rule.approved_by = None
    rule.approved_by_id = None
    rule.approved_at = None
    rule.approval_note = None


def delete_programme(session: Session, programme: Programme) -> None:
    users = list(
        session.execute(
            select(ScheduleRule.id, ScheduleRule.title)
            .where(ScheduleRule.programme_id == programme.id)
            .order_by(ScheduleRule.id)
        )
    )
    if users:
        names = ", ".join(f"'{title}' (#{rid})" for rid, title in users[:5])
        raise ProgrammeInUse(
            f"programme {programme.id} is still played by rule(s) {names}",
            message_vi=f"Chương trình {programme.id} vẫn được dùng trong lịch phát {names}",
        )
    session.delete(programme)
    session.flush()


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
    assets = _assets_by_id(session, {i.asset_id for i in items if i.asset_id is not None})
    sources = _sources_by_id(session, {i.source_id for i in items if i.source_id is not None})
    states: dict[int, ItemState] = {}
    for item in items:
        asset = assets.get(item.asset_id) if item.asset_id is not None else None
        source = sources.get(item.source_id) if item.source_id is not None else None
        problem: str | None = None
        duration = item.duration_ms
        if item.kind in (ItemKind.ASSET, ItemKind.JINGLE, ItemKind.TEXT):
            duration = asset.duration_ms if asset is not None else None
            if asset is None:
                problem = "the media asset was deleted"
            elif asset.status is not AssetStatus.READY:
                problem = f"the media asset is {asset.status.value}"
            elif asset.approval is Approval.REJECTED:
                problem = "the media asset was rejected"
            elif asset.approval is not Approval.APPROVED:
                problem = (
                    "waiting for approval (with the rule)"
                    if item.kind is ItemKind.TEXT
                    else "the media asset is not approved"
                )
        elif item.kind is ItemKind.RELAY and source is not None and not source.enabled:
            problem = "the stream source is disabled (its fallback plays instead)"
        states[item.id] = ItemState(
            duration_ms=duration,
            asset_title=asset.title if asset is not None else None,
            source_name=source.name if source is not None else None,
            problem=problem,
        )
    return states


def _assets_by_id(session: Session, ids: Collection[int]) -> dict[int, MediaAsset]:
    if not ids:
        return {}
    return {a.id: a for a in session.scalars(select(MediaAsset).where(MediaAsset.id.in_(ids)))}


def _sources_by_id(session: Session, ids: Collection[int]) -> dict[int, StreamSource]:
    if not ids:
        return {}
    return {s.id: s for s in session.scalars(select(StreamSource).where(StreamSource.id.in_(ids)))}


def rule_counts(session: Session, programme_ids: Collection[int]) -> dict[int, int]:
    counts: dict[int, int] = defaultdict(int)
    if programme_ids:
        for pid in session.scalars(
            select(ScheduleRule.programme_id).where(ScheduleRule.programme_id.in_(programme_ids))
        ):
            counts[pid] += 1
    return counts


# --- building programme specs ------------------------------------------------------------


def _media_ref(asset: MediaAsset | None, *, drafts_ok: bool = False) -> MediaRef | None:
    if asset is None or asset.status is not AssetStatus.READY:
        return None
    if asset.sha256 is None or not asset.bytes or asset.duration_ms is None:
        return None
    if asset.approval is not Approval.APPROVED and not (
        drafts_ok and asset.approval is Approval.DRAFT and asset.source is AssetSource.TTS
    ):
        return None
    return MediaRef(
        asset_id=asset.id,
        sha256=asset.sha256,
        bytes=asset.bytes,
        duration_ms=asset.duration_ms,
        ext=asset.ext or "mp3",
    )


def _item_spec(
    item: ProgrammeItem,
    programme_title: str,
    assets: Mapping[int, MediaAsset],
    sources: Mapping[int, StreamSource],
    *,
    drafts_ok: bool = False,
) -> ProgrammeItemSpec:
    if item.kind is ItemKind.GAP:
        return ProgrammeItemSpec(kind="gap", title="", duration_ms=item.duration_ms or 0)
    if item.kind is ItemKind.RELAY:
        source = sources.get(item.source_id) if item.source_id is not None else None
        fallback = _media_ref(source.fallback) if source is not None else None
        title = item.title or (source.name if source is not None else programme_title)
        duration = item.duration_ms or 0
        if source is not None and not source.enabled:
            # a source switched off: play its fallback for the slot instead (looped)
            return ProgrammeItemSpec(
                kind="file", title=title, duration_ms=duration, media=fallback, loop=True
            )
        return ProgrammeItemSpec(
            kind="relay",
            title=title,
            duration_ms=duration,
            stream=StreamRef(source_id=source.id, url=source.url) if source else None,
            fallback=fallback,
        )
    asset = assets.get(item.asset_id) if item.asset_id is not None else None
    ref = _media_ref(asset, drafts_ok=drafts_ok and item.kind is ItemKind.TEXT)
    title = item.title or (asset.title if asset is not None else programme_title)
    # an unknown duration still counts as 1 ms, so the builder reports the missing media
    duration = asset.duration_ms if asset is not None and asset.duration_ms else 1
    return ProgrammeItemSpec(kind="file", title=title, duration_ms=duration, media=ref)


def programme_specs(
    session: Session, programme_ids: Collection[int], *, drafts_ok: bool = False
) -> dict[int, ProgrammeSpec]:
    """The builder's view of programmes (batched: four queries whatever the count).

    Unplayable media (deleted, not ready, not approved) becomes ``media=None``, so the
    builder skips the rules playing it and says why.  With ``drafts_ok`` the draft
    text bulletins a programme generated count as playable (used when a rule is saved
    or previewed: approving it approves them).
    """
    if not programme_ids:
        return {}
    ids = sorted(set(programme_ids))
    titles = _pairs(session, select(Programme.id, Programme.title).where(Programme.id.in_(ids)))
    items = list(
        session.scalars(
            select(ProgrammeItem)
            .where(ProgrammeItem.programme_id.in_(ids))
            .order_by(ProgrammeItem.programme_id, ProgrammeItem.position)
        )
    )
    sources = _sources_by_id(session, {i.source_id for i in items if i.source_id is not None})
    asset_ids = {i.asset_id for i in items if i.asset_id is not None}
    asset_ids |= {s.fallback_asset_id for s in sources.values() if s.fallback_asset_id}
    assets = _assets_by_id(session, asset_ids)
    for source in sources.values():  # the relationship, without another query per source
        source.fallback = assets.get(source.fallback_asset_id) if source.fallback_asset_id else None
    by_programme: dict[int, list[ProgrammeItemSpec]] = defaultdict(list)
    for item in items:
        by_programme[item.programme_id].append(
            _item_spec(item, titles[item.programme_id], assets, sources, drafts_ok=drafts_ok)
        )
    return {
        pid: ProgrammeSpec(id=pid, title=titles[pid], items=tuple(by_programme.get(pid, ())))
        for pid in ids
        if pid in titles
    }


def programme_durations(session: Session, programmes: Iterable[Programme]) -> dict[int, int]:
    """Total duration of each programme as it stands (drafts and all)."""
    wanted = list(programmes)
    states = item_states(session, wanted)
    return {p.id: sum(states[i.id].duration_ms or 0 for i in p.items) for p in wanted}


# --- recurrence -----------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _recurrence_from_json(text: str) -> Recurrence:
    return Recurrence.model_validate_json(text)


def stored_recurrence(data: Mapping[str, Any]) -> Recurrence:
    """The `Recurrence` of a stored rule (cached by its JSON)."""
    return _recurrence_from_json(json.dumps(data, sort_keys=True, ensure_ascii=False))


def parse_rule_recurrence(data: Mapping[str, Any]) -> Recurrence:
    """Validate a request's recurrence; errors name ``recurrence.<field>``."""
    try:
        return Recurrence.model_validate(data)
    except ValidationError as exc:
        raise invalid_recurrence(exc, prefix=("recurrence",)) from exc


def ends_on(recurrence: Recurrence, tz: tzinfo) -> date | None:
    """The last local day a recurrence can fire (None: open-ended)."""
    last: date | None = None
    until = recurrence.valid_until
    if until is not None:
        last = localize(until, tz).date() if isinstance(until, dt.datetime) else until
    when = recurrence.when
    if isinstance(when, Once):
        at = localize(when.at, tz).date() if when.at.tzinfo else when.at.date()
        last = at if last is None else min(last, at)
    return last


def next_occurrences(
    recurrence: Recurrence, tz: tzinfo, *, now: dt.datetime | None = None, count: int = 3
) -> list[dt.datetime]:
    start = now or utcnow()
    found: list[dt.datetime] = []
    for horizon in (8, 400):
        found = occurrences(recurrence, start, start + dt.timedelta(days=horizon), tz)
        if len(found) >= count:
            break
    return found[:count]


# --- targets ---------------------------------------------------------------------------


class TargetResolver:
    """Resolves rule targets to enabled station ids for the whole fleet at once.

    Built per use (a request, a plan build): loads the stations and the area tree once;
    each area subtree and each group is resolved once and memoised, and identical
    target sets share one frozenset.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self.by_area: dict[int, list[int]] = defaultdict(list)
        for station_id, area_id in session.execute(
            select(Station.id, Station.area_id).where(Station.enabled.is_(True))
        ):
            self.by_area[area_id].append(station_id)
        self.enabled = frozenset(s for ids in self.by_area.values() for s in ids)
        self.children: dict[int, list[int]] = defaultdict(list)
        for area_id, parent_id in session.execute(select(Area.id, Area.parent_id)):
            if parent_id is not None:
                self.children[parent_id].append(area_id)
        self._areas: dict[int, frozenset[int]] = {}
        self._groups: dict[int, frozenset[int]] = {}
        self._sets: dict[tuple[tuple[int, ...], ...], frozenset[int]] = {}

    def area(self, area_id: int) -> frozenset[int]:
        found = self._areas.get(area_id)
        if found is None:
            ids: set[int] = set()
            stack, seen = [area_id], set()
            while stack:
                current = stack.pop()
                if current in seen:
                    continue
                seen.add(current)
                ids.update(self.by_area.get(current, ()))
                stack.extend(self.children.get(current, ()))
            found = frozenset(ids)
            self._areas[area_id] = found
        return found

    def load_groups(self, group_ids: Collection[int]) -> None:
        """Resolve the given groups in three queries (done before `resolve`)."""
        wanted = [g for g in set(group_ids) if g not in self._groups]
        if not wanted:
            return
        members: dict[int, set[int]] = {g: set() for g in wanted}
        everyone: set[int] = set()
        for gid, key, builtin in self.session.execute(
            select(Group.id, Group.gid, Group.builtin).where(Group.id.in_(wanted))
        ):
            if builtin and key == ALL_GROUP:
                everyone.add(gid)
        for gid, station_id in self.session.execute(
            select(group_stations.c.group_id, group_stations.c.station_id).where(
                group_stations.c.group_id.in_(wanted)
            )
        ):
            if station_id in self.enabled:
                members[gid].add(station_id)
        for gid, area_id in self.session.execute(
            select(group_areas.c.group_id, group_areas.c.area_id).where(
                group_areas.c.group_id.in_(wanted)
            )
        ):
            members[gid] |= self.area(area_id)
        for gid in wanted:
            self._groups[gid] = self.enabled if gid in everyone else frozenset(members[gid])

    def group(self, group_id: int) -> frozenset[int]:
        if group_id not in self._groups:
            self.load_groups([group_id])
        return self._groups[group_id]

    def resolve(
        self, stations: Iterable[int], groups: Iterable[int], areas: Iterable[int]
    ) -> frozenset[int]:
        key = (tuple(sorted(stations)), tuple(sorted(groups)), tuple(sorted(areas)))
        found = self._sets.get(key)
        if found is None:
            ids: set[int] = {s for s in key[0] if s in self.enabled}
            for group_id in key[1]:
                ids |= self.group(group_id)
            for area_id in key[2]:
                ids |= self.area(area_id)
            found = frozenset(ids)
            self._sets[key] = found
        return found


@dataclass
class RuleTargets:
    """The targets stored for a rule: ids and names."""

    stations: list[tuple[int, str]] = field(default_factory=list)
    groups: list[tuple[int, str]] = field(default_factory=list)
    areas: list[tuple[int, str]] = field(default_factory=list)

    def names(self) -> dict[str, list[list[int | str]]]:
        return {
            "stations": [[i, n] for i, n in self.stations],
            "groups": [[i, n] for i, n in self.groups],
            "areas": [[i, n] for i, n in self.areas],
        }


def rule_targets(session: Session, rule_ids: Collection[int]) -> dict[int, RuleTargets]:
    """The stored targets of rules, with their current names (three queries)."""
    out: dict[int, RuleTargets] = {rid: RuleTargets() for rid in rule_ids}
    if not rule_ids:
        return out
    ids = list(rule_ids)
    for rid, sid, name in session.execute(
        select(rule_stations.c.rule_id, Station.id, Station.sid)
        .join(Station, Station.id == rule_stations.c.station_id)
        .where(rule_stations.c.rule_id.in_(ids))
        .order_by(Station.sid)
    ):
        out[rid].stations.append((sid, name))
    for rid, gid, name in session.execute(
        select(rule_groups.c.rule_id, Group.id, Group.gid)
        .join(Group, Group.id == rule_groups.c.group_id)
        .where(rule_groups.c.rule_id.in_(ids))
        .order_by(Group.gid)
    ):
        out[rid].groups.append((gid, name))
    for rid, aid, name in session.execute(
        select(rule_areas.c.rule_id, Area.id, Area.code)
        .join(Area, Area.id == rule_areas.c.area_id)
        .where(rule_areas.c.rule_id.in_(ids))
        .order_by(Area.code)
    ):
        out[rid].areas.append((aid, name))
    return out


def lost_targets(rule: ScheduleRule, current: RuleTargets) -> list[str]:
    """Targets saved with the rule that no longer exist (deleted station/group/area)."""
    saved = rule.target_names or {}
    lost: list[str] = []
    for kind, label in (("stations", "station"), ("groups", "group"), ("areas", "area")):
        present = {i for i, _ in getattr(current, kind)}
        for entry in saved.get(kind, []):
            if entry[0] not in present:
                lost.append(f"{label}:{entry[1]}")
    return lost


@dataclass(frozen=True, slots=True)
class TargetRows:
    """What a rule's targets name: ``(id, name)`` pairs, stations with their area."""

    stations: list[tuple[int, str, int]]
    groups: list[tuple[int, str]]
    areas: list[tuple[int, str]]


def _target_rows(session: Session, targets: TargetsIn) -> TargetRows:
    """Look the names up (one query per kind); an unknown name is a 422 on its entry."""

    def missing(kind: str, names: Sequence[str], found: Collection[str]) -> None:
        label = {"stations": "station", "groups": "group", "areas": "area"}[kind]
        for index, name in enumerate(names):
            if name not in found:
                raise InvalidInput(
                    f"unknown {label} {name!r}",
                    field=("targets", kind, index),
                    message_vi=f"Không tìm thấy {name}",
                )

    stations: dict[str, tuple[int, str, int]] = {}
    if targets.stations:
        for station_id, sid, area_id in session.execute(
            select(Station.id, Station.sid, Station.area_id).where(
                Station.sid.in_(set(targets.stations))
            )
        ):
            stations[sid] = (station_id, sid, area_id)
    missing("stations", targets.stations, stations)
    groups: dict[str, tuple[int, str]] = {}
    if targets.groups:
        for group_id, gid in session.execute(
            select(Group.id, Group.gid).where(Group.gid.in_(set(targets.groups)))
        ):
            groups[gid] = (group_id, gid)
    missing("groups", targets.groups, groups)
    areas: dict[str, tuple[int, str]] = {}
    if targets.areas:
        for area_id, code in session.execute(
            select(Area.id, Area.code).where(Area.code.in_(set(targets.areas)))
        ):
            areas[code] = (area_id, code)
    missing("areas", targets.areas, areas)
    return TargetRows(
        stations=[stations[n] for n in dict.fromkeys(targets.stations)],
        groups=[groups[n] for n in dict.fromkeys(targets.groups)],
        areas=[areas[n] for n in dict.fromkeys(targets.areas)],
    )


def _check_targets(
    resolver: TargetResolver, rows: TargetRows, *, principal: Principal | None
) -> frozenset[int]:
    if not (rows.stations or rows.groups or rows.areas):
        raise InvalidInput(
            "Name at least one station, group or area",
            field="targets",
            message_vi="Cần chọn ít nhất một trạm, nhóm hoặc địa bàn",
        )
    resolver.load_groups([g for g, _ in rows.groups])
    ids = resolver.resolve(
        [s for s, _, _ in rows.stations], [g for g, _ in rows.groups], [a for a, _ in rows.areas]
    )
    if not ids:
        raise InvalidInput(
            "The targets resolve to no (enabled) station",
            field="targets",
            message_vi="Không có trạm nào (đang hoạt động) thuộc đối tượng đã chọn",
        )
    if principal is not None and principal.scope is not None and not principal.city_wide:
        scope = principal.scope
        area_of = _pairs(
            resolver.session, select(Station.id, Station.area_id).where(Station.id.in_(list(ids)))
        )
        if (
            any(area_id not in scope for _, _, area_id in rows.stations)
            or any(area_id not in scope for area_id, _ in rows.areas)
            or any(area_of[s] not in scope for s in ids)
        ):
            raise PermissionDeniedError(
                "the targets include stations outside your areas",
                message_vi="Đối tượng phát có trạm nằm ngoài phạm vi được giao",
            )
    return ids


# --- rules -----------------------------------------------------------------------------


def get_rule(session: Session, rule_id: int) -> ScheduleRule:
    rule = session.get(ScheduleRule, rule_id)
    if rule is None:
        raise RuleNotFound(rule_id)
    return rule


def list_rules(
    session: Session,
    *,
    scope: Collection[int] | None,
    q: str | None = None,
    approval: Approval | None = None,
    enabled: bool | None = None,
    tier: Tier | None = None,
    programme_id: int | None = None,
    owner_area_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[ScheduleRule], int]:
    query = _visible(select(ScheduleRule), ScheduleRule.owner_area_id, scope)
    if q:
        query = query.where(ScheduleRule.title_folded.like(like_pattern(q), escape="\\"))
    if approval is not None:
        query = query.where(ScheduleRule.approval == approval)
    if enabled is not None:
        query = query.where(ScheduleRule.enabled.is_(enabled))
    if tier is not None:
        query = query.where(ScheduleRule.tier == tier)
    if programme_id is not None:
        query = query.where(ScheduleRule.programme_id == programme_id)
    if owner_area_id is not None:
        query = query.where(ScheduleRule.owner_area_id == owner_area_id)
    order = (ScheduleRule.priority.desc(), ScheduleRule.order, ScheduleRule.id)
    return paginate(session, query.order_by(*order), limit, offset)


def _programme_for_rule(
    session: Session, programme_id: int, scope: Collection[int] | None
) -> Programme:
    programme = session.get(Programme, programme_id)
    if programme is None or not _in_scope(programme.owner_area_id, scope):
        raise InvalidInput(
            f"unknown programme {programme_id}",
            field="programme_id",
            message_vi=f"Không tìm thấy chương trình {programme_id}",
        )
    return programme


@dataclass(frozen=True, slots=True)
class CheckedRule:
    """A rule body validated against the database (what create/update/preview share)."""

    spec: RuleSpec
    programme: ProgrammeSpec
    recurrence: Recurrence
    targets: TargetRows


def check_rule(
    session: Session,
    *,
    rule_id: int,
    title: str,
    programme_id: int,
    targets: TargetsIn,
    tier: Tier,
    order: int,
    volume: int | None,
    recurrence: Mapping[str, Any],
    shift_tolerance_s: int,
    slot_s: int | None,
    created_at: dt.datetime,
    principal: Principal | None,
    resolver: TargetResolver | None = None,
) -> CheckedRule:
    """Every check of a rule body; raises `InvalidInput` naming the field."""
    if tier not in RULE_TIERS:
        allowed = ", ".join(t.value for t in Tier if t in RULE_TIERS)
        raise InvalidInput(
            f"a schedule rule cannot have the tier {tier.value!r} (one of {allowed}); "
            "live is an operator on the air: send it as a broadcast",
            field="tier",
            message_vi=f"Lịch phát không dùng mức '{tier.label_vi}'; hãy phát trực tiếp "
            "bằng chức năng phát thanh",
        )
    scope = principal.scope if principal is not None else None
    programme = _programme_for_rule(session, programme_id, scope)
    parsed = parse_rule_recurrence(recurrence)
    rows = _target_rows(session, targets)
    ids = _check_targets(resolver or TargetResolver(session), rows, principal=principal)
    spec = RuleSpec(
        id=rule_id,
        title=title,
        programme_id=programme.id,
        station_ids=ids,
        priority=tier.priority,
        order=order,
        created_at=created_at,
        recurrence=parsed,
        shift_tolerance_s=shift_tolerance_s,
        volume=volume,
        slot_s=slot_s,
    )
    programme_spec = programme_specs(session, [programme.id], drafts_ok=True)[programme.id]
    validate_rule(spec, programme_spec)
    return CheckedRule(spec, programme_spec, parsed, rows)


def _set_targets(session: Session, rule: ScheduleRule, rows: TargetRows) -> None:
    """Replace the rule's association rows (the rule must have an id)."""
    for table in (rule_stations, rule_groups, rule_areas):
        session.execute(delete(table).where(table.c.rule_id == rule.id))
    if rows.stations:
        session.execute(
            insert(rule_stations),
            [{"rule_id": rule.id, "station_id": s} for s, _, _ in rows.stations],
        )
    if rows.groups:
        session.execute(
            insert(rule_groups), [{"rule_id": rule.id, "group_id": g} for g, _ in rows.groups]
        )
    if rows.areas:
        session.execute(
            insert(rule_areas), [{"rule_id": rule.id, "area_id": a} for a, _ in rows.areas]
        )
    rule.target_names = {
        "stations": [[s, n] for s, n, _ in rows.stations],
        "groups": [[g, n] for g, n in rows.groups],
        "areas": [[a, n] for a, n in rows.areas],
    }


def create_rule(
    session: Session,
    data: RuleCreate,
    *,
    author: Author,
    principal: Principal | None,
    tz: tzinfo,
    key: str | None = None,
) -> ScheduleRule:
    """Save a new rule as a draft (checked like `check_rule`)."""
    now = utcnow()
    checked = check_rule(
        session,
        rule_id=0,
        title=data.title,
        programme_id=data.programme_id,
        targets=data.targets,
        tier=data.tier,
        order=data.order,
        volume=data.volume,
        recurrence=data.recurrence,
        shift_tolerance_s=data.shift_tolerance_s,
        slot_s=data.slot_s,
        created_at=now,
        principal=principal,
    )
    rule = ScheduleRule(
        key=key,
        title=data.title,
        title_folded=fold(data.title),
        programme_id=data.programme_id,
        tier=data.tier,
        priority=data.tier.priority,
        order=data.order,
        owner_area_id=author.area_id,
        volume=data.volume,
        recurrence=checked.recurrence.model_dump(mode="json"),
        ends_on=ends_on(checked.recurrence, tz),
        shift_tolerance_s=data.shift_tolerance_s,
        slot_s=data.slot_s,
        enabled=data.enabled,
        approval=Approval.DRAFT,
        created_by=author.name,
        created_by_id=author.user_id,
        created_at=now,
    )
    session.add(rule)
    session.flush()
    _set_targets(session, rule, checked.targets)
    session.flush()
    return rule


def _current_targets(session: Session, rule: ScheduleRule) -> TargetsIn:
    current = rule_targets(session, [rule.id])[rule.id]
    return TargetsIn(
        stations=[n for _, n in current.stations],
        groups=[n for _, n in current.groups],
        areas=[n for _, n in current.areas],
    )


def update_rule(
    session: Session,
    rule: ScheduleRule,
    data: RuleUpdate,
    *,
    principal: Principal | None,
    tz: tzinfo,
) -> bool:
    """Apply the changes; return True when an approved rule went back to draft."""
    changes = data.model_dump(exclude_unset=True)
    for required in (
        "title",
        "programme_id",
        "targets",
        "tier",
        "order",
        "recurrence",
        "shift_tolerance_s",
        "enabled",
    ):
        if required in changes and changes[required] is None:
            raise InvalidInput(f"{required} cannot be null", field=required)
    if changes.keys() <= _HARMLESS_RULE_FIELDS:
        # renaming or switching on/off: nothing to re-check, the approval stands
        for name, value in changes.items():
            setattr(rule, name, value)
        rule.title_folded = fold(rule.title)
        rule.updated_at = utcnow()
        session.flush()
        return False
    targets = data.targets if data.targets is not None else _current_targets(session, rule)
    tier = data.tier or rule.tier
    checked = check_rule(
        session,
        rule_id=rule.id,
        title=changes.get("title", rule.title),
        programme_id=changes.get("programme_id", rule.programme_id),
        targets=targets,
        tier=tier,
        order=changes.get("order", rule.order),
        volume=changes.get("volume", rule.volume),
        recurrence=changes.get("recurrence", rule.recurrence),
        shift_tolerance_s=changes.get("shift_tolerance_s", rule.shift_tolerance_s),
        slot_s=changes.get("slot_s", rule.slot_s),
        created_at=rule.created_at,
        principal=principal,
    )
    before = {name: getattr(rule, name) for name in RULE_FIELDS}
    before_targets = rule.target_names
    for name in ("title", "programme_id", "order", "volume", "shift_tolerance_s", "slot_s"):
        if name in changes:
            setattr(rule, name, changes[name])
    if "enabled" in changes:
        rule.enabled = changes["enabled"]
    rule.title_folded = fold(rule.title)
    rule.tier = tier
    rule.priority = tier.priority
    rule.recurrence = checked.recurrence.model_dump(mode="json")
    rule.ends_on = ends_on(checked.recurrence, tz)
    if data.targets is not None:
        _set_targets(session, rule, checked.targets)
    changed = {name for name in RULE_FIELDS if getattr(rule, name) != before[name]}
    if rule.target_names != before_targets:
        changed.add("targets")
    reset = False
    if rule.approval is Approval.APPROVED and changed - _HARMLESS_RULE_FIELDS:
        _to_draft(rule)
        reset = True
    rule.updated_at = utcnow()
    session.flush()
    return reset


def delete_rule(session: Session, rule: ScheduleRule) -> None:
    session.delete(rule)
    session.flush()


def review_rule(
    session: Session,
    rule: ScheduleRule,
    *,
    approver: Author,
    approve: bool,
    note: str | None,
) -> list[int]:
    """Approve or reject a rule; approving also approves the draft text bulletins its
    programme generated.  Returns the ids of the assets approved with it.

    The approver is never the rule's author, nor the author of those bulletins.
    """
    if rule.created_by_id is not None and rule.created_by_id == approver.user_id:
        raise PermissionDeniedError(
            "the author of a schedule rule cannot approve or reject it",
            message_vi="Người tạo không được tự duyệt lịch phát của mình",
        )
    approved_assets: list[int] = []
    if approve:
        targets = _current_targets(session, rule)
        check_rule(
            session,
            rule_id=rule.id,
            title=rule.title,
            programme_id=rule.programme_id,
            targets=targets,
            tier=rule.tier,
            order=rule.order,
            volume=rule.volume,
            recurrence=rule.recurrence,
            shift_tolerance_s=rule.shift_tolerance_s,
            slot_s=rule.slot_s,
            created_at=rule.created_at,
            principal=None,
        )
        text_assets = _assets_by_id(
            session,
            {
                i.asset_id
                for i in rule.programme.items
                if i.kind is ItemKind.TEXT and i.asset_id is not None
            },
        )
        drafts = [
            a
            for a in sorted(text_assets.values(), key=lambda a: a.id)
            if a.approval is Approval.DRAFT and a.source is AssetSource.TTS
        ]
        for asset in drafts:
            if asset.created_by_id is not None and asset.created_by_id == approver.user_id:
                raise PermissionDeniedError(
                    f"you wrote the text bulletin {asset.id} this rule plays; "
                    "another approver must approve it",
                    message_vi="Người soạn bản tin không được tự duyệt bản tin của mình",
                )
        for asset in drafts:
            media.set_approval(
                session,
                asset,
                approver=approver,
                approve=True,
                note=f"Duyệt cùng lịch phát #{rule.id}" + (f": {note}" if note else ""),
            )
            approved_assets.append(asset.id)
    rule.approval = Approval.APPROVED if approve else Approval.REJECTED
    rule.approved_by = approver.name
    rule.approved_by_id = approver.user_id
    rule.approved_at = utcnow()
    rule.approval_note = note
    session.flush()
    return approved_assets


# --- the bridge to the builder ----------------------------------------------------------


def _planned_rules(session: Session) -> list[ScheduleRule]:
    return list(
        session.scalars(
            select(ScheduleRule)
            .where(ScheduleRule.enabled.is_(True), ScheduleRule.approval == Approval.APPROVED)
            .order_by(ScheduleRule.id)
        )
    )


def plan_inputs(
    session: Session, *, resolver: TargetResolver | None = None
) -> tuple[list[RuleSpec], dict[int, ProgrammeSpec]]:
    """Every approved, enabled rule as a `RuleSpec` (targets resolved to enabled station
    ids), and the programmes they play.  A rule whose targets resolve to nothing has an
    empty ``station_ids`` (the builder then plans it nowhere)."""
    rules = _planned_rules(session)
    resolver = resolver or TargetResolver(session)
    ids = [rule.id for rule in rules]
    targets: dict[int, tuple[list[int], list[int], list[int]]] = {rid: ([], [], []) for rid in ids}
    if ids:
        for table, slot, column in (
            (rule_stations, 0, rule_stations.c.station_id),
            (rule_groups, 1, rule_groups.c.group_id),
            (rule_areas, 2, rule_areas.c.area_id),
        ):
            for rid, target in session.execute(
                select(table.c.rule_id, column).where(table.c.rule_id.in_(ids))
            ):
                targets[rid][slot].append(target)
    resolver.load_groups({g for t in targets.values() for g in t[1]})
    specs = [
        RuleSpec(
            id=rule.id,
            title=rule.title,
            programme_id=rule.programme_id,
            station_ids=resolver.resolve(*targets[rule.id]),
            priority=rule.priority,
            order=rule.order,
            created_at=rule.created_at,
            recurrence=stored_recurrence(rule.recurrence),
            shift_tolerance_s=rule.shift_tolerance_s,
            volume=rule.volume,
            slot_s=rule.slot_s,
        )
        for rule in rules
    ]
    return specs, programme_specs(session, {rule.programme_id for rule in rules})


def station_plans(
    session: Session,
    days: Sequence[date],
    tz: tzinfo,
    station_ids: Collection[int] | None = None,
) -> list[DayPlan]:
    """Each station's built day for every local day in ``days`` (see `build_days`).

    ``station_ids`` limits the plans to those stations (each gets an entry, empty when
    nothing targets it).  Deterministic: the same database gives the same plans.
    """
    rules, programmes = plan_inputs(session)
    wanted = None if station_ids is None else sorted(station_ids)
    if wanted is not None:
        chosen = frozenset(wanted)
        rules = [rule for rule in rules if rule.station_ids & chosen]
    return build_days(rules, programmes.values(), list(days), tz, stations=wanted)


def local_today(tz: tzinfo) -> date:
    return utcnow().astimezone(tz).date()


def asset_users(session: Session, asset_id: int) -> list[str]:
    """Who still uses a media asset: rules not yet over whose programme plays it, and
    stream sources using it as their fallback (the media DELETE route answers 409)."""
    yesterday = utcnow().date() - dt.timedelta(days=1)
    rules = session.execute(
        select(ScheduleRule.id, ScheduleRule.title)
        .join(ProgrammeItem, ProgrammeItem.programme_id == ScheduleRule.programme_id)
        .where(
            ProgrammeItem.asset_id == asset_id,
            or_(ScheduleRule.ends_on.is_(None), ScheduleRule.ends_on >= yesterday),
        )
        .distinct()
        .order_by(ScheduleRule.id)
    )
    sources = session.execute(
        select(StreamSource.id, StreamSource.name)
        .where(StreamSource.fallback_asset_id == asset_id)
        .order_by(StreamSource.id)
    )
    return [f"lịch phát '{title}' (#{rid})" for rid, title in rules] + [
        f"nguồn tiếp sóng '{name}' (#{sid})" for sid, name in sources
    ]


# --- conflicts and preview -------------------------------------------------------------


def _group_conflicts(
    conflicts: Iterable[Conflict],
    titles: Mapping[int, str],
    sids: Mapping[int, str],
    *,
    keep: Callable[[int], bool] = lambda _: True,
) -> list[ConflictGroup]:
    grouped: dict[tuple[Any, ...], list[Conflict]] = defaultdict(list)
    for c in conflicts:
        if keep(c.station_id):
            key = (c.occurrence_start, c.rule_id, c.winner_rule_id, c.outcome, c.new_start)
            grouped[key].append(c)
    out: list[ConflictGroup] = []
    for key in sorted(grouped, key=lambda k: (k[0], k[1], k[2], k[3], k[4] or k[0])):
        members = grouped[key]
        first = members[0]
        stations = sorted(sids.get(c.station_id, str(c.station_id)) for c in members)
        out.append(
            ConflictGroup(
                rule_id=first.rule_id,
                rule_title=titles.get(first.rule_id, f"#{first.rule_id}"),
                occurrence_start=first.occurrence_start,
                winner_rule_id=first.winner_rule_id,
                winner_rule_title=titles.get(first.winner_rule_id, f"#{first.winner_rule_id}"),
                winner_occurrence_start=first.winner_occurrence_start,
                outcome=first.outcome,
                new_start=first.new_start,
                reason=first.reason,
                reason_vi=first.reason_vi,
                station_count=len(stations),
                stations=stations,
            )
        )
    return out


def _station_sids(session: Session, ids: Collection[int] | None = None) -> dict[int, str]:
    query = select(Station.id, Station.sid)
    if ids is not None:
        query = query.where(Station.id.in_(list(ids)))
    return _pairs(session, query)


def conflict_report(
    session: Session, day: date, tz: tzinfo, *, principal: Principal
) -> tuple[list[ConflictGroup], list[SkippedRuleRead]]:
    """The day's conflicts on the caller's stations, grouped by occurrence (which rule
    beat which, shifted or dropped, on how many stations), and the rules the builder
    had to leave out (invalid programme, no station left to play on)."""
    resolver = TargetResolver(session)
    rules, programmes = plan_inputs(session, resolver=resolver)
    plan = build_days(rules, programmes.values(), [day], tz)[0]
    scope = principal.scope
    in_scope: Callable[[int], bool] = lambda _: True  # noqa: E731
    if scope is not None:
        mine = set(session.scalars(select(Station.id).where(Station.area_id.in_(list(scope)))))
        in_scope = mine.__contains__
    titles = _pairs(session, select(ScheduleRule.id, ScheduleRule.title))
    owners = _pairs(session, select(ScheduleRule.id, ScheduleRule.owner_area_id))
    involved = {c.station_id for c in plan.conflicts if in_scope(c.station_id)}
    groups = _group_conflicts(
        plan.conflicts, titles, _station_sids(session, involved), keep=in_scope
    )
    skipped = [
        SkippedRuleRead(
            rule_id=s.rule_id,
            rule_title=titles.get(s.rule_id, ""),
            field=s.field,
            reason=s.reason,
            reason_vi=s.reason_vi,
        )
        for s in plan.skipped_rules
        if principal.city_wide or reaches_owner(principal, owners.get(s.rule_id))
    ]
    for rule in rules:
        if not rule.station_ids and (
            principal.city_wide or reaches_owner(principal, owners.get(rule.id))
        ):
            skipped.append(
                SkippedRuleRead(
                    rule_id=rule.id,
                    rule_title=rule.title,
                    field="targets",
                    reason="the targets resolve to no enabled station (deleted or disabled?)",
                    reason_vi="Không còn trạm nào (đang hoạt động) thuộc đối tượng phát",
                )
            )
    skipped.sort(key=lambda s: s.rule_id)
    return groups, skipped


def preview_rule(
    session: Session,
    data: RuleCreate,
    *,
    principal: Principal,
    tz: tzinfo,
    day_from: date,
    day_to: date,
    replaces: ScheduleRule | None = None,
) -> PreviewRead:
    """What saving ``data`` (as a new rule, or as ``replaces``) would do, saving nothing."""
    if day_to < day_from:
        raise InvalidInput(
            f"'to' ({day_to}) is before 'from' ({day_from})",
            field=("query", "to"),
            message_vi="Ngày kết thúc trước ngày bắt đầu",
        )
    if (day_to - day_from).days + 1 > MAX_PREVIEW_DAYS:
        raise InvalidInput(
            f"preview at most {MAX_PREVIEW_DAYS} days at a time",
            field=("query", "to"),
            message_vi=f"Chỉ xem trước tối đa {MAX_PREVIEW_DAYS} ngày",
        )
    resolver = TargetResolver(session)
    checked = check_rule(
        session,
        rule_id=replaces.id if replaces is not None else 0,
        title=data.title,
        programme_id=data.programme_id,
        targets=data.targets,
        tier=data.tier,
        order=data.order,
        volume=data.volume,
        recurrence=data.recurrence,
        shift_tolerance_s=data.shift_tolerance_s,
        slot_s=data.slot_s,
        created_at=replaces.created_at if replaces is not None else utcnow(),
        principal=principal,
        resolver=resolver,
    )
    existing, programmes = plan_inputs(session, resolver=resolver)
    result = preview(
        checked.spec,
        checked.programme,
        existing,
        programmes.values(),
        (day_from, day_to),
        tz,
    )
    placements: dict[tuple[dt.datetime, dt.datetime, dt.datetime, bool], int] = defaultdict(int)
    for items in result.items.values():
        blocks: dict[dt.datetime, list[PlannedItem]] = defaultdict(list)
        for item in items:
            blocks[item.occurrence_start].append(item)
        for occurrence, block in blocks.items():
            key = (occurrence, block[0].start_at, block[-1].end_at, block[0].shifted)
            placements[key] += 1
    titles = _pairs(session, select(ScheduleRule.id, ScheduleRule.title))
    titles[checked.spec.id] = data.title
    stations = {c.station_id for c in (*result.suffered, *result.caused)}
    sids = _station_sids(session, stations)
    return PreviewRead(
        date_from=day_from,
        date_to=day_to,
        duration_ms=checked.programme.duration_ms,
        station_count=len(checked.spec.station_ids),
        occurrences=list(result.occurrences),
        placements=[
            PreviewPlacement(
                occurrence_start=k[0],
                start_at=k[1],
                end_at=k[2],
                shifted=k[3],
                station_count=count,
            )
            for k, count in sorted(placements.items())
        ],
        suffered=_group_conflicts(result.suffered, titles, sids),
        caused=_group_conflicts(result.caused, titles, sids),
    )


# --- signed calendar links -------------------------------------------------------------

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


def calendar_items(
    session: Session, station_ids: Collection[int], first: date, days: int, tz: tzinfo
) -> list[PlannedItem]:
    """Every item of the stations over ``days`` local days from ``first``."""
    wanted = [first + dt.timedelta(days=offset) for offset in range(days)]
    plans = station_plans(session, wanted, tz, station_ids)
    return [item for plan in plans for items in plan.stations.values() for item in items]
