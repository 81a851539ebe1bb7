"""The report of one broadcast (issue 13, item 7; made for emergencies): who sent it,
who approved it (the sender's emergency permission standing in, or the approver of the
CAP alert it aired), when, its targets, and per station whether and when it was
reached and played, or why it was missed.

Each station is reported by its latest copy of the broadcast: the original play
command, or a "send again" copy for a station that missed the original (`attempts`
counts them).  Read only; the boundary owns the transaction.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from broadcaster.alerts.models import Alert
from broadcaster.dispatch import broadcasts, reports
from broadcaster.dispatch.models import (
    Broadcast,
    BroadcastStatus,
    Command,
    CommandTarget,
    Play,
    PlayStatus,
    TargetStatus,
)
from broadcaster.web.pages.labels import (
    BROADCAST_LABELS,
    PLAY_LABELS,
    TARGET_LABELS,
    TIER_LABELS,
    reason_label,
)
from kernel import spreadsheets
from kernel.db import among
from stations.models import Area, Station, StationState

__all__ = [
    "EmergencyReport",
    "StationOutcome",
    "emergency_report",
    "report_csv",
    "report_json",
    "report_table",
    "report_xlsx",
]

#: a station heard the broadcast: its play ended one of these ways
HEARD = (PlayStatus.PLAYED, PlayStatus.PARTIAL, PlayStatus.PREEMPTED)
#: ... and did not hear it
UNHEARD = (PlayStatus.MISSED, PlayStatus.FAILED, PlayStatus.SKIPPED, PlayStatus.NOT_HEARD)


@dataclass(frozen=True)
class StationOutcome:
    sid: str
    name: str
    area: str
    status: TargetStatus  # the latest copy's progress at the station
    play_status: PlayStatus | None
    attempts: int  # copies sent to it: 1, or more after "send again"
    received_at: dt.datetime | None
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    played_ms: int | None
    reason: str | None  # why it was missed (the command's or the play log's reason)
    offline_since: dt.datetime | None  # not reached and offline: since when

    @property
    def played(self) -> bool:
        return self.play_status in HEARD

    @property
    def missed(self) -> bool:
        """It did not hear it: its copy ended expired, failed or rejected, or the play
        log says missed, failed, skipped or not heard (a stopped broadcast is no miss)."""
        return self.status in broadcasts.MISSED or self.play_status in UNHEARD


@dataclass(frozen=True)
class EmergencyReport:
    id: int
    title: str
    tier: str
    status: str
    sent_by: str
    approved_by: str | None
    approval_note: str | None
    cap_identifier: str | None
    created_at: dt.datetime
    start_at: dt.datetime
    not_after: dt.datetime
    stopped_at: dt.datetime | None
    stopped_by: str | None
    targets: dict[str, list[str]]
    resends: int
    stations: list[StationOutcome] = field(default_factory=list)

    @property
    def reached(self) -> int:
        return sum(s.received_at is not None for s in self.stations)

    @property
    def played(self) -> int:
        return sum(s.played for s in self.stations)

    @property
    def missed(self) -> list[StationOutcome]:
        return [s for s in self.stations if s.missed]


def emergency_report(session: Session, broadcast: Broadcast) -> EmergencyReport:
    """The report of `broadcast` (see the module docstring)."""
    plays = session.scalar(
        select(func.count(Command.id)).where(
            Command.broadcast_id == broadcast.id, Command.type == "play"
        )
    )
    alert = session.scalar(
        select(Alert).where(Alert.broadcast_id == broadcast.id).order_by(Alert.id).limit(1)
    )
    approved_by = alert.approved_by if alert is not None else None
    if approved_by is None and broadcast.approval_note:
        approved_by = broadcast.created_by  # the sender's emergency permission stood in
    return EmergencyReport(
        id=broadcast.id,
        title=broadcast.title,
        tier=broadcast.tier,
        status=broadcast.status.value,
        sent_by=broadcast.created_by,
        approved_by=approved_by,
        approval_note=broadcast.approval_note,
        cap_identifier=alert.identifier if alert is not None else None,
        created_at=broadcast.created_at,
        start_at=broadcast.start_at,
        not_after=broadcast.not_after,
        stopped_at=broadcast.stopped_at,
        stopped_by=broadcast.stopped_by,
        targets={k: list(v) for k, v in (broadcast.targets or {}).items() if v},
        resends=max(int(plays or 0) - 1, 0),
        stations=_outcomes(session, broadcast),
    )


def _outcomes(session: Session, broadcast: Broadcast) -> list[StationOutcome]:
    attempts = dict(
        session.execute(
            select(CommandTarget.station_id, func.count(CommandTarget.id))
            .join(Command, Command.id == CommandTarget.command_id)
            .where(Command.broadcast_id == broadcast.id, Command.type == "play")
            .group_by(CommandTarget.station_id)
        ).all()
    )
    rows = session.execute(
        select(Station.id, Station.sid, Station.name, Area.name, CommandTarget, Play)
        .join(CommandTarget, CommandTarget.station_id == Station.id)
        .join(Command, Command.id == CommandTarget.command_id)
        .join(Area, Area.id == Station.area_id)
        .outerjoin(Play, (Play.station_id == Station.id) & (Play.cmd_id == Command.cmd_id))
        .where(CommandTarget.id.in_(reports.latest_targets(broadcast.id)))
        .order_by(Station.sid)
    ).all()
    offline = dict(
        session.execute(
            select(StationState.station_id, StationState.offline_since).where(
                among(session, StationState.station_id, [r[0] for r in rows]),
                StationState.online.is_(False),
            )
        ).all()
    )
    out = []
    for station_id, sid, name, area, target, play in rows:
        status = TargetStatus(target.status)
        play_status = PlayStatus(play.status) if play is not None else None
        reason = target.reason
        if play is not None and play.reason and play_status not in HEARD:
            reason = play.reason if reason is None else reason
        out.append(
            StationOutcome(
                sid=sid,
                name=name,
                area=area,
                status=status,
                play_status=play_status,
                attempts=int(attempts.get(station_id, 1)),
                received_at=target.received_at,
                started_at=play.started_at if play is not None else None,
                ended_at=play.ended_at if play is not None else None,
                played_ms=play.played_ms if play is not None else None,
                reason=None if play_status in HEARD else reason,
                offline_since=offline.get(station_id) if status in reports.UNREACHED else None,
            )
        )
    staged = reports.staged_targets(session, broadcast.id, {r[0] for r in rows})
    if not staged:
        return out
    out.extend(
        StationOutcome(
            sid=pending.sid,
            name=pending.name,
            area=pending.area,
            status=TargetStatus.PENDING,
            play_status=None,
            attempts=1,
            received_at=None,
            started_at=None,
            ended_at=None,
            played_ms=None,
            reason=None,
            offline_since=pending.offline_since,
        )
        for pending in staged
    )
    return sorted(out, key=lambda outcome: outcome.sid)


# --- export (CSV, XLSX): Vietnamese headers and words -------------------------------------

HEADERS = (
    "Mã trạm",
    "Tên trạm",
    "Ấp/khu phố",
    "Trạng thái lệnh",
    "Kết quả phát",
    "Số lần gửi",
    "Nhận lệnh lúc",
    "Bắt đầu phát lúc",
    "Phát xong lúc",
    "Số giây đã phát",
    "Lỡ phát",
    "Lý do",
    "Mất kết nối từ",
)


TARGET_KINDS = {"stations": "trạm", "groups": "nhóm", "areas": "địa bàn"}


def _when(value: dt.datetime | None, tz: ZoneInfo) -> str:
    return value.astimezone(tz).strftime("%d/%m/%Y %H:%M:%S") if value is not None else ""


def report_table(report: EmergencyReport, tz: ZoneInfo) -> list[list[spreadsheets.Cell]]:
    """One line per station, in the order of `HEADERS`."""
    return [
        [
            s.sid,
            s.name,
            s.area,
            TARGET_LABELS.get(s.status, s.status.value),
            PLAY_LABELS.get(s.play_status, s.play_status.value) if s.play_status else "",
            s.attempts,
            _when(s.received_at, tz),
            _when(s.started_at, tz),
            _when(s.ended_at, tz),
            round(s.played_ms / 1000, 2) if s.played_ms is not None else None,
            "Có" if s.missed else "",
            reason_label(s.reason),
            _when(s.offline_since, tz),
        ]
        for s in report.stations
    ]


def report_lead(report: EmergencyReport, tz: ZoneInfo) -> list[list[spreadsheets.Cell]]:
    """The report's header lines (label, value): who, when, targets, outcome."""
    targets = "; ".join(
        f"{TARGET_KINDS.get(k, k)}: {', '.join(v)}" for k, v in report.targets.items()
    )
    lines: list[list[spreadsheets.Cell]] = [
        ["Lượt phát số", report.id],
        ["Cấp độ", TIER_LABELS.get(report.tier, report.tier)],
        ["Trạng thái", BROADCAST_LABELS.get(BroadcastStatus(report.status), report.status)],
        ["Người gửi", report.sent_by],
        ["Người duyệt", report.approved_by or ""],
        ["Gửi lúc", _when(report.created_at, tz)],
        ["Phát lúc", _when(report.start_at, tz)],
        ["Hiệu lực đến", _when(report.not_after, tz)],
        ["Đối tượng phát", targets],
        ["Số trạm", len(report.stations)],
        ["Đã nhận lệnh", report.reached],
        ["Đã phát", report.played],
        ["Lỡ phát", len(report.missed)],
        ["Số lần gửi lại", report.resends],
    ]
    if report.cap_identifier:
        lines.insert(5, ["Cảnh báo CAP", report.cap_identifier])
    if report.stopped_at is not None:
        lines.append(["Dừng lúc", f"{_when(report.stopped_at, tz)} ({report.stopped_by or ''})"])
    return lines


