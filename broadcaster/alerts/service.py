"""Alert sources, the CAP ingest rules, approval, airing and export.

Rules (issue 13, item 3):

- an unknown source or a bad token, a document that is not CAP 1.2 (schema), a bad
  area geometry, an expired alert or a duplicate: refused with the reason, recorded,
  nothing airs; so is, from a source configured with a certificate, an alert without a
  valid XML signature made with its key (`broadcaster.alerts.signature`; 403);
- ``status`` Test, Exercise, Draft (and System) and ``msgType`` Ack/Error: accepted and
  recorded, never aired;
- ``msgType`` Cancel stops the running broadcasts of the alerts it references (and
  cancels those still held); Update does the same, then airs like a new alert;
- an area that holds no station: accepted, flagged (`AlertOutcome.NO_STATIONS`) and the
  sender is told in the response;
- otherwise a pre-authorised source's alert airs at once; any other waits for an
  approver (`kernel.approval.Approval.DRAFT`).

Airing goes through `broadcaster.dispatch.broadcasts.create`: the alert's own audio
resource (``derefUri``) through the media library's ingest, or else the headline and
the instruction read by the Vietnamese text-to-speech, become a bulletin (approved by
the source's pre-authorisation or the approver), broadcast to the matched stations at
the mapped tier and repeat.  Services flush; the router commits.  `air` speaks
before touching the database, so call it holding no transaction.

A spoken emergency alert whose stations all take a play before its audio
(``media_follows``, proposal 0005) is not held back by its speech: `air_before_speech`
sends the play at once and `follow_with_speech` sends the audio after it, as the
broadcast API does for an operator's spoken emergency.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import io
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from lxml import etree
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from audio_library import service as media
from audio_library.models import MediaAsset
from broadcaster.alerts import areas as geo
from broadcaster.alerts import cap, signature
from broadcaster.alerts.models import Alert, AlertSource
from broadcaster.alerts.vocabulary import (
    AIRING_STATUSES,
    OUTCOME_LABELS_VI,
    AlertOutcome,
    risk_level,
    tier_and_repeat,
)
from broadcaster.dispatch import broadcasts
from broadcaster.dispatch.models import Broadcast, BroadcastStatus
from broadcaster.dispatch.schemas import BroadcastContent, BroadcastCreate, BroadcastTargets
from kernel.approval import Approval
from kernel.db import utcnow
from kernel.errors import (
    ConflictError,
    DomainError,
    InvalidInput,
    NotFoundError,
    PermissionDeniedError,
    Unauthenticated,
)
from kernel.security import Permission, Principal, Role
from kernel.tiers import Tier
from stations import service as stations
from stations.models import Area, Station

TOKEN_PREFIX = "cap_"  # noqa: S105 - a prefix, not a secret
REFUSED_DOCUMENT_CHARS = 4096
DEFAULT_VALIDITY = dt.timedelta(minutes=30)
MAX_VALIDITY_S = 86_400
VOICE = "south"


# --- sources ---------------------------------------------------------------------------


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_source(
    session: Session,
    *,
    name: str,
    auto_air: bool,
    created_by: str,
    certificate: str | None = None,
) -> tuple[AlertSource, str]:
    """A new source and its token (shown once; only its hash is stored)."""
    if session.scalar(select(AlertSource.id).where(AlertSource.name == name)) is not None:
        raise ConflictError(
            f"alert source {name!r} already exists", message_vi="Nguồn cảnh báo đã tồn tại"
        )
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    source = AlertSource(
        name=name,
        token_hash=_hash(token),
        auto_air=auto_air,
        enabled=True,
        created_by=created_by,
        certificate=certificate,
    )
    session.add(source)
    session.flush()
    return source, token


def list_sources(session: Session) -> list[AlertSource]:
    return list(session.scalars(select(AlertSource).order_by(AlertSource.name)))


def update_source(
    session: Session,
    source_id: int,
    *,
    auto_air: bool | None,
    enabled: bool | None,
    certificate: str | None = None,
) -> AlertSource:
    """Change a source; ``certificate``: "" stops requiring signatures, a PEM requires
    them with that certificate's key, None leaves it as it is."""
    source = session.get(AlertSource, source_id)
    if source is None:
        raise NotFoundError(
            f"alert source {source_id} not found",
            message_vi="Không tìm thấy nguồn cảnh báo",
        )
    if certificate is not None:
        source.certificate = certificate or None
    if auto_air is not None:
        source.auto_air = auto_air
    if enabled is not None:
        source.enabled = enabled
    session.flush()
    return source


