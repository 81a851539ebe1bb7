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
    TargetStatus.EXPIRED: "Hết hạn",
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
}
VOICE_LABELS = {"south": "Giọng miền Nam", "north": "Giọng miền Bắc", "central": "Giọng miền Trung"}