def report_csv(report: EmergencyReport, tz: ZoneInfo) -> str:
    """The report as CSV for Vietnamese Excel (`kernel.spreadsheets.excel_csv`): one line
    per station."""
    return spreadsheets.excel_csv(HEADERS, report_table(report, tz))


def report_xlsx(report: EmergencyReport, tz: ZoneInfo) -> bytes:
    """The report as an Excel workbook: who/when/outcome lines, then one line per station."""
    return spreadsheets.xlsx(
        title=f"Báo cáo lượt phát số {report.id}: {report.title}",
        sheet="Báo cáo phát khẩn cấp",
        headers=HEADERS,
        rows=report_table(report, tz),
        formats={9: "0.00"},
        widths=(22, 28, 22, 22, 18, 10, 20, 20, 20, 14, 8, 40, 20),
        lead=report_lead(report, tz),
    )


def report_json(report: EmergencyReport) -> dict[str, object]:
    """The report for the JSON API (codes, not words; timestamps in UTC)."""
    body = asdict(report)
    body["stations"] = [
        asdict(s) | {"played": s.played, "missed": s.missed} for s in report.stations
    ]
    body |= {
        "total": len(report.stations),
        "reached": report.reached,
        "played": report.played,
        "missed": [s.sid for s in report.missed],
    }
    return body