def _source(session: Session, token: str | None) -> AlertSource | None:
    if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    source = session.scalar(select(AlertSource).where(AlertSource.token_hash == _hash(token)))
    return source if source is not None and source.enabled else None


def known_token(session: Session, token: str) -> bool:
    """Whether `token` belongs to an enabled source (for the body-size limit)."""
    return _source(session, token) is not None


def source_principal(source: AlertSource) -> Principal:
    """Who a source's broadcasts are sent as: its pre-authorisation (or an approver's
    decision) stands in for an emergency sender."""
    return Principal(
        user_id=None,
        username=f"cap:{source.name}"[:64],
        role=Role.OPERATOR,
        permissions=frozenset({Permission.BROADCAST_SEND, Permission.BROADCAST_EMERGENCY}),
        area_codes=frozenset(),
        scope=None,
    )


# --- ingest ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AirPlan:
    """What `air` needs, read before the ingest commits (so speech holds no transaction)."""

    alert_id: int
    source_id: int
    title: str
    text: str
    sids: list[str]
    tier: Tier
    repeat: int
    expires_in_s: int
    approved_by: str
    audio: bytes | None = None  # the alert's own audio resource (derefUri), if any


@dataclass
class Ingested:
    alert: Alert
    refusal: DomainError | None = None
    plan: AirPlan | None = None
    stopped: list[int] = field(default_factory=list)
    message: str = ""
    message_vi: str = ""


def _refuse(
    session: Session,
    alert: Alert,
    error: DomainError,
    document: str,
) -> Ingested:
    alert.outcome = AlertOutcome.REFUSED
    alert.reason = error.message
    alert.reason_vi = error.message_vi
    alert.document = document[:REFUSED_DOCUMENT_CHARS]
    session.add(alert)
    session.flush()
    return Ingested(alert, refusal=error, message=error.message, message_vi=error.message_vi or "")


def _invalid(exc: cap.CapError) -> InvalidInput:
    return InvalidInput(exc.message, message_vi=exc.message_vi)


def _places(session: Session) -> tuple[list[geo.Place], dict[str, list[str]]]:
    rows = session.execute(
        select(Station.sid, Station.latitude, Station.longitude, Station.area_id).where(
            Station.enabled.is_(True)
        )
    ).all()
    places = [geo.Place(sid, lat, lon) for sid, lat, lon, _ in rows]
    by_area: dict[int, list[str]] = {}
    for sid, _, _, area_id in rows:
        by_area.setdefault(area_id, []).append(sid)
    by_code: dict[str, list[str]] = {}
    for area_id, code in session.execute(select(Area.id, Area.code)).all():
        sids: list[str] = []
        for sub in stations.subtree_ids(session, [area_id]):
            sids.extend(by_area.get(sub, ()))
        if sids:
            by_code[code] = sids
    return places, by_code


def _spoken(info: cap.Info) -> str:
    parts = [info.headline or info.event, info.instruction or info.description or ""]
    return ". ".join(p.strip().rstrip(".") for p in parts if p and p.strip()) + "."


def _audio(info: cap.Info) -> bytes | None:
    """The first audio resource carried in the alert itself (``derefUri``, base64).  A
    resource only named by ``uri`` is not fetched (no network call on ingest): the
    headline and instruction are spoken instead."""
    for resource in info.resources:
        if resource.mime_type.lower().startswith("audio/") and resource.deref_uri:
            try:
                return base64.b64decode(resource.deref_uri, validate=False)
            except (binascii.Error, ValueError) as exc:
                raise cap.CapError(
                    f"the audio resource is not valid base64: {exc}",
                    "Tệp âm thanh kèm cảnh báo không hợp lệ (base64)",
                ) from exc
    return None


def _audio_of(alert: Alert) -> bytes | None:
    if not alert.document:
        return None
    info = cap.read(alert.document.encode()).info()
    return _audio(info) if info is not None else None


