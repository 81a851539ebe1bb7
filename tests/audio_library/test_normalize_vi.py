"""Vietnamese normaliser: numbers, dates, times, money, phones, abbreviations."""

from __future__ import annotations

import pytest

from audio_library.tts.normalize_vi import normalize_vi, read_decimal, read_number


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (0, "không"),
        (5, "năm"),
        (10, "mười"),
        (11, "mười một"),
        (15, "mười lăm"),
        (20, "hai mươi"),
        (21, "hai mươi mốt"),
        (25, "hai mươi lăm"),
        (105, "một trăm lẻ năm"),
        (110, "một trăm mười"),
        (1005, "một nghìn không trăm lẻ năm"),
        (1050, "một nghìn không trăm năm mươi"),
        (2026, "hai nghìn không trăm hai mươi sáu"),
        (15_000, "mười lăm nghìn"),
        (1_500_000, "một triệu năm trăm nghìn"),
        (1_000_005, "một triệu không trăm lẻ năm"),
        (2_500_000_000, "hai tỷ năm trăm triệu"),
        (3_000_000_000_000, "ba nghìn tỷ"),
    ],
)
def test_read_number(n: int, words: str) -> None:
    assert read_number(n) == words


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("1.500.000", "một triệu năm trăm nghìn"),
        ("3,5", "ba phẩy năm"),
        ("0,05", "không phẩy không năm"),
        ("1.234,56", "một nghìn hai trăm ba mươi bốn phẩy năm mươi sáu"),
        ("4.0", "bốn chấm không"),
        ("1,2,3", "một, hai, ba"),
    ],
)
def test_read_decimal(text: str, words: str) -> None:
    assert read_decimal(text) == words


CASES = [
    # dates
    ("26/11/2026", "ngày hai mươi sáu tháng mười một năm hai nghìn không trăm hai mươi sáu"),
    ("ngày 26/11/2026", "ngày hai mươi sáu tháng mười một năm hai nghìn không trăm hai mươi sáu"),
    ("26-11-2026", "ngày hai mươi sáu tháng mười một năm hai nghìn không trăm hai mươi sáu"),
    ("từ 1/5", "từ ngày mùng một tháng năm"),
    ("ngày mùng 2/9", "ngày mùng hai tháng chín"),
    ("tháng 4/2026", "tháng tư năm hai nghìn không trăm hai mươi sáu"),
    ("ngày 30 tháng 4", "ngày ba mươi tháng tư"),
    # times
    ("lúc 05:30", "lúc năm giờ ba mươi phút"),
    ("lúc 17h30", "lúc mười bảy giờ ba mươi phút"),
    ("lúc 17h", "lúc mười bảy giờ"),
    ("5 giờ 30", "năm giờ ba mươi"),
    ("từ 7h30 - 11h00", "từ bảy giờ ba mươi phút đến mười một giờ"),
    ("5ha lúa", "năm héc ta lúa"),
    # numbers, percent, money
    ("tăng 15%", "tăng mười lăm phần trăm"),
    ("lãi suất 3,5%", "lãi suất ba phẩy năm phần trăm"),
    ("1.500.000 đ", "một triệu năm trăm nghìn đồng"),
    ("1.500.000đ", "một triệu năm trăm nghìn đồng"),
    ("150.000 VNĐ", "một trăm năm mươi nghìn đồng"),
    ("2 tỷ đồng", "hai tỷ đồng"),
    ("500.000đ/tháng", "năm trăm nghìn đồng một tháng"),
    ("20 USD", "hai mươi đô la Mỹ"),
    ("mưa 50-100mm", "mưa năm mươi đến một trăm mi li mét"),
    ("nhiệt độ -5°C", "nhiệt độ âm năm độ C"),
    ("cách mạng 4.0", "cách mạng bốn chấm không"),
    # phones
    ("gọi 0912 345 678", "gọi không chín một hai, ba bốn năm, sáu bảy tám"),
    ("SĐT: 0912.345.678", "SĐT: không chín một hai, ba bốn năm, sáu bảy tám"),
    ("0912345678", "không chín một hai, ba bốn năm, sáu bảy tám"),
    ("+84 912 345 678", "cộng tám bốn, chín một hai, ba bốn năm, sáu bảy tám"),
    ("đường dây nóng 1900 1234", "đường dây nóng một chín không không, một hai ba bốn"),
    ("gọi 114", "gọi một một bốn"),
    # ordinals and Roman numerals
    ("lần thứ 1", "lần thứ nhất"),
    ("thứ 4", "thứ tư"),
    ("Thứ 2", "Thứ hai"),
    ("quý I/2026", "quý một năm hai nghìn không trăm hai mươi sáu"),
    ("khóa XV", "khóa mười lăm"),
    ("thế kỷ XXI", "thế kỷ hai mươi mốt"),
    ("loại C", "loại C"),
    # abbreviations and places
    ("UBND TP. Tân An", "Ủy ban nhân dân thành phố Tân An"),
    ("TP Tân An", "thành phố Tân An"),
    ("TP.HCM", "Thành phố Hồ Chí Minh"),
    ("HĐND", "Hội đồng nhân dân"),
    ("UBMTTQ", "Ủy ban Mặt trận Tổ quốc"),
    ("MTTQ", "Mặt trận Tổ quốc"),
    ("CĐS", "chuyển đổi số"),
    ("sản phẩm OCOP", "sản phẩm Ô cốp"),
    ("BHYT, BHXH", "bảo hiểm y tế, bảo hiểm xã hội"),
    ("trường THPT", "trường trung học phổ thông"),
    ("P.7", "phường bảy"),
    ("P. Khánh Hậu", "phường Khánh Hậu"),
    ("X. Bình Tâm", "xã Bình Tâm"),
    ("KP 3", "khu phố ba"),
    ("KP.5", "khu phố năm"),
    # legal documents
    (
        "Thông tư 39/2020/TT-BTTTT",
        "Thông tư ba mươi chín năm hai nghìn không trăm hai mươi của Bộ Thông tin và Truyền thông",
    ),
    (
        "Quyết định 18/2021/QĐ-TTg",
        "Quyết định mười tám năm hai nghìn không trăm hai mươi mốt của Thủ tướng Chính phủ",
    ),
    ("Kế hoạch 123/KH-UBND", "Kế hoạch một trăm hai mươi ba của Ủy ban nhân dân"),
    ("COVID-19", "COVID mười chín"),
]


@pytest.mark.parametrize(("text", "spoken"), CASES)
def test_normalize(text: str, spoken: str) -> None:
    assert normalize_vi(text) == spoken


def test_no_digits_survive_a_bulletin() -> None:
    bulletin = (
        "Thông báo của UBND P.7, TP. Tân An: ngày 26/11/2026, từ 7h30 đến 11h, tại nhà văn hóa "
        "KP 3 tổ chức tiêm vắc xin; người dân mang CCCD, thẻ BHYT. Hỗ trợ 1.500.000 đ/hộ, "
        "tăng 12,5% so với năm 2025. Liên hệ 0272 3826 123 hoặc đường dây nóng 1022."
    )
    spoken = normalize_vi(bulletin)
    assert not any(ch.isdigit() for ch in spoken), spoken
    assert "Ủy ban nhân dân phường bảy" in spoken
    assert "căn cước công dân" in spoken
    assert "một triệu năm trăm nghìn đồng một hộ" in spoken


def test_text_without_numbers_is_unchanged_apart_from_spacing() -> None:
    assert normalize_vi("  Xin chào   bà con  ") == "Xin chào bà con"
