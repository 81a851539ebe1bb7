"""Vietnamese text normalisation for speech: what an announcer would say aloud.

espeak-ng reads bare digits digit-group by digit-group, and knows nothing of bulletin
conventions (``UBND``, ``26/11/2026``, ``1.500.000 đ``, ``17h30``).  `normalize_vi`
rewrites a bulletin into plain words, in this order (earlier rules protect their
matches from later, more general ones):

1. place prefixes (``TP.`` ``P.`` ``X.`` ``Q.`` ``H.`` ``TX.`` ``TT.`` ``KP``) and
   document numbers (``18/2021/QĐ-TTg`` -> "số mười tám năm ... của Thủ tướng Chính phủ");
2. phone numbers (``0912 345 678``, ``+84 ...``, ``1900 1234``, and 3-5 digit numbers
   after "đường dây nóng", "gọi", "SĐT"...) read digit by digit, in groups;
3. dates (``26/11/2026``, ``26-11``, ``11/2026``; "mùng" for days 1-10, "tháng tư" for
   April) and times (``05:30``, ``17h30``, ``17h``);
4. Roman numerals after "quý", "khóa", "thế kỷ", "đại hội"... and ordinals after "thứ"
   ("thứ nhất", "thứ tư");
5. ranges (``7 - 9`` -> "bảy đến chín"), money (``đ``, ``đồng``, ``VNĐ``, ``USD``),
   percentages and units (km, m², ha, kg, mm, °C...);
6. bulletin abbreviations (UBND, HĐND, MTTQ, CĐS, OCOP, BHYT, BHXH, THPT...);
7. all remaining numbers: Vietnamese separators (``1.500.000`` is one and a half
   million, ``3,5`` is "ba phẩy năm"; ``4.0`` is "bốn chấm không").

Numbers are read by `read_number`, not num2words: num2words 0.5.14 (``lang="vi"``)
reads 2026 as "hai nghìn lẻ hai mươi sáu", 1050 as "một nghìn lẻ năm mươi" and 3.5 as
"ba phẩy năm mươi", and has no Vietnamese ordinals; the school rule implemented here
reads every group after the first in full ("hai nghìn không trăm hai mươi sáu").
"Lẻ" (southern, the default voice) is used rather than the northern "linh".
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

DIGITS = ("không", "một", "hai", "ba", "bốn", "năm", "sáu", "bảy", "tám", "chín")
_SCALES = ((1_000_000, "triệu"), (1_000, "nghìn"), (1, ""))
_BILLION = 1_000_000_000


def _read_triple(n: int, *, full: bool) -> list[str]:
    hundreds, tens, units = n // 100, n // 10 % 10, n % 10
    words: list[str] = []
    if hundreds or full:
        words += [DIGITS[hundreds], "trăm"]
    if tens == 0:
        if units:
            if hundreds or full:
                words.append("lẻ")
            words.append(DIGITS[units])
    elif tens == 1:
        words.append("mười")
        if units:
            words.append("lăm" if units == 5 else DIGITS[units])
    else:
        words += [DIGITS[tens], "mươi"]
        if units == 1:
            words.append("mốt")
        elif units == 5:
            words.append("lăm")
        elif units:
            words.append(DIGITS[units])
    return words


def _read_below_billion(n: int, *, leading: bool) -> list[str]:
    words: list[str] = []
    for scale, name in _SCALES:
        group = n // scale % 1000
        if group == 0:
            continue
        words += _read_triple(group, full=not leading)
        if name:
            words.append(name)
        leading = False
    return words


def read_number(n: int) -> str:
    """Read a non-negative integer in Vietnamese words."""
    if n < 0:
        return "âm " + read_number(-n)
    if n == 0:
        return "không"
    if n < _BILLION:
        return " ".join(_read_below_billion(n, leading=True))
    high, low = divmod(n, _BILLION)
    words = [read_number(high), "tỷ"]
    if low:
        words += _read_below_billion(low, leading=False)
    return " ".join(words)


def read_digits(digits: str) -> str:
    """Read a string of digits one by one ("0912" -> "không chín một hai")."""
    return " ".join(DIGITS[int(ch)] for ch in digits if ch.isdigit())


def read_ordinal(n: int) -> str:
    """The word after "thứ": "nhất", "hai", "ba", "tư", "năm"..."""
    return {1: "nhất", 4: "tư"}.get(n, read_number(n))


def read_month(n: int) -> str:
    """A month number as said after "tháng" (April is "tư")."""
    return "tư" if n == 4 else read_number(n)


def read_day(n: int) -> str:
    """A day of the month as said after "ngày" ("mùng" for 1-10)."""
    return f"mùng {read_number(n)}" if n <= 10 else read_number(n)


def _read_fraction(digits: str) -> str:
    if len(digits) <= 2 and not digits.startswith("0"):
        return read_number(int(digits))
    return read_digits(digits)


def read_decimal(text: str) -> str:
    """A number written the Vietnamese way: ``1.500.000``, ``3,5``, ``1.234,56``, ``4.0``."""
    text = text.strip()
    if text.count(",") > 1:  # "1,2,3": a list, not a decimal
        return ", ".join(read_decimal(part) for part in text.split(",") if part)
    if "," in text:
        whole, _, frac = text.partition(",")
        whole_words = read_decimal(whole) if whole else "không"
        return f"{whole_words} phẩy {_read_fraction(frac)}" if frac else whole_words
    if re.fullmatch(r"\d{1,3}(?:\.\d{3})+", text):
        return read_number(int(text.replace(".", "")))
    if "." in text:
        return " chấm ".join(_read_integer(part) for part in text.split(".") if part)
    return _read_integer(text)


def _read_integer(digits: str) -> str:
    if len(digits) > 15 or (len(digits) > 3 and digits.startswith("0")):
        return read_digits(digits)
    return read_number(int(digits))


# --------------------------------------------------------------------------- tables

ABBREVIATIONS: dict[str, str] = {
    "UBMTTQVN": "Ủy ban Mặt trận Tổ quốc Việt Nam",
    "UBMTTQ": "Ủy ban Mặt trận Tổ quốc",
    "MTTQVN": "Mặt trận Tổ quốc Việt Nam",
    "MTTQ": "Mặt trận Tổ quốc",
    "UBND": "Ủy ban nhân dân",
    "HĐND": "Hội đồng nhân dân",
    "ĐBQH": "đại biểu Quốc hội",
    "CĐS": "chuyển đổi số",
    "OCOP": "Ô cốp",
    "BHYT": "bảo hiểm y tế",
    "BHXH": "bảo hiểm xã hội",
    "BHTN": "bảo hiểm thất nghiệp",
    "THPT": "trung học phổ thông",
    "THCS": "trung học cơ sở",
    "CSGT": "cảnh sát giao thông",
    "PCCC": "phòng cháy chữa cháy",
    "PCTT": "phòng chống thiên tai",
    "TKCN": "tìm kiếm cứu nạn",
    "ATGT": "an toàn giao thông",
    "ATTP": "an toàn thực phẩm",
    "NTM": "nông thôn mới",
    "KCN": "khu công nghiệp",
    "HTX": "hợp tác xã",
    "CCCD": "căn cước công dân",
    "CMND": "chứng minh nhân dân",
    "VNeID": "Vê en i đi",
    "ĐBSCL": "Đồng bằng sông Cửu Long",
    "TPHCM": "Thành phố Hồ Chí Minh",
    "HCM": "Hồ Chí Minh",
    "LĐTBXH": "Lao động Thương binh và Xã hội",
    "GDĐT": "Giáo dục và Đào tạo",
    "TNMT": "Tài nguyên và Môi trường",
    "NNPTNT": "Nông nghiệp và Phát triển nông thôn",
    "KHCN": "khoa học công nghệ",
    "CNTT": "công nghệ thông tin",
    "TTCS": "thông tin cơ sở",
    "TW": "Trung ương",
    "CAND": "Công an nhân dân",
    "QĐND": "Quân đội nhân dân",
    "CB": "cán bộ",
    "CBCCVC": "cán bộ, công chức, viên chức",
    "CNVC": "công nhân viên chức",
    "DN": "doanh nghiệp",
    "VN": "Việt Nam",
    "VOV": "Vê ô vê",
    "VTV": "Vê tê vê",
    "KP": "khu phố",
}

_DOC_TYPES = {
    "QĐ": "quyết định",
    "NĐ": "nghị định",
    "NQ": "nghị quyết",
    "TT": "thông tư",
    "CT": "chỉ thị",
    "KH": "kế hoạch",
    "TB": "thông báo",
    "CV": "công văn",
    "BC": "báo cáo",
    "HD": "hướng dẫn",
}
_ISSUERS = {
    "TTg": "Thủ tướng Chính phủ",
    "CP": "Chính phủ",
    "BTTTT": "Bộ Thông tin và Truyền thông",
    "BYT": "Bộ Y tế",
    "BTC": "Bộ Tài chính",
    "BCA": "Bộ Công an",
    "BGDĐT": "Bộ Giáo dục và Đào tạo",
    "BNNPTNT": "Bộ Nông nghiệp và Phát triển nông thôn",
    "BLĐTBXH": "Bộ Lao động Thương binh và Xã hội",
    "UBND": "Ủy ban nhân dân",
    "HĐND": "Hội đồng nhân dân",
    "TTCS": "Cục Thông tin cơ sở",
    "TU": "Tỉnh ủy",
    "BCĐ": "Ban Chỉ đạo",
}

_ROMAN = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100}
_ROMAN_KEYWORDS = (
    r"quý|khóa|khoá|thế kỷ|thế kỉ|đại hội|kỳ họp|kì họp|giai đoạn|phần|chương|mục|"
    r"tập|cấp|hạng|loại|vùng|lần thứ|thứ"
)

_UNITS = {
    "km²": "ki lô mét vuông",
    "km2": "ki lô mét vuông",
    "km/h": "ki lô mét một giờ",
    "km": "ki lô mét",
    "m²": "mét vuông",
    "m2": "mét vuông",
    "m³": "mét khối",
    "m3": "mét khối",
    "cm": "xen ti mét",
    "mm": "mi li mét",
    "ha": "héc ta",
    "kg": "ki lô gam",
    "kWh": "ki lô oát giờ",
    "kW": "ki lô oát",
    "°C": "độ C",
    "m": "mét",
}

_NUM = r"\d+(?:[.,]\d+)*"
_W = r"[^\W\d_]"  # a letter (Unicode)


def _preceded_by(match: re.Match[str], word: str) -> bool:
    before = match.string[: match.start()].rstrip().lower()
    return before.endswith(word)


def _before_capital(word: str) -> Callable[[re.Match[str]], str]:
    """Replacement that expands only when a digit or a capitalised name follows."""

    def repl(m: re.Match[str]) -> str:
        nxt = m.string[m.end() : m.end() + 1]
        return f"{word} " if nxt.isdigit() or nxt.isupper() else m.group(0)

    return repl


def _roman_to_int(numeral: str) -> int | None:
    total, prev = 0, 0
    for ch in reversed(numeral):
        value = _ROMAN[ch]
        total = total - value if value < prev else total + value
        prev = max(prev, value)
    return total if 0 < total < 400 else None


# --------------------------------------------------------------------------- passes


def _place_prefixes(text: str) -> str:
    text = re.sub(r"\bTP\.?\s*HCM\b", "Thành phố Hồ Chí Minh", text)
    text = re.sub(r"\b(?:TP|Tp|tp)\.\s*", "thành phố ", text)
    text = re.sub(r"\bTP\s+", _before_capital("thành phố"), text)
    text = re.sub(r"\bTX\.\s*", "thị xã ", text)
    text = re.sub(r"\bTT\.\s*", _before_capital("thị trấn"), text)
    text = re.sub(r"\bKP\.?\s*(?=\d)", "khu phố ", text)
    for letter, word in (("P", "phường"), ("X", "xã"), ("Q", "quận"), ("H", "huyện")):
        text = re.sub(rf"(?<![\w.]){letter}\.\s*", _before_capital(word), text)
    return text


def _documents(text: str) -> str:
    def repl(m: re.Match[str]) -> str:
        number, year, issuer = m.group("n"), m.group("y"), m.group("issuer")
        words = [read_number(int(number))]
        if year:
            words += ["năm", read_number(int(year))]
        if issuer.startswith("QH"):
            words.append("của Quốc hội")
        elif issuer in _ISSUERS:
            words.append("của " + _ISSUERS[issuer])
        else:
            words.append(issuer)
        return " ".join(words)

    doc = (
        r"\b(?P<n>\d{1,6})/(?:(?P<y>\d{4})/(?:[A-ZĐ]{2,6}-)?|[A-ZĐ]{2,6}-)"
        r"(?P<issuer>[A-ZĐ][A-Za-zĐđ]{1,11}\d*)\b"
    )
    return re.sub(doc, repl, text)


def _phones(text: str) -> str:
    def grouped(m: re.Match[str]) -> str:
        raw = m.group(0)
        prefix = "cộng " if raw.startswith("+") else ""
        groups = [g for g in re.split(r"[\s.\-]+", raw.lstrip("+")) if g]
        if prefix and groups and len(groups[0]) > 2:  # "+84912..." -> "84", "912..."
            groups = [groups[0][:2], groups[0][2:], *groups[1:]]
        if len(groups) == 1 and len(groups[0]) >= 10:  # unseparated: read 4-3-3
            digits = groups[0]
            groups = [digits[:4], digits[4:7], digits[7:]]
        return prefix + ", ".join(read_digits(g) for g in groups if g)

    tail = r"(?![\w]|[.,]\d)"
    text = re.sub(
        rf"(?<![\w.,+])(?:\+84[\s.\-]?|0)\d{{2,3}}(?:[\s.\-]?\d{{2,4}}){{2,3}}{tail}", grouped, text
    )
    text = re.sub(rf"(?<![\w.,])1[89]00[\s.]?\d{{3,4}}(?:[\s.]?\d{{2,3}})?{tail}", grouped, text)
    return re.sub(
        r"(?i)\b(đường dây nóng|hotline|tổng đài|số điện thoại|điện thoại|sđt|đt|gọi(?: số)?)"
        r"(\s*:?\s*)(\d{3,5})\b(?![.,]\d)",
        lambda m: m.group(1) + m.group(2) + read_digits(m.group(3)),
        text,
    )


def _day_lead(m: re.Match[str]) -> str:
    return "" if _preceded_by(m, "ngày") or _preceded_by(m, "mùng") else "ngày "


def _day_words(m: re.Match[str], day: int) -> str:
    return read_number(day) if _preceded_by(m, "mùng") else read_day(day)


def _dates(text: str) -> str:
    def full(m: re.Match[str]) -> str:
        day, month, year = int(m.group("d")), int(m.group("m")), int(m.group("y"))
        if not (1 <= day <= 31 and 1 <= month <= 12):
            return m.group(0)
        day_words = _day_words(m, day)
        return f"{_day_lead(m)}{day_words} tháng {read_month(month)} năm {read_number(year)}"

    def day_month(m: re.Match[str]) -> str:
        day, month = int(m.group(1)), int(m.group(2))
        if not (1 <= day <= 31 and 1 <= month <= 12):
            return m.group(0)
        return f"{_day_lead(m)}{_day_words(m, day)} tháng {read_month(month)}"

    def month_year(m: re.Match[str]) -> str:
        month, year = int(m.group(1)), int(m.group(2))
        if not 1 <= month <= 12:
            return m.group(0)
        lead = "" if _preceded_by(m, "tháng") else "tháng "
        return f"{lead}{read_month(month)} năm {read_number(year)}"

    text = re.sub(r"\b(?P<d>\d{1,2})(?P<s>[/\-.])(?P<m>\d{1,2})(?P=s)(?P<y>\d{4})\b", full, text)
    text = re.sub(r"(?<![\d/.,])\b(\d{1,2})/(\d{4})\b(?![/\d])", month_year, text)
    return re.sub(r"(?<![\d/.,])\b(\d{1,2})/(\d{1,2})\b(?![/\d]|[.,]\d)", day_month, text)


def _ranges(text: str) -> str:
    text = re.sub(r"(?<=\d)([%a-zA-Z°²]*)\s*-\s*(?=\d)", r"\1 đến ", text)
    return re.sub(r"(?<![\w\d])-(?=\d)", "âm ", text)  # "-5°C"


def _times(text: str) -> str:
    def clock(m: re.Match[str]) -> str:
        hour, minute = int(m.group(1)), int(m.group(2) or 0)
        second = int(m.group(3)) if m.group(3) else 0
        if hour > 24 or minute > 59 or second > 59:
            return m.group(0)
        words = f"{read_number(hour)} giờ"
        if minute:
            words += f" {read_number(minute)} phút"
        if second:
            words += f" {read_number(second)} giây"
        return words

    text = re.sub(r"(?<![\d:])(\d{1,2}):(\d{2})(?::(\d{2}))?(?![\d:])", clock, text)
    return re.sub(
        rf"(?<![\w.,])(\d{{1,2}})\s?[hH](?:(\d{{2}})(?:ph|p|')?)?()(?!{_W}|\d)", clock, text
    )


def _roman(text: str) -> str:
    def repl(m: re.Match[str]) -> str:
        keyword, numeral, year = m.group(1), m.group(2), m.group(3)
        value = _roman_to_int(numeral)
        if value is None:
            return m.group(0)
        ordinal = keyword.lower().endswith("thứ")
        words = f"{keyword} {read_ordinal(value) if ordinal else read_number(value)}"
        if year:
            words += f" năm {read_number(int(year))}"
        return words

    return re.sub(rf"(?i)\b({_ROMAN_KEYWORDS})\s+(?-i:([IVX]+))\b(?:/(\d{{4}})\b)?", repl, text)


def _ordinals(text: str) -> str:
    text = re.sub(
        r"(?i)\b(thứ)\s+(\d{1,3})\b(?![.,]\d)",
        lambda m: f"{m.group(1)} {read_ordinal(int(m.group(2)))}",
        text,
    )

    def month(m: re.Match[str]) -> str:
        value = int(m.group(2))
        return f"{m.group(1)} {read_month(value)}" if 1 <= value <= 12 else m.group(0)

    return re.sub(r"(?i)\b(tháng)\s+(\d{1,2})\b(?![.,/]\d)", month, text)


def _money_percent_units(text: str) -> str:
    text = re.sub(
        rf"({_NUM})\s?(?:đồng|VNĐ|VND|vnđ|vnd|đ)(?!{_W})",
        lambda m: f"{read_decimal(m.group(1))} đồng",
        text,
    )
    text = re.sub(
        rf"(?:USD\s?({_NUM})|\$\s?({_NUM})|({_NUM})\s?(?:USD|đô la|\$))(?!{_W})",
        lambda m: f"{read_decimal(m.group(1) or m.group(2) or m.group(3))} đô la Mỹ",
        text,
    )
    text = re.sub(rf"({_NUM})\s?%", lambda m: f"{read_decimal(m.group(1))} phần trăm", text)
    units = "|".join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True))
    return re.sub(
        rf"({_NUM})\s?({units})(?![\w²³])",
        lambda m: f"{read_decimal(m.group(1))} {_UNITS[m.group(2)]}",
        text,
    )


def _abbreviations(text: str) -> str:
    keys = "|".join(re.escape(k) for k in sorted(ABBREVIATIONS, key=len, reverse=True))
    return re.sub(rf"(?<!\w)({keys})(?!\w)", lambda m: ABBREVIATIONS[m.group(1)], text)


def _numbers(text: str) -> str:
    return re.sub(r"\d+(?:[.,]\d+)*", lambda m: read_decimal(m.group(0)), text)


def _symbols(text: str) -> str:
    text = text.replace("&", " và ").replace("+", " cộng ")
    text = re.sub(
        r"\s*/\s*(tháng|năm|ngày|tuần|người|hộ|giờ|lít|ki lô gam|mét vuông|héc ta)\b",
        r" một \1",
        text,
    )
    text = text.replace("/", " ")
    text = re.sub(r"(?<=\w)-(?=\w)", " ", text)  # "COVID-mười chín", "Lê-nin"
    text = re.sub(r"[ \t]+", " ", text)
    return re.sub(r" +([,.;:!?])", r"\1", text)


_PASSES: tuple[Callable[[str], str], ...] = (
    _place_prefixes,
    _documents,
    _phones,
    _dates,
    _ranges,
    _times,
    _roman,
    _ordinals,
    _money_percent_units,
    _abbreviations,
    _numbers,
    _symbols,
)


def normalize_vi(text: str) -> str:
    """Rewrite Vietnamese bulletin text into words for a speech engine."""
    text = unicodedata.normalize("NFC", text)
    text = text.replace("\u00a0", " ").replace("–", "-").replace("—", "-")
    for step in _PASSES:
        text = step(text)
    lines = [line.strip() for line in text.splitlines()]
    return "\n".join(line for line in lines if line)