def _validity_s(expires: dt.datetime | None, now: dt.datetime) -> int:
    end = expires or now + DEFAULT_VALIDITY
    return max(30, min(MAX_VALIDITY_S, int((end - now).total_seconds())))


def _stop_referenced(
    session: Session, source: AlertSource, parsed: cap.Alert, *, reason: str
) -> list[int]:
    """Stop (or cancel, when held) what the alerts `parsed` references started."""
    stopped: list[int] = []
    principal = source_principal(source)
    for sender, identifier in parsed.references:
        earlier = session.scalars(
            select(Alert).where(
                Alert.sender == sender,
                Alert.identifier == identifier,
                Alert.source_id == source.id,
                Alert.outcome.in_([AlertOutcome.AIRED, AlertOutcome.HELD]),
            )
        ).all()
        for old in earlier:
            if old.broadcast_id is not None:
                broadcast = session.get(Broadcast, old.broadcast_id)
                if broadcast is not None and broadcast.status is BroadcastStatus.ACTIVE:
                    broadcasts.stop(session, broadcast, principal)
                    stopped.append(broadcast.id)
            old.outcome = AlertOutcome.CANCELLED
            old.reason = reason
    session.flush()
    return stopped


def ingest(
    session: Session, token: str | None, data: bytes, *, now: dt.datetime | None = None
) -> Ingested:
    """Apply the rules of the module docstring to one CAP document (flushes only)."""
    now = now or utcnow()
    # kept for the record; NUL cannot be stored in a PostgreSQL text column (a valid CAP
    # document holds none: XML forbids it)
    document = data.decode("utf-8", "replace").replace("\x00", "\ufffd")
    alert = Alert(outcome=AlertOutcome.REFUSED, repeat=1, stations=[], areas=[], no_stations=False)
    source = _source(session, token)
    if source is None:
        return _refuse(
            session,
            alert,
            Unauthenticated(
                "unknown alert source or bad token",
                message_vi="Nguồn cảnh báo không xác định hoặc mã tích hợp không đúng",
            ),
            document,
        )
    alert.source_id = source.id
    try:
        root = cap.parse_document(data)
        if source.certificate:
            root = signature.verified(root, source.certificate)
        parsed = cap.read_root(root)
    except signature.SignatureError as exc:
        denied = PermissionDeniedError(exc.message, message_vi=exc.message_vi)
        return _refuse(session, alert, denied, document)
    except cap.CapError as exc:
        return _refuse(session, alert, _invalid(exc), document)
    alert.identifier = parsed.identifier[:300]
    alert.sender = parsed.sender[:300]
    alert.sent = parsed.sent
    alert.status = parsed.status
    alert.msg_type = parsed.msg_type
    alert.document = document
    duplicate = session.scalar(
        select(Alert.id).where(
            Alert.source_id == source.id,
            Alert.sender == alert.sender,
            Alert.identifier == alert.identifier,
            Alert.outcome != AlertOutcome.REFUSED,
        )
    )
    if duplicate is not None:
        return _refuse(
            session,
            alert,
            ConflictError(
                f"alert {parsed.identifier!r} from {parsed.sender!r} was already received "
                f"(alert {duplicate})",
                message_vi="Bản tin cảnh báo này đã được nhận trước đó",
            ),
            document,
        )
    info = parsed.info()
    if info is not None:
        level = risk_level(info.parameters)
        tier, repeat = tier_and_repeat(
            severity=info.severity, urgency=info.urgency, certainty=info.certainty, level=level
        )
        alert.headline = (info.headline or info.event)[:300]
        alert.text = _spoken(info)
        alert.tier = tier.value
        alert.repeat = repeat
        alert.risk_level = level.level if level else None
    alert.expires = parsed.expires()
    actual = parsed.status in AIRING_STATUSES
    if actual and parsed.msg_type == "Cancel":
        stopped = _stop_referenced(
            session, source, parsed, reason=f"cancelled by {parsed.identifier}"
        )
        return _accepted(
            session,
            alert,
            AlertOutcome.NOT_AIRED,
            f"cancel: {len(stopped)} broadcast(s) stopped",
            f"Đã hủy: dừng {len(stopped)} lượt phát",
            stopped=stopped,
        )
    if alert.expires is not None and alert.expires <= now:
        return _refuse(
            session,
            alert,
            InvalidInput(
                f"the alert expired at {alert.expires.isoformat()}",
                field="body",
                message_vi="Bản tin cảnh báo đã hết hiệu lực",
            ),
            document,
        )
    if info is not None:
        try:
            _audio(info)
            places, by_code = _places(session)
            matches = geo.match(info.areas, places, by_code)
        except cap.CapError as exc:
            return _refuse(session, alert, _invalid(exc), document)
        alert.areas = [{"desc": m.desc, "stations": len(m.sids)} for m in matches]
        alert.stations = sorted({s for m in matches for s in m.sids})
        alert.no_stations = not alert.stations
    if not actual:
        return _accepted(
            session,
            alert,
            AlertOutcome.NOT_AIRED,
            f"status {parsed.status}: recorded, never aired",
            f"Trạng thái {parsed.status}: đã ghi nhận, không phát ra loa",
        )
    if parsed.msg_type not in ("Alert", "Update") or info is None:
        return _accepted(
            session,
            alert,
            AlertOutcome.NOT_AIRED,
            f"msgType {parsed.msg_type}{'' if info else ' without info'}: recorded, not aired",
            "Đã ghi nhận, không có nội dung để phát",
        )
    stopped = []
    if parsed.msg_type == "Update":
        stopped = _stop_referenced(
            session, source, parsed, reason=f"updated by {parsed.identifier}"
        )
    if alert.no_stations:
        return _accepted(
            session,
            alert,
            AlertOutcome.NO_STATIONS,
            "the alert's area holds none of our stations: accepted, nothing airs",
            "Vùng cảnh báo không có trạm nào: đã nhận, không phát",
            stopped=stopped,
        )
    if not source.auto_air:
        alert.approval = Approval.DRAFT
        return _accepted(
            session,
            alert,
            AlertOutcome.HELD,
            f"held for an approver ({len(alert.stations)} station(s))",
            f"Đang chờ duyệt ({len(alert.stations)} trạm)",
            stopped=stopped,
        )
    alert.approval = Approval.APPROVED
    alert.approved_by = f"cap:{source.name}"[:64]
    alert.approved_at = now
    result = _accepted(
        session,
        alert,
        AlertOutcome.HELD,
        f"airing to {len(alert.stations)} station(s)",
        f"Đang phát tới {len(alert.stations)} trạm",
        stopped=stopped,
    )
    result.plan = _plan(alert, source, now)
    return result


