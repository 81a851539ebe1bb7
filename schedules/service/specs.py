"""The builder's view of programmes: `ProgrammeSpec` from the stored programmes.

Unplayable media (deleted, not ready, not approved) becomes ``media=None``, so the
builder skips the rules playing it and says why; a stream source switched off plays its
fallback (looped) for the relay's slot instead.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from audio_library import service as media
from audio_library.service import MediaAsset
from schedules.models import ItemKind, Programme, ProgrammeItem, StreamSource
from schedules.plans import MediaRef, ProgrammeItemSpec, ProgrammeSpec, StreamRef
from schedules.service.sources import sources_by_id


def media_ref(asset: MediaAsset | None, *, drafts_ok: bool = False) -> MediaRef | None:
    """The asset as stations download it, if it may play (``drafts_ok``: a spoken draft
    bulletin counts, since approving the rule approves it)."""
    if asset is None or not asset.ready:
        return None
    if asset.sha256 is None or not asset.bytes or asset.duration_ms is None:
        return None
    if not asset.playable and not (drafts_ok and asset.spoken_draft):
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
        fallback = media_ref(source.fallback) if source is not None else None
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
    ref = media_ref(asset, drafts_ok=drafts_ok and item.kind is ItemKind.TEXT)
    title = item.title or (asset.title if asset is not None else programme_title)
    # an unknown duration still counts as 1 ms, so the builder reports the missing media
    duration = asset.duration_ms if asset is not None and asset.duration_ms else 1
    return ProgrammeItemSpec(kind="file", title=title, duration_ms=duration, media=ref)


def programme_specs(
    session: Session, programme_ids: Collection[int], *, drafts_ok: bool = False
) -> dict[int, ProgrammeSpec]:
    """The builder's view of programmes (batched: four queries whatever the count).

    With ``drafts_ok`` the draft text bulletins a programme generated count as playable
    (used when a rule is saved or previewed: approving it approves them).
    """
    if not programme_ids:
        return {}
    ids = sorted(set(programme_ids))
    titles = {
        pid: title
        for pid, title in session.execute(
            select(Programme.id, Programme.title).where(Programme.id.in_(ids))
        )
    }
    items = list(
        session.scalars(
            select(ProgrammeItem)
            .where(ProgrammeItem.programme_id.in_(ids))
            .order_by(ProgrammeItem.programme_id, ProgrammeItem.position)
        )
    )
    sources = sources_by_id(session, {i.source_id for i in items if i.source_id is not None})
    asset_ids = {i.asset_id for i in items if i.asset_id is not None}
    asset_ids |= {s.fallback_asset_id for s in sources.values() if s.fallback_asset_id}
    assets = media.assets_by_id(session, asset_ids)
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
