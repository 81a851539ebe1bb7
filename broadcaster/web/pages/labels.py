"""The Vietnamese words the dashboard shows for the system's codes (roles, statuses,
station kinds, area levels, faults, commands).  Tier labels come from `kernel.tiers`."""

from __future__ import annotations

from broadcaster.dispatch.models import BroadcastStatus, PlayStatus, TargetStatus
from kernel.security import Role
from kernel.tiers import TIER_LABELS_VI
from stations.models import AreaLevel, StationKind

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
KIND_LABELS = {StationKind.HAMLET: "Trạm ấp/khu phố", StationKind.SMART: "Cụm loa thông minh"}
LEVEL_LABELS = {
    AreaLevel.PROVINCE: "Tỉnh",
    AreaLevel.CITY: "Thành phố",
    AreaLevel.WARD: "Phường",
    AreaLevel.COMMUNE: "Xã",
    AreaLevel.HAMLET: "Ấp/khu phố",
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
COMMAND_LABELS = {
    "ping": "Kiểm tra kết nối",
    "volume": "Đặt âm lượng",
    "sync": "Đồng bộ lịch phát",
    "reboot": "Khởi động lại",
    "stop": "Dừng phát",
    "rebirth": "Báo lại trạng thái",
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
    "not_after passed before the start": "quá hạn trước giờ phát",
}
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
    "station.command": "Lệnh tới trạm",
    "station.import": "Nhập danh sách trạm",
    "station.seed": "Khởi tạo trạm",
    "area.create": "Tạo địa bàn",
    "area.update": "Sửa địa bàn",
    "group.create": "Tạo nhóm trạm",
    "group.update": "Sửa nhóm trạm",
    "media.upload": "Tải lên âm thanh",
    "media.tts": "Tạo bản tin giọng máy",
    "media.compose": "Ghép bản tin",
    "media.update": "Sửa bản tin",
    "media.delete": "Xóa bản tin",
    "media.approve": "Duyệt bản tin",
    "media.reject": "Từ chối bản tin",
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
    "group": "Nhóm trạm",
    "media": "Bản tin",
    "schedule": "Lịch phát",
    "programme": "Chương trình",
    "stream_source": "Nguồn tiếp sóng",
    "alert": "Cảnh báo",
    "alert_source": "Nguồn cảnh báo",
    "alarm": "Báo động",
}