def _accepted(
    session: Session,
    alert: Alert,
    outcome: AlertOutcome,
    message: str,
    message_vi: str,
    *,
    stopped: list[int] | None = None,
) -> Ingested:
    alert.outcome = outcome
    alert.reason = message
    alert.reason_vi = message_vi
    session.add(alert)
    session.flush()
    return Ingested(alert, stopped=stopped or [], message=message, message_vi=message_vi)


def _plan(alert: Alert, source: AlertSource, now: dt.datetime) -> AirPlan:
    return AirPlan(
        alert_id=alert.id,
        source_id=source.id,
        title=alert.headline or "Cảnh báo",
        text=alert.text or alert.headline or "Cảnh báo",
        sids=list(alert.stations),
        tier=Tier(alert.tier or Tier.EMERGENCY.value),
        repeat=alert.repeat,
        expires_in_s=_validity_s(alert.expires, now),
        approved_by=alert.approved_by or "",
        audio=_audio_of(alert),
    )


# --- approval and airing ---------------------------------------------------------------


def get_alert(session: Session, alert_id: int) -> Alert:
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise NotFoundError(f"alert {alert_id} not found", message_vi="Không tìm thấy cảnh báo")
    return alert


def list_alerts(session: Session, *, limit: int, offset: int) -> tuple[list[Alert], int]:
    total = session.scalar(select(func.count(Alert.id))) or 0
    rows = session.scalars(select(Alert).order_by(Alert.id.desc()).limit(limit).offset(offset))
    return list(rows), total


def _require_approver(principal: Principal) -> None:
    if not (
        principal.has(Permission.CONTENT_APPROVE) or principal.has(Permission.BROADCAST_EMERGENCY)
    ):
        raise PermissionDeniedError(
            "approving an alert needs the approve or the emergency permission",
            message_vi="Tài khoản không có quyền duyệt cảnh báo",
        )


