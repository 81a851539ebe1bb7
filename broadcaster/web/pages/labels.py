"""The Vietnamese words the dashboard shows for the system's codes (roles, statuses,
station kinds, area levels, faults, commands, why a connection ended, alarm notification
channels).  Tier labels come from `kernel.tiers`, alarm severities and conditions from
`broadcaster.alarms.rules`."""

from __future__ import annotations

from broadcaster.alarms.models import Channel
from broadcaster.dispatch.models import BroadcastStatus, PlayStatus, TargetStatus
from kernel.security import Role
from kernel.tiers import TIER_LABELS_VI
from stations.models import AreaLevel, ConnectionCause, ReorgStatus, StationKind

ROLE_LABELS = {
    Role.ADMIN: "Quản trị thành phố",
    Role.OPERATOR: "Cán bộ vận hành",
    Role.APPROVER: "Người duyệt tin",
    Role.TECHNICIAN: "Kỹ thuật viên",
    Role.VIEWER: "Người xem",
}
TIER_LABELS: dict[str, str] = {tier.value: label for tier, label in TIER_LABELS_VI.items()}
TARGET_LABELS = {
    TargetStatus.PENDING: "Chờ gửi",
    TargetStatus.SENT: "Đã gửi",
    TargetStatus.RECEIVED: "Đã nhận",
    TargetStatus.IN_PROGRESS: "Đang thực hiện",
    TargetStatus.SUCCEEDED: "Thành công",
    TargetStatus.FAILED: "Thất bại",
    TargetStatus.REJECTED: "Bị từ chối",
    TargetStatus.EXPIRED: "Hết hạn, không đến được",
    TargetStatus.STOPPED: "Đã dừng (theo lệnh)",
}
PLAY_LABELS = {
    PlayStatus.PLANNED: "Đã lên lịch",
    PlayStatus.PLAYING: "Đang phát",
    PlayStatus.PLAYED: "Đã phát",
    PlayStatus.PARTIAL: "Phát một phần",
    PlayStatus.PREEMPTED: "Bị chen ngang",
    PlayStatus.SKIPPED: "Bỏ qua",
    PlayStatus.FAILED: "Lỗi",
    PlayStatus.MISSED: "Không phát",
    PlayStatus.CANCELLED: "Đã hủy",
    PlayStatus.NOT_HEARD: "Không nghe được (loa lỗi)",
}
BROADCAST_LABELS = {
    BroadcastStatus.ACTIVE: "Đang phát",
    BroadcastStatus.STOPPED: "Đã dừng",
    BroadcastStatus.FINISHED: "Đã kết thúc",
}
#: how an alarm subscription is notified (`broadcaster.alarms.models.Channel`)
CHANNEL_LABELS = {Channel.EMAIL: "Thư điện tử (e-mail)", Channel.WEBHOOK: "Webhook (gọi URL)"}
KIND_LABELS = {StationKind.HAMLET: "Trạm ấp/khu phố", StationKind.SMART: "Cụm loa thông minh"}
LEVEL_LABELS = {
    AreaLevel.PROVINCE: "Tỉnh",
    AreaLevel.CITY: "Thành phố",
    AreaLevel.WARD: "Phường",
    AreaLevel.COMMUNE: "Xã",
    AreaLevel.HAMLET: "Ấp/khu phố",
}
REORG_LABELS = {
    ReorgStatus.SCHEDULED: "Chờ đến ngày hiệu lực",
    ReorgStatus.APPLIED: "Đã áp dụng",
    ReorgStatus.UNDONE: "Đã hủy / hoàn tác",
    ReorgStatus.FAILED: "Không áp dụng được",
}
#: the steps of a reorganisation decision (`broadcaster.reorg.service.CSV_COLUMNS`)
REORG_ACTION_LABELS = {
    "merge": "Nhập vào đơn vị mới",
    "create": "Lập đơn vị mới",
    "rename": "Đổi tên",
    "move": "Chuyển ấp/khu phố",
    "dissolve": "Giải thể cấp (đơn vị trực thuộc chuyển lên)",
}
FAULT_LABELS = {
    "power_lost": "Mất điện lưới",
    "on_battery": "Đang chạy pin",
    "amp_overheat": "Bộ khuếch đại quá nhiệt",
    "speaker_line": "Lỗi đường dây loa",
    "storage_low": "Bộ nhớ sắp đầy",
    "clock_unsynced": "Đồng hồ chưa đồng bộ",
    "relay_down": "Mất nguồn tiếp sóng",
    "other": "Lỗi khác",
}
#: why a station's connection ended (`stations.models.ConnectionCause`)
CONNECTION_CAUSE_LABELS = {
    ConnectionCause.POWER: "Mất điện lưới",
    ConnectionCause.LINK: "Đường truyền gián đoạn, trạm tự kết nối lại",
    ConnectionCause.WILL: "Trạm ngắt kết nối (mất mạng, tắt hoặc khởi động lại)",
    ConnectionCause.SERVER: "Máy chủ mất kết nối MQTT (không rõ tình trạng trạm)",
    # recorded before causes were told apart
    ConnectionCause.DEATH: "Trạm ngắt kết nối",
    ConnectionCause.REPLACED: "Trạm kết nối lại",
}
COMMAND_LABELS = {
    "ping": "Kiểm tra kết nối",
    "volume": "Đặt âm lượng",
    "sync": "Đồng bộ lịch phát",
    "reboot": "Khởi động lại",
    "stop": "Dừng phát",
    "rebirth": "Báo lại trạng thái",
    # proposal 0005: the spoken audio of an emergency sent before it existed
    "media": "Gửi âm thanh bản tin khẩn",
}
REASON_LABELS = {
    "no play event from the station": "trạm không báo đã phát",
    "no end event from the station": "trạm không báo kết thúc",
    "removed from the schedule": "đã bỏ khỏi lịch",
    "speaker or amplifier fault alarm": (
        "trạm báo đã phát nhưng đang có cảnh báo lỗi loa/khuếch đại"
    ),
    "not received before not_after": "trạm không nhận lệnh trước khi hết hạn",
    "not_after passed": "quá hạn phát",
    # proposal 0005: a play sent before its audio, whose audio did not come in time
    "media never came": "trạm không nhận được âm thanh của bản tin",
    "failed: media never came": "trạm không nhận được âm thanh của bản tin",
    "not_after passed before the start": "quá hạn trước giờ phát",
}
#: reasons stored with a name or a station's own detail after a fixed beginning: the
#: beginning is said in Vietnamese, the rest kept (an operator's name, a station's text)
REASON_PREFIX_LABELS = {
    "stopped by the operator": "người vận hành đã dừng",
    "stopped by ": "dừng bởi ",
    "busy: ": "trạm đang phát nội dung ưu tiên bằng hoặc cao hơn: ",
}


