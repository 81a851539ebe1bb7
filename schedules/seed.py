"""Seed: the Tân An relay chain every station carries (``broadcaster seed tan-an``).

Runs after the registry seed (`stations.tan_an`).  Adds, as ordinary objects an
operator can edit:

- stream sources: the national VOV1 news, Long An provincial radio, the Tân An city
  bulletin, and one stream per ward/commune (owned by it).  The URLs are placeholders
  on ``stream.tanan.example`` for the operator to replace with the real encoders;
- one fallback asset for all of them, spoken by the local text-to-speech engine
  (espeak-ng, southern voice): "Chương trình tiếp sóng tạm thời gián đoạn, xin quý vị
  thông cảm." (no network needed);
- programmes: the national news relay (VOV1, 15 min), the provincial relay (30 min),
  the city bulletin (15 min), and each ward/commune's own programme (its stream, 15 min);
- rules, tier ``priority``, daily, in the order the regulations describe (national
  first, then province, city, commune): the morning chain at 05:00 (national
  05:00–05:15, provincial 05:15–05:45, city 05:45–06:00, commune 06:00–06:15) and the
  evening chain at 17:00 (17:00–17:15, 17:15–17:45, 17:45–18:00, 18:00–18:15).  The
  national, provincial and city rules are city-wide and target the built-in group
  ``all`` (so a new station joins at once); each commune rule is owned by its
  ward/commune and targets its automatic group.  Explicit orders (5, 10, 20, 30) keep
  the chain's own pieces in sequence should they ever clash.

Everything is approved by the ``system`` approver, with a note saying so (rules and the
fallback asset alike), and the seed is recorded in the audit log with the plan signal
(`kernel.changes`).  Idempotent: objects are found again by their ``key``
(``tan-an:...``) and left as they are.

A seed is a job: it opens its own sessions and commits each step, and the fallback is
spoken with no transaction open.  `load_tan_an` runs the registry seed and this one,
for ``broadcaster seed tan-an`` and the demo.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time, tzinfo

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from audio_library import service as media
from kernel.changes import Actor, commit_change
from kernel.local_time import SITE_ZONE
from kernel.tiers import Tier
from schedules.models import Programme, ScheduleRule, StreamKind, StreamSource
from schedules.schemas import (
    ProgrammeCreate,
    RelayItemIn,
    RuleCreate,
    StreamSourceCreate,
    TargetsIn,
)
from schedules.service import programmes, rules, sources
from stations import service as stations
from stations import tan_an

SYSTEM = media.Author(name="system")
SEED = Actor.system(SYSTEM.name)
APPROVAL_NOTE = "Chuỗi tiếp sóng mặc định, nạp bởi lệnh broadcaster seed tan-an"
FALLBACK_TEXT = "Chương trình tiếp sóng tạm thời gián đoạn, xin quý vị thông cảm."
FALLBACK_TITLE = "Thông báo tạm gián đoạn tiếp sóng"
STREAM_BASE = "http://stream.tanan.example"
MINUTE_MS = 60_000
#: each ward/commune's own programme in a chain, the chain's last piece
COMMUNE_MINUTES = 15


@dataclass(frozen=True)
class Chain:
    """One daily chain: when each of its three pieces starts."""

    name: str
    label: str
    national: str
    provincial: str
    city: str
    commune: str

    def on_air(self, at: time) -> bool:
        """Whether the chain plays at ``at`` (the city's time of day): from its national
        piece to the end of the communes' own programmes."""
        hours, minutes = map(int, self.commune.split(":"))
        end = divmod(hours * 60 + minutes + COMMUNE_MINUTES, 60)  # the same day: 06:15, 18:15
        return time.fromisoformat(self.national) <= at < time(*end)


CHAINS = (
    Chain("morning", "sáng", "05:00", "05:15", "05:45", "06:00"),
    Chain("evening", "chiều", "17:00", "17:15", "17:45", "18:00"),
)


def _fallback_asset(factory: sessionmaker[Session], library: media.MediaLibrary) -> int:
    """The approved fallback bulletin, spoken (with no transaction open) if missing."""
    with factory() as session:
        found = media.spoken_asset(session, title=FALLBACK_TITLE, created_by=SYSTEM.name)
        if found is not None:
            if not found.playable:
                media.set_approval(
                    session, found, approver=SYSTEM, approve=True, note=APPROVAL_NOTE
                )
                commit_change(session, SEED, "media.approve", "media", [str(found.id)])
            return found.id
    speech = media.speak(library, text=FALLBACK_TEXT, voice="south", rate=0)
    with factory() as session:
        with media.saving_speech(session, library, [speech]):
            asset = media.add_speech(
                session,
                library,
                speech,
                text=FALLBACK_TEXT,
                voice="south",
                rate=0,
                title=FALLBACK_TITLE,
                category="khac",
                tags=["tiep-song"],
                author=SYSTEM,
            )
            media.set_approval(session, asset, approver=SYSTEM, approve=True, note=APPROVAL_NOTE)
        commit_change(
            session, SEED, "media.tts", "media", [str(asset.id)], after={"title": asset.title}
        )
        return asset.id


def load(
    factory: sessionmaker[Session],
    library: media.MediaLibrary,
    *,
    tz: tzinfo | None = None,
) -> dict[str, int]:
    """Create what is missing of the relay chain; return how many of each were added.

    Needs the registry seed first (the city, its wards/communes and their groups).
    """
    tz = tz or SITE_ZONE
    fallback = _fallback_asset(factory, library)
    with factory() as session:
        added = _load_chain(session, library, tz=tz, fallback=fallback)
        if any(added.values()):
            commit_change(session, SEED, "schedule.seed", "schedule_rule", after=dict(added))
    return added


def load_tan_an(
    factory: sessionmaker[Session], library: media.MediaLibrary, *, tz: tzinfo
) -> tuple[dict[str, int], dict[str, int]]:
    """The registry seed (`stations.tan_an`), then the relay chain: what each added."""
    with factory() as session:
        registry = tan_an.load(session)
        if any(registry.values()):
            commit_change(session, SEED, "station.seed", "station", after=dict(registry))
        else:
            session.commit()  # the built-in group, if it was missing
    return registry, load(factory, library, tz=tz)


def _load_chain(
    session: Session, library: media.MediaLibrary, *, tz: tzinfo, fallback: int
) -> dict[str, int]:
    added = {"stream_sources": 0, "programmes": 0, "rules": 0}
    areas = {unit.code: stations.area_id(session, unit.code) for unit in tan_an.UNITS}
    units = [unit for unit in tan_an.UNITS if areas[unit.code] is not None]

    def source(key: str, name: str, url: str, kind: StreamKind, owner: int | None) -> int:
        found = session.scalar(select(StreamSource.id).where(StreamSource.key == key))
        if found is not None:
            return found
        data = StreamSourceCreate(name=name, url=url, kind=kind, fallback_asset_id=fallback)
        author = media.Author(name=SYSTEM.name, area_id=owner)
        created = sources.create_source(session, data, author=author, scope=None, key=key)
        added["stream_sources"] += 1
        return created.id

    def programme(key: str, title: str, source_id: int, minutes: int, owner: int | None) -> int:
        found = session.scalar(select(Programme.id).where(Programme.key == key))
        if found is not None:
            return found
        item = RelayItemIn(
            kind="relay", source_id=source_id, duration_ms=minutes * MINUTE_MS, title=title
        )
        data = ProgrammeCreate(title=title, items=[item])
        author = media.Author(name=SYSTEM.name, area_id=owner)
        drafts = programmes.check_items(session, data.items, scope=None)  # relays: no speech
        created = programmes.create_programme(
            session, library, data, drafts, author=author, key=key
        )
        added["programmes"] += 1
        return created.id

    def rule(
        key: str,
        title: str,
        programme_id: int,
        at: str,
        group: str,
        order: int,
        owner: int | None,
    ) -> None:
        if session.scalar(select(ScheduleRule.id).where(ScheduleRule.key == key)) is not None:
            return
        data = RuleCreate(
            title=title,
            programme_id=programme_id,
            targets=TargetsIn(groups=[group]),
            tier=Tier.PRIORITY,
            order=order,
            recurrence={"when": {"kind": "daily", "times": [at]}},
        )
        author = media.Author(name=SYSTEM.name, area_id=owner)
        created = rules.create_rule(session, data, author=author, principal=None, tz=tz, key=key)
        rules.review_rule(session, created, approver=SYSTEM, approve=True, note=APPROVAL_NOTE)
        added["rules"] += 1

    national = source(
        "tan-an:stream:vov1",
        "VOV1 – Thời sự (Đài Tiếng nói Việt Nam)",
        f"{STREAM_BASE}/vov1.mp3",
        StreamKind.NATIONAL,
        None,
    )
    provincial = source(
        "tan-an:stream:long-an",
        "Đài Phát thanh và Truyền hình Long An",
        f"{STREAM_BASE}/long-an.mp3",
        StreamKind.PROVINCIAL,
        None,
    )
    city = source(
        "tan-an:stream:tan-an",
        "Đài Truyền thanh thành phố Tân An",
        f"{STREAM_BASE}/tan-an.mp3",
        StreamKind.CITY,
        None,
    )
    national_programme = programme(
        "tan-an:programme:vov1", "Tiếp sóng thời sự VOV1", national, 15, None
    )
    provincial_programme = programme(
        "tan-an:programme:long-an",
        "Tiếp sóng thời sự Đài PT-TH Long An",
        provincial,
        30,
        None,
    )
    city_programme = programme(
        "tan-an:programme:tan-an", "Bản tin thành phố Tân An", city, 15, None
    )
    commune_programmes: dict[str, int] = {}
    for unit in units:
        stream = source(
            f"tan-an:stream:{unit.code}",
            f"Đài truyền thanh {unit.name}",
            f"{STREAM_BASE}/{unit.code}.mp3",
            StreamKind.COMMUNE,
            areas[unit.code],
        )
        commune_programmes[unit.code] = programme(
            f"tan-an:programme:{unit.code}",
            f"Chương trình của {unit.name}",
            stream,
            COMMUNE_MINUTES,
            areas[unit.code],
        )
    for chain in CHAINS:
        rule(
            f"tan-an:chain:{chain.name}:vov1",
            f"Tiếp sóng thời sự VOV1 ({chain.label})",
            national_programme,
            chain.national,
            "all",
            5,
            None,
        )
        rule(
            f"tan-an:chain:{chain.name}:long-an",
            f"Tiếp sóng Đài PT-TH Long An ({chain.label})",
            provincial_programme,
            chain.provincial,
            "all",
            10,
            None,
        )
        rule(
            f"tan-an:chain:{chain.name}:tan-an",
            f"Bản tin thành phố Tân An ({chain.label})",
            city_programme,
            chain.city,
            "all",
            20,
            None,
        )
        for unit in units:
            rule(
                f"tan-an:chain:{chain.name}:{unit.code}",
                f"Chương trình {unit.name} ({chain.label})",
                commune_programmes[unit.code],
                chain.commune,
                unit.code,
                30,
                areas[unit.code],
            )
    session.flush()
    return added