def _held(session: Session, alert_id: int) -> Alert:
    alert = get_alert(session, alert_id)
    # HELD and approved: its airing failed (speech, audio); approving again retries it
    if alert.outcome is not AlertOutcome.HELD or alert.approval is Approval.REJECTED:
        raise ConflictError(
            f"alert {alert_id} is {alert.outcome.value}, not waiting for approval",
            message_vi=f"Cảnh báo đang ở trạng thái: {OUTCOME_LABELS_VI[alert.outcome]}",
        )
    return alert


def approve(
    session: Session, alert_id: int, principal: Principal, *, now: dt.datetime | None = None
) -> AirPlan:
    """Approve a held alert; the caller commits, then `air`s the plan."""
    _require_approver(principal)
    now = now or utcnow()
    alert = _held(session, alert_id)
    if alert.expires is not None and alert.expires <= now:
        raise InvalidInput(
            f"alert {alert_id} expired at {alert.expires.isoformat()}",
            message_vi="Cảnh báo đã hết hiệu lực",
        )
    source = session.get(AlertSource, alert.source_id) if alert.source_id else None
    if source is None:
        raise ConflictError(
            f"the source of alert {alert_id} is gone",
            message_vi="Nguồn của bản tin cảnh báo này không còn",
        )
    alert.approval = Approval.APPROVED
    alert.approved_by = principal.username
    alert.approved_at = now
    session.flush()
    return _plan(alert, source, now)


def reject(session: Session, alert_id: int, principal: Principal) -> Alert:
    _require_approver(principal)
    alert = _held(session, alert_id)
    alert.approval = Approval.REJECTED
    alert.approved_by = principal.username
    alert.approved_at = utcnow()
    alert.outcome = AlertOutcome.REJECTED
    session.flush()
    return alert


#: the tags of an alert's audio in the media library
_TAGS = ("cap", "canh-bao")


def _author(plan: AirPlan) -> media.Author:
    return media.Author(name=f"cap:{plan.source_id}")


def air(
    session: Session,
    factory: sessionmaker[Session],
    library: media.MediaLibrary,
    plan: AirPlan,
    *,
    emergency_volume: int = broadcasts.EMERGENCY_VOLUME,
    attention: bool = False,
) -> Broadcast:
    """Broadcast the alert's audio resource, or speak it first (flushes; call it holding
    no transaction: the audio is processed or spoken before any query).  The per-station
    rows are staged: the caller commits, wakes the publisher, then writes them
    (`broadcaster.dispatch.wake.write_staged`; the publisher would otherwise)."""
    author = _author(plan)
    if plan.audio is not None:
        upload = library.store.receive_upload(
            io.BytesIO(plan.audio), max_bytes=library.settings.max_upload_bytes
        )
        asset_id, _ = media.ingest_upload(
            factory,
            library,
            upload=upload,
            filename=f"cap-{plan.alert_id}",
            title=plan.title[:200],
            category="canh-bao",
            tags=list(_TAGS),
            author=author,
        )
        return _broadcast(
            session,
            library,
            plan,
            media.get_asset(session, asset_id),
            emergency_volume,
            attention,
        )
    speech = media.speak(library, text=plan.text, voice=VOICE, rate=0)
    with media.saving_speech(session, library, [speech]):
        asset = media.add_speech(
            session,
            library,
            speech,
            text=plan.text,
            voice=VOICE,
            rate=0,
            title=plan.title[:200],
            category="canh-bao",
            tags=list(_TAGS),
            author=author,
        )
        return _broadcast(session, library, plan, asset, emergency_volume, attention)


def _airable(session: Session, plan: AirPlan) -> tuple[AlertSource, Alert]:
    """The alert's source and the alert, if it may still air (held, its source kept)."""
    source = session.get(AlertSource, plan.source_id)
    alert = get_alert(session, plan.alert_id)
    if source is None or alert.outcome is not AlertOutcome.HELD:
        raise ConflictError(
            f"alert {plan.alert_id} can no longer air",
            message_vi="Bản tin cảnh báo này không còn phát được",
        )
    return source, alert


def _sender_of(plan: AirPlan, source: AlertSource) -> str:
    """Who stands in for the approval of the alert's audio."""
    return plan.approved_by[:64] or source_principal(source).username