def reason_label(reason: str | None) -> str:
    """A stored reason in Vietnamese: a known reason, a known beginning, else as stored."""
    if not reason:
        return ""
    if reason in REASON_LABELS:
        return REASON_LABELS[reason]
    for prefix, label in REASON_PREFIX_LABELS.items():
        if reason.startswith(prefix):
            return label + reason.removeprefix(prefix)
    return reason


VOICE_LABELS = {"south": "Giọng miền Nam", "north": "Giọng miền Bắc", "central": "Giọng miền Trung"}

# --- administration (``/quan-tri``): audit actions and the kinds of object they touch ---
ACTION_LABELS = {
    "auth.login": "Đăng nhập",
    "auth.login_failed": "Đăng nhập thất bại",
    "auth.logout": "Đăng xuất",
    "auth.password_change": "Đổi mật khẩu",
    "auth.token_create": "Tạo mã tích hợp",
    "auth.token_revoke": "Thu hồi mã tích hợp",
    "user.create": "Tạo tài khoản",
    "user.update": "Sửa tài khoản",
    "user.delete": "Xóa tài khoản",
    "broadcast.create": "Phát thanh",
    "broadcast.stop": "Dừng phát",
    "broadcast.resend": "Gửi lại cho trạm bị lỡ",
    "live.start": "Bắt đầu phát trực tiếp",
    "live.end": "Kết thúc phát trực tiếp",
    "station.credentials.rotate": "Cấp lại mật khẩu trạm",
    "station.credentials.revoke": "Thu hồi mật khẩu trạm",
    "station.command": "Lệnh tới trạm",
    "station.import": "Nhập danh sách trạm",
    "station.seed": "Khởi tạo trạm",
    "area.create": "Tạo địa bàn",
    "area.update": "Sửa địa bàn",
    "area.reorganise": "Sắp xếp đơn vị hành chính",
    "area.reorganise.schedule": "Lên lịch sắp xếp đơn vị",
    "area.reorganise.cancel": "Hủy lịch sắp xếp đơn vị",
    "area.reorganise.undo": "Hoàn tác sắp xếp đơn vị",
    "area.reorganise.failed": "Sắp xếp đơn vị không áp dụng được",
    "group.create": "Tạo nhóm trạm",
    "group.update": "Sửa nhóm trạm",
    "media.upload": "Tải lên âm thanh",
    "media.tts": "Tạo bản tin giọng máy",
    "media.compose": "Ghép bản tin",
    "media.update": "Sửa bản tin",
    "media.delete": "Xóa bản tin",
    "media.approve": "Duyệt bản tin",
    "media.reject": "Từ chối bản tin",
    "media.submit": "Gửi duyệt bản tin",
    "schedule.submit": "Gửi duyệt lịch phát",
    "schedule.approve": "Duyệt lịch phát",
    "schedule.reject": "Từ chối lịch phát",
    "schedule.delete": "Xóa lịch phát",
    "schedule.seed": "Khởi tạo lịch phát",
    "programme.delete": "Xóa chương trình",
    "stream_source.delete": "Xóa nguồn tiếp sóng",
    "alert.receive": "Nhận cảnh báo",
    "alert.approve": "Duyệt cảnh báo",
    "alert.reject": "Từ chối cảnh báo",
    "alert.air": "Phát cảnh báo",
    "alert_source.create": "Thêm nguồn cảnh báo",
    "alert_source.update": "Sửa nguồn cảnh báo",
    "alarm.acknowledge": "Xác nhận báo động",
    "alarm_subscription.create": "Đăng ký nhận báo động",
    "alarm_subscription.delete": "Hủy nhận báo động",
    "alarm_thresholds.update": "Sửa ngưỡng báo động",
}
OBJECT_LABELS = {
    "user": "Tài khoản",
    "token": "Mã tích hợp",
    "broadcast": "Lượt phát",
    "station": "Trạm",
    "area": "Địa bàn",
    "area_reorganisation": "Phương án sắp xếp",
    "group": "Nhóm trạm",
    "media": "Bản tin",
    "schedule": "Lịch phát",
    "programme": "Chương trình",
    "stream_source": "Nguồn tiếp sóng",
    "alert": "Cảnh báo",
    "alert_source": "Nguồn cảnh báo",
    "alarm": "Báo động",
}

#: How a period spanning an administrative reorganisation is read by ward/commune (the
#: API's ``units``): by today's units, or by the unit each station belonged to then.
UNIT_LABELS = {
    "today": "Đơn vị hiện nay",
    "then": "Đơn vị tại thời điểm đó",
}
