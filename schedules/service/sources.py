"""Stream sources: the live programmes stations relay (VOV, the provincial and city
stations, each ward/commune's own), each with an optional fallback recording."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.orm import Session

from audio_library import service as media
from kernel.db import delete_unless_used, paginate
from kernel.patch import apply_changes, patch_changes
from kernel.text import contains, fold
from schedules.exceptions import StreamSourceInUse, StreamSourceNotFound
from schedules.models import Programme, ProgrammeItem, StreamSource
from schedules.schemas import StreamSourceCreate, StreamSourceUpdate
from schedules.service.scope import visible

SOURCE_FIELDS = ("name", "url", "kind", "fallback_asset_id", "owner_area_id", "enabled")


def get_source(session: Session, source_id: int) -> StreamSource:
    source = session.get(StreamSource, source_id)
    if source is None:
        raise StreamSourceNotFound(source_id)
    return source


def sources_by_id(session: Session, ids: Collection[int]) -> dict[int, StreamSource]:
    if not ids:
        return {}
    query = select(StreamSource).where(StreamSource.id.in_(list(ids)))
    return {source.id: source for source in session.scalars(query)}


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
    query = visible(select(StreamSource), StreamSource.owner_area_id, scope)
    if kind is not None:
        query = query.where(StreamSource.kind == kind)
    if enabled is not None:
        query = query.where(StreamSource.enabled.is_(enabled))
    if q:
        query = query.where(contains(StreamSource.name_folded, q))
    return paginate(session, query.order_by(StreamSource.kind, StreamSource.id), limit, offset)


def create_source(
    session: Session,
    data: StreamSourceCreate,
    *,
    author: media.Author,
    scope: Collection[int] | None,
    key: str | None = None,
) -> StreamSource:
    if data.fallback_asset_id is not None:
        media.require_playable(
            session, data.fallback_asset_id, field=("fallback_asset_id",), scope=scope
        )
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
    changes = patch_changes(data, required=("name", "url", "kind", "enabled"))
    if changes.get("fallback_asset_id") is not None:
        media.require_playable(
            session, changes["fallback_asset_id"], field=("fallback_asset_id",), scope=scope
        )
    apply_changes(session, source, changes)
    return source


def delete_source(session: Session, source: StreamSource) -> None:
    delete_unless_used(
        session,
        source,
        select(Programme.id, Programme.title)
        .join(ProgrammeItem, ProgrammeItem.programme_id == Programme.id)
        .where(ProgrammeItem.source_id == source.id)
        .distinct()
        .order_by(Programme.id),
        lambda names: StreamSourceInUse(
            f"stream source {source.id} is still relayed by programme(s) {names}",
            message_vi=f"Nguồn tiếp sóng {source.id} vẫn được dùng trong chương trình {names}",
        ),
    )