def _approval_reason(alert: Alert, source: AlertSource) -> str:
    return f"CAP: cảnh báo {alert.identifier} từ nguồn {source.name}"


def _request(plan: AirPlan, content: BroadcastContent) -> BroadcastCreate:
    return BroadcastCreate(
        targets=BroadcastTargets(stations=plan.sids),
        content=content,
        tier=plan.tier,
        title=plan.title[:300],
        repeat=plan.repeat,
        expires_in_s=plan.expires_in_s,
    )


def _aired(session: Session, alert: Alert, broadcast: Broadcast) -> None:
    alert.outcome = AlertOutcome.AIRED
    alert.broadcast_id = broadcast.id
    session.flush()


def _broadcast(
    session: Session,
    library: media.MediaLibrary,
    plan: AirPlan,
    asset: MediaAsset,
    emergency_volume: int,
    attention: bool,
) -> Broadcast:
    source, alert = _airable(session, plan)
    media.approve_for_broadcast(
        session,
        asset,
        sender=_sender_of(plan, source),
        reason=_approval_reason(alert, source),
    )
    broadcast, _command = broadcasts.create(
        session,
        library,
        _request(plan, BroadcastContent(asset_id=asset.id)),
        source_principal(source),
        emergency_volume=emergency_volume,
        attention=attention,
        rows_after_publish=True,  # the router writes them once the play is out
    )
    _aired(session, alert, broadcast)
    return broadcast


def air_before_speech(
    session: Session,
    library: media.MediaLibrary,
    plan: AirPlan,
    *,
    emergency_volume: int = broadcasts.EMERGENCY_VOLUME,
    attention: bool = False,
) -> tuple[Broadcast, broadcasts.SpeechToFollow] | None:
    """Air a spoken emergency alert before its text is spoken, when every matched
    station takes a play before its audio (``media_follows``, proposal 0005), as the
    broadcast API does (`broadcasts.create_before_speech`); else None: `air` it.
    Flushes; the caller commits and publishes the play, then calls `follow_with_speech`
    (the speech is filed as the source's, like `air`'s)."""
    if plan.audio is not None or plan.tier is not Tier.EMERGENCY:
        return None
    source, alert = _airable(session, plan)
    principal = source_principal(source)
    try:
        data = _request(plan, BroadcastContent(text=plan.text, voice=VOICE, rate=0))
    except ValidationError:
        return None  # longer than a broadcast's text may be: `air` speaks it whole
    targets = broadcasts.targets_if_speech_can_follow(session, data, principal)
    if targets is None:
        return None
    broadcast, _command, following = broadcasts.create_before_speech(
        session,
        library,
        data,
        principal,
        targets,
        emergency_volume=emergency_volume,
        attention=attention,
        filing=broadcasts.SpeechFiling(
            title=plan.title[:200],
            tags=_TAGS,
            author=_author(plan),
            approved_by=_sender_of(plan, source),
            approval_reason=_approval_reason(alert, source),
        ),
    )
    _aired(session, alert, broadcast)
    return broadcast, following


def follow_with_speech(
    session: Session,
    library: media.MediaLibrary,
    plan: AirPlan,
    following: broadcasts.SpeechToFollow,
) -> Broadcast:
    """Speak the alert `air_before_speech` aired and send its audio (flushes; call it
    holding no transaction; the caller commits and publishes).  If the text cannot be
    spoken, its broadcast is stopped and the alert waits again, with the reason, for an
    approver to retry (as when `air` fails); the error goes on, for the caller to commit
    that and answer it."""
    try:
        return broadcasts.follow_with_speech(session, library, following)
    except InvalidInput as exc:
        alert = get_alert(session, plan.alert_id)
        alert.outcome = AlertOutcome.HELD
        alert.broadcast_id = None
        air_failed(session, plan.alert_id, exc)
        raise


def air_failed(session: Session, alert_id: int, error: DomainError) -> None:
    alert = get_alert(session, alert_id)
    alert.reason = f"airing failed: {error.message}"
    alert.reason_vi = error.message_vi or "Không phát được cảnh báo"
    session.flush()


# --- export ----------------------------------------------------------------------------


ATOM_NS = "http://www.w3.org/2005/Atom"


def _sender(public_base_url: str) -> str:
    host = urlsplit(public_base_url).hostname or "localhost"
    return f"broadcaster@{host}"


def _areas_of(broadcast: Broadcast) -> list[cap.OutArea]:
    targets = broadcast.targets or {}
    geocodes = [("broadcaster:area", c) for c in targets.get("areas", [])]
    geocodes += [("broadcaster:group", g) for g in targets.get("groups", [])]
    geocodes += [("broadcaster:station", s) for s in targets.get("stations", [])]
    desc = f"{broadcast.station_count} trạm truyền thanh"
    return [cap.OutArea(desc=desc, geocodes=geocodes)]


def own_emergencies(session: Session, *, limit: int) -> list[Broadcast]:
    """Our emergencies, newest first, except those that aired a CAP alert we received."""
    relayed = select(Alert.broadcast_id).where(Alert.broadcast_id.is_not(None))
    return list(
        session.scalars(
            select(Broadcast)
            .where(Broadcast.tier == Tier.EMERGENCY.value, Broadcast.id.not_in(relayed))
            .order_by(Broadcast.id.desc())
            .limit(limit)
        )
    )


def export_alert(broadcast: Broadcast, public_base_url: str) -> etree._Element:
    """One of our emergencies as a CAP 1.2 alert (a Cancel once it was stopped)."""
    sender = _sender(public_base_url)
    identifier = f"broadcaster-{broadcast.id}"
    stopped = broadcast.status is BroadcastStatus.STOPPED and broadcast.stopped_at is not None
    text = (broadcast.content or {}).get("text")
    return cap.build(
        cap.OutAlert(
            identifier=f"{identifier}-cancel" if stopped else identifier,
            sender=sender,
            sent=broadcast.stopped_at if stopped and broadcast.stopped_at else broadcast.created_at,
            msg_type="Cancel" if stopped else "Alert",
            references=f"{sender},{identifier},{cap.cap_time(broadcast.created_at)}"
            if stopped
            else None,
            event=broadcast.title,
            headline=broadcast.title,
            sender_name="Hệ thống truyền thanh cơ sở",
            expires=broadcast.not_after,
            description=text if isinstance(text, str) else None,
            areas=_areas_of(broadcast),
        )
    )


def feed(session: Session, public_base_url: str, *, limit: int = 50) -> bytes:
    """An Atom feed whose entries each carry one CAP 1.2 alert."""
    items = own_emergencies(session, limit=limit)
    root = etree.Element(f"{{{ATOM_NS}}}feed", nsmap={None: ATOM_NS})
    etree.SubElement(root, f"{{{ATOM_NS}}}id").text = f"{public_base_url}/api/v1/alerts/feed"
    etree.SubElement(root, f"{{{ATOM_NS}}}title").text = "Cảnh báo khẩn cấp (CAP 1.2)"
    updated = max((b.stopped_at or b.created_at for b in items), default=utcnow())
    etree.SubElement(root, f"{{{ATOM_NS}}}updated").text = cap.cap_time(updated)
    for broadcast in items:
        entry = etree.SubElement(root, f"{{{ATOM_NS}}}entry")
        etree.SubElement(entry, f"{{{ATOM_NS}}}id").text = f"broadcaster-{broadcast.id}"
        etree.SubElement(entry, f"{{{ATOM_NS}}}title").text = broadcast.title
        etree.SubElement(entry, f"{{{ATOM_NS}}}updated").text = cap.cap_time(
            broadcast.stopped_at or broadcast.created_at
        )
        etree.SubElement(
            entry,
            f"{{{ATOM_NS}}}link",
            href=f"{public_base_url}/api/v1/alerts/export/{broadcast.id}",
            type="application/cap+xml",
        )
        content = etree.SubElement(entry, f"{{{ATOM_NS}}}content", type="application/cap+xml")
        content.append(export_alert(broadcast, public_base_url))
    return cap.to_bytes(root)


def export_one(session: Session, broadcast_id: int, public_base_url: str) -> bytes:
    broadcast = session.get(Broadcast, broadcast_id)
    if broadcast is None or broadcast.tier != Tier.EMERGENCY.value:
        raise NotFoundError(
            f"emergency broadcast {broadcast_id} not found",
            message_vi="Không tìm thấy lượt phát khẩn cấp",
        )
    return cap.to_bytes(export_alert(broadcast, public_base_url))
